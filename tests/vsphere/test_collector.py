"""The vsphere collector against govmomi's vCenter simulator, driven through the lab's faults:
what one collection reads and how many API calls it takes, the alerts a powered-off VM, a
disconnected host, a 95 %-full datastore, an old snapshot and a vCenter alarm raise, the session
kept and renewed, TLS verified against the simulator's certificate."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from pyVim.connect import Disconnect

from lab.services import Fault
from lab.vcsim import SimState

from .conftest import DEVICE, PIGGYBACKED, Lab
from .helpers import calls, collector, engine, firing, of, run, status


def fault(kind: str, *args: str) -> Fault:
    return Fault(kind, DEVICE, args, time.time())


async def test_one_collection_reads_6_hosts_54_vms_in_one_api_call(lab: Lab) -> None:
    vsphere = collector(lab.options)
    first = await run(vsphere)
    assert status(first) == ("ok", None)
    hosts, vms = of(first, "vsphere_host"), of(first, "vsphere_vm")
    assert len(hosts) == 6 and len(vms) == 54
    assert len(of(first, "vsphere_datastore")) == 2 and len(of(first, "vsphere_cluster")) == 2
    # First collection: the version GET, RetrieveServiceContent, Login, CreateContainerView and the
    # one RetrievePropertiesEx; afterwards the session and its view are reused: one call per cycle.
    assert calls(first) == 5
    sim = lab.service.instances[DEVICE].sim
    assert sim is not None
    for _ in range(3):
        before = sim.collector_calls()
        again = await run(vsphere)
        assert calls(again) == 1 and of(again, "vsphere_vcenter")[0].fields["logins"] == 0
        # the server's own count agrees: one retrieval, no per-object read
        assert _delta(before, sim.collector_calls()) == {"RetrievePropertiesEx": 1}
    assert vsphere.session is not None and vsphere.session.logins == 1

    # vCenter pages at maxObjects: 64 objects at 20 a page are a RetrievePropertiesEx and three
    # ContinueRetrievePropertiesEx, the same objects
    paged = collector({**lab.options, "page_size": 20})
    await run(paged)
    before = sim.collector_calls()
    again = await run(paged)
    assert calls(again) == 4
    assert _delta(before, sim.collector_calls()) == {"RetrievePropertiesEx": 1, "ContinueRetrievePropertiesEx": 3}
    assert sorted(s.tags["vm"] for s in of(again, "vsphere_vm")) == sorted(s.tags["vm"] for s in vms)
    assert len(of(again, "vsphere_host")) == 6

    by_vm = {s.tags["vm"]: s for s in vms}
    assert by_vm["vm-siege-03"].tags["device"] == "vcenter"
    assert by_vm["vm-siege-03"].tags["cluster"] == "vxrail-siege"
    assert by_vm["vm-siege-03"].tags["host"].startswith("esx-siege-")
    assert by_vm["vm-pra-27"].tags["cluster"] == "vxrail-pra"
    assert by_vm["vm-siege-03"].fields["power_state"] == "poweredOn"
    assert by_vm["vm-siege-03"].fields["snapshot_count"] == 0
    assert by_vm["vm-siege-03"].fields["snapshot_oldest_age_s"] is None  # no snapshot: no age
    # inventory devices get their own samples (piggyback), tagged with their vSphere name too
    assert by_vm["dc1"].tags["device"] == "dc1"
    (esx1,) = [s for s in hosts if s.tags["host"] == "esx-siege-1"]
    assert esx1.tags["device"] == "esx-siege-1" and esx1.tags["cluster"] == "vxrail-siege"
    assert esx1.fields["connection_state"] == "connected" and esx1.fields["in_maintenance_mode"] is False
    assert esx1.fields["cpu_capacity_mhz"] > 0 and 0 < esx1.fields["memory_usage_pct"] < 100
    assert {s.tags["device"] for s in hosts} == {"vcenter", "esx-siege-1"}
    stores = {s.tags["datastore"]: s.fields for s in of(first, "vsphere_datastore")}
    assert stores["vsan-siege"]["used_pct"] == 40.0
    assert stores["vsan-siege"]["capacity_bytes"] == 20 << 40
    assert stores["vsan-siege"]["free_bytes"] == int((20 << 40) * 0.6)


async def test_a_powered_off_vm_a_disconnected_host_and_a_full_datastore_raise_their_alerts(
    lab: Lab, tmp_path: Path
) -> None:
    vsphere = collector(lab.options)
    alerts = engine(tmp_path)
    alerts.evaluate(await run(vsphere), time.time())
    assert firing(alerts) == []

    faults = [fault("vsphere-vm-off", "vm-siege-03"), fault("vsphere-host-disconnect", "esx-pra-2"),
              fault("vsphere-datastore-full", "vsan-pra")]
    assert [lab.service.check_fault(f) for f in faults] == [
        "VM vm-siege-03 powered off", "host esx-pra-2 disconnected", "datastore vsan-pra 95 % used"]
    await lab.service.apply_faults(faults)
    samples = await run(vsphere)
    assert status(samples) == ("ok", None)
    # vCenter's own alarms fire too (as its defaults do): read, but held back by our rules
    alarms = {(s.tags["alarm"], s.tags["entity"]): s.fields["status"] for s in of(samples, "vsphere_alarm")}
    assert alarms == {("Host connection and power state", "esx-pra-2"): "red",
                      ("Datastore usage on disk", "vsan-pra"): "red"}
    (cluster,) = [s for s in of(samples, "vsphere_cluster") if s.tags["cluster"] == "vxrail-pra"]
    assert (cluster.fields["num_hosts"], cluster.fields["num_effective_hosts"]) == (3, 2)
    alerts.evaluate(samples, time.time() + 10)
    alerts.evaluate(await run(vsphere), time.time() + 80)  # past the rules' for_s of 60 s
    assert firing(alerts) == [
        ("vsphere_datastore_usage_critical", "critical", "vcenter: datastore vsan-pra is 95.0 % full"),
        ("vsphere_host_disconnected", "critical", "vcenter: ESXi host esx-pra-2 is disconnected in vCenter"),
        ("vsphere_vm_powered_off", "major", "vcenter: VM vm-siege-03 is powered off (host "
         f"{_host_of(samples, 'vm-siege-03')})"),
    ]

    await lab.service.apply_faults([])  # cleared: the VM powered on again, the host back, space freed
    samples = await run(vsphere)
    alerts.evaluate(samples, time.time() + 100)
    assert firing(alerts) == []
    assert {s.fields["status"] for s in of(samples, "vsphere_alarm")} == {"green"}  # cleared once
    assert of(await run(vsphere), "vsphere_alarm") == []


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def _host_of(samples, vm: str) -> str:
    return next(s.tags["host"] for s in of(samples, "vsphere_vm") if s.tags["vm"] == vm)


async def test_piggybacked_devices_carry_their_own_alerts(lab: Lab, tmp_path: Path) -> None:
    vsphere = collector(lab.options)
    alerts = engine(tmp_path)
    await lab.service.apply_faults([fault("vsphere-vm-off", "dc1"), fault("vsphere-host-disconnect", "esx-siege-1")])
    alerts.evaluate(await run(vsphere), time.time())
    alerts.evaluate(await run(vsphere), time.time() + 61)
    devices = sorted((a.rule, a.labels["device"]) for a in alerts.firing())
    assert devices == [("vsphere_host_disconnected", "esx-siege-1"), ("vsphere_vm_powered_off", "dc1")]
    assert set(PIGGYBACKED) == {"esx-siege-1", "dc1"}


async def test_an_old_snapshot_warns_and_a_vcenter_alarm_is_one_alert(lab: Lab, tmp_path: Path) -> None:
    vsphere = collector(lab.options)
    alerts = engine(tmp_path)
    await lab.service.apply_faults([
        fault("vsphere-snapshot", "veeam", "80", "3"),  # 80 h: over 72 h
        fault("vsphere-snapshot", "vm-pra-05", "24"),
        fault("vsphere-alarm", "vm-pra-07", "Virtual machine CPU usage", "red"),
    ])
    samples = await run(vsphere)
    assert calls(samples) == 6  # the usual 5, and once the alarm definitions' names
    by_vm = {s.tags["vm"]: s.fields for s in of(samples, "vsphere_vm")}
    assert by_vm["veeam"]["snapshot_count"] == 3
    assert abs(by_vm["veeam"]["snapshot_oldest_age_s"] - 80 * 3600) < 120
    assert by_vm["vm-pra-05"]["snapshot_count"] == 1
    alerts.evaluate(samples, time.time())
    assert [(rule, severity) for rule, severity, _ in firing(alerts)] == [
        ("vsphere_alarm_red", "major"), ("vsphere_vm_snapshot_old", "warning")]
    (alarm,) = alerts.firing()[:1] if alerts.firing()[0].rule == "vsphere_alarm_red" else alerts.firing()[1:]
    assert alarm.summary == "vcenter: vCenter alarm 'Virtual machine CPU usage' on vm vm-pra-07 (red)"
    again = await run(vsphere)
    assert calls(again) == 1  # the alarm's name is cached
    alerts.evaluate(again, time.time() + 60)
    assert len(alerts.firing()) == 2  # the same two: not duplicated


async def test_the_session_is_renewed_when_vcenter_drops_it(lab: Lab) -> None:
    vsphere = collector(lab.options)
    assert status(await run(vsphere)) == ("ok", None)
    assert vsphere.session is not None
    key = vsphere.session.session_key
    sim = lab.service.instances[DEVICE].sim
    assert sim is not None and key
    admin = sim.connect()  # an administrator ends the collector's session in vCenter
    try:
        admin.content.sessionManager.TerminateSession([key])
    finally:
        Disconnect(admin)
    samples = await run(vsphere)
    assert status(samples) == ("ok", None) and len(of(samples, "vsphere_vm")) == 54
    (vcenter,) = of(samples, "vsphere_vcenter")
    assert vcenter.fields["logins"] == 1  # logged in again, once
    assert vcenter.fields["api_calls"] == 5  # the refused read, service content, login, view, read
    assert vsphere.session.session_key != key


async def test_tls_is_verified_against_the_ca_bundle(lab: Lab) -> None:
    state, error = status(await run(collector({"port": lab.port})))  # the system's trust store
    assert state == "error"
    assert "TLS certificate not trusted" in error and "no ca_bundle set" in error
    state, error = status(await run(collector({"port": lab.port, "ca_bundle": str(lab.ca_file.parent / "none.pem")})))
    assert state == "error" and "ca_bundle" in error
    samples = await run(collector({"port": lab.port, "verify_tls": False}))  # only when asked, and logged
    assert status(samples) == ("ok", None)


async def test_a_refused_login_and_a_silent_port_are_told_apart(lab: Lab) -> None:
    state, error = status(await run(collector(lab.options), password="wrong"))
    assert state == "error" and "login refused for 'vigie@vsphere.local'" in error
    assert f"https://127.0.0.1:{lab.port}/sdk" in error
    await lab.service.stop()
    state, error = status(await run(collector(lab.options)))
    assert state == "unreachable" and f"127.0.0.1:{lab.port}" in error


async def test_a_bad_fault_is_refused(lab: Lab) -> None:
    import pytest

    from lab.services import FaultError

    for bad in [fault("vsphere-vm-off", "nope"), fault("vsphere-datastore-full", "vsan-pra", "120"),
                fault("vsphere-alarm", "esx-pra-1", "Made up", "red"), fault("vsphere-host-disconnect")]:
        with pytest.raises(FaultError):
            lab.service.check_fault(bad)
    assert SimState().disconnected_hosts == []


async def test_a_vcenter_that_never_answers_holds_neither_the_loop_nor_the_poll(tmp_path: Path) -> None:
    import socket

    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        vsphere = collector({"port": port, "timeout_s": 1})
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        beat = asyncio.create_task(ticker())
        started = time.monotonic()
        samples = await run(vsphere)
        elapsed = time.monotonic() - started
        beat.cancel()
    state, error = status(samples)
    assert state == "unreachable" and f"127.0.0.1:{port}" in error
    assert elapsed < 5  # the call's own timeout, not the poll's 30 s
    assert ticks >= elapsed / 0.05 * 0.5  # the event loop kept running while pyvmomi waited


def test_hosts_and_vms_find_their_inventory_device_by_name_short_name_or_mapping() -> None:
    from agent.api import Sink
    from collectors.vsphere import HOST, Reading

    known = {"esx-siege-1", "dc1", "vcenter"}
    sink = Sink({"client": "acme", "device": "vcenter"}, lambda: 0,
                device_tags=lambda name: {"client": "acme", "device": name} if name in known else None)
    vsphere = collector({"device_names": {"DC-PRIMARY": "dc1"}})
    for name, device in [("esx-siege-1", "esx-siege-1"), ("ESX-SIEGE-1.vsgp.local", "esx-siege-1"),
                         ("DC-PRIMARY", "dc1"), ("vm-unknown", "vcenter"), ("vcenter", "vcenter")]:
        vsphere._emit(sink, Reading(HOST, {"host": name}, {}, entity=name))
        assert sink.samples[-1].tags["device"] == device, name


async def test_a_vm_moved_by_vmotion_stays_one_alert_and_two_clusters_two(lab: Lab, tmp_path: Path) -> None:
    alerts = engine(tmp_path)
    vsphere = collector(lab.options)
    await lab.service.apply_faults([fault("vsphere-snapshot", "vm-siege-05", "100"),
                                    fault("vsphere-host-disconnect", "esx-siege-2"),
                                    fault("vsphere-host-disconnect", "esx-pra-3")])
    samples = await run(vsphere)
    now = time.time()
    alerts.evaluate(samples, now)
    (vm,) = [s for s in of(samples, "vsphere_vm") if s.tags["vm"] == "vm-siege-05"]
    moved = type(vm)(vm.measurement, {**vm.tags, "host": "esx-siege-9"}, vm.fields, vm.timestamp_ns + 10**9)
    alerts.evaluate([moved], now + 1)
    alerts.evaluate(await run(vsphere), now + 400)
    rules = sorted((a.rule, a.labels.get("entity")) for a in alerts.firing())
    assert rules == [("vsphere_cluster_degraded", "vxrail-pra"), ("vsphere_cluster_degraded", "vxrail-siege"),
                     ("vsphere_host_disconnected", "esx-pra-3"), ("vsphere_host_disconnected", "esx-siege-2"),
                     ("vsphere_vm_snapshot_old", "vm-siege-05")]


async def test_an_alarm_whose_definition_is_gone_makes_the_run_partial_not_failed(lab: Lab) -> None:
    sim = lab.service.instances[DEVICE].sim
    assert sim is not None
    sim.set_state(SimState(alarms=[{"entity": "esx-pra-1", "alarm": "vSphere HA host status", "status": "red"}],
                           deleted_alarms=["vSphere HA host status"]))
    samples = await run(collector(lab.options))
    state, error = status(samples)
    assert state == "partial" and "alarm definitions" in error and "ManagedObjectNotFound" in error
    assert len(of(samples, "vsphere_vm")) == 54  # the rest was read
    (alarm,) = of(samples, "vsphere_alarm")
    assert alarm.tags["alarm"] == "alarm-4" and alarm.fields["status"] == "red"  # named by its MoRef id
