"""A table's filter terms that read only columns are tried before the fields: a dropped row
costs no field (entPhysicalTable: 169 of a Catalyst's 172 rows), and nothing else changes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from collectors.snmp import engine
from collectors.snmp.client import SnmpValue
from collectors.snmp.engine import CounterStore, Snapshot, evaluate
from collectors.snmp.profile import ProfileSet

KIND, NAME, OCTETS = "1.3.6.1.9.1", "1.3.6.1.9.2", "1.3.6.1.9.3"
PROFILE = """
name: early
tables:
  - id: parts
    measurement: snmp_parts
    columns: {kind: 1.3.6.1.9.1, name: 1.3.6.1.9.2}
    vars: {wanted: "kind in (3, 9)"}
    fields: {label: "strip(name) or None", lowered: "lower(label)"}
    filter: "wanted and kind != 9 and label is not None and index != '7'"
  - id: links
    measurement: snmp_links
    columns: {kind: 1.3.6.1.9.1, octets: 1.3.6.1.9.3}
    fields: {bytes_per_s: "rate(octets)"}
    filter: "kind == 3"
  - id: inventory
    measurement: snmp_inventory
    columns: {kind: 1.3.6.1.9.1, name: 1.3.6.1.9.2, alias: {oid: 1.3.6.1.9.2, join: "kind"}}
    fields: {label: "strip(name) or None", aliased: "alias is not None"}
    filter: "kind in (3, 9) and label is not None"
"""


@pytest.fixture
def profile(tmp_path: Path):
    (tmp_path / "early.yaml").write_text(PROFILE)
    return ProfileSet.load(tmp_path).get("early")


def test_the_leading_terms_that_read_columns_and_vars_only(profile) -> None:
    parts, links, inventory = profile.tables
    # `label` is a field: the terms from it on stay where they were, after the fields
    assert parts.early_filter.source == "(wanted) and (kind != 9)"
    assert links.early_filter is None  # a rate is read on every row, filtered or not
    assert parts.early_columns is None  # its early filter reads a var: every column is read first
    assert [c.name for c in inventory.early_columns] == ["kind"]


def forty_rows() -> Snapshot:
    """40 rows: kind 3 every fourth (row 8 with a blank name), kind 10 the others."""
    kinds = {str(i): SnmpValue(3 if i % 4 == 0 else 10, "integer") for i in range(1, 41)}
    names = {str(i): SnmpValue(f" part{i} " if i != 8 else "  ", "string") for i in range(1, 41)}
    return Snapshot(columns={KIND: kinds, NAME: names})


def calls_of(monkeypatch, name: str, what: Callable[..., object]) -> list:
    """``what(*args)`` of every call of the engine's function ``name`` from now on."""
    seen: list = []
    real = getattr(engine, name)

    def counted(*args):
        seen.append(what(*args))
        return real(*args)

    monkeypatch.setattr(engine, name, counted)
    return seen


def test_a_row_dropped_early_computes_no_field_and_the_rows_kept_are_the_same(profile, monkeypatch) -> None:
    computed = calls_of(monkeypatch, "_compute", lambda spec, env, stateful: spec)
    rows = [row for row in evaluate(profile, forty_rows(), CounterStore(), now=0.0) if row.table == "parts"]
    kept = (4, 12, 16, 20, 24, 28, 32, 36, 40)  # kind 3, less row 8 (a blank name)
    assert [(row.index, row.fields["label"]) for row in rows] == [(str(i), f"part{i}") for i in kept]
    fields = {id(spec) for _, spec in profile.tables[0].fields}
    assert sum(id(spec) in fields for spec in computed) == 2 * 10  # the 10 rows of kind 3 only, not the 40


def test_a_table_whose_fields_keep_state_reads_them_on_the_rows_it_drops(profile) -> None:
    store = CounterStore()
    octets = {"1": SnmpValue(1_000, "counter64")}
    first = Snapshot(columns={KIND: {"1": SnmpValue(10, "integer")}, OCTETS: octets})
    assert [r for r in evaluate(profile, first, store, now=0.0) if r.table == "links"] == []
    octets = {"1": SnmpValue(61_000, "counter64")}
    second = Snapshot(columns={KIND: {"1": SnmpValue(3, "integer")}, OCTETS: octets})
    (link,) = [r for r in evaluate(profile, second, store, now=60.0) if r.table == "links"]
    assert link.fields["bytes_per_s"] == pytest.approx(1_000.0)  # the reading of the dropped row counted


def test_a_row_dropped_early_reads_only_the_columns_its_filter_reads(profile, monkeypatch) -> None:
    snapshot = forty_rows()
    read = calls_of(monkeypatch, "_read_column", lambda table, column, *rest: (table.id, column.name))
    inventory = profile.tables[2]
    rows = [row for row in evaluate(profile, snapshot, CounterStore(), now=0.0) if row.table == "inventory"]
    kept = [i for i in range(4, 41, 4) if i != 8]  # kind 3, less row 8 (a blank name)
    assert [(row.index, row.fields["label"]) for row in rows] == [(str(i), f"part{i}") for i in kept]
    # 30 rows of kind 10 read their kind only; the 10 of kind 3 read it, then the two others
    assert read.count(("inventory", "kind")) == 40 and read.count(("inventory", "name")) == 10
    assert read.count(("inventory", "alias")) == 10
    # the rows are those of the same table read column by column, with the same OIDs read
    whole = dataclasses.replace(profile, tables=(dataclasses.replace(inventory, early_columns=None),))
    assert evaluate(whole, snapshot, CounterStore(), now=0.0) == rows
    assert rows[0].oids == {"kind": f"{KIND}.4", "name": f"{NAME}.4", "alias": f"{NAME}.3"}
