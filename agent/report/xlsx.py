"""The reports as an XLSX workbook for pivot tables: one sheet per topic, each a real Excel table
(ListObject) with typed cells (dates as dates, numbers as numbers, unknown as an empty cell),
frozen header, no merged cells. A topic without rows still has its header row and a table of one
empty row, so a pivot built on it keeps working the day it fills."""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

from openpyxl import Workbook
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.table import Table, TableStyleInfo

from agent.report.data import DailyReport, MonthlyReport
from agent.report.words import words

DATE_FORMAT, DATETIME_FORMAT, PERCENT_FORMAT, NUMBER_FORMAT = "yyyy-mm-dd", "yyyy-mm-dd hh:mm", "0.00", "0.0"

Cell = str | int | float | bool | dt.date | dt.datetime | None


@dataclass(frozen=True)
class Sheet:
    name: str  # also the table's name: letters, digits, underscores
    headers: tuple[str, ...]
    rows: Sequence[Sequence[Cell]]


def _naive(value: Cell) -> Cell:
    # Excel has no time zones: a local time is written as the client's wall clock.
    return value.replace(tzinfo=None) if isinstance(value, dt.datetime) else value


def workbook(sheets: Sequence[Sheet]) -> bytes:
    book = Workbook()
    book.remove(book.active)
    for sheet in sheets:
        page = book.create_sheet(sheet.name[:31])
        page.append(list(sheet.headers))
        rows = sheet.rows or [[None] * len(sheet.headers)]
        for row in rows:
            page.append([_naive(v) for v in row])
        for row in page.iter_rows(min_row=2):
            for cell in row:
                if isinstance(cell.value, dt.datetime):
                    cell.number_format = DATETIME_FORMAT
                elif isinstance(cell.value, dt.date):
                    cell.number_format = DATE_FORMAT
                elif isinstance(cell.value, float):
                    cell.number_format = PERCENT_FORMAT
        for index, header in enumerate(sheet.headers, start=1):
            page.column_dimensions[get_column_letter(index)].width = max(10, min(50, len(header) + 4))
        ref = f"A1:{get_column_letter(len(sheet.headers))}{len(rows) + 1}"
        table = Table(displayName=re.sub(r"\W", "_", sheet.name), ref=ref)
        table.tableStyleInfo = TableStyleInfo(name="TableStyleMedium2", showRowStripes=True)
        page.add_table(table)
        page.freeze_panes = "A2"
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _availability_sheet(rows, day: dt.date, w: dict[str, str]) -> Sheet:
    return Sheet("Availability", ("date", w["device"], w["site"], w["service"],
                                  f"{w['service_hours']} %", f"{w['day_24h']} %", f"{w['down']} (s)",
                                  f"{w['unknown']} %", w["target"]),
                 [(day, a.device, a.site, a.service, a.service_hours_pct, a.day_pct, a.down_s, a.unknown_pct,
                   a.meets_target) for a in rows])


def _capacity_sheet(report: DailyReport | MonthlyReport, w: dict[str, str]) -> Sheet:
    return Sheet("Capacity", (w["kind"], w["device"], w["name"], w["used_pct"], w["size"], w["trend"],
                              w["days_to_full"]),
                 [(c.kind, c.device, c.name, c.used_pct, c.size, c.trend_pct_per_day, c.days_to_full)
                  for c in report.capacity.rows])


def daily_sheets(report: DailyReport) -> list[Sheet]:
    w = words(report.language)
    ticket_headers = (w["ticket"], w["device"], w["rule"], w["severity"], w["title"], w["status"], w["opened"],
                      w["solved"], w["age_h"], w["gtr_h"], "url")

    def tickets(name: str, rows) -> Sheet:
        return Sheet(name, ticket_headers, [(t.ticket_id, t.device, t.rule, t.severity, t.title, t.status,
                                             t.opened_at, t.solved_at, t.age_h, t.service_age_h, t.url)
                                            for t in rows])

    sla = report.sla
    return [
        _availability_sheet(report.availability, report.day, w),
        Sheet("Alerts", (w["severity"], w["device"], w["rule"], w["summary"], w["state"], w["started"], w["fired"],
                         w["resolved"]),
              [(a.severity, a.device, a.rule, a.summary, a.state, a.started_at, a.fired_at, a.resolved_at)
               for a in report.alerts]),
        tickets("Tickets_opened", report.tickets_opened),
        tickets("Tickets_solved", report.tickets_solved),
        tickets("Tickets_open", report.tickets_open),
        Sheet("SLA", ("date", w["critical_alerts"], "ticketed_within_5_min", "without_ticket", "in_time_pct",
                      "p99_onset_to_ticket_s", "taken_within_5_min", "taken_in_time_pct", "not_taken",
                      "p50_onset_to_taken_s", "p99_onset_to_taken_s"),
              [(report.day, sla.critical, sla.ticketed_in_time, sla.without_ticket, sla.in_time_pct,
                sla.p99_onset_to_ticket_s, sla.taken_in_time, sla.taken_in_time_pct, sla.not_taken,
                sla.p50_onset_to_taken_s, sla.p99_onset_to_taken_s)]),
        Sheet("Backups", (w["device"], w["job"], w["result"], w["last_success_h"], "seen_at"),
              [(b.device, b.job, b.result, b.last_success_age_h, b.seen_at) for b in report.backups.rows]),
        _capacity_sheet(report, w),
        Sheet("Expiries", (w["kind"], w["device"], w["name"], w["expires_on"], w["days_left"]),
              [(e.kind, e.device, e.name, e.expires_on, e.days_left) for e in report.expiries.rows]),
        Sheet("M365", ("id", w["service"], w["title"], w["status"], w["m365_resolved"], "updated_at"),
              [(i.issue_id, i.service, i.title, i.status, i.resolved, i.updated_at) for i in report.m365.rows]),
        Sheet("Config_changes", (w["device"], w["at"], w["change"]),
              [(c.device, c.at, c.detail) for c in report.config_changes.rows]),
    ]


def monthly_sheets(report: MonthlyReport) -> list[Sheet]:
    w = words(report.language)
    return [
        Sheet("KPIs", (w["month"], f"{w['day_24h']} %", f"{w['service_hours']} %", w["alerts"], w["critical_alerts"],
                       w["tickets_opened"], w["sla_pct"], w["p99"]),
              [(k.month, k.availability_pct, k.service_hours_pct, k.alerts, k.critical_alerts, k.tickets_opened,
                k.sla_in_time_pct, k.p99_onset_to_ticket_s) for k in report.kpis]),
        _availability_sheet(report.availability, report.month, w),
        _capacity_sheet(report, w),
    ]
