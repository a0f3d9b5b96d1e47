"""LibreNMS's storage module (hrStorage file systems) against a vigie measurement that carries
the same file systems: ``snmp_storage`` (tag ``storage``) or a family view such as the NAS data
volumes ``snmp_volume`` (tag ``volume``). Entries are matched by description; a case says which
LibreNMS descriptions its measurement must carry (``match`` regex)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from collectors.snmp.engine import Row
from tests.snmp.expected import _close, module_section


def check_storage(
    rows: list[Row],
    expected: Mapping[str, Any],
    measurement: str,
    tag: str,
    match: str,
    percent_tol: float,
    bytes_rel_tol: float,
) -> list[str]:
    ours = {row.tags.get(tag): row for row in rows if row.measurement == measurement}
    problems = []
    checked = 0
    for entry in module_section(expected, "storage")["storage"]:
        descr = entry["storage_descr"]
        if not re.search(match, descr):
            continue
        checked += 1
        row = ours.get(descr)
        if row is None:
            problems.append(f"storage {descr}: no {measurement} row with {tag}={descr!r}")
            continue
        for ours_name, theirs in (("total_bytes", "storage_size"), ("free_bytes", "storage_free")):
            if not _close(row.fields.get(ours_name), entry[theirs], 1, bytes_rel_tol):
                problems.append(f"storage {descr}: {theirs} expected {entry[theirs]}, got {row.fields.get(ours_name)}")
        # LibreNMS keeps a rounded used percentage; a measurement gives used or free percent.
        if "usage_percent" in row.fields:
            got, want = row.fields["usage_percent"], entry["storage_perc"]
        else:
            got, want = row.fields.get("free_percent"), 100 - entry["storage_perc"]
        if not _close(got, want, percent_tol, 0):
            problems.append(f"storage {descr}: percent expected {want}, got {got}")
    if not checked:
        problems.append(f"storage: LibreNMS has no entry matching {match!r} to check")
    return problems
