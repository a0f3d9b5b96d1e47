"""Notifications to people (escalation, on-call, the client's perimeter), through a durable log.

One row per message and channel in ``notifications`` (SQLite in the state directory,
``notifications.sqlite``, WAL, synchronous=FULL), its id derived from what it is
(``<purpose>:<alert key>:<step>:<contact>:<channel>``), never drawn::

    queue: row committed 'pending' (INSERT OR IGNORE: asked twice is one row)  ->  send  ->  'sent'

- A restart sends nothing already 'sent': the policy (alerting/escalation.py) asks again for what
  is due, and the ids it asks for are already in the log.
- A retryable failure (SMTP 4xx, a refused connection, a timeout, HTTP 429/5xx) leaves the row
  'pending' with ``last_error`` and ``next_attempt_at`` (30 s doubling, at most 15 min, at least
  what ``Retry-After`` asked); a refusal that no retry can fix (SMTP 5xx, a certificate that does
  not verify, HTTP 4xx) makes it 'failed', tried once more at the next start. Never silent: each
  failure is logged naming the contact, and once a message has failed ``alert_after`` times (or
  is refused) the ``contact_notification`` sample says ``failed``: the built-in rule
  ``contact_notification_failed`` alerts, and the next message that reaches that contact by that
  channel resolves it.
- Killed between the peer's acceptance and the 'sent' commit, the message goes again with the
  same Message-ID (mail) or the same id in the card's footer (Teams): the only way one is doubled.

Channels: ``email`` (through ``agent.smtp``, alerting's SMTP conversation in agent/api/outbound.py),
``teams`` (the contact's workflow URL), ``ticket`` (a follow-up on the alert's ticket, through
the client's receiver: the escalation's trace in the ITSM).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate
from pathlib import Path
from typing import Any, TypeVar

from agent.api import Sample, TicketRef
from agent.api.outbound import DeliveryError, HttpTarget, SmtpRelay, card
from agent.db import open_db

log = logging.getLogger(__name__)

T = TypeVar("T")

MEASUREMENT = "contact_notification"
PENDING, SENT, FAILED = "pending", "sent", "failed"
EMAIL, TEAMS, TICKET = "email", "teams", "ticket"
BACKOFF_S = 30.0
MAX_BACKOFF_S = 900.0
ALERT_AFTER = 3  # failed attempts of one message before the contact_notification alert
SEND_CONCURRENCY = 8  # messages in flight at once: one hung relay does not hold the others

_SCHEMA = """
CREATE TABLE IF NOT EXISTS notifications (
    id TEXT PRIMARY KEY,
    client TEXT NOT NULL,
    purpose TEXT NOT NULL,
    alert_key TEXT NOT NULL,
    alert TEXT NOT NULL,
    contact TEXT NOT NULL,
    channel TEXT NOT NULL,
    address TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    queued_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    sent_at REAL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications(state, next_attempt_at);
CREATE INDEX IF NOT EXISTS notifications_alert ON notifications(alert_key);
"""


@dataclass(frozen=True)
class Message:
    """A message to queue: ``address`` is the mail address, the contact's name for Teams (its URL
    is a secret, never stored), or the ticket's reference as JSON."""

    id: str
    client: str
    purpose: str
    alert_key: str
    alert: dict[str, Any]
    contact: str
    channel: str
    address: str
    subject: str
    body: str


@dataclass(frozen=True)
class Notification(Message):
    """A message as the log holds it, with where its delivery stands."""

    state: str
    attempts: int
    queued_at: float
    next_attempt_at: float
    sent_at: float | None
    last_error: str | None


def _notification(row: sqlite3.Row) -> Notification:
    return Notification(**{**dict(row), "alert": json.loads(row["alert"])})


class NotificationLog:
    """The log; every method is synchronous (callers run it in a thread), under one lock."""

    def __init__(self, path: Path) -> None:
        # FULL: a 'sent' lost to a power cut is a message sent twice
        self._db = open_db(path, _SCHEMA, threads=True, synchronous="FULL")
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()

    def queue(self, messages: Iterable[Message], now: float) -> list[str]:
        """Record ``messages`` as pending; the ids of those that were new."""
        new = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for m in messages:
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO notifications(id, client, purpose, alert_key, alert, contact, channel, "
                        "address, subject, body, state, queued_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                        (m.id, m.client, m.purpose, m.alert_key, json.dumps(m.alert), m.contact, m.channel,
                         m.address, m.subject, m.body, PENDING, now),
                    )
                    if cur.rowcount:
                        new.append(m.id)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return new

    def ids(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT id FROM notifications")}

    def due(self, now: float) -> list[Notification]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM notifications WHERE state=? AND next_attempt_at<=? ORDER BY queued_at, rowid",
                (PENDING, now),
            ).fetchall()
        return [_notification(r) for r in rows]

    def next_due(self) -> float | None:
        with self._lock:
            (at,) = self._db.execute("SELECT MIN(next_attempt_at) FROM notifications WHERE state=?",
                                     (PENDING,)).fetchone()
        return at

    def mark_sent(self, nid: str, at: float) -> None:
        with self._lock:
            self._db.execute("UPDATE notifications SET state=?, sent_at=?, attempts=attempts+1, last_error=NULL "
                             "WHERE id=?", (SENT, at, nid))

    def mark_failed(self, nid: str, error: str, next_attempt_at: float | None) -> int:
        """One more failed attempt; ``next_attempt_at`` None: refused, not retried. The attempts."""
        with self._lock:
            (attempts,) = self._db.execute(
                "UPDATE notifications SET state=?, attempts=attempts+1, last_error=?, next_attempt_at=? WHERE id=? "
                "RETURNING attempts",
                (PENDING if next_attempt_at is not None else FAILED, error[:500], next_attempt_at or 0, nid),
            ).fetchone()
        return int(attempts)

    def retry_failed(self) -> int:
        """At start: the refused ones get one more chance (the operator may have fixed the config)."""
        with self._lock:
            return self._db.execute("UPDATE notifications SET state=?, next_attempt_at=0 WHERE state=?",
                                    (PENDING, FAILED)).rowcount

    def unanswered(self, purpose: str, answer: str) -> list[tuple[str, dict[str, Any]]]:
        """(alert key, alert) of the messages of ``purpose`` with no ``answer`` message yet."""
        with self._lock:
            rows = self._db.execute(
                "SELECT alert_key, MIN(alert) AS alert FROM notifications WHERE purpose=? AND alert_key NOT IN "
                "(SELECT alert_key FROM notifications WHERE purpose=?) GROUP BY alert_key", (purpose, answer),
            ).fetchall()
        return [(r["alert_key"], json.loads(r["alert"])) for r in rows]

    def notifications(self, client: str | None = None, purpose: str | None = None) -> list[Notification]:
        sql, args = "SELECT * FROM notifications WHERE 1=1", []
        if client is not None:
            sql, args = sql + " AND client=?", [*args, client]
        if purpose is not None:
            sql, args = sql + " AND purpose=?", [*args, purpose]
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY queued_at, rowid", args).fetchall()
        return [_notification(r) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass(frozen=True)
class MailRelay:
    relay: SmtpRelay
    sender: str
    # failed attempts of one mail before it is alerted: agent.smtp.retries + 1, as the reports
    alert_after: int = ALERT_AFTER


def mail_bytes(n: Notification, sender: str) -> bytes:
    """The mail of ``n``, the same bytes on every attempt: Message-ID and Date from the row."""
    mail = EmailMessage()
    mail["Subject"] = n.subject
    mail["From"] = sender
    mail["To"] = n.address
    mail["Date"] = formatdate(n.queued_at, localtime=False)
    mail["Message-ID"] = f"<{hashlib.sha256(n.id.encode()).hexdigest()[:24]}@{sender.rpartition('@')[2]}>"
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to the agent
    mail.set_content(n.body)
    return mail.as_bytes(policy=SMTP)


def teams_bytes(n: Notification) -> bytes:
    colour = "Attention" if n.alert.get("severity") in ("critical", "major") else "Default"
    return card(n.subject, n.body.split("\n"), colour, f"[{n.alert_key}] {n.id}")


class ContactNotifier:
    """Sends what the log holds due. ``teams(client, contact)``: the contact's workflow target;
    ``followup(client, ref, text)``: a follow-up through the client's ticket receiver;
    ``submit``: where the ``contact_notification`` samples go (the pipeline)."""

    def __init__(
        self,
        log_: NotificationLog,
        *,
        mail: MailRelay | None,
        teams: Callable[[str, str], HttpTarget],
        followup: Callable[[str, TicketRef, str], Awaitable[None]],
        submit: Callable[[Sequence[Sample]], Awaitable[None]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.log = log_
        self.mail = mail
        self.teams = teams
        self.followup = followup
        self.submit = submit
        self.clock = clock

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    async def queue(self, messages: Sequence[Message]) -> list[str]:
        if not messages:
            return []
        return await self._in_thread(self.log.queue, messages, self.clock())

    async def send_due(self) -> int:
        """Send every message due now, a few at once; how many were delivered."""
        due = await self._in_thread(self.log.due, self.clock())
        if not due:
            return 0
        gate = asyncio.Semaphore(SEND_CONCURRENCY)

        async def one(n: Notification) -> bool:
            async with gate:
                return await self._send(n)

        return sum(await asyncio.gather(*(one(n) for n in due)))

    async def _transmit(self, n: Notification) -> None:
        if n.channel == EMAIL:
            if self.mail is None:
                raise DeliveryError("no agent.smtp to send mails through", retryable=False)
            await self.mail.relay.send_async(self.mail.sender, [n.address], mail_bytes(n, self.mail.sender))
        elif n.channel == TEAMS:
            await self.teams(n.client, n.contact).post(teams_bytes(n), {})
        elif n.channel == TICKET:
            ref = json.loads(n.address)
            await self.followup(n.client, TicketRef(ref["connector"], ref["id"], ref.get("url")), n.body)
        else:
            raise DeliveryError(f"unknown channel {n.channel!r}", retryable=False)

    async def _send(self, n: Notification) -> bool:
        who = f"{n.client}/{n.contact}"
        try:
            await self._transmit(n)
        except Exception as exc:  # noqa: BLE001 - any failure is this message's, reported and retried
            retryable = getattr(exc, "retryable", True)
            error = str(exc) or type(exc).__name__
            now = self.clock()
            wait_s = min(MAX_BACKOFF_S, BACKOFF_S * 2 ** n.attempts)
            wait_s = max(wait_s, getattr(exc, "retry_after_s", None) or 0.0)
            attempts = await self._in_thread(self.log.mark_failed, n.id, error, now + wait_s if retryable else None)
            alert_after = self.mail.alert_after if (n.channel == EMAIL and self.mail) else ALERT_AFTER
            if retryable:
                log.error("notification of %s by %s (%s, %s) failed (attempt %d), retried in %.0f s: %s [%s]",
                          who, n.channel, n.purpose, n.address if n.channel == EMAIL else n.contact, attempts,
                          wait_s, error, n.id)
            else:
                log.error("notification of %s by %s (%s) refused, not retried before the next start: %s [%s]",
                          who, n.channel, n.purpose, error, n.id)
            if not retryable or attempts >= alert_after:
                await self._status(n, "failed", attempts, error)
            return False
        now = self.clock()
        await self._in_thread(self.log.mark_sent, n.id, now)
        log.info("notified %s by %s (%s): %s [%s]", who, n.channel, n.purpose, n.subject, n.id)
        await self._status(n, "sent", n.attempts + 1, None)
        return True

    async def _status(self, n: Notification, status: str, attempts: int, error: str | None) -> None:
        # a 'sent' after every delivery (a few a day): the one that resolves an alert raised
        # before a restart is among them
        sample = Sample(MEASUREMENT, {"client": n.client, "contact": n.contact, "channel": n.channel},
                        {"status": status, "attempts": attempts, "error": error, "purpose": n.purpose},
                        int(self.clock() * 1e9))
        await self.submit([sample])
