"""Printers: LibreNMS ``printer-supplies`` (and its hrDeviceStatus state sensor) vs our
``snmp_printer_supply`` / ``snmp_printer`` rows, plus the vigie-only fields a case file states.

Where the Printer-MIB has no number, LibreNMS invents one and we do not (documented in
collectors/snmp/profiles/printer_mib.yaml): a level of -3 ("some remaining") is 50 % for LibreNMS
and an unknown percent with state ok for us; a max capacity <= 0 is 100 for LibreNMS.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from collectors.snmp.engine import Row
from tests.snmp.expected import _close, module_section, rows_by_oid

SOME_REMAINING = -3
LIBRENMS_SOME_REMAINING = 50
HR_DEVICE_STATUS = "1.3.6.1.2.1.25.3.2.1.5"


def check_printer_supplies(rows: list[Row], expected: Mapping[str, Any], tolerance: float) -> list[str]:
    ours = rows_by_oid(rows, "snmp_printer_supply")
    problems = []
    supplies = module_section(expected, "printer-supplies")["printer_supplies"]
    for supply in supplies:
        oid = supply["supply_oid"].lstrip(".")
        label = f"supply {supply['supply_descr']} ({oid})"
        row = ours.get(oid)
        if row is None:
            problems.append(f"{label}: missing")
            continue
        for ours_name, theirs in (("supply", "supply_descr"), ("supply_type", "supply_type")):
            if row.tags.get(ours_name) != supply[theirs]:
                problems.append(f"{label}: {ours_name} expected {supply[theirs]!r}, got {row.tags.get(ours_name)!r}")
        level, capacity = row.fields.get("level"), row.fields.get("max_capacity")
        want_capacity = capacity if isinstance(capacity, int) and capacity > 0 else 100
        if supply["supply_capacity"] != want_capacity:
            problems.append(f"{label}: capacity expected {supply['supply_capacity']}, got {capacity}")
        if level == SOME_REMAINING:
            if supply["supply_current"] != LIBRENMS_SOME_REMAINING or row.fields.get("level_percent") is not None:
                problems.append(f"{label}: 'some remaining' expected LibreNMS 50 / ours None, got {row.fields}")
            if row.fields.get("state") != "ok":
                problems.append(f"{label}: 'some remaining' must be ok, got {row.fields.get('state')}")
        elif not _close(row.fields.get("level_percent"), supply["supply_current"], tolerance, 0):
            got = row.fields.get("level_percent")
            problems.append(f"{label}: percent expected {supply['supply_current']}, got {got}")
    if not supplies:
        problems.append("printer-supplies: nothing to check")
    return problems


def check_printer(rows: list[Row], expected: Mapping[str, Any], fields: Mapping[str, Any]) -> list[str]:
    """hrDeviceStatus as LibreNMS's state sensor reads it, and the case's own expected fields."""
    printers = {row.index: row for row in rows if row.measurement == "snmp_printer"}
    problems = []
    if not printers:
        return ["snmp_printer: no row"]
    section = module_section(expected, "sensors")
    names = {(s["state_name"], s["state_value"]): s["state_descr"] for s in section.get("state_indexes", [])}
    for sensor in section["sensors"]:
        oid = sensor["sensor_oid"].lstrip(".")
        if not oid.startswith(HR_DEVICE_STATUS + "."):
            continue
        row = printers.get(oid[len(HR_DEVICE_STATUS) + 1 :])
        want = names.get((sensor["state_name"], sensor["sensor_current"]), "").lower()
        got = None if row is None else row.fields.get("device_status")
        if got != want:
            problems.append(f"printer {oid}: device_status expected {want!r}, got {got!r}")
    for row in printers.values():
        for name, want in fields.items():
            if row.fields.get(name) != want:
                problems.append(f"printer {row.index}: {name} expected {want!r}, got {row.fields.get(name)!r}")
    return problems
