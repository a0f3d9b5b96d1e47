"""Backup coverage: the VMs the hypervisors know (vCenter's `vsphere_vm`, Hyper-V's `hyperv_vm`)
that no backup protects — the agency's tender wants every new VM in the backup process.

Which VMs Veeam protects is read from ``PROTECTED`` (the Veeam collector's series per object its
REST API lists under ``/api/v1/backupObjects``, tag ``object``: the VM's name); an object whose
backups hold no restore point protects nothing. Coverage is known once the client's Veeam server
has listed its objects (``veeam_server.backup_objects``, 0 included: no backup holds any VM) or
some object is there; before (a server whose object list failed, or that no Veeam collector
reads) a client with both sources supervised gets ``known=False`` — "cannot tell", never "every
VM is protected". Names are compared case-insensitively (vCenter and Veeam do not always agree on
case). The rollups keep a series' last values forever: a VM (or a backup object) not reported for
``FRESH_S`` is gone, left out.

Once coverage is known, the agent turns it into one ``backup_coverage`` sample per client
(:func:`coverage_samples`, every ``COVERAGE_INTERVAL_S``); the built-in rule
``backup_coverage_gap`` alerts on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agent.api import Sample
from agent.statedir import StateDir
from agent.views.latest import latest_series

VM_SOURCES = (("vsphere_vm", "vsphere"), ("hyperv_vm", "hyperv"))  # (measurement, where it comes from)
VM_TAG = "vm"
BACKUP_JOBS = "veeam_job"
PROTECTED, PROTECTED_TAG = "veeam_backup_object", "object"
LISTING, LISTED_COUNT = "veeam_server", "backup_objects"  # the server's answer: how many objects it listed
FRESH_S = 6 * 3600.0
COVERAGE = "backup_coverage"
COVERAGE_INTERVAL_S = 600.0
READ = (*(measurement for measurement, _ in VM_SOURCES), BACKUP_JOBS, PROTECTED, LISTING)
LISTED = 20  # VMs named in the sample (its alert's summary); the count says how many in all


@dataclass(frozen=True)
class UnprotectedVm:
    vm: str
    hypervisor: str  # vsphere | hyperv
    device: str  # the vCenter or Hyper-V host it was read from
    power_state: str | None


@dataclass(frozen=True)
class Coverage:
    vms_supervised: bool  # a vCenter or a Hyper-V host reports the client's VMs
    backups_supervised: bool  # a Veeam server reports the client's jobs
    known: bool  # Veeam reports the objects it protects: the list below is the answer
    vms: int
    unprotected: tuple[UnprotectedVm, ...] = ()


def backup_coverage(files: StateDir, client: str, now: float) -> Coverage:
    """As of ``now``."""
    # Only the measurements it reads: every latest value of a client of a thousand switches, every
    # 10 minutes, took the agent from 290 to 940 MiB of RSS (bench/README.md).
    series = [s for s in latest_series(files, client, measurements=READ) if s.at >= now - FRESH_S]
    vms = [(s, source) for s in series for measurement, source in VM_SOURCES
           if s.measurement == measurement and s.tags.get(VM_TAG)]
    protected = {s.tags[PROTECTED_TAG].casefold() for s in series
                 if s.measurement == PROTECTED and s.tags.get(PROTECTED_TAG) and s.fields.get("restore_points") != 0}
    listed = any(s.measurement == LISTING and s.fields.get(LISTED_COUNT) is not None for s in series)
    backups = any(s.measurement == BACKUP_JOBS for s in series)
    known = backups and (bool(protected) or listed)
    unprotected = []
    if known:
        for one, source in vms:
            if one.tags[VM_TAG].casefold() not in protected:
                state = one.fields.get("power_state", one.fields.get("state"))
                unprotected.append(UnprotectedVm(one.tags[VM_TAG], source, one.tags.get("device", ""),
                                                 None if state is None else str(state)))
    return Coverage(bool(vms), backups, known, len(vms),
                    tuple(sorted(unprotected, key=lambda v: (v.hypervisor, v.vm.casefold()))))


def coverage_samples(files: StateDir, clients: Sequence[str], now: float) -> list[Sample]:
    """A ``backup_coverage`` sample for each client whose coverage is known (both sources
    supervised, Veeam naming what it protects); none for the others: an unknown is not a gap."""
    found = []
    for client in clients:
        coverage = backup_coverage(files, client, now)
        if not coverage.known:
            continue
        names = [v.vm for v in coverage.unprotected]
        listed = ", ".join(names[:LISTED]) + (f" (+{len(names) - LISTED})" if len(names) > LISTED else "")
        found.append(Sample(COVERAGE, {"client": client},
                            {"vms": coverage.vms, "unprotected": len(names), "unprotected_vms": listed},
                            int(now * 1e9)))
    return found
