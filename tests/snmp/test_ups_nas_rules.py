"""UPS / NAS / iDRAC families: the engine features they added (whole-column reads in scalar
tables, detection by an answering OID) and the decisions their profiles make on states the
recordings do not contain (on battery, battery to replace, degraded RAID, failed disk)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agent.api import Rule
from agent.api.expressions import compile_expression
from collectors.snmp.client import SnmpValue
from collectors.snmp.engine import CounterStore, Snapshot, evaluate
from collectors.snmp.profile import ProfileError, ProfileSet

UPS = "1.3.6.1.2.1.33.1"
RULES = Path(__file__).resolve().parents[2] / "collectors" / "snmp" / "profiles" / "rules"


@pytest.fixture(scope="module")
def profiles() -> ProfileSet:
    return ProfileSet.load()


def i(value: int) -> SnmpValue:
    return SnmpValue(value, "integer")


def rows_of(profiles: ProfileSet, name: str, snapshot: Snapshot, measurement: str) -> list:
    rows = evaluate(profiles.get(name), snapshot, CounterStore(), now=0.0)
    return [r for r in rows if r.measurement == measurement]


def ups_snapshot(alarms: dict[str, SnmpValue] | None, source: int = 3, loads: tuple[int, ...] = (20,)) -> Snapshot:
    snapshot = Snapshot(
        scalars={
            f"{UPS}.2.1.0": i(2),
            f"{UPS}.2.3.0": i(7),
            f"{UPS}.2.4.0": i(80),
            f"{UPS}.4.1.0": i(source),
        },
        columns={f"{UPS}.4.4.1.5": {str(n): i(load) for n, load in enumerate(loads, start=1)}},
    )
    if alarms is not None:
        snapshot.columns[f"{UPS}.6.2.1.2"] = alarms
    return snapshot


def test_alarm_table_read_whole_sets_replace_battery(profiles) -> None:
    bad = {"1": SnmpValue(f"{UPS}.6.3.1", "oid"), "2": SnmpValue(f"{UPS}.6.3.2", "oid")}
    (row,) = rows_of(profiles, "ups_rfc1628", ups_snapshot(bad, source=5), "snmp_ups")
    assert row.fields["replace_battery"] is True
    assert row.fields["on_battery"] is True
    assert row.fields["runtime_s"] == 420


def test_on_battery_alarm_alone_means_on_battery(profiles) -> None:
    snapshot = ups_snapshot({"7": SnmpValue(f"{UPS}.6.3.2", "oid")})
    del snapshot.scalars[f"{UPS}.4.1.0"]
    (row,) = rows_of(profiles, "ups_rfc1628", snapshot, "snmp_ups")
    assert row.fields["on_battery"] is True


def test_redacted_codes_are_unknown_not_false(profiles) -> None:
    apc = "1.3.6.1.4.1.318.1.1.1"
    private = SnmpValue("<private>", "string")
    snapshot = Snapshot(scalars={f"{apc}.4.1.1.0": private, f"{apc}.2.2.4.0": private, f"{apc}.2.2.3.0": private})
    (row,) = rows_of(profiles, "apc_ups", snapshot, "snmp_ups")
    assert row.fields["on_battery"] is None
    assert row.fields["replace_battery"] is None
    assert row.fields["runtime_s"] is None
    assert row.fields["status"] == "unknown"


def test_empty_alarm_table_is_false_unreadable_is_unknown(profiles) -> None:
    (empty,) = rows_of(profiles, "ups_rfc1628", ups_snapshot({}), "snmp_ups")
    (unread,) = rows_of(profiles, "ups_rfc1628", ups_snapshot(None), "snmp_ups")
    assert empty.fields["replace_battery"] is False
    assert unread.fields["replace_battery"] is None


def test_load_is_the_busiest_output_line(profiles) -> None:
    (row,) = rows_of(profiles, "ups_rfc1628", ups_snapshot({}, loads=(24, 91, 28)), "snmp_ups")
    assert row.fields["load_percent"] == 91


def test_apc_three_phase_load_is_the_busiest_phase(profiles) -> None:
    apc = "1.3.6.1.4.1.318.1.1.1"
    snapshot = Snapshot(
        scalars={f"{apc}.4.1.1.0": i(3), f"{apc}.4.3.3.0": SnmpValue(450, "gauge")},
        columns={f"{apc}.9.3.3.1.10": {"1.1.1": i(40), "1.1.2": i(93), "1.1.3": i(42)}},
    )
    (row,) = rows_of(profiles, "apc_ups", snapshot, "snmp_ups")
    assert row.fields["load_percent"] == 93
    assert row.fields["on_battery"] is True and row.fields["output_source"] == "battery"
    # Phase table unsupported (-1): the high-precision total, in tenths.
    snapshot.columns[f"{apc}.9.3.3.1.10"] = {"1.1.1": i(-1)}
    (row,) = rows_of(profiles, "apc_ups", snapshot, "snmp_ups")
    assert row.fields["load_percent"] == 45.0


def test_qnap_legacy_disk_table_stands_in(profiles) -> None:
    hd = "1.3.6.1.4.1.24681.1.2.11.1"
    snapshot = Snapshot(
        columns={
            f"{hd}.2": {"1": SnmpValue("HDD1", "string"), "2": SnmpValue("HDD2", "string")},
            f"{hd}.3": {"1": SnmpValue("41 C/105 F", "string"), "2": SnmpValue("--", "string")},
            f"{hd}.4": {"1": i(0), "2": i(-9)},
            f"{hd}.7": {"1": SnmpValue("Warning", "string"), "2": SnmpValue("--", "string")},
        }
    )
    disks = {r.tags["disk"]: r.fields for r in rows_of(profiles, "qnap", snapshot, "snmp_disk")}
    assert disks["HDD1"] == {"status": "ready", "smart": "warning", "temperature_c": 41, "state": "warn"}
    assert disks["HDD2"] == {"status": "rwError", "smart": None, "temperature_c": None, "state": "crit"}


def test_walk_column_only_in_scalar_tables(tmp_path) -> None:
    (tmp_path / "bad.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "bad",
                "tables": [
                    {"id": "t", "measurement": "snmp_ups", "columns": {"a": {"oid": "1.3.6.1.2", "walk": True}}}
                ],
            }
        )
    )
    with pytest.raises(ProfileError, match="walk"):
        ProfileSet.load(tmp_path)


def test_synology_needs_its_system_status_to_answer(profiles) -> None:
    linux = "1.3.6.1.4.1.8072.3.2.10"
    descr = "Linux nas0 3.2.101 #42962 armv7l"
    assert profiles.probes(linux, descr) == ["1.3.6.1.4.1.6574.1.1.0", "1.3.6.1.2.1.25.1.4.0"]
    assert profiles.detect(linux, descr, present={"1.3.6.1.4.1.6574.1.1.0"}).name == "synology_dsm"
    assert profiles.detect(linux, descr).name != "synology_dsm"
    # Devices matching no probing profile cost no extra request.
    assert profiles.probes("1.3.6.1.4.1.9.1.1208", "Cisco IOS Software") == []


def test_degraded_virtual_disk_and_failed_physical_disk_are_critical(profiles) -> None:
    vd, pd = "1.3.6.1.4.1.674.10892.5.5.1.20.140.1.1", "1.3.6.1.4.1.674.10892.5.5.1.20.130.4.1"
    snapshot = Snapshot(
        columns={
            f"{vd}.4": {"1": i(4), "2": i(2)},
            f"{vd}.2": {"1": SnmpValue("VD1", "string"), "2": SnmpValue("VD2", "string")},
            f"{pd}.4": {"1": i(7), "2": i(3)},
            f"{pd}.31": {"1": i(1), "2": i(2)},
        }
    )
    raid = {r.tags["array"]: r.fields for r in rows_of(profiles, "idrac", snapshot, "snmp_raid")}
    disks = {r.index: r.fields for r in rows_of(profiles, "idrac", snapshot, "snmp_disk")}
    assert raid["VD1"]["state"] == "crit" and raid["VD1"]["status"] == "degraded"
    assert raid["VD2"]["state"] == "ok"
    assert disks["1"]["state"] == "crit" and disks["1"]["status"] == "failed"
    # Online but SMART predicts a failure: replace it before it fails.
    assert disks["2"]["state"] == "warn" and disks["2"]["smart"] == "predictiveFailure"


def test_family_rules_have_the_shared_shape() -> None:
    for family in ("ups", "nas", "idrac"):
        rules = yaml.safe_load((RULES / f"{family}.yaml").read_text(encoding="utf-8"))
        assert rules, family
        for rule in rules:
            # The same model the agent validates the config's rules with.
            Rule.model_validate(rule)
            assert rule["name"].startswith(family + "_")


def test_on_battery_sample_fires_the_ups_rules(profiles) -> None:
    rules = {r["name"]: r for r in yaml.safe_load((RULES / "ups.yaml").read_text(encoding="utf-8"))}
    (row,) = rows_of(profiles, "ups_rfc1628", ups_snapshot({}, source=5), "snmp_ups")
    assert compile_expression(rules["ups_on_battery"]["when"]).evaluate(row.fields) is True
    assert compile_expression(rules["ups_runtime_low"]["when"]).evaluate(row.fields) is True
    assert rules["ups_on_battery"]["severity"] == "critical" and rules["ups_on_battery"]["for_s"] == 0
    (mains,) = rows_of(profiles, "ups_rfc1628", ups_snapshot({}), "snmp_ups")
    assert compile_expression(rules["ups_on_battery"]["when"]).evaluate(mains.fields) is False
