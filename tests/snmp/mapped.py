"""LibreNMS sensors that vigie emits as a family measurement rather than as ``snmp_sensor``.

LibreNMS models everything as a sensor (ASA failover = state sensor, Sophos licence status = state
sensor, connection count = count sensor); vigie gives them their own measurements
(``snmp_failover.state``, ``snmp_license.status``, ``snmp_connections.active``). A case file maps
each such LibreNMS ``sensor_oid`` to the ``measurement.field`` that must carry the same value
(those OIDs are then left out of the plain sensor check):

    sensors:
      classes: [count, state]
      mapped:
        .1.3.6.1.4.1.9.9.147.1.2.2.2.1.5.40.6: snmp_connections.active
        .1.3.6.1.4.1.9.9.147.1.2.1.1.1.3.6: snmp_failover.state

The row is the one read from that OID (for a table, the row whose index the OID ends with, so a
join column reading the same OID for another row does not count). A state sensor compares our
text with LibreNMS's ``state_descr`` for its current value, case and punctuation aside
(``overTemp`` = ``over_temp``); any other sensor compares numbers with the case's tolerances.
A unit change is written after the target: ``snmp_ups.runtime_s / 60`` (LibreNMS has minutes).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from collectors.snmp.engine import Row
from tests.snmp.expected import _close, module_section


def _norm(text: Any) -> str:
    return re.sub(r"[^a-z0-9]", "", str(text).lower())


def _row_read_from(rows: list[Row], measurement: str, oid: str) -> Row | None:
    candidates = [r for r in rows if r.measurement == measurement and oid in r.oids.values()]
    own = [r for r in candidates if oid.endswith("." + r.index)]
    return (own or candidates or [None])[0]


def check_mapped_sensors(
    rows: list[Row], expected: Mapping[str, Any], mapping: Mapping[str, str], abs_tol: float, rel_tol: float
) -> list[str]:
    section = module_section(expected, "sensors")
    by_oid = {s["sensor_oid"].lstrip("."): s for s in section["sensors"]}
    descr = {(s["state_name"], s["state_value"]): s["state_descr"] for s in section.get("state_indexes", [])}
    problems = []
    for raw_oid, target in mapping.items():
        oid = str(raw_oid).lstrip(".")
        field_path, _, divisor = target.partition(" / ")
        measurement, _, field = field_path.partition(".")
        sensor = by_oid.get(oid)
        if sensor is None:
            problems.append(f"mapped sensor {oid}: LibreNMS has no sensor with this OID")
            continue
        label = f"mapped sensor {sensor['sensor_class']} {oid} ({sensor['sensor_descr']}) -> {target}"
        row = _row_read_from(rows, measurement, oid)
        if row is None:
            problems.append(f"{label}: no {measurement} row read from this OID")
            continue
        got = row.fields.get(field)
        if divisor and isinstance(got, (int, float)) and not isinstance(got, bool):
            got = got / float(divisor)
        if sensor["sensor_class"] == "state":
            want = descr.get((sensor["state_name"], sensor["sensor_current"]))
            if want is None or _norm(want) != _norm(got):
                problems.append(f"{label}: expected {want!r}, got {got!r}")
        elif not _close(got, sensor["sensor_current"], abs_tol, rel_tol):
            problems.append(f"{label}: expected {sensor['sensor_current']}, got {got!r}")
    return problems
