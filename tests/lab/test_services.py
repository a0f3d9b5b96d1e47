"""The lab's service registry: a service brought by someone else gets its own fault kinds routed to it."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import pytest

from lab.control import RuntimeDir
from lab.estate import Estate
from lab.glpi_service import GlpiService
from lab.services import Context, Fault, FaultError, FaultKind, LabService, ServiceRegistry
from lab.snmp_service import SnmpService
from lab.supervisor import Supervisor

ESTATE = """\
clients:
  - name: acme
    ticketing: {kind: log}
    sites:
      - name: hq
        devices:
          - {name: ctrl, address: 127.0.0.1, collectors: {toy: }}
          - {name: ap1, address: 127.0.0.1, collectors: {toy: }}
"""


class ToyService(LabService):
    """A controller fake as a later collector would bring it (no I/O: the test only routes faults)."""

    name = "toy"
    fault_kinds = (FaultKind("ap-offline", "device", "", "the controller reports the AP offline"),)

    def __init__(self) -> None:
        self.applied: list[list[str]] = []

    @classmethod
    def for_estate(cls, context: Context) -> ToyService | None:
        return cls() if any("toy" in d.collectors for d in context.estate.devices()) else None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def endpoints(self) -> list[str]:
        return ["http 127.0.0.1:0  toy controller"]

    def check_fault(self, fault: Fault) -> str:
        if fault.target == "acme/ctrl":
            raise FaultError("the controller is not an AP")
        return f"{fault.target} offline"

    async def apply_faults(self, faults: Sequence[Fault]) -> None:
        self.applied.append([str(f) for f in faults])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


@pytest.fixture
def supervisor(tmp_path: Path) -> Supervisor:
    path = tmp_path / "estate.yaml"
    path.write_text(ESTATE)
    estate = Estate.load(str(path), environ={}, secrets_path=None)
    context = Context(estate, argparse.Namespace(), {}, tmp_path / "rt")
    registry = ServiceRegistry([SnmpService, GlpiService, ToyService])
    running = Supervisor(context, registry, RuntimeDir(tmp_path / "rt"), clock=Clock())
    service = ToyService.for_estate(context)
    assert service is not None and SnmpService.for_estate(context) is None and GlpiService.for_estate(context) is None
    running.services = {"toy": service}
    return running


async def test_a_plugin_kind_reaches_its_service_with_the_full_list(supervisor: Supervisor) -> None:
    toy = supervisor.services["toy"]
    assert isinstance(toy, ToyService)
    fault, effect = await supervisor.fault("acme/ap1", "ap-offline", [])
    assert (str(fault), effect, fault.since) == ("acme/ap1 ap-offline", "acme/ap1 offline", 1001.0)
    await supervisor.fault("acme/ap1", "ap-offline", [])  # again: replaced, not doubled
    assert toy.applied == [["acme/ap1 ap-offline"], ["acme/ap1 ap-offline"]]
    assert [str(f) for f in await supervisor.clear("acme/ap1", None)] == ["acme/ap1 ap-offline"]
    assert toy.applied[-1] == []


async def test_a_refused_fault_is_not_recorded(supervisor: Supervisor) -> None:
    with pytest.raises(FaultError, match="the controller is not an AP"):
        await supervisor.fault("acme/ctrl", "ap-offline", [])
    assert supervisor.faults == {}


async def test_a_kind_of_a_service_the_estate_does_not_need(supervisor: Supervisor) -> None:
    with pytest.raises(FaultError, match="port-down: this lab runs no snmp service"):
        await supervisor.fault("acme/ap1", "port-down", ["1"])
    with pytest.raises(FaultError, match="no fault kind 'reboot'; the lab has down, port-down"):
        await supervisor.fault("acme/ap1", "reboot", [])


def test_two_services_cannot_claim_one_kind() -> None:
    class Clash(ToyService):
        name = "clash"
        fault_kinds = (FaultKind("down", "device", "", "also down"),)

    with pytest.raises(TypeError, match="fault kind 'down' of clash is already snmp's"):
        ServiceRegistry([SnmpService, Clash])
    with pytest.raises(TypeError, match="two lab services named 'toy'"):
        ServiceRegistry([ToyService, ToyService])


def test_the_installed_registry_has_the_lab_services() -> None:
    registry = ServiceRegistry.installed()
    assert {"snmp", "glpi"} <= set(registry.services)
    assert {"down", "port-down", "cpu-high", "site-down", "flap", "glpi-error", "glpi-hang"} <= set(registry.kinds)
