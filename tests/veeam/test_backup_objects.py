"""Which VMs the backups hold (GET /api/v1/backupObjects, jobs named through /api/v1/backups) read
from the fake Veeam over HTTPS, paged; then the backup coverage: a VM vCenter or Hyper-V knows and
no backup holds is listed by the coverage view and raises `backup_coverage_gap` through the engine."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pytest

from agent.api import Sample
from agent.config.schema import BUILTIN_RULES
from agent.state import StateDB
from agent.statedir import StateDir
from agent.views.coverage import COVERAGE, backup_coverage, coverage_samples
from alerting.engine import AlertEngine
from lab.estate import Estate
from lab.services import Context, Fault, FaultError
from lab.vcsim.service import VcsimService
from lab.veeam_fake import Instance, Protected, VeeamFake, VeeamService

from .conftest import TAGS, make_fake, runner, status

OBJECTS = "/api/v1/backupObjects"


def objects(samples: list[Sample]) -> dict[str, Sample]:
    return {s.tags["object"]: s for s in samples if s.measurement == "veeam_backup_object"}


@pytest.mark.parametrize("revision", ["1.2-rev1", "1.3-rev1"])
async def test_one_sample_per_vm_over_every_backup_holding_it(fake: VeeamFake, ca_file: Path, revision: str) -> None:
    fake.max_page = 2  # five items of the list (dc1 is in two jobs): three pages
    samples = await runner(fake, ca_file, api_version=revision).run()
    assert status(samples)["status"] == "ok", status(samples)
    found = objects(samples)
    assert set(found) == {"vcenter", "veeam", "dc1", "dc2"}
    dc1 = found["dc1"]
    assert dc1.tags["platform"] == "vmware" and dc1.tags["object_type"] == "VM"
    assert dc1.fields["restore_points"] == 28 and dc1.fields["backups"] == 2
    pages = [query for method, path, query in fake.requests if path == OBJECTS]
    assert [int(q.get("skip", 0)) for q in pages] == [0, 2, 4]
    (server,) = [s for s in samples if s.measurement == "veeam_server"]
    assert server.fields["backup_objects"] == 4
    # its newest restore point: the start of the latest successful run of either job holding it
    held = ("Sauvegarde VM Siège", "Sauvegarde AD et fichiers")
    newest = max(session.created for job in fake.jobs if job.name in held
                 for session in fake.sessions_of(job, time.time()) if session.result == "Success")
    assert dc1.fields["last_restore_point"] == pytest.approx(newest, abs=1)
    if revision.startswith("1.3"):
        assert dc1.fields["jobs"] == "Sauvegarde AD et fichiers, Sauvegarde VM Siège"
        assert dc1.fields["last_run_failed"] is False and dc1.fields["size_bytes"] == 2 * 64 * 1024**3
    else:  # no backupId, lastRunFailed, size before 1.3: unknown, and /backups is not asked
        assert dc1.fields["jobs"] is None and dc1.fields["last_run_failed"] is None
        assert dc1.fields["size_bytes"] is None
        assert not [path for _, path, _ in fake.requests if path == "/api/v1/backups"]


async def test_a_failed_job_marks_its_vms(fake: VeeamFake, ca_file: Path) -> None:
    fake.fail_job("Sauvegarde AD et fichiers")
    found = objects(await runner(fake, ca_file, api_version="1.3-rev1").run())
    assert found["dc2"].fields["last_run_failed"] is True
    assert found["dc1"].fields["last_run_failed"] is True  # one of its two jobs failed
    assert found["vcenter"].fields["last_run_failed"] is False


async def test_a_failed_list_is_partial_and_says_unknown(fake: VeeamFake, ca_file: Path) -> None:
    fake.inject(500, path="/api/v1/backups")
    samples = await runner(fake, ca_file, api_version="1.3-rev1").run()
    assert status(samples)["status"] == "partial" and "GET /api/v1/backups" in status(samples)["error"]
    assert objects(samples)["dc1"].fields["jobs"] is None  # the objects stay, their jobs are unknown
    fake.inject(500, path="/api/v1/restorePoints")
    samples = await runner(fake, ca_file, api_version="1.3-rev1").run()
    assert status(samples)["status"] == "partial" and "GET /api/v1/restorePoints" in status(samples)["error"]
    assert objects(samples)["dc1"].fields["last_restore_point"] is None
    fake.inject(403, path=OBJECTS)
    samples = await runner(fake, ca_file, api_version="1.3-rev1").run()
    assert status(samples)["status"] == "partial" and OBJECTS in status(samples)["error"]
    assert objects(samples) == {}
    (server,) = [s for s in samples if s.measurement == "veeam_server"]
    assert server.fields["backup_objects"] is None


def _vms(measurement: str, device: str, names: list[str], at: float) -> list[Sample]:
    base = {**TAGS, "device": device}
    return [Sample(measurement, {**base, "vm": name}, {"power_state": "poweredOn"}, int(at * 1e9)) for name in names]


async def test_a_vm_in_no_backup_is_listed_and_alerts(ca, ca_file: Path, tmp_path: Path) -> None:
    # vcenter's backups have no restore point left: it protects nothing
    protected = (Protected("vcenter", ("Sauvegarde VM Siège",), restore_points=0),
                 Protected("dc1", ("Sauvegarde VM Siège",)), Protected("DC2", ("Sauvegarde AD et fichiers",)))
    fake = make_fake(ca, protected=protected)
    await fake.start()
    try:
        samples = await runner(fake, ca_file, api_version="1.3-rev1").run()
    finally:
        await fake.stop()
    now = time.time()
    samples += _vms("vsphere_vm", "vcenter", ["vcenter", "dc1", "dc2", "app-new"], now)  # dc2: case differs
    samples += _vms("hyperv_vm", "hv-1", ["hv-file"], now)
    files = StateDir(tmp_path)
    state = StateDB(files.state_db)
    try:
        state.update(samples, int(now * 1e9))
    finally:
        state.close()
    coverage = backup_coverage(files, TAGS["client"], now)
    assert coverage.known and coverage.vms == 5
    assert [(v.vm, v.hypervisor, v.device) for v in coverage.unprotected] == [
        ("hv-file", "hyperv", "hv-1"), ("app-new", "vsphere", "vcenter"), ("vcenter", "vsphere", "vcenter")]
    (gap,) = coverage_samples(files, [TAGS["client"]], now)
    assert gap.fields == {"vms": 5, "unprotected": 3, "unprotected_vms": "hv-file, app-new, vcenter"}
    engine = AlertEngine(str(tmp_path / "alerts.db"), BUILTIN_RULES, clock=time.time)
    try:
        # a new VM has a day to join a backup job
        assert [t.state for t in engine.evaluate([gap], now)] == ["pending"] and engine.firing() == []
        later = now + 86400 + 1
        engine.evaluate([Sample(COVERAGE, gap.tags, gap.fields, int(later * 1e9))], later)
        (alert,) = engine.firing()
        assert alert.rule == "backup_coverage_gap"
        assert alert.summary == "3 VM(s) of vsgp in no backup: hv-file, app-new, vcenter"
    finally:
        engine.close()


async def test_no_object_at_all_is_known_once_veeam_listed_none(ca, ca_file: Path, tmp_path: Path) -> None:
    fake = make_fake(ca, protected=())
    await fake.start()
    try:
        samples = await runner(fake, ca_file, api_version="1.3-rev1").run()
    finally:
        await fake.stop()
    now = time.time()
    files = StateDir(tmp_path)
    state = StateDB(files.state_db)
    try:
        state.update(samples + _vms("vsphere_vm", "vcenter", ["dc1"], now), int(now * 1e9))
    finally:
        state.close()
    coverage = backup_coverage(files, TAGS["client"], now)
    assert coverage.known and [v.vm for v in coverage.unprotected] == ["dc1"]


async def test_the_lab_fault_takes_a_vm_out_of_the_backups(ca, ca_file: Path) -> None:
    service = VeeamService([Instance("vsgp/veeam", "127.0.0.1", 0, {}, [])])
    now = time.time()
    assert service.check_fault(Fault("veeam-vm-unprotected", "vsgp/veeam", ("DC1",), now)) == (
        "Veeam: no backup holds VM 'dc1'")
    with pytest.raises(FaultError, match="no backup holds 'nope'"):
        service.check_fault(Fault("veeam-vm-unprotected", "vsgp/veeam", ("nope",), now))
    fake = make_fake(ca)
    await fake.start()
    try:
        fake.unprotect("dc1")
        assert set(objects(await runner(fake, ca_file).run())) == {"vcenter", "veeam", "dc2"}
        fake.clear_overlays()  # the fault cleared: dc1 is back
        assert "dc1" in objects(await runner(fake, ca_file).run())
    finally:
        await fake.stop()


def test_the_labs_backups_hold_every_vm_of_its_vcenter(tmp_path: Path) -> None:
    """vsgp's lab: the Veeam fake backs up exactly the VMs the vCenter simulator holds, so the
    coverage is whole (no gap alert) until veeam-vm-unprotected takes one out."""
    estate = Estate.load("vsgp", {})
    context = Context(estate, argparse.Namespace(), {}, tmp_path)
    veeam, vcenter = VeeamService.for_estate(context), VcsimService.for_estate(context)
    assert veeam is not None and vcenter is not None
    (inventory,) = [i.inventory for i in vcenter.instances.values()]
    assert sorted(p.name for p in veeam.instances[0].protected) == sorted(inventory.all_vms)
    assert veeam.check_fault(Fault("veeam-vm-unprotected", "vsgp/veeam", (inventory.all_vms[-1],), time.time()))
