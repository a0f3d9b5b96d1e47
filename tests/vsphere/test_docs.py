"""Every field the vsphere collector emits is in docs/METRICS.md's vSphere tables with its
documented type (dashboards are drawn from those tables), and every documented field is emitted."""

from __future__ import annotations

import time

from lab.services import Fault
from tests.metrics_doc import check, documented

from .conftest import DEVICE, Lab
from .helpers import collector, of, run, status

# what the simulator never sets (no VMware Tools heartbeat, no disk consolidation state)
UNSET_IN_VCSIM = {("vsphere_vm", "guest_heartbeat"), ("vsphere_vm", "consolidation_needed")}


async def test_every_field_is_documented_with_its_type(lab: Lab) -> None:
    now = time.time()
    await lab.service.apply_faults([
        Fault("vsphere-snapshot", DEVICE, ("vm-siege-04", "100"), now),
        Fault("vsphere-alarm", DEVICE, ("esx-pra-1", "vSphere HA host status", "yellow"), now),
    ])
    vsphere = collector(lab.options)
    samples = await run(vsphere)
    await lab.service.apply_faults([])
    samples += await run(vsphere)  # the alarm cleared: its last sample
    assert status(samples[-1:]) == ("ok", None)
    tables = documented("vsphere")
    assert set(tables) == {"vsphere_host", "vsphere_vm", "vsphere_datastore", "vsphere_cluster", "vsphere_alarm",
                           "vsphere_vcenter"}
    seen = check(samples, tables)
    assert {(m, f) for m, table in tables.items() for f in table} - seen == UNSET_IN_VCSIM
    assert len(of(samples, "vsphere_alarm")) == 2
