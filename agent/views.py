"""Read-only terminal views of the agent's state: the built-in ticket log and the alerts."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table


def _when(epoch_s: float | None) -> str:
    return datetime.fromtimestamp(epoch_s).astimezone().strftime("%Y-%m-%d %H:%M:%S") if epoch_s else "-"


def _require(path: Path) -> bool:
    if path.exists():
        return True
    print(f"{path}: no such file — has the agent run with this state directory?", file=sys.stderr)
    return False


def print_tickets(state_dir: Path, as_json: bool = False) -> int:
    from alerting.ticketing.log import TicketLog

    path = state_dir / "tickets.sqlite"
    if not _require(path):
        return 1
    records = TicketLog(str(path)).list()
    if as_json:
        for record in records:
            print(json.dumps(asdict(record), ensure_ascii=False))
        return 0
    table = Table("id", "client", "severity", "title", "status", "opened", "solved", box=None)
    for r in records:
        table.add_row(str(r.id), r.client, r.severity, r.title, r.status, _when(r.opened_at), _when(r.solved_at))
    Console().print(table)
    return 0


def print_alerts(state_dir: Path, include_resolved: bool = False, as_json: bool = False) -> int:
    from alerting.engine import AlertEngine

    path = state_dir / "alerts.sqlite"
    if not _require(path):
        return 1
    states = None if include_resolved else ("pending", "firing")
    alerts = AlertEngine(str(path), []).alerts(states)
    if as_json:
        for alert in alerts:
            print(json.dumps(alert.to_dict(), ensure_ascii=False))
        return 0
    table = Table("state", "severity", "rule", "summary", "started", "fired", "resolved", box=None)
    for a in alerts:
        table.add_row(a.state, a.severity, a.rule, a.summary, _when(a.started_at), _when(a.fired_at),
                      _when(a.resolved_at))
    Console().print(table)
    return 0
