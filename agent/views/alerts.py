"""Alerts as the alert engine last committed them (alerting/engine.py's ``alerts`` table)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.api import SEVERITIES
from agent.statedir import StateDir
from agent.views.db import as_float, as_str, read_only, rows

ACTIVE_STATES = ("pending", "firing")
# Firing first (they page), then pending, then history.
_STATE_ORDER = {"firing": 0, "pending": 1, "resolved": 2}


@dataclass(frozen=True)
class AlertRow:
    client: str
    device: str
    severity: str
    rule: str
    summary: str
    state: str  # pending | firing | resolved
    since: float  # when it entered its state: started (pending), fired, resolved; epoch seconds
    started_at: float  # its first bad sample
    fired_at: float | None
    resolved_at: float | None
    last_sample_at: float | None
    inhibited_by: str | None  # "client/device" holding it pending
    fingerprint: str
    labels: Mapping[str, str] = field(default_factory=dict)


def alert_rows(files: StateDir, *, include_resolved: bool = False, client: str | None = None) -> list[AlertRow]:
    """Pending and firing alerts (and resolved ones with ``include_resolved``): firing first, then
    by severity, client, device and time."""
    where, params = ("", ()) if include_resolved else (" WHERE state IN (?, ?)", ACTIVE_STATES)
    with read_only(files.alerts_db) as conn:
        found = rows(conn, f"SELECT * FROM alerts{where} ORDER BY id", params)
    alerts = [_row(row) for row in found]
    alerts = [a for a in alerts if client is None or a.client == client]
    rank = {severity: i for i, severity in enumerate(SEVERITIES)}
    return sorted(
        alerts,
        key=lambda a: (_STATE_ORDER.get(a.state, 3), rank.get(a.severity, len(rank)), a.client, a.device, a.since),
    )


def _row(row: Mapping[str, object]) -> AlertRow:
    labels: dict[str, str] = json.loads(str(row["labels"]))
    state = str(row["state"])
    started_at = float(row["started_at"])  # type: ignore[arg-type]
    fired_at = as_float(row["fired_at"])
    resolved_at = as_float(row["resolved_at"])
    since = {"firing": fired_at, "resolved": resolved_at}.get(state) or started_at
    return AlertRow(
        client=labels.get("client", ""),
        device=labels.get("device", ""),
        severity=str(row["severity"]),
        rule=str(row["rule"]),
        summary=str(row["summary"]),
        state=state,
        since=since,
        started_at=started_at,
        fired_at=fired_at,
        resolved_at=resolved_at,
        last_sample_at=as_float(row["last_sample_at"]),
        inhibited_by=as_str(row["inhibited_by"]),
        fingerprint=str(row["fingerprint"]),
        labels=labels,
    )
