"""The rollups' latest values of a client's devices, read straight from the state file (read-only):
what the inventory, the backup coverage and a device's page show.

One query per client (the ``series_tag`` index on ``client``), grouped per series: a page never
opens the file once per device or measurement.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass

from agent.api import FieldValue
from agent.statedir import StateDir
from agent.views.db import read_only, rows


@dataclass(frozen=True)
class SeriesLatest:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    at: float  # the newest of its fields' timestamps, epoch seconds


def latest_series(
    files: StateDir, client: str, device: str | None = None, measurements: Collection[str] | None = None
) -> list[SeriesLatest]:
    """Every series of ``client`` (only ``device``'s, only those of ``measurements``, when given)
    with its fields' last values, by measurement then tags."""
    sql = (
        "SELECT s.measurement, s.tags, l.field, l.value, l.ts FROM latest l JOIN series s ON s.id = l.series_id"
        " WHERE s.id IN (SELECT series_id FROM series_tag WHERE key = 'client' AND value = ?)"
    )
    params: list[str] = [client]
    if device is not None:
        sql += " AND s.id IN (SELECT series_id FROM series_tag WHERE key = 'device' AND value = ?)"
        params.append(device)
    if measurements is not None:
        sql += f" AND s.measurement IN ({', '.join('?' * len(measurements)) or 'NULL'})"
        params += measurements
    with read_only(files.state_db) as conn:
        found = rows(conn, sql + " ORDER BY s.measurement, s.tags, l.field", params)
    grouped: dict[tuple[str, str], SeriesLatest] = {}
    for row in found:
        key = (row["measurement"], row["tags"])
        series = grouped.get(key)
        if series is None:
            series = grouped[key] = SeriesLatest(row["measurement"], json.loads(row["tags"]), {}, 0.0)
        series.fields[row["field"]] = row["value"]
        if row["ts"] / 1e9 > series.at:
            grouped[key] = SeriesLatest(series.measurement, series.tags, series.fields, row["ts"] / 1e9)
    return list(grouped.values())


def agent_health(files: StateDir) -> list[SeriesLatest]:
    """The agent's own health samples (``vigie_agent``, one series per agent name), last values."""
    with read_only(files.state_db) as conn:
        found = rows(
            conn,
            "SELECT s.measurement, s.tags, l.field, l.value, l.ts FROM latest l JOIN series s ON s.id = l.series_id"
            " WHERE s.measurement = 'vigie_agent' ORDER BY s.tags, l.field",
        )
    grouped: dict[str, SeriesLatest] = {}
    for row in found:
        series = grouped.setdefault(row["tags"], SeriesLatest(row["measurement"], json.loads(row["tags"]), {}, 0.0))
        series.fields[row["field"]] = row["value"]
    return list(grouped.values())
