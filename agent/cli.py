"""The `vigie` command line: check-config, run, collect, the read-only views (status, alerts,
tickets), and the subcommands other distributions register (`vigie lab`, `vigie demo` from the lab)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
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
    read_only_view("alerts", "current alerts", _cmd_alerts).add_argument(
        "--all", action="store_true", help="include resolved alerts"
    )
    read_only_view("tickets", "the tickets the agent opened, in the built-in log or a client's ITSM", _cmd_tickets)

    _register_commands(sub)
    return parser


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
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
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
    samples = asyncio.run(_collect_once(polls, plugins))
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


async def _collect_once(polls, plugins) -> list[Sample]:
    from agent.runner import CollectorFactory
    from agent.scheduler import Scheduler

    async def discard(_samples: Sequence[Sample]) -> None:
        return None

    scheduler = Scheduler(polls, CollectorFactory(plugins), discard)
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
    alerts = alert_rows(files, include_resolved=args.all, client=args.client)
    _print_view(alerts_view(alerts, time.time()), alerts, args.json)
    return 0


def _cmd_tickets(args: argparse.Namespace) -> int:
    import time

    from agent.statedir import StateDir
    from agent.views import has_tickets_state, ticket_places, ticket_rows
    from agent.views.terminal import tickets_view

    files = StateDir(_state_dir(args))
    if not has_tickets_state(files):
        return _no_state(files.path)
    tickets = ticket_rows(files, client=args.client)
    estate = _estate(args)
    receivers = [r for r in estate.receivers if args.client in (None, r.client)] if estate else None
    _print_view(tickets_view(tickets, ticket_places(tickets, receivers), time.time()), tickets, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
