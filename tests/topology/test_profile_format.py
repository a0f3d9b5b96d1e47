"""What the lldp profile needed of the profile format: `under:` columns (an index below a prefix)
and `inet_index()`, checked at load time like the rest of a profile."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.snmp.expr import PURE_FUNCTIONS
from collectors.snmp.profile import ProfileError, ProfileSet

inet_index = PURE_FUNCTIONS["inet_index"]


@pytest.mark.parametrize(("index", "position", "text"), [
    ("1.4.10.1.2.3", 0, "10.1.2.3"),
    ("0.1.1.1.4.192.0.2.1", 3, "192.0.2.1"),
    ("2.16.32.1.13.184.0.0.0.0.0.0.0.0.0.0.0.1", 0, "2001:db8::1"),
    ("1.4.10.1.2", 0, None),  # fewer octets than its length says
    ("1.5.10.1.2.3.4", 0, None),  # an IPv4 address is 4 octets
    ("6.6.0.17.34.51.68.85", 0, None),  # family 6 (an 802 MAC) is no IP address
    ("1.4.10.1.2.300", 0, None),
    (None, 0, None),
])
def test_inet_index(index: str | None, position: int, text: str | None) -> None:
    assert inet_index(index, position) == text


def write(directory: Path, table: str) -> Path:
    (directory / "t.yaml").write_text(f"name: t\ndetect: {{sys_descr: [x]}}\ntables:\n{table}", encoding="utf-8")
    return directory


@pytest.mark.parametrize(("table", "message"), [
    ("  - {id: a, measurement: m, scalar: true, columns: {x: {oid: 1.2.0, under: index}}, fields: {f: x}}\n",
     "tables.a.columns.x.under: not with join, nor in a scalar table"),
    ("  - {id: a, measurement: m, columns: {y: 1.3, x: {oid: 1.2, join: index, under: index}}, fields: {f: x}}\n",
     "tables.a.columns.x.under: not with join, nor in a scalar table"),
    ("  - {id: a, measurement: m, columns: {y: 1.3, x: {oid: 1.2, under: nope}}, fields: {f: x}}\n",
     "tables.a.columns.x.under: unknown name(s) nope"),
])
def test_under_is_checked_at_load_time(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(ProfileError) as refused:
        ProfileSet.load(write(tmp_path, table))
    assert message in str(refused.value)


def test_an_under_column_is_not_a_row_of_its_own(tmp_path: Path) -> None:
    set_ = ProfileSet.load(write(tmp_path, "  - {id: a, measurement: m, columns: {y: 1.3, x: {oid: 1.2, under: index}},"
                                           " fields: {f: x}}\n"))
    (table,) = set_.get("t").tables
    assert [c.name for c in table.own_columns] == ["y"]
