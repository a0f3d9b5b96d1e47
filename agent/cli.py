"""The `vigie` command line: check-config, run, collect, tickets, alerts, demo."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from agent.api import Sample

EXIT_CONFIG = 2
EXIT_USAGE = 64


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # APScheduler logs every job run at INFO: noise next to the agent's own messages.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
    return args.func(args)


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
    p.add_argument("url", nargs="?", help="snmp://COMMUNITY@HOST[:PORT] or snmpv3://USER:AUTH:PRIV@HOST[:PORT]?...")
    with_config(p, required=False)
    p.add_argument("--device", help="device name, or CLIENT/DEVICE, from --config")
    p.add_argument("--collector", default=None, help="only this collector of the device")
    p.add_argument("--json", action="store_true", help="print JSON lines (stable, documented format)")
    p.add_argument("--timeout", type=float, default=None, help="hard timeout in seconds")
    p.set_defaults(func=_cmd_collect)

    p = sub.add_parser("tickets", help="list the built-in ticket log")
    with_config(p, required=False)
    p.add_argument("--state-dir", type=Path, default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_tickets)

    p = sub.add_parser("alerts", help="list current alerts")
    with_config(p, required=False)
    p.add_argument("--state-dir", type=Path, default=None)
    p.add_argument("--all", action="store_true", help="include resolved alerts")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_alerts)

    p = sub.add_parser("demo", help="lab + agent + injected fault: alert, ticket, recovery, solved")
    p.add_argument("--keep-running", action="store_true", help="keep the agent and lab running after the demo")
    p.add_argument("--state-dir", type=Path, default=None)
    p.add_argument("--glpi", action="store_true", help="open tickets in the lab's fake GLPI, not the built-in log")
    p.set_defaults(func=_cmd_demo)
    return parser


def _load(args: argparse.Namespace, path: Path | None = None):
    from agent.config import ConfigError, load_config
    from agent.plugins import COLLECTORS, Registry, shipped_rules

    path = path or args.config
    collectors = Registry(COLLECTORS)
    try:
        return load_config(path, secrets_path=args.secrets, known_collectors=collectors.names(),
                           shipped_rules=shipped_rules(collectors))
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        print(f"{path}: {len(exc.errors)} error(s)", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def _cmd_check_config(args: argparse.Namespace) -> int:
    path = args.config_file or args.config
    if path is None:
        print("vigie check-config: give the config file", file=sys.stderr)
        return EXIT_USAGE
    from agent.inventory import build_polls

    config = _load(args, path)
    from agent.runner import CollectorFactory, usable_polls

    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    polls, problems = usable_polls(build_polls(config), CollectorFactory())
    # Options of an installed collector are the collector's to judge (config only checks their shape).
    for problem in problems.bad_options:
        print(f"{path}: {problem}", file=sys.stderr)
    if problems.bad_options:
        print(f"{path}: {len(problems.bad_options)} error(s)", file=sys.stderr)
        return EXIT_CONFIG
    print(f"{path}: OK — {len(config.clients)} client(s), {len(polls)} poll(s)")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from agent.runner import Agent

    config = _load(args)
    clients = {c.strip() for c in args.clients.split(",") if c.strip()} if args.clients else None
    agent = Agent(config, clients=clients, state_dir=args.state_dir)
    try:
        asyncio.run(agent.run_forever(duration_s=args.duration))
    except KeyboardInterrupt:
        pass
    return 0


def _cmd_collect(args: argparse.Namespace) -> int:
    from agent.inventory import Poll, build_polls

    if args.url:
        from collectors.snmp import target_from_url

        try:
            target, options = target_from_url(args.url)
        except ValueError as exc:
            print(f"vigie collect: {exc}", file=sys.stderr)
            return EXIT_USAGE
        timeout = args.timeout or float(options.get("timeout_s", 5)) * (int(options.get("retries", 1)) + 1) + 5
        polls = [Poll(target=target, collector="snmp", options=options, interval_s=60, timeout_s=timeout,
                      jitter_s=0)]
    elif args.config and args.device:
        config = _load(args)
        client, _, device = args.device.rpartition("/")
        polls = [
            p for p in build_polls(config)
            if p.target.name == device and (not client or p.target.tags.get("client") == client)
            and (args.collector is None or p.collector == args.collector)
        ]
        if not polls:
            print(f"vigie collect: no device {args.device!r} in {args.config}", file=sys.stderr)
            return EXIT_USAGE
        if args.timeout:
            polls = [p.__class__(**{**p.__dict__, "timeout_s": args.timeout}) for p in polls]
    else:
        print("vigie collect: give a URL, or --config FILE --device NAME", file=sys.stderr)
        return EXIT_USAGE
    samples = asyncio.run(_collect_once(polls))
    _print_samples(samples, as_json=args.json)
    failed = [s for s in samples if s.measurement == "collection" and s.fields.get("status") != "ok"]
    return 1 if failed else 0


async def _collect_once(polls) -> list[Sample]:
    from agent.runner import CollectorFactory
    from agent.scheduler import Scheduler

    async def discard(_samples: Sequence[Sample]) -> None:
        return None

    scheduler = Scheduler(polls, CollectorFactory(), discard)
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
    if args.state_dir:
        return args.state_dir
    if args.config:
        return Path(_load(args).agent.state_dir)
    return Path(os.environ.get("VIGIE_STATE_DIR", "var"))


def _cmd_tickets(args: argparse.Namespace) -> int:
    from agent.views import print_tickets

    return print_tickets(_state_dir(args), as_json=args.json)


def _cmd_alerts(args: argparse.Namespace) -> int:
    from agent.views import print_alerts

    return print_alerts(_state_dir(args), include_resolved=args.all, as_json=args.json)


def _cmd_demo(args: argparse.Namespace) -> int:
    from agent.demo import run_demo

    return asyncio.run(run_demo(keep_running=args.keep_running, state_dir=args.state_dir, glpi=args.glpi))


if __name__ == "__main__":
    raise SystemExit(main())
