"""`vigie lab`: the simulated estates on loopback, and faults to inject into them.

    vigie lab up --estate vsgp|ofdt|mlhg|all|FILE [--snmp-port N] [--glpi-port N]
    vigie lab fault CLIENT/DEVICE KIND [ARGS]      (site-down takes CLIENT/SITE, glpi-error CLIENT)
    vigie lab clear CLIENT/DEVICE [KIND]
    vigie lab status [--json]

`vigie` loads this through its ``vigie.commands`` entry point (``lab = "lab.cli:register"``);
``python -m lab.cli lab ...`` runs the same commands where that entry point is not installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path

from lab.control import RUNTIME_ENV, LabBusy, NoLab, RuntimeDir, default_runtime_dir, request
from lab.estate import LAB_SECRETS, Estate, EstateError
from lab.services import Context, ServiceRegistry
from lab.supervisor import EXIT_ESTATE, EXIT_FAILED, Supervisor

EXIT_USAGE = 64


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    registry = ServiceRegistry.installed()
    lab = subparsers.add_parser(
        "lab",
        help="the simulated estates on loopback: up, fault, clear, status",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = lab.add_subparsers(dest="lab_command", required=True)

    def with_runtime(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--runtime-dir",
            type=Path,
            default=None,
            help=f"the lab's runtime directory (default: ${RUNTIME_ENV}, or vigie-lab-UID in the temp dir)",
        )

    up = commands.add_parser("up", help="start every lab service the estate points at, until Ctrl-C or SIGTERM")
    up.add_argument(
        "--estate",
        required=True,
        help="all, an estate of lab/estates (vsgp, ofdt, mlhg, ...), a YAML file, or several separated by commas",
    )
    up.add_argument(
        "--secrets",
        type=Path,
        default=LAB_SECRETS,
        help="where the devices' communities and the GLPI tokens are (default: the lab's)",
    )
    with_runtime(up)
    for service in registry.services.values():
        service.add_options(up)
    up.set_defaults(func=_up, registry=registry)

    fault = commands.add_parser(
        "fault",
        help="inject a fault into the running lab",
        epilog="fault kinds:\n" + registry.describe_kinds(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fault.add_argument("target", help="CLIENT/DEVICE, CLIENT/SITE or CLIENT, as the kind takes")
    fault.add_argument("kind", choices=sorted(registry.kinds), metavar="KIND")
    fault.add_argument("args", nargs="*", metavar="ARGS")
    with_runtime(fault)
    fault.set_defaults(func=_fault)

    clear = commands.add_parser("clear", help="clear the faults of a target (all, or one KIND)")
    clear.add_argument("target")
    clear.add_argument("kind", nargs="?", choices=sorted(registry.kinds), metavar="KIND")
    with_runtime(clear)
    clear.set_defaults(func=_clear)

    status = commands.add_parser("status", help="what the running lab serves, its environment and active faults")
    status.add_argument("--json", action="store_true")
    status.add_argument("--devices", action="store_true", help="also every device and how to reach it")
    with_runtime(status)
    status.set_defaults(func=_status)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.cli")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def _runtime_dir(args: argparse.Namespace) -> Path:
    return args.runtime_dir or default_runtime_dir(os.environ)


def _up(args: argparse.Namespace) -> int:
    if not getattr(args, "verbose", False):
        # The fake GLPI's access log would print a line per request the agent makes (`vigie -v` shows it).
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        estate = Estate.load(args.estate, os.environ, args.secrets)
    except EstateError as exc:
        print(f"vigie lab up: {exc}", file=sys.stderr)
        return EXIT_ESTATE
    runtime = RuntimeDir(_runtime_dir(args))
    context = Context(estate=estate, options=args, environ=dict(os.environ), runtime_dir=runtime.path)
    try:
        return asyncio.run(Supervisor(context, args.registry, runtime).run())
    except LabBusy as exc:
        print(f"vigie lab up: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _ask(args: argparse.Namespace, message: dict[str, object]) -> dict[str, object] | None:
    try:
        answer = request(_runtime_dir(args), message)
    except NoLab as exc:
        print(f"vigie lab {args.lab_command}: {exc}", file=sys.stderr)
        return None
    if not answer.get("ok"):
        print(f"vigie lab {args.lab_command}: {answer.get('error')}", file=sys.stderr)
        return None
    return answer


def _fault(args: argparse.Namespace) -> int:
    answer = _ask(args, {"op": "fault", "target": args.target, "kind": args.kind, "args": args.args})
    if answer is None:
        return EXIT_FAILED
    print(f"{answer['fault']}: {answer['effect']}")
    return 0


def _clear(args: argparse.Namespace) -> int:
    answer = _ask(args, {"op": "clear", "target": args.target, "kind": args.kind})
    if answer is None:
        return EXIT_FAILED
    for fault in answer["cleared"]:  # type: ignore[attr-defined]
        print(f"cleared {fault}")
    return 0


def _status(args: argparse.Namespace) -> int:
    answer = _ask(args, {"op": "status"})
    if answer is None:
        return EXIT_FAILED
    if args.json:
        print(json.dumps(answer, indent=1, ensure_ascii=False))
        return 0
    print(f"lab {answer['estate']} (pid {answer['pid']}, runtime {answer['runtime_dir']})")
    for service, endpoints in answer["endpoints"].items():  # type: ignore[attr-defined]
        for endpoint in endpoints:
            print(f"  {service:<6} {endpoint}")
    for line in answer["status"]:  # type: ignore[attr-defined]
        print(f"  {line}")
    if args.devices:
        for key, where in answer["devices"].items():  # type: ignore[attr-defined]
            print(f"  {key:<40} {where}")
    for name, entry in answer["environment"].items():  # type: ignore[attr-defined]
        if entry["service"]:
            print(f"  export {name}={entry['value']}")
    faults = answer["faults"]
    print(f"faults: {', '.join(faults) if faults else 'none'}")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
