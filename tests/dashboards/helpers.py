"""What the TSDB tests share: the recorded lab samples, moved to the last minutes, and Grafana's
substitutions for the dashboards' variables."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from agent.api import Sample

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "lab_samples.jsonl.gz"
# VictoriaMetrics hides the last 30 s from queries (-search.latencyOffset): the samples end before.
END_BEFORE_NOW_S = 120
RANGE = "1h"
INTERVAL = "5m"


def lab_samples(now_ns: int) -> list[Sample]:
    with gzip.open(FIXTURE, "rt", encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    end = now_ns - END_BEFORE_NOW_S * 10**9
    return [Sample(r["measurement"], r["tags"], r["fields"], end - r["age_ns"]) for r in rows]


def all_values(query: str, all_value: str = ".*") -> str:
    """The query as Grafana sends it for "All" on every variable (their `allValue` is `.*`)."""
    for tag in ("client", "site", "device"):
        query = query.replace(f"${tag}", all_value)
    return query
