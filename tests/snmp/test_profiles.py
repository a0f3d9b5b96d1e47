"""Profiles load, validate with errors that name file and field, and detection picks the right one."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.snmp.profile import ProfileError, ProfileSet

CPU_TABLE = "name: bad\ntables:\n  - id: t\n    measurement: snmp_cpu\n    columns: {load: 1.3.6.1.9}\n"
SHIPPED = ["system", "if_mib", "host_resources", "entity_sensor", "cisco_ios", "cisco_iosxe", "generic"]


def test_shipped_profiles_load() -> None:
    profiles = ProfileSet.load()
    assert set(SHIPPED) <= set(profiles.profiles)
    generic = profiles.get("generic")
    assert [t.measurement for t in generic.tables][:2] == ["snmp_system", "snmp_interface"]


@pytest.mark.parametrize(
    ("sys_object_id", "sys_descr", "expected"),
    [
        ("1.3.6.1.4.1.9.1.1208", "Cisco IOS Software, C2960X Software (C2960X-UNIVERSALK9-M)", "cisco_ios"),
        ("1.3.6.1.4.1.9.1.2694", "Cisco IOS Software [Gibraltar], L3 Switch (CAT9K_LITE_IOSXE)", "cisco_iosxe"),
        (".1.3.6.1.4.1.9.1.2494", "Cisco IOS Software [Everest], L3 Switch (CAT9K_IOSXE)", "cisco_iosxe"),
        ("1.3.6.1.4.1.9.10", "Cisco IOS Software", "generic"),  # prefix is component-wise: 9.10 is not 9.1
        ("1.3.6.1.4.1.99999.1", None, "generic"),
        (None, None, "generic"),
    ],
)
def test_detection(sys_object_id, sys_descr, expected) -> None:
    assert ProfileSet.load().detect(sys_object_id, sys_descr).name == expected


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (CPU_TABLE + "    fields: {usage_percent: lod}\n",
         "tables.t.fields.usage_percent.expr: unknown name(s) lod"),
        (CPU_TABLE + "    fields: {usage_percent: load.real}\n",
         "tables.t.fields.usage_percent.expr"),
        ("name: bad\ntables:\n  - id: t\n    measurement: snmp_cpu\n    columns: {load: not-an-oid}\n",
         "tables.0.columns.load.oid"),
        ("name: bad\ntables:\n  - id: t\n    measurement: snmp_cpu\n    columns: {load: .8}\n",
         "tables.t.columns.load.oid: relative OID '.8' needs a table base"),
        ("name: bad\nextends: [nope]\n", "extends.0: unknown profile 'nope'"),
        ("name: other\n", "name: 'other' must equal the file name 'bad'"),
        ("name: bad\ndetect: {priority: 3}\n", "detect"),
        ("name: bad\nsurprise: 1\n", "surprise"),
    ],
)
def test_errors_name_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, "bad", text)
    with pytest.raises(ProfileError) as excinfo:
        ProfileSet.load(tmp_path)
    assert str(path) in str(excinfo.value)
    assert message in str(excinfo.value)


def test_child_table_merges_over_inherited_one(tmp_path: Path) -> None:
    _write(tmp_path, "base", "name: base\ntables:\n  - id: t\n    measurement: snmp_cpu\n    base: 1.3.6.1.2\n"
           "    columns: {load: .5}\n    fields: {usage_percent: load}\n")
    _write(tmp_path, "child", "name: child\ndetect: {sys_object_id: [1.3.6.1.4.1.7]}\nextends: [base]\n"
           "tables:\n  - id: t\n    base: 1.3.6.1.9\n")
    child = ProfileSet.load(tmp_path).get("child")
    (table,) = child.tables
    assert [c.oid for c in table.columns] == ["1.3.6.1.9.5"]
    assert [name for name, _ in table.fields] == ["usage_percent"]


def test_extends_cycle_is_reported(tmp_path: Path) -> None:
    _write(tmp_path, "a", "name: a\nextends: [b]\n")
    _write(tmp_path, "b", "name: b\nextends: [a]\n")
    with pytest.raises(ProfileError, match="cycle"):
        ProfileSet.load(tmp_path)
