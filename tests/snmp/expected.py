"""Compare one poll's rows with what LibreNMS recorded for the same walk (lab/snmprec/expected).

Each ``check_*`` returns a list of human-readable mismatches (empty = pass), so one failing case
reports everything that differs at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from collectors.snmp.engine import Row

EXPECTED_DIR = Path(__file__).resolve().parents[2] / "lab" / "snmprec" / "expected"


def load_expected(walk: str) -> dict[str, Any]:
    return json.loads((EXPECTED_DIR / f"{walk}.json").read_text(encoding="utf-8"))


def module_section(expected: Mapping[str, Any], module: str) -> Mapping[str, Any]:
    """The ``poller`` section when it has data, else ``discovery``."""
    data = expected[module]
    poller = data.get("poller")
    return poller if isinstance(poller, dict) else data["discovery"]


def rows_by_oid(rows: Iterable[Row], measurement: str) -> dict[str, Row]:
    return {oid: row for row in rows if row.measurement == measurement for oid in row.oids.values()}


def _close(actual: Any, expected: float, abs_tol: float, rel_tol: float) -> bool:
    if not isinstance(actual, (int, float)) or isinstance(actual, bool):
        return False
    return abs(actual - expected) <= max(abs_tol, rel_tol * abs(expected))


def check_ports(rows: list[Row], expected: Mapping[str, Any]) -> list[str]:
    ours = {row.tags.get("if_index"): row for row in rows if row.measurement == "snmp_interface"}
    problems = []
    for port in module_section(expected, "ports")["ports"]:
        index = str(port["ifIndex"])
        row = ours.get(index)
        if row is None:
            problems.append(f"port ifIndex {index} ({port.get('ifName')}): missing")
            continue
        pairs = [
            ("ifName", port.get("ifName"), row.tags.get("if_name")),
            ("ifOperStatus", port.get("ifOperStatus"), row.fields.get("oper_status")),
            ("ifAdminStatus", port.get("ifAdminStatus"), row.fields.get("admin_status")),
            ("ifSpeed", port.get("ifSpeed"), row.fields.get("speed_bps")),
        ]
        for name, want, got in pairs:
            if want is not None and want != got:
                problems.append(f"port {index} {name}: expected {want!r}, got {got!r}")
    return problems


def check_processors(rows: list[Row], expected: Mapping[str, Any], tolerance: float) -> list[str]:
    ours = rows_by_oid(rows, "snmp_cpu")
    problems = []
    for cpu in module_section(expected, "processors")["processors"]:
        oid = cpu["processor_oid"].lstrip(".")
        row = ours.get(oid)
        if row is None:
            problems.append(f"processor {oid} ({cpu['processor_descr']}): missing")
        elif not _close(row.fields.get("usage_percent"), cpu["processor_usage"], tolerance, 0):
            problems.append(
                f"processor {oid}: expected {cpu['processor_usage']}, got {row.fields.get('usage_percent')}"
            )
    return problems


def check_mempools(
    rows: list[Row], expected: Mapping[str, Any], percent_tol: float, bytes_rel_tol: float, skip: Iterable[str] = ()
) -> list[str]:
    ours = rows_by_oid(rows, "snmp_memory")
    skipped = [re.compile(pattern) for pattern in skip]
    problems = []
    checked = 0
    for pool in module_section(expected, "mempools")["mempools"]:
        if any(p.search(pool["mempool_descr"]) for p in skipped):
            continue
        checked += 1
        oids = [pool.get(k) for k in ("mempool_used_oid", "mempool_perc_oid", "mempool_free_oid")]
        row = next((ours[o.lstrip(".")] for o in oids if o and o.lstrip(".") in ours), None)
        if row is None:
            problems.append(f"mempool {pool['mempool_descr']} {oids}: missing")
            continue
        if not _close(row.fields.get("usage_percent"), pool["mempool_perc"], percent_tol, 0):
            problems.append(
                f"mempool {pool['mempool_descr']}: perc expected {pool['mempool_perc']}, "
                f"got {row.fields.get('usage_percent')}"
            )
        # A pool LibreNMS read from a percentage alone gets total=100, used=percent: no bytes to check.
        byte_oids = ("mempool_used_oid", "mempool_free_oid", "mempool_total_oid")
        percent_only = pool.get("mempool_perc_oid") and not any(pool.get(k) for k in byte_oids)
        byte_pairs = () if percent_only else (("used_bytes", "mempool_used"), ("total_bytes", "mempool_total"))
        for ours_name, theirs in byte_pairs:
            if pool.get(theirs) is not None and not _close(row.fields.get(ours_name), pool[theirs], 1, bytes_rel_tol):
                problems.append(
                    f"mempool {pool['mempool_descr']}: {theirs} expected {pool[theirs]}, "
                    f"got {row.fields.get(ours_name)}"
                )
    if not checked:
        problems.append("mempools: nothing to check")
    return problems


# LibreNMS state_generic_value -> our state.
GENERIC_STATE = {0: "ok", 1: "warn", 2: "crit", 3: "unknown"}


def check_sensors(
    rows: list[Row],
    expected: Mapping[str, Any],
    classes: Iterable[str],
    types: Iterable[str] | None,
    abs_tol: float,
    rel_tol: float,
    skip_oids: Iterable[str] = (),
) -> list[str]:
    section = module_section(expected, "sensors")
    ours = rows_by_oid(rows, "snmp_sensor")
    generic = {
        (s["state_name"], s["state_value"]): GENERIC_STATE[s["state_generic_value"]]
        for s in section.get("state_indexes", [])
    }
    wanted_classes, wanted_types = set(classes), set(types) if types else None
    skip = {o.lstrip(".") for o in skip_oids}
    problems = []
    checked = 0
    for sensor in section["sensors"]:
        oid = sensor["sensor_oid"].lstrip(".")
        if sensor["sensor_class"] not in wanted_classes or oid in skip:
            continue
        if wanted_types is not None and sensor["sensor_type"] not in wanted_types:
            continue
        checked += 1
        row = ours.get(oid)
        label = f"sensor {sensor['sensor_class']} {oid} ({sensor['sensor_descr']})"
        if row is None:
            problems.append(f"{label}: missing")
        elif sensor["sensor_class"] == "state":
            want = generic.get((sensor["state_name"], sensor["sensor_current"]))
            if want != row.fields.get("state"):
                problems.append(f"{label}: state expected {want}, got {row.fields.get('state')}")
        elif not _close(row.fields.get("value"), sensor["sensor_current"], abs_tol, rel_tol):
            problems.append(f"{label}: expected {sensor['sensor_current']}, got {row.fields.get('value')}")
    if not checked:
        problems.append(f"sensors: nothing of classes {sorted(wanted_classes)} / types {wanted_types} to check")
    return problems
