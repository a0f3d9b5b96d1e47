"""The SNMP devices of an estate, played by lab.snmp_responder in a child process.

Every device with an ``x-lab: {walk: ...}`` is served on the address and port its YAML gives (the
estates use ``port: ${VIGIE_LAB_SNMP_PORT:-1161}``), with the community of its ``credentials``
secret (``<client>/<device>`` in lab/estates/secrets.yaml). ``--snmp-port N`` (0: any free port)
sets the port variable instead; the lab prints the value the agent must read.

The lab binds the sockets itself and hands them to the responder, so a port in use is an error
here, and no request is lost while the responder loads its walks. Faults become the responder's
effects (see lab.snmp_responder), written atomically to the runtime directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from lab.estate import EstateDevice, EstateError, expand, is_loopback, variables_in
from lab.processes import Child
from lab.services import Context, Fault, FaultError, FaultKind, LabService
from lab.snmp_responder import RECEIVE_BUFFER
from lab.walks import IF_OPER_STATUS, WalkError, cpu_at, read_records, recording

READY_TIMEOUT_S = 60.0
CPU_HIGH_DEFAULT = 97
IF_DOWN = "2"
IF_UP = "1"


@dataclass(frozen=True)
class Served:
    device: EstateDevice
    host: str
    port: int  # 0 until bound when the estate asked for any free port
    community: str
    walk: Path


class SnmpService(LabService):
    name = "snmp"
    fault_kinds = (
        FaultKind("down", "device", "", "the device answers nothing (requests dropped, as a dead host)"),
        FaultKind("port-down", "device", "IFINDEX", "ifOperStatus.IFINDEX answers down(2)"),
        FaultKind(
            "cpu-high",
            "device",
            "[PERCENT]",
            f"every CPU load of the walk answers PERCENT (default {CPU_HIGH_DEFAULT})",
        ),
        FaultKind("site-down", "site", "", "every device of the site answers nothing"),
        FaultKind(
            "flap",
            "device",
            "IFINDEX PERIOD_S",
            "ifOperStatus.IFINDEX down the first half of every PERIOD_S, up the second",
        ),
    )

    def __init__(self, context: Context, served: list[Served], port_variables: dict[str, int]) -> None:
        self.context = context
        self.served = served
        self.port_variables = port_variables
        self.by_key = {s.device.key: s for s in served}
        self._sockets: dict[tuple[str, int], socket.socket] = {}
        self._child: Child | None = None
        self._walk_values: dict[Path, dict[str, tuple[str, str]]] = {}
        self.effects_path = context.runtime_dir / "snmp-effects.json"

    @classmethod
    def add_options(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--snmp-port",
            type=int,
            metavar="N",
            help="UDP port of the SNMP devices (0: any free port); "
            "default: the estate's ${VIGIE_LAB_SNMP_PORT:-1161}, read from the environment first",
        )

    @classmethod
    def for_estate(cls, context: Context) -> SnmpService | None:
        estate, override = context.estate, getattr(context.options, "snmp_port", None)
        served: list[Served] = []
        port_variables: dict[str, int] = {}
        problems: list[str] = []
        for device in estate.devices():
            if device.walk is None:
                continue
            host = expand(device.address or "", context.environ)
            if not is_loopback(host):
                problems.append(f"{device.key}: address {host!r} is not loopback; the lab serves loopback only")
                continue
            if device.port is None:
                problems.append(f"{device.key}: no port (the lab cannot take 161)")
                continue
            names = [v.name for v in variables_in(device.port)]
            if override is not None and not names:
                problems.append(f"{device.key}: port {device.port} is fixed, --snmp-port cannot move it")
                continue
            environ = (
                context.environ if override is None else {**context.environ, **dict.fromkeys(names, str(override))}
            )
            try:
                port = int(expand(device.port, environ))
            except ValueError:
                problems.append(f"{device.key}: port {device.port!r} is not a number")
                continue
            port_variables.update(dict.fromkeys(names, port))
            community = cls._community(context, device, problems)
            if community is None:
                continue
            try:
                walk = recording(device.walk)
            except WalkError as exc:
                problems.append(f"{device.key}: {exc}")
                continue
            served.append(Served(device, host, port, community, walk))
        if problems:
            raise EstateError("\n".join(problems))
        if not served:
            return None
        seen: dict[tuple[str, int, str], str] = {}
        for s in served:
            key = (s.host, s.port, s.community)
            if key in seen:
                raise EstateError(f"{s.device.key} and {seen[key]} share {s.host}:{s.port} community {s.community}")
            seen[key] = s.device.key
        return cls(context, served, port_variables)

    @staticmethod
    def _community(context: Context, device: EstateDevice, problems: list[str]) -> str | None:
        if device.credentials is None:
            return "public"
        secret = context.estate.secret(device.credentials)
        if isinstance(secret, dict) and "community" in secret:
            return secret["community"]
        if isinstance(secret, dict):
            problems.append(
                f"{device.key}: credentials {device.credentials} are SNMPv3; the lab's responder "
                "speaks v1/v2c (lab.snmpsim serves v3)"
            )
        else:
            problems.append(
                f"{device.key}: no community in secret {device.credentials!r} "
                f"({context.estate.secrets.where(device.credentials)})"
            )
        return None

    # -- life ---------------------------------------------------------------------------------

    async def start(self) -> None:
        any_port = None  # --snmp-port 0: the port the first socket got, for every device
        for s in self.served:
            if s.port == 0:
                any_port = any_port or self._bind(s.host, 0)
                self._bind(s.host, any_port)
            else:
                self._bind(s.host, s.port)
        if any_port is not None:
            self.served = [Served(s.device, s.host, s.port or any_port, s.community, s.walk) for s in self.served]
            self.by_key = {s.device.key: s for s in self.served}
            self.port_variables = {name: port or any_port for name, port in self.port_variables.items()}
        devices_path = self.context.runtime_dir / "snmp-devices.json"
        devices_path.write_text(json.dumps({s.community: str(s.walk) for s in self.served}), encoding="utf-8")
        self._write_effects([])
        fds = [sock.fileno() for sock in self._sockets.values()]
        command = [
            sys.executable,
            "-m",
            "lab.snmp_responder",
            "--devices",
            str(devices_path),
            "--effects",
            str(self.effects_path),
            *(arg for fd in fds for arg in ("--fd", str(fd))),
        ]
        self._child = Child(
            "snmp responder",
            command,
            log=self.context.runtime_dir / "snmp-responder.log",
            pass_fds=fds,
            stdout_pipe=True,
            env={**os.environ, "PYTHONPATH": _import_root()},
        )
        self._child.start()
        line = await asyncio.to_thread(self._child.read_line, READY_TIMEOUT_S)
        if not line.startswith("ready"):
            raise EstateError(f"snmp responder: unexpected {line!r}")

    def _bind(self, host: str, port: int) -> int:
        """Bind udp host:port (once); the port bound (port 0: the one the kernel chose)."""
        if (host, port) not in self._sockets:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            try:
                sock.bind((host, port))
            except OSError as exc:
                sock.close()
                raise EstateError(
                    f"udp {host}:{port}: {exc.strerror} (another lab? use --snmp-port N or set "
                    f"{', '.join(self.port_variables) or 'the port'})"
                ) from None
            port = sock.getsockname()[1]
            self._sockets[(host, port)] = sock
        return port

    async def stop(self) -> None:
        if self._child is not None:
            await asyncio.to_thread(self._child.stop)
            self._child = None
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()

    def children(self) -> list[Child]:
        return [self._child] if self._child is not None else []

    # -- listing ------------------------------------------------------------------------------

    def endpoints(self) -> list[str]:
        counts: dict[tuple[str, int], int] = {}
        for s in self.served:
            counts[(s.host, s.port)] = counts.get((s.host, s.port), 0) + 1
        return [
            f"udp {host}:{port}  SNMPv2c, {n} devices, community CLIENT/DEVICE" for (host, port), n in counts.items()
        ]

    def devices(self) -> list[tuple[str, str]]:
        return [(s.device.key, f"{url(s)}  ({s.device.walk})") for s in self.served]

    def examples(self) -> list[str]:
        first = self.served[0]
        return [
            f"vigie collect {url(first)} --json",
            f"vigie lab fault {first.device.key} down; vigie lab clear {first.device.key}",
        ]

    def environment(self) -> dict[str, str]:
        return {name: str(port) for name, port in self.port_variables.items()}

    # -- faults -------------------------------------------------------------------------------

    def check_fault(self, fault: Fault) -> str:
        if fault.kind == "site-down":
            _arguments(fault, 0)
            devices = [self.by_key[d.key] for d in self.context.estate.site(fault.target) if d.key in self.by_key]
            if not devices:
                raise FaultError(f"{fault.target}: no SNMP device on this site")
            return f"{len(devices)} devices silent: {', '.join(s.device.name for s in devices)}"
        served = self.by_key.get(fault.target)
        if served is None:
            raise FaultError(f"{fault.target}: not an SNMP device of the lab")
        if fault.kind == "down":
            _arguments(fault, 0)
            return f"{fault.target} silent"
        if fault.kind == "port-down":
            _arguments(fault, 1)
            return f"{fault.target} ifOperStatus.{self._if_index(served, fault)} = down"
        if fault.kind == "flap":
            _arguments(fault, 2)
            half = _period(fault) / 2
            return (
                f"{fault.target} ifOperStatus.{self._if_index(served, fault)} down {half:g} s, up {half:g} s, repeated"
            )
        if fault.kind == "cpu-high":
            percent = _percent(fault)
            records = cpu_at(self._values(served), percent)
            if not records:
                raise FaultError(f"{fault.target}: its walk ({served.device.walk}) reports no CPU load")
            return f"{fault.target} {len(records)} CPU loads at {percent} %"
        raise FaultError(f"snmp: no fault {fault.kind!r}")

    async def apply_faults(self, faults: Sequence[Fault]) -> None:
        effects: list[dict[str, object]] = []
        for fault in faults:
            effects.extend(self._effects(fault))
        await asyncio.to_thread(self._write_effects, effects)

    def _effects(self, fault: Fault) -> list[dict[str, object]]:
        if fault.kind == "site-down":
            return [
                {"community": self.by_key[d.key].community, "silent": True}
                for d in self.context.estate.site(fault.target)
                if d.key in self.by_key
            ]
        served = self.by_key[fault.target]
        if fault.kind == "down":
            return [{"community": served.community, "silent": True}]
        if fault.kind == "port-down":
            oid = f"{IF_OPER_STATUS}.{self._if_index(served, fault)}"
            return [{"community": served.community, "oid": oid, "tag": "2", "value": IF_DOWN}]
        if fault.kind == "flap":
            oid = f"{IF_OPER_STATUS}.{self._if_index(served, fault)}"
            schedule = {"period_s": _period(fault), "since": fault.since}
            return [
                {
                    "community": served.community,
                    "oid": oid,
                    "tag": "2",
                    "value": value,
                    "schedule": {**schedule, "half": half},
                }
                for half, value in ((0, IF_DOWN), (1, IF_UP))
            ]
        if fault.kind == "cpu-high":
            records = cpu_at(self._values(served), _percent(fault))
            return [
                {"community": served.community, "oid": oid, "tag": tag, "value": value}
                for oid, (tag, value) in records.items()
            ]
        raise FaultError(f"snmp: no fault {fault.kind!r}")

    def _write_effects(self, effects: list[dict[str, object]]) -> None:
        # Rename over the old file: the responder never reads half a file, and sees a new inode.
        partial = self.effects_path.with_suffix(".partial")
        partial.write_text(json.dumps(effects), encoding="utf-8")
        partial.replace(self.effects_path)

    def _values(self, served: Served) -> dict[str, tuple[str, str]]:
        if served.walk not in self._walk_values:
            self._walk_values[served.walk] = {oid: (tag, value) for oid, tag, value in read_records(served.walk)}
        return self._walk_values[served.walk]

    def _if_index(self, served: Served, fault: Fault) -> int:
        if not fault.args[0].isdigit():
            raise FaultError(f"{fault.kind}: IFINDEX is an integer, got {fault.args[0]}")
        if_index = int(fault.args[0])
        if f"{IF_OPER_STATUS}.{if_index}" not in self._values(served):
            known = sorted(
                int(oid.rsplit(".", 1)[1]) for oid in self._values(served) if oid.startswith(IF_OPER_STATUS + ".")
            )
            raise FaultError(f"{fault.target}: no ifIndex {if_index} in its walk; it has {_ranges(known)}")
        return if_index


def url(served: Served) -> str:
    """The URL `vigie collect` takes for the device: the community percent-encoded (its `/`)."""
    return f"snmp://{quote(served.community, safe='')}@{served.host}:{served.port}"


def _arguments(fault: Fault, count: int) -> None:
    if len(fault.args) != count:
        usage = next(k.usage for k in SnmpService.fault_kinds if k.name == fault.kind)
        raise FaultError(f"{fault.kind} takes {usage or 'no argument'}, got {' '.join(fault.args) or 'none'}")


def _period(fault: Fault) -> float:
    try:
        period = float(fault.args[1])
    except ValueError:
        period = 0.0
    if not period > 0:
        raise FaultError(f"flap: PERIOD_S is a number of seconds > 0, got {fault.args[1]}")
    return period


def _percent(fault: Fault) -> int:
    if not fault.args:
        return CPU_HIGH_DEFAULT
    if len(fault.args) > 1 or not fault.args[0].isdigit() or not 0 <= int(fault.args[0]) <= 100:
        raise FaultError("cpu-high: PERCENT is an integer from 0 to 100")
    return int(fault.args[0])


def _ranges(numbers: list[int]) -> str:
    parts: list[tuple[int, int]] = []
    for n in numbers:
        if parts and parts[-1][1] == n - 1:
            parts[-1] = (parts[-1][0], n)
        else:
            parts.append((n, n))
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in parts) or "none"


def _import_root() -> str:
    """The directory holding the `lab` package, so the child imports the same lab as the parent."""
    root = str(Path(__file__).resolve().parent.parent)
    existing = os.environ.get("PYTHONPATH")
    return f"{root}{os.pathsep}{existing}" if existing else root
