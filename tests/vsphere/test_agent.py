"""The vsphere collector as the agent runs it, against the lab's vCenter simulator:
`vigie collect --config F --device vcenter --json` and `vigie run` as subprocesses; a datastore
filled to 95 % reaches a ticket in the built-in ticket log, solved once space is freed."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from lab.estate import Estate
from lab.services import Context, Fault, ServiceRegistry
from lab.vcsim.service import VcsimService
from tests.e2e.helpers import ROOT, AgentProcess, eventually, query_sqlite

from .conftest import DEVICE, PASSWORD, Lab


def test_the_lab_knows_the_vcsim_service() -> None:
    registry = ServiceRegistry.installed()
    assert "vcsim" in registry.services
    assert {"vsphere-vm-off", "vsphere-host-disconnect", "vsphere-datastore-full"} <= set(registry.kinds)


def test_vsgps_vcenter_is_simulated_as_the_estate_says(tmp_path: Path) -> None:
    estate = Estate.load("vsgp", environ={})
    service = VcsimService.for_estate(Context(estate, argparse.Namespace(), {}, tmp_path))
    assert service is not None
    (instance,) = service.instances.values()
    assert instance.key == "vsgp/vcenter" and instance.port == 8989
    inventory = instance.inventory
    assert inventory.clusters == {"vxrail-siege": ["esx-siege-1", "esx-siege-2", "esx-siege-3"],
                                  "vxrail-pra": ["esx-pra-1", "esx-pra-2", "esx-pra-3"]}
    assert len(inventory.all_vms) == 54 and {"vcenter", "dc1", "dc2", "veeam"} <= set(inventory.all_vms)
    # the hosts and the VMs that are inventory devices of the estate get their samples piggybacked
    devices = {d.name for d in estate.devices_of("vsgp")}
    assert set(inventory.hosts) <= devices and {"dc1", "dc2", "veeam"} <= devices
    assert service.environment() == {"VIGIE_LAB_VCSIM_PORT": "8989"}
    assert instance.ca_file == Path("lab/graph_tls/ca.pem")  # the lab's CA: it serves the lab's certificate


async def _vigie(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.cli", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_vigie_collect_prints_the_vcenters_samples(lab: Lab) -> None:
    await lab.service.apply_faults([Fault("vsphere-vm-off", DEVICE, ("vm-pra-10",), time.time())])
    rc, out, err = await _vigie("collect", "--config", str(lab.config), "--secrets", str(lab.secrets),
                                "--device", "vcenter", "--json")
    assert rc == 0, err
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    by: dict[str, list[dict]] = {}
    for line in lines:
        by.setdefault(line["measurement"], []).append(line)
    assert by["collection"][0]["fields"]["status"] == "ok"
    assert len(by["vsphere_host"]) == 6 and len(by["vsphere_vm"]) == 54 and len(by["vsphere_datastore"]) == 2
    power = {line["tags"]["vm"]: line["fields"]["power_state"] for line in by["vsphere_vm"]}
    assert power["vm-pra-10"] == "poweredOff" and power["vm-pra-11"] == "poweredOn"
    assert by["vsphere_vcenter"][0]["fields"]["api_calls"] == 5
    assert PASSWORD not in out + err


async def test_a_full_datastore_reaches_a_ticket_in_the_log_and_is_solved(lab: Lab) -> None:
    state = lab.config.parent / "state"
    agent = AgentProcess(lab.config, lab.secrets, state)
    tickets = state / "tickets.sqlite"
    query = "SELECT id, title, severity FROM tickets WHERE alert = 'vsphere_datastore_usage_critical'"
    try:
        agent.start()
        await lab.service.apply_faults([Fault("vsphere-datastore-full", DEVICE, ("vsan-siege", "96"), time.time())])
        (opened,) = await eventually(lambda: query_sqlite(tickets, query), "the datastore's ticket", agents=[agent])
        assert "vsan-siege" in opened[1] and opened[2] == "critical"
        # vCenter's own "Datastore usage on disk" alarm on it is the same problem: no second ticket
        assert query_sqlite(tickets, "SELECT id FROM tickets WHERE alert LIKE 'vsphere_alarm%'") == []
        await lab.service.apply_faults([])
        await eventually(
            lambda: query_sqlite(tickets, "SELECT id FROM tickets WHERE id = ? AND status = 'solved'", (opened[0],)),
            "the ticket solved once space is freed", agents=[agent])
        assert query_sqlite(tickets, "SELECT id FROM tickets WHERE alert LIKE 'vsphere_alarm%'") == []
        assert await agent.terminate() == 0
    finally:
        agent.ensure_stopped()
