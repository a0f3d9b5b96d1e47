"""Lab services: what `vigie lab up` starts for an estate, and the faults each one can inject.

A lab service plays one kind of peer the estate's YAML points at: the SNMP devices (lab.snmp_service),
the client's GLPI (lab.glpi_service), and — as collectors arrive — the Meraki Dashboard, the Omada
controller, vCenter, an sshd... Adding one is a class and one entry point, nothing to edit here:

    [project.entry-points."vigie.lab_services"]
    meraki = "lab.meraki_fake:MerakiService"

The class says whether the estate needs it (``for_estate``), starts and stops it (children through
lab.processes, so they never outlive the lab), prints where it listens and which of the estate's
``${VAR}`` it answers for, and declares its fault kinds. The lab keeps the table of active faults and
hands each service the full list of its own after every change (``apply_faults``): a service
derives its state from that list, so a fault applied twice, or cleared, needs no bookkeeping.
"""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import ClassVar, Literal

from lab.estate import Estate
from lab.processes import Child

ENTRY_POINT_GROUP = "vigie.lab_services"
TARGET_USAGE = {"device": "CLIENT/DEVICE", "site": "CLIENT/SITE", "client": "CLIENT"}


class FaultError(ValueError):
    """A fault that cannot be applied: unknown kind, target or arguments (the message says which)."""


@dataclass(frozen=True)
class FaultKind:
    name: str  # as typed: `vigie lab fault TARGET NAME ARGS`
    target: Literal["device", "site", "client"]
    usage: str  # the arguments, e.g. "IFINDEX PERIOD_S"
    help: str


@dataclass(frozen=True)
class Fault:
    kind: str
    target: str  # CLIENT/DEVICE, CLIENT/SITE or CLIENT, as the kind's target says
    args: tuple[str, ...]
    since: float  # epoch seconds when it was applied

    def __str__(self) -> str:
        return " ".join((self.target, self.kind, *self.args))


@dataclass(frozen=True)
class Context:
    """What every service is built from."""

    estate: Estate
    options: argparse.Namespace
    environ: Mapping[str, str]
    runtime_dir: Path


class LabService(ABC):
    name: ClassVar[str]
    fault_kinds: ClassVar[tuple[FaultKind, ...]] = ()

    @classmethod
    def add_options(cls, parser: argparse.ArgumentParser) -> None:
        """Options of `vigie lab up` for this service (e.g. ``--snmp-port``); none by default."""
        return None

    @classmethod
    @abstractmethod
    def for_estate(cls, context: Context) -> LabService | None:
        """The service the estate needs, or None when it points at nothing this service plays.
        No I/O: a bad estate raises lab.estate.EstateError naming what is wrong."""

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    def endpoints(self) -> list[str]:
        """What listens where, one line each, e.g. ``udp 127.0.0.1:1161 (173 devices)``."""

    def devices(self) -> list[tuple[str, str]]:
        """(CLIENT/DEVICE, how to reach it) of each device it plays, for the listing."""
        return []

    def examples(self) -> list[str]:
        """A command or two to try against it, printed once the lab is up."""
        return []

    def environment(self) -> dict[str, str]:
        """The estate's variables this service answers for -> the value the agent must read."""
        return {}

    def children(self) -> list[Child]:
        """Its child processes: the lab stops everything when one exits."""
        return []

    def check_fault(self, fault: Fault) -> str:
        """What ``fault`` will do, in a few words; FaultError if it cannot apply."""
        raise FaultError(f"{self.name}: no fault {fault.kind!r}")

    async def apply_faults(self, faults: Sequence[Fault]) -> None:
        """Make the service's state match ``faults`` (all of its active faults, checked); a
        service without fault kinds never gets any."""
        return None

    def status(self) -> list[str]:
        """A few lines for `vigie lab status` (e.g. the tickets the fake GLPI holds)."""
        return []


class ServiceRegistry:
    """The lab's service classes, built once at start-up (the lab's own, then the entry points)."""

    def __init__(self, services: Iterable[type[LabService]]) -> None:
        self.services: dict[str, type[LabService]] = {}
        self.kinds: dict[str, tuple[type[LabService], FaultKind]] = {}
        for service in services:
            if service.name in self.services:
                raise TypeError(f"two lab services named {service.name!r}")
            self.services[service.name] = service
            for kind in service.fault_kinds:
                if kind.name in self.kinds:
                    owner = self.kinds[kind.name][0].name
                    raise TypeError(f"fault kind {kind.name!r} of {service.name} is already {owner}'s")
                self.kinds[kind.name] = (service, kind)

    @classmethod
    def installed(cls) -> ServiceRegistry:
        from lab.glpi_service import GlpiService
        from lab.snmp_service import SnmpService

        plugins = [ep.load() for ep in entry_points(group=ENTRY_POINT_GROUP)]
        return cls([SnmpService, GlpiService, *plugins])

    def kind(self, name: str) -> tuple[type[LabService], FaultKind]:
        if name not in self.kinds:
            raise FaultError(f"no fault kind {name!r}; the lab has {', '.join(self.kinds)}")
        return self.kinds[name]

    def describe_kinds(self) -> str:
        lines = []
        for service, kind in self.kinds.values():
            usage = f"{TARGET_USAGE[kind.target]} {kind.name} {kind.usage}".rstrip()
            lines.append(f"  {usage:<38} {kind.help} ({service.name})")
        return "\n".join(lines)
