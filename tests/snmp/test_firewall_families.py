"""Firewall families on situations the recordings do not show: a failover swap, a failed unit,
failover off, an expiring or expired licence, a lost HA peer, a crashed service. Profiles
cisco_firewall / sophos_xg are evaluated on hand-made snapshots and their default rules applied."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from agent.api.expressions import compile_expression
from collectors.snmp.client import SnmpValue
from collectors.snmp.engine import CounterStore, Row, Snapshot, evaluate
from collectors.snmp.profile import PROFILES_DIR, ProfileSet

NOW = 1795428000.0  # 2026-11-23 10:00:00 UTC
DAY = 86400
CFW_STATUS = "1.3.6.1.4.1.9.9.147.1.2.1.1.1.3"
CFW_INFO = "1.3.6.1.4.1.9.9.147.1.2.1.1.1.2"
SFOS = "1.3.6.1.4.1.2604.5.1"


@pytest.fixture(scope="module")
def profiles() -> ProfileSet:
    return ProfileSet.load()


def _rules(family: str) -> list[dict[str, Any]]:
    return yaml.safe_load((PROFILES_DIR / "rules" / f"{family}.yaml").read_text(encoding="utf-8"))


def _firing(family: str, rows: list[Row]) -> list[tuple[str, dict[str, str]]]:
    """(rule name, row tags) for every rule whose match and `when` hold on a row."""
    fired = []
    for rule in _rules(family):
        when = compile_expression(rule["when"])
        for row in rows:
            if row.measurement != rule["measurement"]:
                continue
            if any(row.tags.get(k, "") != v for k, v in (rule.get("match") or {}).items()):
                continue
            if when.evaluate(row.fields, row.tags) is True:
                fired.append((rule["name"], row.tags))
    return fired


def _int(value: int) -> SnmpValue:
    return SnmpValue(value, "integer")


def _text(value: str) -> SnmpValue:
    return SnmpValue(value, "string")


def _cisco(profiles: ProfileSet, codes: dict[str, int], info: dict[str, str] | None = None) -> list[Row]:
    columns = {CFW_STATUS: {i: _int(c) for i, c in codes.items()}}
    if info:
        columns[CFW_INFO] = {i: _text(t) for i, t in info.items()}
    rows = evaluate(profiles.get("cisco_firewall"), Snapshot(columns=columns, read_at=NOW), CounterStore(), 0.0)
    return [r for r in rows if r.measurement == "snmp_failover"]


def test_failover_rows_carry_unit_state_and_peer(profiles: ProfileSet) -> None:
    info = {"4": "Failover LAN Interface", "6": "Primary unit (this device)", "7": "Secondary unit"}
    rows = _cisco(profiles, {"4": 2, "6": 9, "7": 10}, info)
    assert [(r.tags["unit"], r.tags["role"], r.fields["state"], r.fields["peer_state"]) for r in rows] == [
        ("primary", "local", "active", "standby"),
        ("secondary", "peer", "standby", "active"),
    ]
    assert _firing("cisco_firewall", rows) == []


def test_swap_fires_on_the_primary_only(profiles: ProfileSet) -> None:
    rows = _cisco(profiles, {"4": 2, "6": 10, "7": 9})  # FTD: no text columns, no role tag
    assert all("role" not in r.tags for r in rows)
    assert [(name, tags["unit"]) for name, tags in _firing("cisco_firewall", rows)] == [
        ("cisco_firewall_failover_swapped", "primary")
    ]


def test_failed_unit_fires_but_failover_off_does_not(profiles: ProfileSet) -> None:
    rows = _cisco(profiles, {"4": 2, "6": 9, "7": 4})
    assert [(name, tags["unit"]) for name, tags in _firing("cisco_firewall", rows)] == [
        ("cisco_firewall_unit_failed", "secondary")
    ]
    standalone = _cisco(profiles, {"4": 3, "6": 3, "7": 3})
    assert [r.fields["state"] for r in standalone] == ["down", "down"]
    assert _firing("cisco_firewall", standalone) == []


def _sophos(profiles: ProfileSet, scalars: dict[str, SnmpValue], columns: dict[str, dict[str, SnmpValue]]) -> list[Row]:
    snapshot = Snapshot(columns=columns, scalars=scalars, read_at=NOW)
    return evaluate(profiles.get("sophos_xg"), snapshot, CounterStore(), 0.0)


def test_licences_expiry_days_and_rules(profiles: ProfileSet) -> None:
    licences = {
        "1.1.0": _int(3), "1.2.0": _text("Dec 31 2999"),  # base firewall, perpetual
        "2.1.0": _int(3), "2.2.0": _text("Dec 03 2026"),  # network protection, 10 days left
        "3.1.0": _int(4), "3.2.0": _text("Nov 10 2025"),  # web protection, expired
        "4.1.0": _int(2), "4.2.0": _text("fail"),  # email protection, never bought
    }  # fmt: skip
    rows = [r for r in _sophos(profiles, {}, {f"{SFOS}.5": licences}) if r.measurement == "snmp_license"]
    by_name = {r.tags["license"]: r.fields for r in rows}
    assert by_name["base_firewall"]["days_left"] == 355419
    assert by_name["network_protection"] == {"status": "subscribed", "expires_at": 1796256000, "days_left": 10}
    assert by_name["web_protection"]["status"] == "expired"
    assert by_name["email_protection"] == {"status": "notsubscribed", "expires_at": None, "days_left": None}
    assert sorted((name, tags["license"]) for name, tags in _firing("sophos_xg", rows)) == [
        ("sophos_xg_license_expired", "web_protection"),
        ("sophos_xg_license_expiring", "network_protection"),
    ]


@pytest.mark.parametrize(
    ("status", "local", "peer", "fired"),
    [
        (1, 3, 1, []),  # primary + auxiliary: healthy pair
        (0, 0, 0, []),  # HA off
        (1, 3, 4, ["sophos_xg_ha_peer_lost"]),  # peer faulty
        (1, 2, 0, ["sophos_xg_ha_peer_lost", "sophos_xg_ha_local_faulty"]),  # left alone
    ],
)
def test_ha_rules(profiles: ProfileSet, status: int, local: int, peer: int, fired: list[str]) -> None:
    scalars = {f"{SFOS}.4.1.0": _int(status), f"{SFOS}.4.4.0": _int(local), f"{SFOS}.4.5.0": _int(peer)}
    rows = [r for r in _sophos(profiles, scalars, {}) if r.measurement == "snmp_ha"]
    assert [name for name, _tags in _firing("sophos_xg", rows)] == fired


def test_crashed_service_is_crit_and_stopped_is_not(profiles: ProfileSet) -> None:
    services = {"17.0": _int(3), "5.0": _int(1), "10.0": _int(5)}  # network running, http stopped, ips dead
    rows = [r for r in _sophos(profiles, {}, {f"{SFOS}.3": services}) if r.measurement == "snmp_service"]
    assert {r.tags["service"]: (r.fields["status"], r.fields["state"]) for r in rows} == {
        "network": ("running", "ok"),
        "http": ("stopped", "ok"),
        "ips": ("dead", "crit"),
    }
    assert [(name, tags["service"]) for name, tags in _firing("sophos_xg", rows)] == [("sophos_xg_service_down", "ips")]


def test_rules_files_are_valid_rule_specs() -> None:
    from agent.api import Rule

    for family in ("cisco_firewall", "sophos_xg"):
        names = [Rule.model_validate(rule).name for rule in _rules(family)]
        assert all(name.startswith(family + "_") for name in names)
        assert len(names) == len(set(names))


def test_redacted_or_missing_values_are_unknown_not_text(profiles: ProfileSet) -> None:
    conn = "1.3.6.1.4.1.9.9.147.1.2.2.2.1.5.40"
    snapshot = Snapshot(scalars={f"{conn}.6": _text("<private>")}, read_at=NOW)
    rows = evaluate(profiles.get("cisco_firewall"), snapshot, CounterStore(), 0.0)
    assert [r.fields for r in rows if r.measurement == "snmp_connections"] == [{"active": None, "max": None}]

    scalars = {f"{SFOS}.4.1.0": _text("<private>"), f"{SFOS}.4.4.0": _int(3)}
    (ha,) = [r for r in _sophos(profiles, scalars, {}) if r.measurement == "snmp_ha"]
    assert ha.fields == {"enabled": None, "mode": None, "state": "primary", "peer_state": "unknown"}
    assert _firing("sophos_xg", [ha]) == []

    scalars = {f"{SFOS}.4.1.0": _int(1), f"{SFOS}.4.4.0": _int(3)}  # HA on, peer state not read
    (ha,) = [r for r in _sophos(profiles, scalars, {}) if r.measurement == "snmp_ha"]
    assert _firing("sophos_xg", [ha]) == []
    half_read = _cisco(profiles, {"6": 9})  # secondary's status missing
    assert [(r.tags["unit"], r.fields["state"]) for r in half_read] == [("primary", "active")]
    assert _firing("cisco_firewall", half_read) == []
