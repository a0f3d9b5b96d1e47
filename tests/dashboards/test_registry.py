"""The registry (docs/METRICS.md read as data) against the dashboards, the rules, the reports and
what the agent really emitted in the lab (fixtures/lab_samples.jsonl.gz)."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from agent.config import BUILTIN_RULES
from agent.plugins import Plugins
from dashboards.catalog import DASHBOARDS
from dashboards.registry import INTERNAL, METRICS_MD, SNAPSHOT, RegistryError, load, parse

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "lab_samples.jsonl.gz"
TYPES = {"str": str, "int": int, "float": float, "bool": bool}
# What reads a measurement besides the dashboards and the rules: the reports and the web app.
READERS = ("agent/report", "agent/web", "agent/views")


@pytest.fixture(scope="module")
def registry():
    return load()


def test_every_measurement_heading_of_metrics_md_is_read(registry) -> None:
    text = METRICS_MD.read_text(encoding="utf-8")
    headed = set(re.findall(r"^#{3,4} `([a-z0-9_]+)`", text, re.MULTILINE))
    assert headed - {"postgresql_server"} <= set(registry.measurements)
    # the shapes the format allows: several names per row, a pattern row, a sub-section, tag sentences
    assert registry["snmp_interface"].fields["in_bps"] == {"float"}
    assert registry["snmp_cpu"].fields["usage_percent"] == {"float"}
    assert {"queue_store", "queue_state", "queue_alerts", "queue_spool_points"} <= set(registry["vigie_agent"].fields)
    assert set(registry["postgresql_database"].fields) == {"present", "size_bytes", "connections"}
    assert set(registry["vigie_heartbeat"].fields) == {"ok", "error", "peers"}
    assert registry["collection"].tags == {"collector"}
    assert registry["report_delivery"].tags == {"client", "report"}
    assert registry["cisco_cli_fan"].tags == {"switch", "fan"}
    assert "profile" in registry["snmp_ups"].all_tags
    assert "client" not in registry["vigie_agent"].all_tags


def test_a_measurement_without_fields_or_with_an_unknown_type_is_refused() -> None:
    with pytest.raises(RegistryError, match="no field table for thing"):
        parse("### `thing` — collector `x`, one per poll\n\nNo table.\n")
    with pytest.raises(RegistryError, match="type 'number'"):
        parse("### `thing` — one per poll\n\n| field | type | meaning |\n|---|---|---|\n| `a` | number | x |\n")


def test_the_build_snapshot_has_the_types_of_every_field_the_dashboards_read(registry) -> None:
    """Only those: another author's new table must not wait for `python -m dashboards.registry`."""
    snapshot = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    stale = {(s.measurement, s.field) for spec in DASHBOARDS for s in spec.series()
             if set(snapshot.get(s.measurement, {}).get(s.field, ())) != registry[s.measurement].fields.get(s.field)}
    assert sorted(stale) == [], "run: python -m dashboards.registry"


def test_every_dashboard_query_names_a_documented_field_and_tags(registry) -> None:
    problems = []
    for spec in DASHBOARDS:
        for series in spec.series():
            found = registry.check(series.measurement, (series.field,), series.tags)
            if not found and series.true_share:
                found = [] if registry[series.measurement].fields[series.field] == {"bool"} else ["not a bool"]
            problems += [f"{spec.uid}: {p}" for p in found]
    assert problems == []


def _rule_measurements() -> set[str]:
    rules = [*BUILTIN_RULES, *Plugins.discover().default_rules()]
    return {rule.measurement for rule in rules}


def _reader_measurements(names: set[str]) -> set[str]:
    literals: set[str] = set()
    for folder in READERS:
        where = ROOT / folder
        for path in [where] if where.is_file() else where.rglob("*.py"):
            literals |= set(re.findall(r"[\"']([a-z0-9_]+)[\"']", path.read_text(encoding="utf-8")))
    return names & literals


def test_every_measurement_is_used_by_a_dashboard_a_rule_or_a_report_or_declared_internal(registry) -> None:
    names = set(registry.measurements)
    dashboards = {s.measurement for spec in DASHBOARDS for s in spec.series()}
    # the topology reads the links the plugins declare (PluginSpec.edge_sources)
    topology = set(Plugins.discover().edge_sources())
    used = dashboards | _rule_measurements() | _reader_measurements(names) | topology
    assert sorted(names - used - set(INTERNAL)) == []
    assert sorted(set(INTERNAL) & used) == [], "declared internal but used: drop them from INTERNAL"


# Emitted in the lab but absent from docs/METRICS.md's tables: their collector's author owes the rows
# (left to them, reported). The test fails when one is fixed, so that the list shrinks with them.
UNDOCUMENTED: dict[str, str] = {}
FIELD_GAPS = {
    # JetStream's extras are named in the "Switch families" prose, not in the tables
    "snmp_cpu.usage_1m_percent: not documented",
    "snmp_cpu.usage_5m_percent: not documented",
    "snmp_sensor.limit_w: not documented",
    "snmp_sensor.port_descr: not documented",
}


def test_what_the_lab_emitted_is_documented_with_its_types(registry) -> None:
    with gzip.open(FIXTURE, "rt", encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    assert {r["measurement"] for r in rows} - set(registry.measurements) == set(UNDOCUMENTED)
    wrong = set()
    for row in rows:
        if row["measurement"] in UNDOCUMENTED:
            continue
        known = registry[row["measurement"]]
        for name, value in row["fields"].items():
            if name not in known.fields:
                wrong.add(f"{row['measurement']}.{name}: not documented")
            elif value is not None and type(value).__name__ not in known.fields[name]:
                wrong.add(f"{row['measurement']}.{name}: {type(value).__name__}, documented as "
                          f"{'/'.join(sorted(known.fields[name]))}")
    # Tags are not checked here: a device's inventory tags (role, model, ...) ride on all its samples.
    assert sorted(wrong) == sorted(FIELD_GAPS)
