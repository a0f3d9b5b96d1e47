"""A collector's samples checked against docs/METRICS.md, read by the one registry the dashboards
use (dashboards/registry.py): every emitted field documented with its type, and which documented
fields were seen with a value."""

from __future__ import annotations

from collections.abc import Iterable

from agent.api import Sample
from dashboards.registry import load

PY_TYPES = {"str": str, "int": int, "float": float, "bool": bool}


def documented(source: str) -> dict[str, dict[str, frozenset[str]]]:
    """The measurements docs/METRICS.md attributes to ``source`` (a collector): field -> types."""
    return {name: m.fields for name, m in load().measurements.items() if m.source == source}


def check(samples: Iterable[Sample], tables: dict[str, dict[str, frozenset[str]]]) -> set[tuple[str, str]]:
    """Assert each sample (the `collection` ones aside) has exactly its table's fields, each value
    of a documented type; return the (measurement, field) pairs seen with a value."""
    seen: set[tuple[str, str]] = set()
    for sample in samples:
        if sample.measurement == "collection":
            continue
        table = tables[sample.measurement]
        assert set(sample.fields) == set(table), sample.measurement
        for name, value in sample.fields.items():
            if value is not None:
                allowed = tuple(PY_TYPES[t] for t in table[name])
                assert type(value) in allowed, (sample.measurement, name, value, type(value))
                seen.add((sample.measurement, name))
    return seen
