"""A client's daily aggregates over a period, every numeric field of every series: the metrics
export of the web app (one row per series, field and local day), from the rollups read-only."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from agent.statedir import StateDir
from agent.views.db import read_only, rows


@dataclass(frozen=True)
class DailyMetric:
    day: dt.date
    measurement: str
    device: str
    series: str  # the other tags, "key=value,..." (an interface, a disk)
    field: str
    min: float
    max: float
    avg: float
    last: float
    count: int


def daily_metrics(files: StateDir, client: str, first: dt.date, last: dt.date) -> list[DailyMetric]:
    with read_only(files.state_db) as conn:
        found = rows(
            conn,
            "SELECT s.measurement, s.tags, d.field, d.day, d.min, d.max, d.sum, d.count, d.last FROM daily d"
            " JOIN series s ON s.id = d.series_id"
            " WHERE s.id IN (SELECT series_id FROM series_tag WHERE key = 'client' AND value = ?)"
            " AND d.day >= ? AND d.day <= ? ORDER BY d.day, s.measurement, s.tags, d.field",
            (client, first.isoformat(), last.isoformat()),
        )
    metrics = []
    for row in found:
        tags = json.loads(row["tags"])
        rest = ",".join(f"{k}={v}" for k, v in sorted(tags.items()) if k not in ("client", "site", "device"))
        metrics.append(DailyMetric(dt.date.fromisoformat(row["day"]), row["measurement"], tags.get("device", ""),
                                   rest, row["field"], row["min"], row["max"], row["sum"] / row["count"],
                                   row["last"], row["count"]))
    return metrics
