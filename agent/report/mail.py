"""Mailing a report: one message (HTML with its charts inline by Content-ID, the XLSX attached),
sent over SMTP with STARTTLS and authentication, retried, and every attempt's outcome returned so
the caller archives it and, failed, raises the `report_delivery` alert: a report is never silently
lost."""

from __future__ import annotations

import logging
import smtplib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from agent.api.outbound import quit_smtp
from agent.config.schema import SmtpSettings
from agent.report.charts import Chart

log = logging.getLogger(__name__)

XLSX_TYPE = ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")


@dataclass(frozen=True)
class Delivery:
    sent: bool
    attempts: int
    error: str | None  # the last failure
    recipients: tuple[str, ...]


def message(
    *, subject: str, sender: str, recipients: Sequence[str], html: str, charts: Sequence[Chart],
    xlsx: bytes, xlsx_name: str, now: float,
) -> EmailMessage:
    """``html`` refers to each chart as ``cid:<name>``: the charts go in a multipart/related part
    with those Content-IDs, so Outlook and webmails show them inline without fetching anything."""
    mail = EmailMessage()
    mail["Subject"] = subject
    mail["From"] = sender
    mail["To"] = ", ".join(recipients)
    mail["Date"] = formatdate(now, localtime=False)
    mail["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to the NOC's robot
    mail.set_content("Ce rapport est au format HTML. / This report is in HTML.")
    mail.add_alternative(html, subtype="html")
    html_part = mail.get_payload()[1]
    for chart in charts:
        html_part.add_related(chart.png, "image", "png", cid=f"<{chart.name}>", filename=chart.filename,
                              disposition="inline")
    mail.add_attachment(xlsx, *XLSX_TYPE, filename=xlsx_name)
    return mail


def send_once(mail: EmailMessage, settings: SmtpSettings, password: str | None) -> None:
    """One attempt; raises OSError / smtplib.SMTPException naming what failed."""
    if not settings.verify:
        log.warning("smtp %s: TLS certificate NOT verified (agent.smtp.verify: false)", settings.host)
    smtp = settings.relay(password).session()
    try:
        smtp.send_message(mail)
    finally:
        quit_smtp(smtp)


def send(
    mail: EmailMessage, settings: SmtpSettings, password: str | None,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """``1 + settings.retries`` attempts, ``retry_interval_s`` apart (``sleep`` is injected: the
    agent's service waits on its own clock)."""
    recipients = tuple(a.strip() for a in str(mail["To"]).split(","))
    error = None
    attempts = settings.retries + 1
    for attempt in range(1, attempts + 1):
        try:
            send_once(mail, settings, password)
            log.info("report %r sent to %s (attempt %d)", mail["Subject"], ", ".join(recipients), attempt)
            return Delivery(True, attempt, None, recipients)
        except (OSError, smtplib.SMTPException) as exc:
            error = f"smtp {settings.host}:{settings.port}: {type(exc).__name__}: {exc}"
            log.warning("report %r: attempt %d/%d failed: %s", mail["Subject"], attempt, attempts, error)
            if attempt < attempts:
                sleep(settings.retry_interval_s)
    return Delivery(False, attempts, error, recipients)
