"""The alert SLA, measured by the agent from its own records, per client and local day.

- KPI 3 (the public body): "a critical monitoring alert is taken in charge within 5 minutes, 95 %
  of the time": the share of critical alerts whose ticket someone took in charge in the ITSM within
  5 minutes of their onset (the first failing sample, or the trap) — the time each ITSM records,
  read back by alerting/acknowledgement.py (GLPI's ``takeintoaccountdate``, ``vigie tickets take``
  in the built-in log) — and the onset -> taken latency, p50 and p99; beside it, what vigie
  controls alone: the share ticketed within 5 minutes and the onset -> ticket latency;
- KPI 19: availability of each supervised device/service over the client's service hours and over
  the 24 h (the StateDB's intervals; turns not run are unknown, never down), against its target;
- restore times: for each alert solved that day, its restore time counted in the service hours
  (holidays out) against the contract's GTR for its severity (``clients[].gtr_hours``).

The figures come from the state directory, read-only (agent/report/data.py gathers the same things
for the reports); ``vigie sla`` prints them and the agent emits them once a day as ``sla_daily``
samples (docs/METRICS.md). A ticket nobody has taken in charge (yet), and an alert without a
ticket, count as not taken in time; a receiver that cannot say (e-mail, webhook, Teams) leaves
every one of its alerts not taken.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from agent.api import Sample
from agent.config import Client
from agent.report.data import (
    SLA_TICKET_WITHIN_S,
    Availability,
    availability,
    day_window,
    open_rollups,
    service_windows,
    sla,
    until_now,
)
from agent.statedir import StateDir
from agent.views import alert_rows, ticket_rows, transmission_rows

MEASUREMENT = "sla_daily"


@dataclass(frozen=True)
class Restore:
    device: str
    rule: str
    severity: str
    started_at: float
    solved_at: float
    service_s: float  # the restore time in the client's service hours
    gtr_s: float | None  # the contract's, for its severity

    @property
    def within_gtr(self) -> bool | None:
        return None if self.gtr_s is None else self.service_s <= self.gtr_s


@dataclass(frozen=True)
class SlaDay:
    client: str
    day: dt.date
    critical_alerts: int
    ticketed_within_5min: int
    without_ticket: int
    p50_onset_to_ticket_s: float | None
    p99_onset_to_ticket_s: float | None
    target_pct: float
    # critical alerts of the client's own equipment (its perimeter): passed on to its contact,
    # delivered, instead of a ticket; not counted in without_ticket
    transmitted: int = 0
    availability: list[Availability] = field(default_factory=list)
    restores: list[Restore] = field(default_factory=list)
    taken_within_5min: int = 0  # KPI 3: taken in charge in the ITSM within 5 min of the onset
    not_taken: int = 0  # critical alerts whose ticket nobody took in charge (yet), or without ticket
    p50_onset_to_taken_s: float | None = None
    p99_onset_to_taken_s: float | None = None

    @property
    def within_5min_pct(self) -> float | None:
        return None if not self.critical_alerts else 100.0 * self.ticketed_within_5min / self.critical_alerts

    @property
    def taken_within_5min_pct(self) -> float | None:
        return None if not self.critical_alerts else 100.0 * self.taken_within_5min / self.critical_alerts

    @property
    def services_below_target(self) -> int:
        return sum(a.meets_target is False for a in self.availability)

    @property
    def restores_within_gtr(self) -> int:
        return sum(r.within_gtr is True for r in self.restores)

    def to_json(self) -> str:
        data = asdict(self)
        data.update(day=self.day.isoformat(), within_5min_pct=self.within_5min_pct,
                    taken_within_5min_pct=self.taken_within_5min_pct,
                    services_below_target=self.services_below_target,
                    restores_within_gtr=self.restores_within_gtr)
        return json.dumps(data, ensure_ascii=False)


def sla_day(files: StateDir, client: Client, day: dt.date, now: float) -> SlaDay:
    """The SLA figures of ``client`` for its local ``day``, as known at ``now``."""
    window = until_now(day_window(client, day), now)
    alerts = alert_rows(files, include_resolved=True, client=client.name) if files.alerts_db.exists() else []
    tickets = ticket_rows(files, client=client.name) if files.outbox_db.exists() else []
    figures = sla(alerts, tickets, window)
    delivered = {(t.device, t.rule, t.started_at) for t in transmission_rows(files, client.name) if t.sent_at}
    ticketed = {(t.device, t.rule, t.started_at) for t in tickets if t.opened_at is not None}
    transmitted = sum(1 for a in alerts if a.severity == "critical" and a.fired_at is not None
                      and window[0] <= a.fired_at < window[1] and (a.device, a.rule, a.started_at) in delivered
                      and (a.device, a.rule, a.started_at) not in ticketed)
    target = client.report.target_pct
    found = availability(open_rollups(files), client, window, service_windows(client, day, day), target)
    resolved = {(a.device, a.rule, a.started_at): a for a in alerts if a.resolved_at is not None}
    restores = []
    for ticket in tickets:
        alert = resolved.get((ticket.device, ticket.rule, ticket.started_at))
        if alert is None or alert.resolved_at is None or not window[0] <= alert.resolved_at < window[1]:
            continue
        start = dt.datetime.fromtimestamp(alert.started_at, client.zone)
        end = dt.datetime.fromtimestamp(alert.resolved_at, client.zone)
        gtr = client.gtr_hours.get(alert.severity)
        restores.append(Restore(alert.device, alert.rule, alert.severity, alert.started_at, alert.resolved_at,
                                client.service_seconds(start, end), None if gtr is None else gtr * 3600))
    # the client's own equipment passed on to its contact: the provider's duty ends there
    return SlaDay(client.name, day, figures.critical, figures.ticketed_in_time, figures.without_ticket - transmitted,
                  figures.p50_onset_to_ticket_s, figures.p99_onset_to_ticket_s, target, transmitted, found, restores,
                  taken_within_5min=figures.taken_in_time, not_taken=figures.not_taken - transmitted,
                  p50_onset_to_taken_s=figures.p50_onset_to_taken_s, p99_onset_to_taken_s=figures.p99_onset_to_taken_s)


def daily_samples(figures: SlaDay, at_ns: int) -> list[Sample]:
    """``sla_daily``: one sample per client and day, stamped at the last nanosecond of that day."""
    tags = {"client": figures.client}
    known = [a.service_hours_pct for a in figures.availability if a.service_hours_pct is not None]
    return [Sample(MEASUREMENT, tags, {
        "critical_alerts": figures.critical_alerts,
        "ticketed_within_5min": figures.ticketed_within_5min,
        "within_5min_pct": figures.within_5min_pct,
        "without_ticket": figures.without_ticket,
        "transmitted": figures.transmitted,
        "p50_onset_to_ticket_s": figures.p50_onset_to_ticket_s,
        "p99_onset_to_ticket_s": figures.p99_onset_to_ticket_s,
        "taken_within_5min": figures.taken_within_5min,
        "taken_within_5min_pct": figures.taken_within_5min_pct,
        "not_taken": figures.not_taken,
        "p50_onset_to_taken_s": figures.p50_onset_to_taken_s,
        "p99_onset_to_taken_s": figures.p99_onset_to_taken_s,
        "services": len(figures.availability),
        "services_below_target": figures.services_below_target,
        "worst_service_hours_pct": min(known) if known else None,
        "restores": len(figures.restores),
        "restores_within_gtr": figures.restores_within_gtr,
    }, at_ns)]


class DailySla:
    """Emits each client's ``sla_daily`` samples once its local day is over (and catches up the
    day the agent was stopped across), remembering in the state directory which days it sent."""

    def __init__(self, clients: Sequence[Client], files: StateDir, clock: Callable[[], float],
                 submit: Callable[[Sequence[Sample]], object]) -> None:
        self.clients = list(clients)
        self.files = files
        self.clock = clock
        self.submit = submit
        self.marker = Path(files.path) / "sla_daily.json"

    async def tick(self) -> None:
        sent = json.loads(self.marker.read_text()) if self.marker.exists() else {}
        now = self.clock()
        changed = False
        for client in self.clients:
            yesterday = dt.datetime.fromtimestamp(now, client.zone).date() - dt.timedelta(days=1)
            if sent.get(client.name) == yesterday.isoformat():
                continue
            figures = sla_day(self.files, client, yesterday, now)
            end_ns = int(day_window(client, yesterday)[1] * 1e9) - 1
            await self.submit(daily_samples(figures, end_ns))  # type: ignore[misc]
            sent[client.name] = yesterday.isoformat()
            changed = True
        if changed:
            tmp = self.marker.with_suffix(".tmp")
            tmp.write_text(json.dumps(sent))
            tmp.replace(self.marker)


def table_lines(days: Sequence[SlaDay]) -> list[str]:
    """``vigie sla``'s table: one line per day, then the day's exceptions."""
    lines = [f"{'day':<10}  {'critical':>8}  {'taken<=5':>8}  {'p50':>7}  {'p99':>7}  {'ticket<=5':>9}  "
             f"{'p50':>7}  {'p99':>7}  {'services':>8}  {'<target':>7}  {'restores':>8}  {'<=GTR':>5}"]
    for d in days:
        lines.append(
            f"{d.day.isoformat():<10}  {d.critical_alerts:>8}  {_pct(d.taken_within_5min_pct):>8}  "
            f"{_s(d.p50_onset_to_taken_s):>7}  {_s(d.p99_onset_to_taken_s):>7}  {_pct(d.within_5min_pct):>9}  "
            f"{_s(d.p50_onset_to_ticket_s):>7}  {_s(d.p99_onset_to_ticket_s):>7}  {len(d.availability):>8}  "
            f"{d.services_below_target:>7}  {len(d.restores):>8}  {d.restores_within_gtr:>5}"
        )
        for a in d.availability:
            if a.meets_target is False:
                hours = "-" if a.service_hours_pct is None else f"{a.service_hours_pct:.2f}%"
                day = "-" if a.day_pct is None else f"{a.day_pct:.2f}%"
                lines.append(f"  below {d.target_pct:g}%: {a.device} ({a.service}) service hours {hours}, 24 h {day}")
        for r in d.restores:
            if r.within_gtr is False:
                lines.append(f"  over GTR: {r.device} {r.rule} ({r.severity}) restored in {r.service_s / 3600:.1f} h "
                             f"of service time, GTR {(r.gtr_s or 0) / 3600:g} h")
        if d.without_ticket:
            lines.append(f"  {d.without_ticket} critical alert(s) without a ticket")
        if d.transmitted:
            lines.append(f"  {d.transmitted} critical alert(s) of the client's own equipment passed on to its contact")
        if d.not_taken:
            lines.append(f"  {d.not_taken} critical alert(s) not taken in charge in the ITSM")
    lines.append(f"(taken in charge in the ITSM, and ticket created, within {SLA_TICKET_WITHIN_S / 60:g} min of the "
                 "onset: the first failing sample)")
    return lines


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.0f}s"
