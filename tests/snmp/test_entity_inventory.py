"""ENTITY-MIB inventory (profile entity_inventory, measurement snmp_inventory) on the recorded walks,
polled through snmpsim by the real collector and compared with what LibreNMS discovered from the
same walk (lab/snmprec/expected/<walk>.json, section entity-physical)."""

from __future__ import annotations

import pytest

from collectors.snmp import SnmpCollector
from collectors.snmp.profile import ProfileSet
from tests.snmp.expected import load_expected

# walk -> the profile it is detected as: every recording whose entPhysicalTable names hardware.
WALKS = {
    "ios_2960x": "cisco_ios",
    "iosxe_c9300": "cisco_iosxe",
    "iosxe_c9400-svl": "cisco_iosxe",
    "asa": "cisco_firewall",
    "arubaos-cx_6300m": "arubaos_cx",
    "procurve_e2910": "procurve",
    "dell-os10": "dell_os10",
    "merakims_c9300": "meraki_ms",
    "qnap": "qnap",
    "vmware-esxi": "vmware_esxi",
}
# our field -> LibreNMS's entPhysical column
COLUMNS = {
    "model": "entPhysicalModelName",
    "serial": "entPhysicalSerialNum",
    "software_rev": "entPhysicalSoftwareRev",
    "firmware_rev": "entPhysicalFirmwareRev",
    "hardware_rev": "entPhysicalHardwareRev",
    "mfg": "entPhysicalMfgName",
    "name": "entPhysicalName",
    "descr": "entPhysicalDescr",
}
KEPT_CLASSES = {"chassis", "stack", "module"}


# One poll per walk for the whole module (a whole-walk poll takes seconds on a loaded machine).
_POLLED: dict[str, list] = {}


@pytest.fixture(scope="module")
def profiles() -> ProfileSet:
    return ProfileSet.load()


async def _poll(walk: str, target, profiles: ProfileSet) -> list:
    if walk not in _POLLED:
        _POLLED[walk] = await SnmpCollector({}, profiles=profiles).poll(target(walk))
    return _POLLED[walk]


def _known(value: object) -> object:
    """LibreNMS keeps an empty text as ''; we say unknown."""
    return None if value in ("", None) else str(value).strip()


def _identifies(entity: dict) -> bool:
    return any(_known(entity.get(COLUMNS[f])) is not None
               for f in ("model", "serial", "software_rev", "firmware_rev", "hardware_rev"))


@pytest.mark.parametrize("walk", sorted(WALKS))
async def test_inventory_matches_librenms(walk: str, lab, target, profiles) -> None:
    rows = await _poll(walk, target, profiles)
    assert [r.tags["profile"] for r in rows if r.measurement == "snmp_system"] == [WALKS[walk]]
    ours = {r.tags["entity_index"]: r for r in rows if r.measurement == "snmp_inventory"}
    theirs = {str(e["entPhysicalIndex"]): e for e in load_expected(walk)["entity-physical"]["discovery"]["entPhysical"]}
    # Every chassis, stack or module LibreNMS saw that says who it is is ours, and nothing that does not.
    wanted = {index for index, e in theirs.items()
              if _identifies(e) and (e.get("entPhysicalClass") in KEPT_CLASSES
                                     or e.get("entPhysicalClass") is None or e.get("entPhysicalContainedIn") == 0)}
    assert wanted, walk
    assert set(ours) == wanted
    problems = []
    for index, row in ours.items():
        entity = theirs[index]
        for field, column in COLUMNS.items():
            if row.fields.get(field) != _known(entity.get(column)):
                problems.append(f"{index} {field}: ours {row.fields.get(field)!r}, LibreNMS {entity.get(column)!r}")
        if row.tags.get("entity_class") != (entity.get("entPhysicalClass") or None):
            problems.append(f"{index} class: ours {row.tags.get('entity_class')!r}, "
                            f"LibreNMS {entity['entPhysicalClass']!r}")
    assert not problems, "\n".join(problems)


async def test_stack_members_and_placeholders(lab, target, profiles) -> None:
    """A 2960-X stack of three: the three members with their serials; the stack container and the
    "Fixed Module 0" entries, which name nothing, are left out."""
    rows = await _poll("ios_2960x", target, profiles)
    inventory = sorted((r for r in rows if r.measurement == "snmp_inventory"),
                       key=lambda r: int(r.tags["entity_index"]))
    assert [(r.tags["entity_class"], r.fields["serial"]) for r in inventory] == [
        ("chassis", "FCW1929B68S"), ("chassis", "FCW1931A06Z"), ("chassis", "FCW1929B6BP")]
    assert {r.fields["software_rev"] for r in inventory} == {"15.0(2a)EX5"}
    assert all(r.fields["mfg"] is None for r in inventory)  # empty on this agent: unknown, not ''
