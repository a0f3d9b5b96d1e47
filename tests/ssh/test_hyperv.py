"""The Hyper-V collector against the lab's fake Windows OpenSSH server (lab/ssh_hosts.py), driven by
the collector's own paramiko client: a 5.1 host (hv1: enums as numbers, \\/Date()\\/) and a 7.x host
(hv2: ISO dates), access denied, a VM in Saved state, a replication in Critical health."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.api import Sample, Sink
from alerting.engine import AlertEngine
from collectors.ssh import powershell as ps
from collectors.ssh.client import Result
from collectors.ssh.host import Unparsable
from collectors.ssh.hyperv import PLUGIN, parse_vms
from lab.ssh_hosts import HostFaults, Login, SshHostFake, load_recording

from .helpers import T0, build, of, run, status, target

NOW = dt.datetime.fromtimestamp(T0, dt.UTC)
PASSWORD = {"user": "vigie", "password": "lab-fake-hv"}


@pytest.fixture(params=["hyperv-hv1", "hyperv-hv2"])
def host(request: pytest.FixtureRequest) -> Iterator[SshHostFake]:
    fake = SshHostFake(request.param, load_recording(request.param), Login("vigie", password="lab-fake-hv"),
                       now=lambda: NOW)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


async def test_a_host_its_vms_replication_and_disks(host: SshHostFake, tmp_path: Path) -> None:
    samples = await run(PLUGIN, build(PLUGIN, {}, tmp_path), target(host.port, PASSWORD))
    assert status(samples)["status"] == "ok", status(samples)
    (vmhost,) = of(samples, "hyperv_host")
    assert vmhost.fields["logical_processors"] == 32 and vmhost.fields["memory_capacity_bytes"] == 256 * 2**30
    vms = {s.tags["vm"]: s.fields for s in of(samples, "hyperv_vm")}
    assert all(vm["state"] == "Running" and vm["running"] and vm["heartbeat_ok"] for vm in vms.values())
    replications = {s.tags["vm"]: s.fields for s in of(samples, "hyperv_replication")}
    assert replications and all(r["health"] == "Normal" and r["state"] == "Replicating" for r in replications.values())
    assert all(0 < r["last_replication_age_s"] < 300 for r in replications.values())  # read from either date form
    disks = {s.tags["drive"]: s.fields for s in of(samples, "hyperv_disk")}
    assert set(disks) == {"C:", "D:"} and 0 < disks["D:"]["free_percent"] < 100
    # one PowerShell per check, sent encoded
    assert [ps.script_of(c).split("try { ", 1)[1][:24] for c in host.commands][:2] == [
        "$h = Get-VMHost; $os = G", "ConvertTo-Json -Compress"]


async def test_saved_vm_and_critical_replication_raise_alerts(tmp_path: Path) -> None:
    host = SshHostFake("hyperv-hv1", load_recording("hyperv-hv1"), Login("vigie", password="lab-fake-hv"),
                       now=lambda: NOW)
    host.start()
    try:
        host.set_faults(HostFaults(saved_vms={"vm-gfi"}, critical_replications={"vm-dc"}))
        samples = await run(PLUGIN, build(PLUGIN, {}, tmp_path), target(host.port, PASSWORD))
    finally:
        host.stop()
    vms = {s.tags["vm"]: s.fields for s in of(samples, "hyperv_vm")}
    assert vms["vm-gfi"]["state"] == "Saved" and vms["vm-gfi"]["running"] is False
    assert vms["vm-gfi"]["heartbeat"] is None and vms["vm-gfi"]["uptime_s"] == 0
    (dc,) = [s.fields for s in of(samples, "hyperv_replication") if s.tags["vm"] == "vm-dc"]
    assert dc["health"] == "Critical" and dc["state"] == "Error" and dc["last_replication_age_s"] == 3720

    engine = AlertEngine(str(tmp_path / "alerts.db"), PLUGIN.default_rules(), clock=lambda: T0)
    engine.evaluate(samples, T0)
    engine.evaluate(samples, T0 + 301)  # both rules hold for 300 s
    firing = sorted((a.rule, a.labels.get("vm")) for a in engine.firing())
    assert firing == [("hyperv_replication_critical", "vm-dc"), ("hyperv_vm_not_running", "vm-gfi")]
    engine.close()


async def test_access_denied_names_the_cmdlets_and_keeps_the_disks(tmp_path: Path) -> None:
    host = SshHostFake("hyperv-hv2", load_recording("hyperv-hv2"), Login("vigie", password="lab-fake-hv"),
                       now=lambda: NOW)
    host.start()
    try:
        host.set_faults(HostFaults(access_denied=True))
        samples = await run(PLUGIN, build(PLUGIN, {}, tmp_path), target(host.port, PASSWORD))
    finally:
        host.stop()
    run_status = status(samples)
    assert run_status["status"] == "partial"
    assert run_status["error"].startswith(
        "Get-VMHost: exit status 1: You do not have the required permission to complete this task.")
    assert "Get-VM: exit status 1" in run_status["error"] and "Get-VMReplication: exit status 1" in run_status["error"]
    assert not of(samples, "hyperv_vm") and len(of(samples, "hyperv_disk")) == 2


async def test_a_wrong_password_is_a_refused_login(host: SshHostFake, tmp_path: Path) -> None:
    samples = await run(PLUGIN, build(PLUGIN, {}, tmp_path), target(host.port, {"user": "vigie", "password": "no"}))
    assert status(samples)["status"] == "error" and "login as 'vigie' refused (password)" in status(samples)["error"]


def _result(stdout: str) -> Result:
    return Result(0, stdout, "", 0.1)


def test_enums_by_number_or_name_and_one_bare_object() -> None:
    # PowerShell 7 with -EnumsAsStrings, one VM: a bare object, names instead of numbers, TimeSpan as text
    (row,) = parse_vms(_result('{"Name":"vm1","State":"RunningCritical","Heartbeat":"OkApplicationsCritical",'
                               '"ReplicationHealth":"Warning","ReplicationState":"Resynchronizing","Uptime":"1.02:00:00",'
                               '"CPUUsage":7,"MemoryAssigned":1073741824}'))
    fields = row[1]
    assert fields["state"] == "RunningCritical" and fields["critical"] is True and fields["running"] is True
    assert fields["heartbeat_ok"] is False and fields["replication_health"] == "Warning"
    assert fields["uptime_s"] == 93600 and fields["memory_demand_bytes"] is None
    # 5.1: numbers; State numeric too (an old script that did not project it)
    (row,) = parse_vms(_result('[{"Name":"vm2","State":3,"Heartbeat":null,"ReplicationHealth":0,'
                               '"ReplicationState":0,"Uptime":{"Ticks":0,"TotalSeconds":0.0}}]'))
    assert row[1]["state"] == "Off" and row[1]["running"] is False and row[1]["heartbeat_ok"] is None
    assert parse_vms(_result("")) == []


def test_output_that_does_not_parse_says_what() -> None:
    with pytest.raises(Unparsable, match=r"vm3: State: 99 is not a known value"):
        parse_vms(_result('[{"Name":"vm3","State":99}]'))
    with pytest.raises(Unparsable, match="not JSON"):
        parse_vms(_result("Get-VM : Hyper-V was unable to find a virtual machine"))


async def test_a_reinstalled_host_is_refused_on_the_next_connection(tmp_path: Path) -> None:
    host = SshHostFake("hyperv-hv1", load_recording("hyperv-hv1"), Login("vigie", password="lab-fake-hv"),
                       now=lambda: NOW)
    host.start()
    try:
        collector = build(PLUGIN, {}, tmp_path)
        assert status(await run(PLUGIN, collector, target(host.port, PASSWORD)))["status"] == "ok"
        host.set_faults(HostFaults(host_key_changed=True))  # the host's connections go with it
        samples = await run(PLUGIN, collector, target(host.port, PASSWORD))
    finally:
        host.stop()
    assert status(samples)["status"] == "error" and "SSH host key changed" in status(samples)["error"]
    (key,) = of(samples, "ssh_host_key")
    assert key.fields["changed"] is True and key.fields["fingerprint"] in status(samples)["error"]
    assert not of(samples, "hyperv_vm")


def test_a_replica_vm_off_by_design_raises_nothing(tmp_path: Path) -> None:
    rows = parse_vms(_result('[{"Name":"vm-dc","State":"Off","ReplicationMode":2,"ReplicationHealth":1},'
                             '{"Name":"vm-test","State":"Off","ReplicationMode":0,"ReplicationHealth":0}]'))
    samples = [Sample(m, {"client": "ofdt", "site": "siege", "device": "hv2", **tags}, fields, int(T0 * 1e9))
               for m, fields, tags in rows]
    engine = AlertEngine(str(tmp_path / "alerts.db"), PLUGIN.default_rules(), clock=lambda: T0)
    engine.evaluate(samples, T0)
    engine.evaluate(samples, T0 + 301)
    assert [(a.rule, a.labels["vm"]) for a in engine.firing()] == [("hyperv_vm_not_running", "vm-test")]
    engine.close()


async def test_one_connection_serves_every_run_and_one_command_per_check(tmp_path: Path) -> None:
    host = SshHostFake("hyperv-hv2", load_recording("hyperv-hv2"), Login("vigie", password="lab-fake-hv"),
                       now=lambda: NOW)
    host.start()
    try:
        collector = build(PLUGIN, {}, tmp_path)
        for _ in range(3):
            assert status(await run(PLUGIN, collector, target(host.port, PASSWORD)))["status"] == "ok"
    finally:
        host.stop()
    assert host.connections == 1 and len(host.commands) == 3 * 4  # Get-VMHost, Get-VM, Get-VMReplication, disks


async def test_a_vm_of_the_inventory_gets_its_samples_the_others_stay_on_the_host(tmp_path: Path) -> None:
    host = SshHostFake("hyperv-hv1", load_recording("hyperv-hv1"), Login("vigie", password="lab-fake-hv"),
                       now=lambda: NOW)
    host.start()
    inventory = {"vm-dc": {"client": "ofdt", "site": "siege", "device": "vm-dc", "role": "directory"}}
    collected = Sink({"client": "ofdt", "site": "siege", "device": "hv1"}, lambda: int(T0 * 1e9),
                     device_tags=inventory.get)
    try:
        await build(PLUGIN, {"vm_devices": True}, tmp_path).collect(target(host.port, PASSWORD), collected)
        kept = Sink({"client": "ofdt", "site": "siege", "device": "hv1"}, lambda: int(T0 * 1e9),
                    device_tags=inventory.get)
        await build(PLUGIN, {}, tmp_path).collect(target(host.port, PASSWORD), kept)
    finally:
        host.stop()
    where = {(s.measurement, s.tags["vm"]): s.tags["device"] for s in collected if "vm" in s.tags}
    assert where[("hyperv_vm", "vm-dc")] == "vm-dc" and where[("hyperv_replication", "vm-dc")] == "vm-dc"
    assert where[("hyperv_vm", "vm-gfi")] == "hv1" and where[("hyperv_vm", "vm-fichiers")] == "hv1"
    assert {s.tags["device"] for s in kept} == {"hv1"}
