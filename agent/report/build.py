"""A report from data to files: gather (agent/report/data.py), draw (charts, HTML, XLSX), write to a
folder, mail, archive under the state directory.

Files of a report labelled ``<client>-<label>`` (label: the date ``YYYY-MM-DD`` or the month
``YYYY-MM``): ``.html``, ``.xlsx`` and one ``-<chart>.png`` per chart, the HTML pointing at them.
The archive (``<state_dir>/reports/<client>/<label>/``) keeps the same files and ``delivery.json``:
whether and when it was mailed, to whom, in how many attempts, or why not.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from agent.api import Sample
from agent.config import Client
from agent.config.schema import SmtpSettings
from agent.report import charts as charts_
from agent.report import render, xlsx
from agent.report.charts import Chart
from agent.report.data import DELIVERY_FILE, archive_dir, daily_report, monthly_report
from agent.report.mail import Delivery, message, send
from agent.report.words import when, words
from agent.statedir import StateDir

DELIVERY = "report_delivery"  # the sample of each mailing: the `report_delivery_failed` rule reads it


@dataclass(frozen=True)
class Built:
    kind: str  # daily | monthly
    client: str
    label: str  # YYYY-MM-DD | YYYY-MM
    subject: str
    html: str  # for disk: charts as files beside it
    mail_html: str  # for the mail: charts as cid:
    charts: tuple[Chart, ...]
    xlsx: bytes

    @property
    def stem(self) -> str:
        return f"{self.client}-{self.label}"

    def chart_file(self, name: str) -> str:
        return f"{self.stem}-{name}.png"


def build_daily(
    files: StateDir, client: Client, day: dt.date, now: float, *, change_rules: Collection[str] = ()
) -> Built:
    report = daily_report(files, client, day, now, change_rules=change_rules)
    drawn = tuple(charts_.daily_charts(report))
    label = day.isoformat()
    stem = f"{client.name}-{label}"
    return Built(
        "daily", client.name, label,
        f"{words(client.language)['daily_title']} — {client.display_name} — {when(day, client.language)}",
        render.daily_html(report, drawn, lambda name: f"{stem}-{name}.png"),
        render.daily_html(report, drawn, render.in_mail),
        drawn, xlsx.workbook(xlsx.daily_sheets(report)),
    )


def build_monthly(files: StateDir, client: Client, month: dt.date, now: float) -> Built:
    report = monthly_report(files, client, month, now)
    drawn = tuple(charts_.monthly_charts(report))
    label = month.strftime("%Y-%m")
    stem = f"{client.name}-{label}"
    return Built(
        "monthly", client.name, label,
        f"{words(client.language)['monthly_title']} — {client.display_name} — {month.strftime('%m/%Y')}",
        render.monthly_html(report, drawn, lambda name: f"{stem}-{name}.png"),
        render.monthly_html(report, drawn, render.in_mail),
        drawn, xlsx.workbook(xlsx.monthly_sheets(report)),
    )


def write(built: Built, folder: Path) -> list[Path]:
    """The report's HTML, XLSX and PNGs in ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / f"{built.stem}.html", folder / f"{built.stem}.xlsx"]
    written[0].write_text(built.html, encoding="utf-8")
    written[1].write_bytes(built.xlsx)
    for chart in built.charts:
        path = folder / built.chart_file(chart.name)
        path.write_bytes(chart.png)
        written.append(path)
    return written


def archive(built: Built, files: StateDir, delivery: Delivery | None, now: float) -> Path:
    """Keep the report under the state directory, with how its mailing went. ``delivery`` None
    (made, not mailed: `vigie report` without --send) keeps the record of an earlier mailing, so
    the agent never mails a report again because an operator looked at it."""
    folder = archive_dir(files, built.client) / built.label
    write(built, folder)
    record_file = folder / DELIVERY_FILE
    if delivery is None and record_file.is_file():
        return folder
    record = {"kind": built.kind, "at": now, **(asdict(delivery) if delivery else {"sent": False, "attempts": 0,
                                                                                     "error": None, "recipients": []})}
    record_file.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return folder


def mail(
    built: Built, smtp: SmtpSettings, password: str | None, recipients: Sequence[str], now: float,
    sleep: Callable[[float], None],
) -> Delivery:
    mailed = message(subject=built.subject, sender=smtp.sender, recipients=recipients, html=built.mail_html,
                     charts=built.charts, xlsx=built.xlsx, xlsx_name=f"{built.stem}.xlsx", now=now)
    return send(mailed, smtp, password, sleep=sleep)


def delivery_sample(built: Built, delivery: Delivery, now: float) -> Sample:
    return Sample(
        DELIVERY,
        {"client": built.client, "report": built.kind},
        {"status": "sent" if delivery.sent else "failed", "attempts": delivery.attempts, "error": delivery.error,
         "label": built.label},
        int(now * 1e9),
    )
