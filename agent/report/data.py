"""What a client's daily and monthly reports say, gathered from a state directory opened read-only.

Plain dataclasses, no rendering: the HTML mail, the XLSX workbook and (later) the web pages draw
them. Every figure comes from the agent's own files: the rollups (``state.sqlite``: latest values,
state intervals, daily aggregates), the alert engine's alerts and the ticket outbox, read through
``agent.views`` — never from a receiver or a TSDB, so a report works while either is down.

Availability is the share of the *known* time a service answered: time when the agent did not run
the turn (``skipped``, ``overloaded``) or knew nothing is unknown, left out of both sides and shown
on its own, never charged to the client as downtime.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent.config import Client, Config
from agent.report import sources as src
from agent.state import Interval, Latest, StateDB
from agent.statedir import StateDir
from agent.views import AlertRow, TicketRow, alert_rows, ticket_rows

SLA_TICKET_WITHIN_S = 300.0  # a critical alert is ticketed within 5 minutes
TREND_DAYS = 30
EXPIRY_WARN_DAYS = 30
MONTHS = 13
NS = 1_000_000_000
DELIVERY_FILE = "delivery.json"  # in each archived report: how its mailing went

Window = tuple[float, float]  # [start, end) in epoch seconds


@dataclass(frozen=True)
class Availability:
    device: str
    site: str
    service: str  # the collector or probe polling it
    day_pct: float | None  # over the 24 h; None when nothing is known
    service_hours_pct: float | None  # over the client's service hours of the day (None: none that day)
    down_s: float  # known down time over the 24 h
    unknown_pct: float  # share of the 24 h with no knowledge (not run, not polled)
    meets_target: bool | None  # both figures at the target or above; None when neither is known


@dataclass(frozen=True)
class AlertItem:
    device: str
    rule: str
    severity: str
    summary: str
    state: str
    started_at: dt.datetime
    fired_at: dt.datetime | None
    resolved_at: dt.datetime | None


@dataclass(frozen=True)
class TicketItem:
    device: str
    rule: str
    severity: str
    title: str
    status: str
    ticket_id: str | None
    url: str | None
    opened_at: dt.datetime | None
    solved_at: dt.datetime | None
    age_h: float | None  # still open: hours since it opened, at the report's time
    service_age_h: float | None  # the same counted in the client's service hours only: the GTR clock


@dataclass(frozen=True)
class Sla:
    critical: int  # critical alerts that fired in the window
    ticketed_in_time: int  # of them, ticketed within SLA_TICKET_WITHIN_S of their onset
    p99_onset_to_ticket_s: float | None
    without_ticket: int
    p50_onset_to_ticket_s: float | None = None
    # KPI 3 as the contract words it: taken in charge in the ITSM (read back) within SLA_TICKET_WITHIN_S
    taken_in_time: int = 0
    not_taken: int = 0  # critical alerts whose ticket nobody has taken in charge (yet), or without ticket
    p50_onset_to_taken_s: float | None = None
    p99_onset_to_taken_s: float | None = None

    @property
    def in_time_pct(self) -> float | None:
        return None if not self.critical else 100.0 * self.ticketed_in_time / self.critical

    @property
    def taken_in_time_pct(self) -> float | None:
        return None if not self.critical else 100.0 * self.taken_in_time / self.critical


@dataclass(frozen=True)
class Backup:
    device: str
    job: str
    # success | warning | failed | none (never ran) | missing: no success within the job's own
    # max_success_age_s, or the job not seen in the last 24 h
    result: str
    last_success_age_h: float | None
    seen_at: dt.datetime


@dataclass(frozen=True)
class Capacity:
    kind: str  # disk | datastore | repository | licence
    device: str
    name: str
    used_pct: float | None
    size: float | None
    trend_pct_per_day: float | None  # least squares over the daily values of the last TREND_DAYS
    days_to_full: float | None  # at that trend; None when flat or shrinking
    history: tuple[tuple[dt.date, float], ...] = ()


@dataclass(frozen=True)
class Expiry:
    kind: str  # certificate | domain
    device: str
    name: str
    expires_on: dt.date | None
    days_left: float | None


@dataclass(frozen=True)
class M365Issue:
    issue_id: str
    service: str
    title: str
    status: str
    resolved: bool | None
    updated_at: dt.datetime  # Microsoft's last modification, else when the agent last saw it


@dataclass(frozen=True)
class ConfigChange:
    device: str
    at: dt.datetime | None  # None: counted from the archive's versions, time unknown
    detail: str  # the alert's summary first line, or how many new versions the day had


@dataclass(frozen=True)
class Section:
    """A topic's rows, or why it has none: ``supervised`` False when no device of the client has the
    source's collector (the report says so in one line)."""

    supervised: bool
    rows: tuple = ()


@dataclass(frozen=True)
class DailyReport:
    client: str
    display_name: str
    language: str
    timezone: str
    day: dt.date
    generated_at: dt.datetime
    target_pct: float
    availability: tuple[Availability, ...]
    alerts: tuple[AlertItem, ...]
    tickets_opened: tuple[TicketItem, ...]
    tickets_solved: tuple[TicketItem, ...]
    tickets_open: tuple[TicketItem, ...]
    sla: Sla
    backups: Section
    capacity: Section
    expiries: Section
    m365: Section
    config_changes: Section

    @property
    def below_target(self) -> list[Availability]:
        return [a for a in self.availability if a.meets_target is False]

    @property
    def failed_backups(self) -> list[Backup]:
        return [b for b in self.backups.rows if b.result in ("failed", "missing")]


@dataclass(frozen=True)
class MonthKpi:
    month: dt.date  # its first day
    # the mean over the client's services of each one's availability in the month (None: none known)
    availability_pct: float | None
    service_hours_pct: float | None
    alerts: int
    critical_alerts: int
    tickets_opened: int
    sla_in_time_pct: float | None
    p99_onset_to_ticket_s: float | None


@dataclass(frozen=True)
class MonthlyReport:
    client: str
    display_name: str
    language: str
    timezone: str
    month: dt.date
    generated_at: dt.datetime
    target_pct: float
    kpis: tuple[MonthKpi, ...]  # oldest first, the report's month last
    availability: tuple[Availability, ...]  # per service over the report's month
    capacity: Section = field(default_factory=lambda: Section(False))


# -- windows -------------------------------------------------------------------------------------


def day_window(client: Client, day: dt.date) -> Window:
    zone = client.zone
    start = dt.datetime.combine(day, dt.time(), zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone)
    return start.timestamp(), end.timestamp()


def service_windows(client: Client, first: dt.date, last: dt.date) -> list[Window]:
    """The client's service hours on each day from ``first`` to ``last`` inclusive, holidays out."""
    hours, zone, found = client.service_hours, client.zone, []
    day = first
    while day <= last:
        local = dt.datetime.combine(day, dt.time(), zone)
        if client.in_service(local.replace(hour=hours.start.hour, minute=hours.start.minute)):
            start = dt.datetime.combine(day, hours.start, zone)
            end = (dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone) if hours.end == dt.time.max
                   else dt.datetime.combine(day, hours.end, zone))
            found.append((start.timestamp(), end.timestamp()))
        day += dt.timedelta(days=1)
    return found


def until_now(window: Window, now: float) -> Window:
    """``window`` cut at ``now``: a state still open is known until now, not until its staleness
    horizon (the rollups would count it into the future)."""
    return window[0], max(window[0], min(window[1], now))


def _overlap(lo: float, hi: float, windows: Iterable[Window]) -> float:
    return sum(max(0.0, min(hi, b) - max(lo, a)) for a, b in windows)


# -- reading -------------------------------------------------------------------------------------


def open_rollups(files: StateDir) -> StateDB | None:
    """The rollups opened read-only, or None before any agent wrote them."""
    return StateDB(files.state_db, read_only=True) if files.state_db.is_file() else None


def supervised(db: StateDB | None, client: Client, source: src.Source) -> bool:
    """Whether the client's estate has ``source``: a device with its collector, or samples of it
    for the client (a controller's piggyback, a collector configured under another name)."""
    if any(source.collector in device.collectors for _, device in client.devices()):
        return True
    return db is not None and bool(db.latest(source.measurement, {"client": client.name}))


def _sites(client: Client) -> dict[str, str]:
    return {device.name: site.name for site, device in client.devices()}


def _latest_items(db: StateDB | None, source: src.Source, client: str) -> list[tuple[dict[str, str], dict, int]]:
    """Per series of ``source`` for ``client``: (tags, {field: value}, latest timestamp ns)."""
    if db is None:
        return []
    grouped: dict[str, tuple[dict[str, str], dict, list[int]]] = {}
    row: Latest
    for row in db.latest(source.measurement, {"client": client}):
        key = repr(sorted(row.tags.items()))
        tags, values, stamps = grouped.setdefault(key, (row.tags, {}, []))
        values[row.field] = row.value
        stamps.append(row.timestamp_ns)
    return [(tags, values, max(stamps)) for tags, values, stamps in grouped.values()]


def _local(at: float | None, client: Client) -> dt.datetime | None:
    return None if at is None else dt.datetime.fromtimestamp(at, client.zone)


def availability(
    db: StateDB | None, client: Client, window: Window, windows_in_service: Sequence[Window], target_pct: float
) -> list[Availability]:
    """Per (device, service) of the client over ``window`` and over its service hours inside it."""
    if db is None:
        return []
    start, end = window
    intervals = db.intervals(src.COLLECTION.measurement, src.COLLECTION_STATUS, int(start * NS), int(end * NS),
                             {"client": client.name})
    per: dict[tuple[str, str], list[Interval]] = {}
    for interval in intervals:
        per.setdefault((interval.tags.get("device", ""), interval.tags.get("collector", "")), []).append(interval)
    sites, found = _sites(client), []
    service_s = _overlap(start, end, windows_in_service)
    for (device, service), spans in sorted(per.items()):
        up = down = up_in = down_in = 0.0
        for span in spans:
            lo, hi = span.start_ns / NS, span.end_ns / NS
            inside = _overlap(lo, hi, windows_in_service)
            if span.value in src.UP_STATUSES:
                up, up_in = up + hi - lo, up_in + inside
            elif span.value in src.DOWN_STATUSES:
                down, down_in = down + hi - lo, down_in + inside
        day_pct = _pct(up, up + down)
        hours_pct = _pct(up_in, up_in + down_in) if service_s else None
        known = [pct for pct in (day_pct, hours_pct) if pct is not None]
        found.append(Availability(
            device=device, site=sites.get(device, ""), service=service,
            day_pct=day_pct,
            service_hours_pct=hours_pct,
            down_s=down,
            unknown_pct=100.0 * max(0.0, (end - start) - up - down) / (end - start),
            # held to the target over the service hours and over the 24 h alike
            meets_target=all(pct >= target_pct for pct in known) if known else None,
        ))
    return found


def _pct(part: float, whole: float) -> float | None:
    return None if whole <= 0 else 100.0 * part / whole


def _in(at: float | None, window: Window) -> bool:
    return at is not None and window[0] <= at < window[1]


def _alert_item(alert: AlertRow, client: Client) -> AlertItem:
    return AlertItem(alert.device, alert.rule, alert.severity, alert.summary, alert.state,
                     _local(alert.started_at, client), _local(alert.fired_at, client),
                     _local(alert.resolved_at, client))


def _ticket_item(ticket: TicketRow, client: Client, now: float) -> TicketItem:
    opened = ticket.opened_at if ticket.solved_at is None else None
    in_service = None
    if opened is not None:
        first, last = _local(opened, client).date(), _local(now, client).date()
        in_service = _overlap(opened, now, service_windows(client, first, last)) / 3600
    return TicketItem(
        ticket.device, ticket.rule, ticket.severity, ticket.title, ticket.status, ticket.ticket_id, ticket.url,
        _local(ticket.opened_at, client), _local(ticket.solved_at, client),
        None if opened is None else (now - opened) / 3600, in_service,
    )


def sla(alerts: Sequence[AlertRow], tickets: Sequence[TicketRow], window: Window) -> Sla:
    """Critical alerts that fired in ``window``, against the tickets opened for them. The onset is
    the alert's first bad sample as the engine recorded it (``started_at``): a rule's ``for_s`` is
    inside the figure, which is what the client lives through."""
    by_alert = {(t.device, t.rule, t.started_at): t for t in tickets}
    delays, in_time, without = [], 0, 0
    taken_delays, taken_in_time = [], 0
    critical = [a for a in alerts if a.severity == "critical" and _in(a.fired_at, window)]
    for alert in critical:
        ticket = by_alert.get((alert.device, alert.rule, alert.started_at))
        if ticket is None or ticket.opened_at is None:
            without += 1
            continue
        delay = ticket.time_to_ticket_s if ticket.time_to_ticket_s is not None else ticket.opened_at - alert.started_at
        delays.append(float(delay))
        in_time += delay <= SLA_TICKET_WITHIN_S
        if ticket.taken_at is not None:
            # an ITSM keeping seconds may date a take in the onset's own second just before it
            taken_delays.append(max(0.0, ticket.taken_at - alert.started_at))
            taken_in_time += taken_delays[-1] <= SLA_TICKET_WITHIN_S
    return Sla(len(critical), in_time, percentile(delays, 99), without, percentile(delays, 50),
               taken_in_time, len(critical) - len(taken_delays), percentile(taken_delays, 50),
               percentile(taken_delays, 99))


def percentile(values: Sequence[float], rank: float) -> float | None:
    """Nearest-rank percentile: with fewer than 100 values, p99 is the worst."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(rank / 100 * len(ordered)) - 1)]


def backups(db: StateDB | None, client: Client, at: float) -> Section:
    """Each enabled job as last seen, as of ``at``."""
    if not supervised(db, client, src.BACKUP_JOBS):
        return Section(False)
    rows = []
    for tags, values, ts in _latest_items(db, src.BACKUP_JOBS, client.name):
        if values.get(src.BACKUP_DISABLED) in (True, 1):
            continue
        result = values.get(src.BACKUP_RESULT)
        age, limit = src.number(values.get(src.BACKUP_SUCCESS_AGE)), src.number(values.get(src.BACKUP_MAX_AGE))
        overdue = age is not None and limit is not None and age > limit and result != "failed"
        if at - ts / NS > 86_400 or result not in src.BACKUP_RESULTS or overdue:
            result = "missing"
        rows.append(Backup(tags.get("device", ""), tags.get(src.BACKUP_JOBS.key_tag, ""), str(result),
                           None if age is None else age / 3600, _local(ts / NS, client)))
    order = {"failed": 0, "missing": 1, "warning": 2}
    return Section(True, tuple(sorted(rows, key=lambda b: (order.get(b.result, 3), b.device, b.job))))


def capacity(db: StateDB | None, client: Client, today: dt.date) -> Section:
    sources = [c for c in src.CAPACITY if supervised(db, client, c.source)]
    if not sources:
        return Section(False)
    rows = []
    first = today - dt.timedelta(days=TREND_DAYS - 1)
    for cap in sources:
        history = _daily_pct(db, cap, client.name, first, today)
        for tags, values, _ts in _latest_items(db, cap.source, client.name):
            series = history.get(repr(sorted(tags.items())), [])
            slope = _slope(series)
            used = cap.used_pct(values)
            size = values.get(cap.size_field)
            rows.append(Capacity(
                kind=cap.kind, device=tags.get("device", ""), name=tags.get(cap.source.key_tag, ""),
                used_pct=used, size=float(size) if isinstance(size, int | float) else None,
                trend_pct_per_day=slope,
                days_to_full=(100.0 - used) / slope if slope and slope > 0 and used is not None else None,
                history=tuple(series),
            ))
    rows.sort(key=lambda c: (c.days_to_full if c.days_to_full is not None else math.inf, -(c.used_pct or 0)))
    return Section(True, tuple(rows))


def _daily_pct(
    db: StateDB | None, cap: src.CapacitySource, client: str, first: dt.date, last: dt.date
) -> dict[str, list[tuple[dt.date, float]]]:
    """Per series: the used share at the end of each day (its last value that day)."""
    if db is None:
        return {}
    per: dict[tuple[str, dt.date], dict[str, float]] = {}
    for name in cap.fields:
        for row in db.daily(cap.source.measurement, name, first, last, {"client": client}):
            per.setdefault((repr(sorted(row.tags.items())), row.day), {})[name] = row.last
    found: dict[str, list[tuple[dt.date, float]]] = {}
    for (key, day), values in sorted(per.items(), key=lambda kv: kv[0][1]):
        pct = cap.used_pct(values)
        if pct is not None:
            found.setdefault(key, []).append((day, pct))
    return found


def _slope(series: Sequence[tuple[dt.date, float]]) -> float | None:
    """Least-squares slope in points per day; None with fewer than 2 days."""
    if len(series) < 2:
        return None
    xs = [(day - series[0][0]).days for day, _ in series]
    ys = [value for _, value in series]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mx) ** 2 for x in xs)
    return None if spread == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / spread


def expiries(db: StateDB | None, client: Client) -> Section:
    kinds = [(s, k) for s, k in ((src.TLS_CERTIFICATES, "certificate"), (src.DOMAINS, "domain"))
             if supervised(db, client, s)]
    if not kinds:
        return Section(False)
    rows = []
    for source, kind in kinds:
        for tags, values, ts in _latest_items(db, source, client.name):
            days = values.get(src.EXPIRES_IN_DAYS)
            days = float(days) if isinstance(days, int | float) else None
            on = None if days is None else dt.datetime.fromtimestamp(ts / NS + days * 86_400, client.zone).date()
            rows.append(Expiry(kind, tags.get("device", ""), tags.get(source.key_tag, ""), on, days))
    rows.sort(key=lambda e: (e.days_left if e.days_left is not None else math.inf, e.name))
    return Section(True, tuple(rows))


def m365_issues(db: StateDB | None, client: Client, window: Window) -> Section:
    """Open incidents, and those Microsoft changed (or the agent saw) during the window."""
    if not supervised(db, client, src.M365_ISSUES):
        return Section(False)
    rows = []
    for tags, values, ts in _latest_items(db, src.M365_ISSUES, client.name):
        resolved = values.get(src.M365_RESOLVED)
        resolved = bool(resolved) if isinstance(resolved, int | float) else None
        changed = src.number(values.get(src.M365_MODIFIED)) or ts / NS
        if resolved and changed < window[0]:
            continue
        rows.append(M365Issue(tags.get(src.M365_ISSUES.key_tag, ""), tags.get(src.M365_SERVICE_TAG, ""),
                              str(values.get(src.M365_TITLE) or ""), str(values.get(src.M365_STATUS) or ""),
                              resolved, _local(changed, client)))
    rows.sort(key=lambda i: (bool(i.resolved), i.service, i.issue_id))
    return Section(True, tuple(rows))


def config_changes(
    db: StateDB | None, client: Client, window: Window, day: dt.date, alerts: Sequence[AlertRow],
    change_rules: Collection[str],
) -> Section:
    """The day's configuration changes: each alert of a rule on the configuration measurement
    (``change_rules``) started in the window; for a device without one, the new versions the
    archive counted that day (daily maximum of ``versions`` against the day before's last)."""
    if not supervised(db, client, src.CONFIG_CHANGES):
        return Section(False)
    rows = [ConfigChange(a.device, _local(a.started_at, client), a.summary.split("\n", 1)[0])
            for a in alerts if a.rule in change_rules and _in(a.started_at, window)]
    alerted = {r.device for r in rows}
    if db is not None:
        before: dict[str, float] = {}
        today: dict[str, tuple[float, float]] = {}
        for row in db.daily(src.CONFIG_CHANGES.measurement, src.CONFIG_VERSIONS, day - dt.timedelta(days=1), day,
                            {"client": client.name}):
            device = row.tags.get("device", "")
            if row.day == day:
                today[device] = (row.min, row.max)
            else:
                before[device] = row.last
        for device, (low, high) in sorted(today.items()):
            new = int(high - before.get(device, low))
            if new > 0 and device not in alerted:
                rows.append(ConfigChange(device, None, f"{new} version(s)"))
    return Section(True, tuple(sorted(rows, key=lambda c: (c.at is None, c.at or 0, c.device))))


# -- the reports ---------------------------------------------------------------------------------


def daily_report(
    files: StateDir, client: Client, day: dt.date, now: float, *, change_rules: Collection[str] = ()
) -> DailyReport:
    """``client``'s report of the local date ``day``, as of ``now`` (epoch seconds; tickets still
    open are aged to it). ``change_rules``: the client's rules on the configuration measurement
    (:func:`config_change_rules`)."""
    window = day_window(client, day)
    target = client.report.target_pct
    alerts = alert_rows(files, include_resolved=True, client=client.name)
    tickets = ticket_rows(files, client=client.name)
    db = open_rollups(files)
    try:
        of_day = [a for a in alerts if a.started_at < window[1]
                  and (a.resolved_at is None or a.resolved_at >= window[0])]
        return DailyReport(
            client=client.name, display_name=client.display_name, language=client.language,
            timezone=client.timezone, day=day, generated_at=_local(now, client), target_pct=target,
            availability=tuple(availability(db, client, until_now(window, now), service_windows(client, day, day),
                                            target)),
            alerts=tuple(_alert_item(a, client) for a in of_day),
            tickets_opened=tuple(_ticket_item(t, client, now) for t in tickets if _in(t.opened_at, window)),
            tickets_solved=tuple(_ticket_item(t, client, now) for t in tickets if _in(t.solved_at, window)),
            tickets_open=tuple(
                _ticket_item(t, client, now) for t in tickets
                if t.solved_at is None and t.status != "solved" and (t.opened_at or t.started_at) < window[1]
            ),
            sla=sla(alerts, tickets, window),
            backups=backups(db, client, min(now, window[1])),  # the 24 h before the day's end
            capacity=capacity(db, client, day),
            expiries=expiries(db, client),
            m365=m365_issues(db, client, window),
            config_changes=config_changes(db, client, window, day, alerts, change_rules),
        )
    finally:
        if db is not None:
            db.close()


def month_window(client: Client, month: dt.date) -> Window:
    nxt = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return day_window(client, month)[0], day_window(client, nxt)[0]


def _months(month: dt.date, count: int) -> list[dt.date]:
    found, year, number = [], month.year, month.month
    for _ in range(count):
        found.append(dt.date(year, number, 1))
        year, number = (year, number - 1) if number > 1 else (year - 1, 12)
    return found[::-1]


def monthly_report(files: StateDir, client: Client, month: dt.date, now: float) -> MonthlyReport:
    """The 13 rolling months ending with ``month`` (any day of it), for the committee meetings."""
    month = month.replace(day=1)
    target = client.report.target_pct
    alerts = alert_rows(files, include_resolved=True, client=client.name)
    tickets = ticket_rows(files, client=client.name)
    db = open_rollups(files)
    try:
        kpis = []
        last_rows: list[Availability] = []
        for first in _months(month, MONTHS):
            window = month_window(client, first)
            last_day = dt.datetime.fromtimestamp(window[1] - 1, client.zone).date()
            rows = availability(db, client, until_now(window, now), service_windows(client, first, last_day), target)
            known = [a.day_pct for a in rows if a.day_pct is not None]
            in_hours = [a for a in rows if a.service_hours_pct is not None]
            month_sla = sla(alerts, tickets, window)
            fired = [a for a in alerts if _in(a.fired_at, window)]
            kpis.append(MonthKpi(
                month=first,
                availability_pct=sum(known) / len(known) if known else None,
                service_hours_pct=(sum(a.service_hours_pct for a in in_hours) / len(in_hours)) if in_hours else None,
                alerts=len(fired),
                critical_alerts=sum(a.severity == "critical" for a in fired),
                tickets_opened=sum(_in(t.opened_at, window) for t in tickets),
                sla_in_time_pct=month_sla.in_time_pct,
                p99_onset_to_ticket_s=month_sla.p99_onset_to_ticket_s,
            ))
            last_rows = rows
        last_day = dt.datetime.fromtimestamp(month_window(client, month)[1] - 1, client.zone).date()
        return MonthlyReport(
            client=client.name, display_name=client.display_name, language=client.language,
            timezone=client.timezone, month=month, generated_at=_local(now, client), target_pct=target,
            kpis=tuple(kpis), availability=tuple(last_rows), capacity=capacity(db, client, last_day),
        )
    finally:
        if db is not None:
            db.close()


def config_change_rules(config: Config, client: str) -> frozenset[str]:
    """The client's rules whose alerts are configuration changes."""
    return frozenset(r.name for r in config.rules_for(client) if r.measurement == src.CONFIG_CHANGES.measurement)


def archive_dir(files: StateDir, client: str) -> Path:
    """Where a client's reports are kept (one folder per report: ``<date>`` or ``<YYYY-MM>``)."""
    return files.path / "reports" / client


def was_sent(files: StateDir, client: str, label: str) -> bool:
    path = archive_dir(files, client) / label / DELIVERY_FILE
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")).get("sent"))
    except (OSError, ValueError):
        return False


def archived(files: StateDir, client: str) -> list[tuple[str, dict]]:
    """The client's archived reports, newest first: (label, delivery record) — for the web app's
    archive page. A folder without its record yet (being written) is left for the next look."""
    found = []
    root = archive_dir(files, client)
    for folder in sorted(root.iterdir(), reverse=True) if root.is_dir() else []:
        try:
            found.append((folder.name, json.loads((folder / DELIVERY_FILE).read_text(encoding="utf-8"))))
        except (OSError, ValueError):
            continue
    return found
