"""A client's downloads: inventory, alerts, tickets, availability and daily metrics over a period,
as one table each, in XLSX (the report's writer, agent/report/xlsx.py: a real Excel table with
typed cells, fit for pivot tables) or CSV (UTF-8 with BOM and ``;`` as Excel in French reads it)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable

from agent.config import Client
from agent.report.xlsx import Sheet, workbook
from agent.views.inventory import inventory_rows
from agent.views.metrics import daily_metrics
from agent.web.pages import Pages

FORMATS = {"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
           "csv": "text/csv; charset=utf-8"}


def _local(at: float | None, client: Client) -> dt.datetime | None:
    return None if at is None else dt.datetime.fromtimestamp(at, client.zone).replace(tzinfo=None)


def inventory_sheet(pages: Pages, client: Client, first: dt.date, last: dt.date) -> Sheet:
    rows = inventory_rows(pages.files, pages.devices(client.name), client.name)
    return Sheet("Inventory", ("site", "device", "address", "model", "serial", "version", "description",
                               "uptime_s", "seen_at"),
                 [(r.site, r.device, r.address, r.model, r.serial, r.version, r.description, r.uptime_s,
                   _local(r.seen_at, client)) for r in rows])


def alerts_sheet(pages: Pages, client: Client, first: dt.date, last: dt.date) -> Sheet:
    start, end = pages.period_window(client, first, last)
    rows = [a for a in pages.alerts(client.name, include_resolved=True)
            if a.started_at < end and (a.resolved_at is None or a.resolved_at >= start)]
    return Sheet("Alerts", ("device", "severity", "rule", "summary", "state", "started_at", "fired_at",
                            "resolved_at", "fingerprint"),
                 [(a.device, a.severity, a.rule, a.summary, a.state, _local(a.started_at, client),
                   _local(a.fired_at, client), _local(a.resolved_at, client), a.fingerprint) for a in rows])


def tickets_sheet(pages: Pages, client: Client, first: dt.date, last: dt.date) -> Sheet:
    start, end = pages.period_window(client, first, last)
    rows = [t for t in pages.tickets(client.name)
            if (t.opened_at or t.started_at) < end and (t.solved_at is None or t.solved_at >= start)]
    return Sheet("Tickets", ("ticket", "device", "rule", "severity", "title", "status", "receiver", "started_at",
                             "opened_at", "solved_at", "time_to_ticket_s", "url"),
                 [(t.ticket_id, t.device, t.rule, t.severity, t.title, t.status, t.receiver,
                   _local(t.started_at, client), _local(t.opened_at, client), _local(t.solved_at, client),
                   t.time_to_ticket_s, t.url) for t in rows])


def availability_sheet(pages: Pages, client: Client, first: dt.date, last: dt.date) -> Sheet:
    rows = pages.availability(client, first, last)
    return Sheet("Availability", ("from", "to", "site", "device", "service", "availability_pct",
                                  "service_hours_pct", "down_s", "unknown_pct", "meets_target"),
                 [(first, last, a.site, a.device, a.service, a.day_pct, a.service_hours_pct, a.down_s,
                   a.unknown_pct, a.meets_target) for a in rows])


def metrics_sheet(pages: Pages, client: Client, first: dt.date, last: dt.date) -> Sheet:
    rows = daily_metrics(pages.files, client.name, first, last)
    return Sheet("Metrics", ("day", "measurement", "device", "series", "field", "min", "max", "avg", "last", "count"),
                 [(m.day, m.measurement, m.device, m.series, m.field, m.min, m.max, m.avg, m.last, m.count)
                  for m in rows])


TOPICS: dict[str, Callable[[Pages, Client, dt.date, dt.date], Sheet]] = {
    "inventory": inventory_sheet,
    "alerts": alerts_sheet,
    "tickets": tickets_sheet,
    "availability": availability_sheet,
    "metrics": metrics_sheet,
}


def as_csv(sheet: Sheet) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(sheet.headers)
    for row in sheet.rows:
        writer.writerow(["" if v is None else v.isoformat(sep=" ") if isinstance(v, dt.datetime)
                         else v.isoformat() if isinstance(v, dt.date) else v for v in row])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def export(pages: Pages, client: Client, topic: str, fmt: str, first: dt.date, last: dt.date) -> bytes:
    sheet = TOPICS[topic](pages, client, first, last)
    return workbook([sheet]) if fmt == "xlsx" else as_csv(sheet)



