"""The `vigie` command line: check-config, run, collect, the read-only views (status, alerts,
tickets), and the subcommands other distributions register (`vigie lab`, `vigie demo` from the lab)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

from agent.api import Sample

EXIT_CONFIG = 2
EXIT_LOCKED = 75  # EX_TEMPFAIL: another agent holds the state directory
EXIT_USAGE = 64
COMMANDS = "vigie.commands"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # httpx logs every request at INFO: one line per HTTP probe run, noise next to the agent's own
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return args.func(args)
    except SystemExit as exit_:  # a refused config ends the command with its status, not a traceback
        return exit_.code if isinstance(exit_.code, int) else EXIT_CONFIG


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vigie", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("-q", "--quiet", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser, required: bool = True) -> None:
        p.add_argument("--config", "-c", type=Path, required=required, help="estate YAML file")
        p.add_argument("--secrets", type=Path, help="secrets YAML file (mode 0600)")

    p = sub.add_parser("check-config", help="validate a config; print every error; non-zero exit if any")
    p.add_argument("config_file", type=Path, nargs="?")
    with_config(p, required=False)
    p.add_argument("--online", action="store_true",
                   help="also log in to each client's ticket target and check it may do what vigie asks (read-only)")
    p.set_defaults(func=_cmd_check_config)

    p = sub.add_parser("run", help="run the agent")
    with_config(p)
    p.add_argument("--clients", help="comma-separated client names this agent serves (sharding)")
    p.add_argument("--state-dir", type=Path, help="override agent.state_dir")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: run until signalled)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("collect", help="run one collection and print its samples (like telegraf --test)")
    p.add_argument("url", nargs="?", help="a target URL in a scheme an installed collector takes "
                   "(the SNMP collector: snmp://COMMUNITY@HOST[:PORT], snmpv3://USER:AUTH:PRIV@HOST[:PORT]?...)")
    with_config(p, required=False)
    p.add_argument("--device", help="device name, or CLIENT/DEVICE, from --config")
    p.add_argument("--collector", default=None, help="only this collector of the device")
    p.add_argument("--json", action="store_true", help="print JSON lines (stable, documented format)")
    p.add_argument("--timeout", type=float, default=None, help="hard timeout in seconds")
    p.set_defaults(func=_cmd_collect)

    def read_only_view(name: str, help_: str, func) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        # no --secrets: a view reads the config's names and its state directory, never a secret
        p.add_argument("--config", "-c", type=Path, help="estate YAML file: its devices and agent.state_dir")
        p.add_argument("--state-dir", type=Path, default=None, help="default: the config's agent.state_dir")
        p.add_argument("--client", help="only this client's")
        p.add_argument("--json", action="store_true", help="print JSON lines (times in epoch seconds)")
        p.set_defaults(func=func)
        return p

    read_only_view("status", "devices and their state (up, down, unreachable, unknown), last poll", _cmd_status)
    alerts = read_only_view("alerts", "current alerts", _cmd_alerts)
    alerts.add_argument("--all", action="store_true", help="include resolved alerts")
    alerts.add_argument("--device", metavar="[CLIENT/]DEVICE",
                        help="this device's alerts, and the raw messages kept about it (syslog lines)")
    alerts.add_argument("--messages", type=int, default=20, metavar="N", help="with --device: at most N (20)")
    tickets = read_only_view("tickets", "the tickets the agent opened, in the built-in log or a client's ITSM",
                             _cmd_tickets)
    ticket_actions = tickets.add_subparsers(dest="action", metavar="take")
    take = ticket_actions.add_parser("take", help="take a ticket of the built-in log in charge (the alert SLA's "
                                     "'taken in charge within 5 minutes' reads it back)")
    take.add_argument("id", help="the ticket's number, as `vigie tickets` lists it (log#ID)")
    take.add_argument("--by", default=os.environ.get("USER") or "noc", help="who takes it (default: $USER)")
    take.add_argument("--config", "-c", type=Path, help="estate YAML file: its agent.state_dir")
    take.add_argument("--state-dir", type=Path, default=None, help="default: the config's agent.state_dir")
    take.set_defaults(func=_cmd_tickets_take)
    topology = read_only_view("topology", "each client's network tree: parents from the config and from the links "
                              "the collectors report, and where each came from", _cmd_topology)
    topology.add_argument("--format", choices=("text", "dot", "svg"), default="text",
                          help="dot: Graphviz source of each client's schema; svg: drawn by `dot` (one client)")

    p = sub.add_parser("sla", help="the alert SLA per day: critical alerts taken in charge in the ITSM and ticketed "
                       "within 5 min, onset -> taken and onset -> ticket, "
                       "availability over service hours, restore times against the GTR")
    with_config(p)
    p.add_argument("--state-dir", type=Path, help="override agent.state_dir")
    p.add_argument("--client", required=True)
    p.add_argument("--since", required=True, help="first day, YYYY-MM-DD (the client's timezone)")
    p.add_argument("--until", help="last day, YYYY-MM-DD (default: yesterday)")
    p.add_argument("--json", action="store_true", help="one JSON object per day, with every figure")
    p.set_defaults(func=_cmd_sla)

    p = sub.add_parser("maintenance", help="maintenance windows: alerts inside one open no ticket until it ends")
    actions = p.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add a window (the running agent reads it at once)")
    with_config(add)
    add.add_argument("--state-dir", type=Path, help="override agent.state_dir")
    add.add_argument("--client", required=True)
    add.add_argument("--name", required=True, help="a name to list and remove it by")
    add.add_argument("--site", help="only this site")
    add.add_argument("--device", action="append", default=[], help="only this device (repeatable)")
    add.add_argument("--match", action="append", default=[], metavar="TAG=VALUE",
                     help="only devices whose tag matches, as a rule's match (repeatable)")
    when_add = add.add_mutually_exclusive_group(required=True)
    when_add.add_argument("--start", help="YYYY-MM-DD HH:MM in the client's timezone (with --end)")
    when_add.add_argument("--for", dest="for_", metavar="DURATION", help="from now, e.g. 2h, 45m, 1h30m")
    when_add.add_argument("--cron", help="recurring: 'minute hour day month weekday' (with --duration)")
    add.add_argument("--end", help="YYYY-MM-DD HH:MM in the client's timezone")
    add.add_argument("--duration", help="with --cron: how long each occurrence lasts, e.g. 4h")
    add.add_argument("--reason", default="", help="why: shown in the list and the logs")
    add.set_defaults(func=_cmd_maintenance)
    for action, help_ in (("list", "the configured and added windows, open or not"),
                          ("remove", "remove an added window (configured ones are removed from the config)")):
        q = actions.add_parser(action, help=help_)
        with_config(q)
        q.add_argument("--state-dir", type=Path, help="override agent.state_dir")
        q.add_argument("--client", required=action == "remove")
        if action == "remove":
            q.add_argument("--name", required=True)
        q.set_defaults(func=_cmd_maintenance)

    p = sub.add_parser("report", help="a client's daily (or monthly) SI health report (HTML, XLSX, charts); --send")
    with_config(p)
    p.add_argument("--client", required=True)
    when_ = p.add_mutually_exclusive_group()
    when_.add_argument("--date", type=_date, help="YYYY-MM-DD (default: yesterday in the client's timezone)")
    when_.add_argument("--month", type=_month, help="YYYY-MM: the monthly report over 13 rolling months")
    p.add_argument("--out", type=Path, required=True, help="folder for <client>-<date>.html, .xlsx and the PNGs")
    p.add_argument("--send", action="store_true", help="mail it to the client's report recipients (agent.smtp)")
    p.add_argument("--state-dir", type=Path, help="override agent.state_dir")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("web", help="the web app (agent.web_listen): tools")
    web = p.add_subparsers(dest="action", required=True)
    q = web.add_parser("hash-password", help="read a password (twice, not echoed; or one line from stdin) and print"
                                             " its argon2 hash for agent.web.users[].password_hash")
    q.set_defaults(func=_cmd_web_hash_password)

    _register_commands(sub)
    return parser


def _date(text: str):
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: not a date YYYY-MM-DD") from None


def _month(text: str):
    return _date(f"{text}-01")


def _register_commands(sub: argparse._SubParsersAction) -> None:
    """Subcommands other distributions add (`vigie lab`, `vigie demo` from the lab): entry points
    of `vigie.commands`, each a `register(subparsers)` function. One that cannot load is reported
    and left out; the built-in commands still work."""
    from importlib.metadata import entry_points

    for entry in entry_points(group=COMMANDS):
        try:
            entry.load()(sub)
        except Exception as exc:  # noqa: BLE001 - a broken extension must not break the CLI
            print(f"vigie: command {entry.name!r} ({entry.value}) unavailable: {exc}", file=sys.stderr)


def _plugins():
    from agent.plugins import Plugins

    plugins = Plugins.discover()
    for problem in plugins.problems:
        print(f"warning: {problem}", file=sys.stderr)
    return plugins


def _fail_config(path: Path, errors: Sequence[str]) -> NoReturn:
    for line in errors:
        print(line, file=sys.stderr)
    print(f"{path}: {len(errors)} error(s)", file=sys.stderr)
    raise SystemExit(EXIT_CONFIG)


def _load(args: argparse.Namespace, plugins, path: Path | None = None):
    from agent.config import ConfigError, load_config

    path = path or args.config
    try:
        return load_config(path, secrets_path=args.secrets, plugins=plugins)
    except ConfigError as exc:
        _fail_config(path, exc.errors)


def _polls(config, plugins, clients=None):
    from agent.config import ConfigError
    from agent.runner import checked_polls

    try:
        return checked_polls(config, plugins, clients)
    except ConfigError as exc:
        _fail_config(config.source, exc.errors)


def _cmd_check_config(args: argparse.Namespace) -> int:
    path = args.config_file or args.config
    if path is None:
        print("vigie check-config: give the config file", file=sys.stderr)
        return EXIT_USAGE
    plugins = _plugins()
    config = _load(args, plugins, path)
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    polls = _polls(config, plugins)
    if not polls:
        # an empty or entirely skipped config watches nothing: not an "OK"
        _fail_config(path, [f"{path}: nothing to poll: no device with an installed collector"])
    print(f"{path}: OK — {len(config.clients)} client(s), {len(polls)} poll(s)")
    if args.online and not asyncio.run(_check_ticket_targets(config, plugins)):
        return EXIT_CONFIG
    return 0


async def _check_ticket_targets(config, plugins) -> bool:
    """``check-config --online``: each client's ticket receiver, built as the agent builds it,
    checks against its live ITSM what it may do (receivers without ``check_online``: skipped)."""
    from agent.api import OnlineCheckable, ReceiverContext, TicketError

    fine = True
    with tempfile.TemporaryDirectory(prefix="vigie-check-") as scratch:  # the check leaves no state behind
        for client in config.clients:
            spec = plugins.get("ticketing", client.ticketing.kind)
            context = ReceiverContext(client.name, client.timezone, client.language, Path(scratch), config.secret_text)
            receiver = spec.factory(config.plugin_options("ticketing", client.name), context)
            try:
                if not isinstance(receiver, OnlineCheckable):
                    print(f"{client.name}: tickets: {client.ticketing.kind}: nothing to check online")
                    continue
                try:
                    checks = await receiver.check_online()
                except TicketError as exc:
                    print(f"{client.name}: tickets: {client.ticketing.kind}: FAILED: {exc}")
                    fine = False
                    continue
                for check in checks:
                    fine = fine and check.ok
                    mark = "ok" if check.ok else "PROBLEM"
                    print(f"{client.name}: tickets: {client.ticketing.kind}: {mark}: {check.what}: {check.detail}")
            finally:
                await receiver.close()
    return fine


# The cyclic garbage collector's thresholds of `vigie run` (generation 0, 1, 2). Python's (700, 10,
# 10) collect the young generation after 700 net new containers: a poll's snapshot and rows, alive
# for the tens of milliseconds the poll takes, are found alive by most collections and promoted to
# the old generation, whose full collections scan the whole heap. 1,500 switches on one core: 54
# full collections in 240 s, 0.22 s each (a stall of the event loop each time), 8.8 % of the
# agent's CPU in the collector. At (50,000, 20, 10) a poll's objects are freed by reference
# counting before the young generation fills: 0 full collections in the same run, 0.5 % of the
# CPU, young collections of ~20 ms every ~8 s. Cyclic garbage is still collected, later.
RUN_GC_THRESHOLDS = (50_000, 20, 10)


def _cmd_run(args: argparse.Namespace) -> int:
    import gc

    from agent.config import ConfigError
    from agent.runner import Agent
    from agent.statedir import StateDirLocked

    plugins = _plugins()
    config = _load(args, plugins)
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    clients = {c.strip() for c in args.clients.split(",") if c.strip()} if args.clients else None
    try:
        agent = Agent(config, clients=clients, state_dir=args.state_dir, plugins=plugins)
    except ConfigError as exc:
        _fail_config(config.source, exc.errors)
    if not agent.polls:
        _fail_config(config.source, [f"{config.source}: nothing to poll: no device with an installed collector"])
    gc.set_threshold(*RUN_GC_THRESHOLDS)
    try:
        asyncio.run(agent.run_forever(duration_s=args.duration))
    except KeyboardInterrupt:
        pass
    except StateDirLocked as exc:
        print(f"vigie run: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    return 0


def _redacted(url: str, text: str | None = None) -> str:
    """``text`` (default: ``url`` itself) with ``url``'s user part masked: a community or a key must
    never reach a terminal or a log. The user part is all before the last ``@``: a key holding a
    ``/`` left unencoded is still masked, though a URL parser would read its start as the host.
    A message may quote the URL, or a piece of its user part, as written, percent-decoded or
    escaped by ``repr``: each form is masked."""
    import re
    from urllib.parse import unquote

    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    user, at, host = rest.rpartition("@")
    masked = f"{scheme}{sep}***@{host}" if at else url
    if text is None:
        return masked
    text = text.replace(repr(url), repr(masked)).replace(url, masked)
    pieces = {user, *re.split(r"[:/?#]", user)} if at else set()
    pieces |= {unquote(piece) for piece in pieces}
    forms = {form for piece in pieces for form in (piece, repr(piece)[1:-1])} - {""}
    if not forms:
        return text
    # ignoring case: a parser lower-cases what it reads as a host name
    pattern = "|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True))
    return re.sub(pattern, "***", text, flags=re.IGNORECASE)


def _cmd_collect(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from agent.config.checks import SECRET_KEYS
    from agent.inventory import Poll
    from agent.plugins import UnknownPlugin

    if args.timeout is not None and not 0 < args.timeout <= 86400:
        print("vigie collect: --timeout: give seconds, more than 0 and at most 86400", file=sys.stderr)
        return EXIT_USAGE
    plugins = _plugins()
    if args.url:
        url = args.url
        scheme, sep, _ = url.partition("://")
        if not sep:
            print(f"vigie collect: {_redacted(url)}: not a URL (SCHEME://..., e.g. snmp://COMMUNITY@HOST)",
                  file=sys.stderr)
            return EXIT_USAGE
        try:
            collector, parse = plugins.url_parser(scheme)
            target, raw_options = parse(url)
            spec = plugins.collector(collector)
            options = spec.options.model_validate(raw_options)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()
            )
            print(f"vigie collect: {_redacted(url)}: {_redacted(url, problems)}", file=sys.stderr)
            return EXIT_USAGE
        except (UnknownPlugin, ValueError) as exc:
            message = str(exc).removeprefix(f"{url!r}: ")  # the parser's own echo of the URL
            print(f"vigie collect: {_redacted(url)}: {_redacted(url, message)}", file=sys.stderr)
            return EXIT_USAGE
        timeout = args.timeout or _default_timeout(options)
        polls = [Poll(target=target, collector=collector, options=options, interval_s=60, timeout_s=timeout,
                      jitter_s=0)]
    elif args.config and args.device:
        config = _load(args, plugins)
        client, _, device = args.device.rpartition("/")
        devices = [
            d for c in config.clients if not client or c.name == client
            for _, d in c.devices() if d.name == device
        ]
        if not devices:
            print(f"vigie collect: no device {args.device!r} in {args.config}", file=sys.stderr)
            return EXIT_USAGE
        on_device = sorted({name for d in devices for name in d.collectors})
        if args.collector is not None and args.collector not in on_device:
            print(f"vigie collect: {args.device}: no collector {args.collector!r} on this device "
                  f"(its collectors: {', '.join(on_device) or 'none'})", file=sys.stderr)
            return EXIT_USAGE
        polls = [
            p for p in _polls(config, plugins)
            if p.target.name == device and (not client or p.target.tags.get("client") == client)
            and (args.collector is None or p.collector == args.collector)
        ]
        if not polls:
            wanted = args.collector or ", ".join(on_device) or "none"
            installed = ", ".join(plugins.names("collectors")) or "none"
            print(f"vigie collect: {args.device}: no installed collector to run (asked: {wanted}; "
                  f"installed: {installed})", file=sys.stderr)
            return EXIT_USAGE
        if args.timeout:
            polls = [replace(p, timeout_s=args.timeout) for p in polls]
    else:
        print("vigie collect: give a URL, or --config FILE --device NAME", file=sys.stderr)
        return EXIT_USAGE
    from agent.runner import CollectorFactory

    if args.url:
        # one look at one URL: no secrets, and nothing a plugin keeps outlives the command
        with tempfile.TemporaryDirectory(prefix="vigie-collect-") as scratch:
            samples = asyncio.run(_collect_once(polls, CollectorFactory(plugins, Path(scratch), _no_secrets)))
    else:
        state_dir = Path(config.agent.state_dir)
        from agent.inventory import device_tags

        # a controller's samples about other inventory devices (piggyback) carry their tags, as in `vigie run`
        samples = asyncio.run(
            _collect_once(polls, CollectorFactory(plugins, state_dir, config.secret_text), device_tags(config))
        )
    # What a collector writes in a sample is its own text: mask the polls' secrets (and the URL's
    # user part) in whatever it says.
    secrets = sorted(
        {str(v) for p in polls for k, v in p.target.credentials.items() if k in SECRET_KEYS and str(v)},
        key=len, reverse=True,
    )

    def masked(value):
        if not isinstance(value, str):
            return value
        if args.url:
            value = _redacted(args.url, value)
        for secret in secrets:
            value = value.replace(secret, "***")
        return value

    samples = [
        replace(s, tags={k: masked(v) for k, v in s.tags.items()}, fields={k: masked(v) for k, v in s.fields.items()})
        for s in samples
    ]
    _print_samples(samples, as_json=args.json)
    failed = [s for s in samples if s.measurement == "collection" and s.fields.get("status") != "ok"]
    return 1 if failed else 0


def _default_timeout(options) -> float:
    """Long enough for the collector's own timeouts and retries to play out first."""
    timeout_s = float(getattr(options, "timeout_s", 5))
    retries = int(getattr(options, "retries", 1))
    return timeout_s * (retries + 1) + 5


def _no_secrets(ref) -> str:
    raise KeyError(f"secret {ref.secret!r}: `vigie collect URL` reads no secrets file (use --config)")


async def _collect_once(polls, make_collector, device_tags=None) -> list[Sample]:
    from agent.scheduler import Scheduler

    async def discard(_samples: Sequence[Sample]) -> None:
        return None

    scheduler = Scheduler(polls, make_collector, discard, device_tags=device_tags)
    samples: list[Sample] = []
    for poll in polls:
        samples.extend(await scheduler.run_poll(poll))
    return samples


def _print_samples(samples: Sequence[Sample], as_json: bool) -> None:
    if as_json:
        for sample in samples:
            print(sample.to_json())
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("measurement", "tags", "fields", box=None)
    for s in samples:
        base = {"client", "site", "device"}
        tags = " ".join(f"{k}={v}" for k, v in s.tags.items() if k not in base)
        fields = " ".join(f"{k}={v}" for k, v in s.fields.items())
        table.add_row(s.measurement, tags, fields)
    Console().print(table)


def _state_dir(args: argparse.Namespace) -> Path:
    """The state directory a read-only view reads: ``--state-dir``, else the config's
    ``agent.state_dir`` (read without secrets: a view needs none), else $VIGIE_STATE_DIR or var."""
    from agent.config import ConfigError, state_dir_of

    if args.state_dir:
        return args.state_dir
    if args.config:
        try:
            return state_dir_of(args.config)
        except ConfigError as exc:
            _fail_config(args.config, exc.errors)
    return Path(os.environ.get("VIGIE_STATE_DIR", "var"))


def _estate(args: argparse.Namespace):
    """The config's devices and receivers (read without secrets), or None without ``--config``."""
    from agent.config import ConfigError
    from agent.views import read_estate

    if args.config is None:
        return None
    try:
        return read_estate(args.config)
    except ConfigError as exc:
        _fail_config(args.config, exc.errors)


def _print_view(renderable, rows, as_json: bool) -> None:
    import json
    from dataclasses import asdict

    if as_json:
        for row in rows:
            print(json.dumps(asdict(row), ensure_ascii=False))
        return
    from rich.console import Console

    Console().print(renderable, crop=False)  # a URL or path longer than the line is left whole


def _no_state(state_dir: Path) -> int:
    print(
        f"{state_dir}: no agent state here — has `vigie run` used this state directory? (give --config or --state-dir)",
        file=sys.stderr,
    )
    return 1


def _cmd_status(args: argparse.Namespace) -> int:
    import time

    from agent.statedir import StateDir
    from agent.views import device_statuses
    from agent.views.terminal import status_view

    files = StateDir(_state_dir(args))
    estate = _estate(args)
    if estate is None and not files.state_db.exists() and not files.alerts_db.exists():
        return _no_state(files.path)
    devices = device_statuses(files, estate.devices if estate else None, client=args.client)
    installed = estate.installed_collectors if estate else None
    _print_view(status_view(devices, time.time(), installed), devices, args.json)
    return 0


def _cmd_alerts(args: argparse.Namespace) -> int:
    import time

    from agent.statedir import StateDir
    from agent.views import alert_rows
    from agent.views.terminal import alerts_view

    files = StateDir(_state_dir(args))
    if not files.alerts_db.exists():
        return _no_state(files.path)
    client, device = args.client, None
    if args.device is not None:
        named, _, device = args.device.rpartition("/")
        client = named or args.client
        if not client or not device:
            print("vigie alerts: --device: give CLIENT/DEVICE, or DEVICE with --client", file=sys.stderr)
            return EXIT_USAGE
    alerts = alert_rows(files, include_resolved=args.all, client=client)
    if device is None:
        _print_view(alerts_view(alerts, time.time()), alerts, args.json)
        return 0
    from agent.views.terminal import messages_view

    alerts = [a for a in alerts if a.device == device]
    messages = _plugins().device_messages(files.path, client, device, max(args.messages, 0))
    if args.json:
        _print_view(None, [*alerts, *messages], as_json=True)
    else:
        from rich.console import Group

        _print_view(Group(alerts_view(alerts, time.time()), messages_view(messages, time.time())), alerts, False)
    return 0


def _cmd_tickets(args: argparse.Namespace) -> int:
    import time

    from agent.statedir import StateDir
    from agent.views import has_tickets_state, ticket_places, ticket_rows, transmission_rows
    from agent.views.terminal import tickets_view

    files = StateDir(_state_dir(args))
    if not has_tickets_state(files):
        return _no_state(files.path)
    tickets = ticket_rows(files, client=args.client)
    transmissions = transmission_rows(files, client=args.client)
    estate = _estate(args)
    receivers = [r for r in estate.receivers if args.client in (None, r.client)] if estate else None
    _print_view(tickets_view(tickets, ticket_places(tickets, receivers), time.time(), transmissions),
                [*tickets, *transmissions], args.json)
    return 0


def _cmd_tickets_take(args: argparse.Namespace) -> int:
    import time

    from agent.api import ReceiverContext, Takeable
    from agent.statedir import StateDir
    from agent.views import has_tickets_state
    from agent.views.tickets import BUILT_IN_RECEIVER

    files = StateDir(_state_dir(args))
    if not has_tickets_state(files):
        return _no_state(files.path)

    def no_secret(ref):  # the built-in log has no option, and no secret
        raise ValueError(f"vigie tickets take reads no secret ({ref})")

    # the built-in log, through its plugin as the agent builds it (tickets of an ITSM are taken there)
    spec = _plugins().get("ticketing", BUILT_IN_RECEIVER)
    receiver = spec.factory(spec.options(), ReceiverContext("", "UTC", "en", files.path, no_secret))
    try:
        if not isinstance(receiver, Takeable):
            print(f"vigie tickets take: the {BUILT_IN_RECEIVER} receiver cannot take tickets", file=sys.stderr)
            return 1
        try:
            by, at = receiver.take(args.id, args.by)
        except LookupError as exc:
            print(f"vigie tickets take: {exc.args[0] if exc.args else exc} (tickets of an ITSM are taken in "
                  "charge in the ITSM)", file=sys.stderr)
            return 1
    finally:
        asyncio.run(receiver.close())
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(at))
    already = "" if by == args.by else " (already: the first one stands)"
    print(f"ticket #{args.id} of the built-in log taken in charge at {when} by {by}{already}")
    return 0


def _cmd_topology(args: argparse.Namespace) -> int:
    import json

    from agent.statedir import StateDir
    from agent.topology import DrawingError, as_json, from_state, measurements, text_lines, to_dot, to_svg
    from agent.views.latest import latest_series

    estate = _estate(args)
    if estate is None:
        print("vigie topology: give --config (the inventory neighbours are matched to)", file=sys.stderr)
        return EXIT_USAGE
    clients = sorted({d.client for d in estate.devices})
    if args.client is not None:
        if args.client not in clients:
            print(f"vigie topology: unknown client {args.client!r} (known: {', '.join(clients)})", file=sys.stderr)
            return EXIT_USAGE
        clients = [args.client]
    if args.json and args.format != "text":
        print("vigie topology: --json or --format, not both", file=sys.stderr)
        return EXIT_USAGE
    if args.format == "svg" and len(clients) != 1:
        print("vigie topology: --format svg draws one client: give --client", file=sys.stderr)
        return EXIT_USAGE
    files = StateDir(_state_dir(args))
    if not files.state_db.exists():
        print(f"vigie topology: no agent state in {files.path}: the config's parents only", file=sys.stderr)
    sources = _plugins().edge_sources()
    series = [(s.measurement, s.tags, s.fields, s.at)
              for c in clients for s in latest_series(files, c, measurements=measurements(sources))]
    topology = from_state(estate.devices, series, sources)
    for client in clients:
        derived = topology.derive(client)
        roles = {d.name: d.tags.get("role") for d in estate.devices if d.client == client}
        if args.json:
            print(json.dumps(as_json(derived), ensure_ascii=False))
        elif args.format == "dot":
            print(to_dot(derived, roles), end="")
        elif args.format == "svg":
            try:
                print(to_svg(to_dot(derived, roles)), end="")
            except DrawingError as exc:
                print(f"vigie topology: {exc}", file=sys.stderr)
                return 1
        else:
            print("\n".join(text_lines(derived)))
    return 0


def _cmd_sla(args: argparse.Namespace) -> int:
    import datetime as dt
    import time

    from agent.statedir import StateDir
    from alerting.sla import sla_day, table_lines

    config = _load(args, _plugins())
    if args.client not in {c.name for c in config.clients}:
        print(f"vigie sla: no client {args.client!r} in {args.config}", file=sys.stderr)
        return EXIT_USAGE
    client = config.client(args.client)
    try:
        since = dt.date.fromisoformat(args.since)
        yesterday = dt.datetime.fromtimestamp(time.time(), client.zone).date() - dt.timedelta(days=1)
        until = dt.date.fromisoformat(args.until) if args.until else yesterday
    except ValueError as exc:
        print(f"vigie sla: {exc} (give YYYY-MM-DD)", file=sys.stderr)
        return EXIT_USAGE
    if until < since or (until - since).days > 400:
        print("vigie sla: --until must be on or after --since, and at most 400 days later", file=sys.stderr)
        return EXIT_USAGE
    files = StateDir(args.state_dir or Path(config.agent.state_dir))
    if not files.alerts_db.exists():
        return _no_state(files.path)
    now = time.time()
    days = [sla_day(files, client, since + dt.timedelta(days=n), now) for n in range((until - since).days + 1)]
    if args.json:
        for day in days:
            print(day.to_json())
    else:
        print("\n".join(table_lines(days)))
    return 0


def _cmd_maintenance(args: argparse.Namespace) -> int:
    import time
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from pydantic import ValidationError

    from agent.maintenance import MaintenanceWindow, read_added, window_text, write_added
    from agent.statedir import StateDir

    config = _load(args, _plugins())
    files = StateDir(args.state_dir or Path(config.agent.state_dir))
    clients = {c.name: c for c in config.clients}
    if args.client is not None and args.client not in clients:
        print(f"vigie maintenance: no client {args.client!r} in {args.config}", file=sys.stderr)
        return EXIT_USAGE
    try:
        added = read_added(files.maintenance_file)
    except ValueError as exc:
        print(f"vigie maintenance: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    now = time.time()
    if args.action == "list":
        shown = [(w.scoped(c.name), "config") for c in clients.values() for w in c.maintenance] + [
            (w, "added") for w in added]
        for window, origin in shown:
            if args.client in (None, window.client):
                zone = clients[window.client].zone if window.client in clients else ZoneInfo("UTC")
                print(f"[{origin}] {window_text(window, now, zone)}")
        if not shown:
            print("no maintenance window")
        return 0
    if args.action == "remove":
        kept = [w for w in added if not (w.name == args.name and w.client == args.client)]
        if len(kept) == len(added):
            configured = any(w.name == args.name for w in clients[args.client].maintenance)
            where = f"it is in {args.config}: remove it there" if configured else "none was added by that name"
            print(f"vigie maintenance: {args.client}/{args.name}: {where}", file=sys.stderr)
            return EXIT_USAGE
        write_added(files.maintenance_file, kept)
        print(f"removed {args.client}/{args.name}")
        return 0
    client = clients[args.client]
    devices = {d.name: s.name for s, d in client.devices()}
    problems = [f"--device {d}: no such device of {client.name}" for d in args.device if d not in devices]
    if args.site is not None and args.site not in {s.name for s in client.sites}:
        problems.append(f"--site {args.site}: no such site of {client.name}")
    if any(w.name == args.name and w.client == client.name for w in added):
        problems.append(f"--name {args.name}: already added (remove it first)")
    try:
        match = dict(pair.split("=", 1) for pair in args.match)
    except ValueError:
        problems.append("--match: give TAG=VALUE")
        match = {}
    try:
        if args.for_ is not None:
            start = datetime.fromtimestamp(now, client.zone).replace(microsecond=0)
            times = {"start": start, "end": start + timedelta(seconds=_duration_s(args.for_))}
        elif args.cron is not None:
            times = {"cron": args.cron, "duration_s": _duration_s(args.duration or "")}
        else:
            times = {"start": _local_time(args.start, client.zone), "end": _local_time(args.end or "", client.zone)}
        window = MaintenanceWindow(name=args.name, client=client.name, site=args.site, devices=args.device,
                                   match=match, reason=args.reason, **times)
    except (ValueError, ValidationError) as exc:
        problems.append(str(exc).replace("\n", " "))
    if problems:
        for problem in problems:
            print(f"vigie maintenance: {problem}", file=sys.stderr)
        return EXIT_USAGE
    write_added(files.maintenance_file, [*added, window])
    print(f"added {window_text(window, now, client.zone)}")
    return 0


def _duration_s(text: str) -> float:
    """``2h``, ``45m``, ``1h30m``, ``90s``, ``3600`` -> seconds; ValueError otherwise."""
    import re

    found = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?", text.strip())
    if not text.strip() or found is None or not any(found.groups()):
        raise ValueError(f"duration {text!r}: give e.g. 2h, 45m, 1h30m or seconds")
    hours, minutes, seconds = (int(g or 0) for g in found.groups())
    return hours * 3600 + minutes * 60 + seconds


def _local_time(text: str, zone):
    from datetime import datetime

    try:
        return datetime.fromisoformat(text.strip()).replace(tzinfo=None).replace(tzinfo=zone)
    except ValueError:
        raise ValueError(f"time {text!r}: give YYYY-MM-DD HH:MM (the client's timezone)") from None


def _cmd_report(args: argparse.Namespace) -> int:
    from agent.report.command import run

    config = _load(args, _plugins())
    if args.client not in {c.name for c in config.clients}:
        print(f"vigie report: no client {args.client!r} in {args.config}", file=sys.stderr)
        return EXIT_USAGE
    return run(config, args.client, day=args.date, month=args.month, out=args.out, send=args.send,
               state_dir=args.state_dir)


def _cmd_web_hash_password(args: argparse.Namespace) -> int:
    import getpass

    from agent.web.auth import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("vigie web hash-password: the two passwords differ", file=sys.stderr)
            return EXIT_USAGE
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 12:
        print("vigie web hash-password: 12 characters at least", file=sys.stderr)
        return EXIT_USAGE
    print(hash_password(password))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
