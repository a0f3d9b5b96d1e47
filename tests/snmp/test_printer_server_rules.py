"""Default rules of the printer and server families (rules/printer_mib.yaml, rules/server.yaml)
on what the profiles emit: the Kyocera walks through snmpsim (normal, then toner low + paper jam)
and hand-made hrStorage snapshots for the file-system tiers."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from agent.api import Rule
from agent.api.expressions import compile_expression
from agent.api.rules import TagMatcher
from collectors.snmp import SnmpCollector
from collectors.snmp.client import SnmpValue
from collectors.snmp.engine import CounterStore, Row, Snapshot, evaluate
from collectors.snmp.profile import PROFILES_DIR, ProfileSet

HR_STORAGE = "1.3.6.1.2.1.25.2.3.1"
FIXED_DISK = "1.3.6.1.2.1.25.2.1.4"


@pytest.fixture(scope="module")
def profiles() -> ProfileSet:
    return ProfileSet.load()


def _rules(family: str) -> list[dict[str, Any]]:
    return yaml.safe_load((PROFILES_DIR / "rules" / f"{family}.yaml").read_text(encoding="utf-8"))


def _firing(family: str, rows: list[Row]) -> list[tuple[str, str]]:
    """(rule name, the row's first tag value) for every rule whose match and `when` hold."""
    fired = []
    for rule in _rules(family):
        when = compile_expression(rule["when"])
        matchers = [TagMatcher.parse(tag, raw) for tag, raw in (rule.get("match") or {}).items()]
        for row in rows:
            if row.measurement == rule["measurement"] and all(m.matches(row.tags) for m in matchers):
                if when.evaluate(row.fields, row.tags) is True:
                    fired.append((rule["name"], next(iter(row.tags.values()))))
    return fired


@pytest.mark.parametrize("family", ["printer_mib", "server"])
def test_rules_files_are_valid_rule_specs(family: str) -> None:
    names = [Rule.model_validate(rule).name for rule in _rules(family)]
    prefix = "printer_" if family == "printer_mib" else "server_"
    assert names and all(name.startswith(prefix) for name in names)
    assert len(set(names)) == len(names)


async def test_a_healthy_printer_raises_nothing(lab, target, profiles) -> None:
    rows = await SnmpCollector({}, profiles=profiles).poll(target("kyocera_taskalfa"))
    assert _firing("printer_mib", rows) == []


async def test_low_toner_and_jam_raise_one_alert_each(lab, target, profiles) -> None:
    rows = await SnmpCollector({}, profiles=profiles).poll(target("kyocera_taskalfa_alarm"))
    assert sorted(_firing("printer_mib", rows)) == [
        ("printer_paper_jam", "TASKalfa 3253ci"),
        ("printer_toner_low", "TK-8335C"),
    ]


def _storage_rows(profiles: ProfileSet, profile: str, disks: dict[str, tuple[str, int]]) -> list[Row]:
    """One hrStorage fixed disk per entry: index -> (mount point, percent used), 1 GiB in 4 KiB units."""
    size = 262144
    columns = {
        f"{HR_STORAGE}.2": {i: SnmpValue(FIXED_DISK, "oid") for i in disks},
        f"{HR_STORAGE}.3": {i: SnmpValue(name, "string") for i, (name, _) in disks.items()},
        f"{HR_STORAGE}.4": {i: SnmpValue(4096, "integer") for i in disks},
        f"{HR_STORAGE}.5": {i: SnmpValue(size, "integer") for i in disks},
        f"{HR_STORAGE}.6": {i: SnmpValue(size * pct // 100, "integer") for i, (_, pct) in disks.items()},
    }
    rows = evaluate(profiles.get(profile), Snapshot(columns=columns), CounterStore(), 0.0)
    return [r for r in rows if r.measurement == "snmp_storage"]


def test_file_system_tiers_do_not_overlap(profiles: ProfileSet) -> None:
    disks = {"1": ("/", 99), "2": ("/run", 99), "3": ("/data", 96), "4": ("/home", 91), "5": ("/var", 50)}
    rows = _storage_rows(profiles, "linux", disks)
    assert {r.tags["storage"] for r in rows} == {"/", "/data", "/home", "/var"}  # tmpfs /run left out
    assert sorted(_firing("server", rows)) == [
        ("server_filesystem_almost_full", "/data"),
        ("server_filesystem_filling", "/home"),
        ("server_filesystem_full", "/"),
    ]


def test_server_rules_leave_other_families_alone(profiles: ProfileSet) -> None:
    # A NAS on the generic profile has the same snmp_storage rows but no server profile tag.
    assert _firing("server", _storage_rows(profiles, "generic", {"1": ("/share", 99)})) == []


def test_printer_redacted_or_missing_values_stay_unknown(profiles: ProfileSet) -> None:
    supplies = "1.3.6.1.2.1.43.11.1.1"
    columns = {
        "1.3.6.1.2.1.25.3.5.1.1": {"1": SnmpValue(3, "integer")},
        "1.3.6.1.2.1.25.3.5.1.2": {"1": SnmpValue("<private>", "string")},
        # Supply 1: level without any capacity column; supply 2: level -2 (unknown).
        f"{supplies}.6": {"1.1": SnmpValue("TK-8335K", "string"), "1.2": SnmpValue("Drum", "string")},
        f"{supplies}.9": {"1.1": SnmpValue(50, "integer"), "1.2": SnmpValue(-2, "integer")},
    }
    rows = evaluate(profiles.get("kyocera"), Snapshot(columns=columns), CounterStore(), 0.0)
    (printer,) = [r for r in rows if r.measurement == "snmp_printer"]
    assert printer.fields["status"] == "idle"
    assert printer.fields["errors"] is None and printer.fields["jammed"] is None
    assert printer.fields["pages_total"] is None and printer.fields["device_status"] == "unknown"
    supply = {r.tags["supply"]: r.fields for r in rows if r.measurement == "snmp_printer_supply"}
    assert supply["TK-8335K"] == {"level": 50, "max_capacity": None, "level_percent": None, "state": "unknown"}
    assert supply["Drum"] == {"level": -2, "max_capacity": None, "level_percent": None, "state": "unknown"}
    assert _firing("printer_mib", rows) == []


def test_a_failed_raid_disk_is_critical_and_a_predicted_one_is_not(profiles: ProfileSet) -> None:
    drives = "1.3.6.1.4.1.3582.4.1.4.2.1.2.1"
    columns = {
        f"{drives}.10": {"0": SnmpValue(24, "integer"), "1": SnmpValue(17, "integer")},  # online, failed
        f"{drives}.9": {"0": SnmpValue(2, "integer"), "1": SnmpValue(0, "integer")},  # predFailCount
        f"{drives}.18": {"0": SnmpValue(252, "integer"), "1": SnmpValue(252, "integer")},
    }
    rows = evaluate(profiles.get("linux"), Snapshot(columns=columns), CounterStore(), 0.0)
    assert sorted(_firing("server", rows)) == [
        ("server_raid_attention", "drive 0 (enclosure 252) predictive failures"),
        ("server_raid_failed", "drive 1 (enclosure 252) state"),
    ]


def test_ucd_stands_in_when_host_resources_is_empty(profiles: ProfileSet) -> None:
    """A net-snmp agent whose HOST-RESOURCES tables are empty (UCD-SNMP-MIB only): LibreNMS's
    UcdResources numbers, in bytes; dskTable's 64-bit High/Low columns win over the 32-bit ones."""
    ucd = "1.3.6.1.4.1.2021"
    kib = {"4.5.0": 8000000, "4.6.0": 1000000, "4.14.0": 500000, "4.15.0": 2500000, "4.3.0": 2000000, "4.4.0": 1500000}
    scalars = {f"{ucd}.{oid}": SnmpValue(v, "integer") for oid, v in kib.items()}
    scalars[f"{ucd}.11.11.0"] = SnmpValue(87, "integer")  # ssCpuIdle
    dsk = f"{ucd}.9.1"
    columns = {
        f"{dsk}.2": {"1": SnmpValue("/", "string"), "2": SnmpValue("/srv", "string")},
        f"{dsk}.6": {"1": SnmpValue(1000000, "integer"), "2": SnmpValue(2147483647, "integer")},
        f"{dsk}.7": {"1": SnmpValue(250000, "integer"), "2": SnmpValue(2147483647, "integer")},
        f"{dsk}.8": {"1": SnmpValue(750000, "integer"), "2": SnmpValue(2147483647, "integer")},
        f"{dsk}.11": {"2": SnmpValue(0, "gauge")},  # /srv: 4 TiB = 1 << 32 KiB
        f"{dsk}.12": {"2": SnmpValue(1, "gauge")},
        f"{dsk}.13": {"2": SnmpValue(1073741824, "gauge")},
        f"{dsk}.14": {"2": SnmpValue(0, "gauge")},
    }
    rows = evaluate(profiles.get("linux"), Snapshot(columns=columns, scalars=scalars), CounterStore(), 0.0)
    by = {(r.measurement, next(iter(r.tags.values()))): r.fields for r in rows}
    assert by[("snmp_cpu", "CPU")] == {"usage_percent": 13}
    assert by[("snmp_memory", "Physical memory")] == {
        "total_bytes": 8000000 * 1024,
        "used_bytes": 4000000 * 1024,  # 8 - 1 free - 0.5 buffers - 2.5 cache (GB-ish)
        "free_bytes": 4000000 * 1024,
        "usage_percent": 50.0,
    }
    assert by[("snmp_memory", "Swap space")]["usage_percent"] == 25.0
    assert by[("snmp_storage", "/")]["usage_percent"] == 75.0
    assert by[("snmp_storage", "/srv")] == {
        "total_bytes": 2**32 * 1024,
        "used_bytes": (2**32 - 2**30) * 1024,
        "free_bytes": 2**30 * 1024,
        "usage_percent": 75.0,
    }


@pytest.mark.parametrize(("profile", "fired"), [("windows", ["server_commit_limit_near"]), ("linux", [])])
def test_commit_limit_rule_is_for_windows_only(profiles: ProfileSet, profile: str, fired: list[str]) -> None:
    # "Virtual Memory" at 95 %: Windows' commit limit; on Linux net-snmp counts page cache in it.
    columns = {
        f"{HR_STORAGE}.2": {"3": SnmpValue("1.3.6.1.2.1.25.2.1.3", "oid")},
        f"{HR_STORAGE}.3": {"3": SnmpValue("Virtual Memory", "string")},
        f"{HR_STORAGE}.4": {"3": SnmpValue(65536, "integer")},
        f"{HR_STORAGE}.5": {"3": SnmpValue(1000, "integer")},
        f"{HR_STORAGE}.6": {"3": SnmpValue(950, "integer")},
    }
    rows = evaluate(profiles.get(profile), Snapshot(columns=columns), CounterStore(), 0.0)
    assert [name for name, _ in _firing("server", rows)] == fired
