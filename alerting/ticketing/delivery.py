"""What the mail, webhook and Teams receivers sent: the local record that answers ``find_open``.

A mail gateway, a webhook or a Teams channel cannot be searched, so the receiver keeps its own
durable record (SQLite, WAL, synchronous=FULL) of every message, one row per *delivery*: the
opening, each follow-up, the solution of one ticket. A delivery's id is derived from what it is
(the ticket's reference, the event, a follow-up's text), never drawn at random, so a message sent
again after a crash carries the same id (the mail's Message-ID, the webhook's delivery id)::

    prepare: row committed as 'sending' with the exact payload  ->  transmit  ->  row 'sent'

- ``find_open(key)`` answers from the record: the ticket is open once its opening is ``sent``
  and until its solution is.
- A row still 'sending' is a message whose fate is unknown: a SIGKILL between transmit and the
  'sent' commit, or a failure that may have come after the peer took it (a timeout, a dropped
  connection). ``find_open`` does not guess: it transmits *the stored payload again*, byte for
  byte, same delivery id, then answers that the ticket is open (so the solution of an alert that
  resolved meanwhile is not lost either); a follow-up or solution left 'sending' goes again when
  the dispatcher asks again. Nothing is lost; a copy can reach the peer, always with the id it
  already saw, for the peer to drop it (what each peer makes of it: alerting/README.md).
- A message the peer refused (an SMTP or HTTP error reply, a refused connection) was not
  delivered: its row is dropped, and the next attempt renders it anew (with the options of then).
- A delivery already ``sent`` is never transmitted again: asking twice is not an error.

The ticket's reference (``TicketRef.id``) is the first 12 hex digits of the SHA-256 of the
alert's idempotency key: short enough for a mail subject's ``[vigie #<ref>]``, stable across
restarts and agents.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from agent.api.alerts import Alert
from agent.api.outbound import DeliveryError
from agent.api.ticket_text import TicketLocale, solution_text
from agent.api.tickets import TicketRef

log = logging.getLogger(__name__)

T = TypeVar("T")

OPEN, FOLLOWUP, SOLVE = "open", "followup", "solve"
CRASH_ENV = "VIGIE_TEST_CRASH_AT"  # the variable of the outbox's test seams (alerting/notifier.py)
SENDING, SENT = "sending", "sent"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id TEXT PRIMARY KEY,
    ticket TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    event TEXT NOT NULL,
    state TEXT NOT NULL,
    payload BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    recorded_at REAL NOT NULL,
    sent_at REAL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_key ON deliveries(idempotency_key, event);
CREATE INDEX IF NOT EXISTS deliveries_ticket ON deliveries(ticket, event);
"""


def record_path(state_dir: Path, kind: str, client: str) -> Path:
    """One record per receiver kind and client, in the agent's state directory."""
    return state_dir / "ticketing" / kind / f"{client}.sqlite"


def ticket_ref(idempotency_key: str) -> str:
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:12]


def delivery_id(ticket: str, event: str, text: str = "") -> str:
    """``<ticket>-open``, ``<ticket>-solve``, ``<ticket>-followup-<hash of the text>``: a follow-up
    asked twice with the same text is one delivery."""
    if event == FOLLOWUP:
        return f"{ticket}-{event}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    return f"{ticket}-{event}"


@dataclass(frozen=True)
class Delivery:
    delivery_id: str
    ticket: str
    idempotency_key: str
    event: str
    state: str
    payload: bytes
    attempts: int
    sent_at: float | None


class DeliveryRecord:
    """The record of one receiver, opened at its first use (building a receiver does no I/O)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a 'sent' lost to a power cut would be a message sent again, a 'sending' lost
            # one sent under an id the record no longer knows
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        def locked() -> T:
            with self._lock:
                return fn(*args)

        return await asyncio.to_thread(locked)

    async def prepare(self, did: str, ticket: str, key: str, event: str, render: Callable[[], bytes]) -> Delivery:
        """The delivery ``did`` as recorded, with one more attempt counted; recorded first as
        'sending' with ``render()`` as its payload when it is new."""
        payload = None
        if await self.get(did) is None:
            payload = render()  # outside the lock: rendering is the receiver's business
        return await self._in_thread(self._prepare, did, ticket, key, event, payload)

    def _prepare(self, did: str, ticket: str, key: str, event: str, payload: bytes | None) -> Delivery:
        db = self._conn()
        if payload is not None:
            db.execute(
                "INSERT OR IGNORE INTO deliveries(delivery_id, ticket, idempotency_key, event, state, payload, "
                "recorded_at) VALUES (?,?,?,?,?,?,?)",
                (did, ticket, key, event, SENDING, payload, self.clock()),
            )
        db.execute("UPDATE deliveries SET attempts=attempts+1 WHERE delivery_id=? AND state=?", (did, SENDING))
        return _delivery(db.execute("SELECT * FROM deliveries WHERE delivery_id=?", (did,)).fetchone())

    async def mark_sent(self, did: str) -> None:
        await self._in_thread(
            lambda: self._conn().execute(
                "UPDATE deliveries SET state=?, sent_at=?, last_error=NULL WHERE delivery_id=?",
                (SENT, self.clock(), did),
            )
        )

    async def note_failure(self, did: str, error: str) -> None:
        await self._in_thread(
            lambda: self._conn().execute(
                "UPDATE deliveries SET last_error=? WHERE delivery_id=?", (error[:500], did)
            )
        )

    async def get(self, did: str) -> Delivery | None:
        row = await self._in_thread(
            lambda: self._conn().execute("SELECT * FROM deliveries WHERE delivery_id=?", (did,)).fetchone()
        )
        return _delivery(row) if row else None

    async def forget(self, did: str) -> None:
        await self._in_thread(
            lambda: self._conn().execute("DELETE FROM deliveries WHERE delivery_id=? AND state=?", (did, SENDING))
        )

    async def opening(self, key: str) -> Delivery | None:
        """The opening recorded for ``key`` (sent or 'sending') if its solution was not sent."""
        row = await self._in_thread(
            lambda: self._conn().execute(
                "SELECT * FROM deliveries o WHERE idempotency_key=? AND event=? AND NOT EXISTS "
                "(SELECT 1 FROM deliveries s WHERE s.ticket=o.ticket AND s.event=? AND s.state=?)",
                (key, OPEN, SOLVE, SENT),
            ).fetchone()
        )
        return _delivery(row) if row else None

    async def deliveries(self, ticket: str | None = None) -> list[Delivery]:
        sql, args = "SELECT * FROM deliveries", ()
        if ticket is not None:
            sql, args = sql + " WHERE ticket=?", (ticket,)
        sql += " ORDER BY recorded_at, rowid"
        rows = await self._in_thread(lambda: self._conn().execute(sql, args).fetchall())
        return [_delivery(r) for r in rows]

    async def close(self) -> None:
        if self._db is not None:
            await self._in_thread(self._db.close)
            self._db = None


def _delivery(row: sqlite3.Row) -> Delivery:
    return Delivery(
        delivery_id=row["delivery_id"],
        ticket=row["ticket"],
        idempotency_key=row["idempotency_key"],
        event=row["event"],
        state=row["state"],
        payload=bytes(row["payload"]),
        attempts=row["attempts"],
        sent_at=row["sent_at"],
    )


def _env_checkpoint(point: str, did: str) -> None:
    if os.environ.get(CRASH_ENV) == point:
        log.error("%s=%s: killing the process at %s (%s)", CRASH_ENV, point, point, did)
        os.kill(os.getpid(), signal.SIGKILL)


class RecordedReceiver(ABC):
    """A ticket receiver whose peer cannot be searched: every open, follow-up and solution is a
    message, recorded before it is transmitted (see the module's doc). A subclass says how a
    message is rendered (``render_*``, to the bytes stored and transmitted) and transmitted.

    ``checkpoint(point, delivery_id)`` is a test seam called at "after_send" (the peer accepted
    the message, the record does not say so yet); by default it SIGKILLs the process when
    ``$VIGIE_TEST_CRASH_AT`` names the point, as the outbox's own seams do."""

    name: str

    def __init__(
        self,
        record: DeliveryRecord,
        locale: TicketLocale,
        *,
        checkpoint: Callable[[str, str], None] | None = None,
    ) -> None:
        self.record = record
        self.locale = locale
        self._checkpoint = checkpoint or _env_checkpoint

    @abstractmethod
    def render_open(self, alert: Alert, delivery: str) -> bytes: ...

    @abstractmethod
    def render_followup(self, opening: Delivery, delivery: str, text: str) -> bytes: ...

    @abstractmethod
    def render_solve(self, opening: Delivery, delivery: str, alert: Alert, text: str) -> bytes: ...

    @abstractmethod
    async def transmit(self, delivery: Delivery) -> None:
        """Send ``delivery.payload``; raise :class:`DeliveryError` saying whether a retry may help
        and whether the peer may have taken it all the same (``unsure``)."""

    def _ref(self, ticket: str) -> TicketRef:
        return TicketRef(self.name, ticket)  # no link to show: the peer keeps the ticket, if any

    async def open(self, alert: Alert) -> TicketRef:
        key = alert.idempotency_key
        ticket = ticket_ref(key)
        did = delivery_id(ticket, OPEN)
        await self._deliver(did, ticket, key, OPEN, lambda: self.render_open(alert, did))
        return self._ref(ticket)

    async def add_followup(self, ref: TicketRef, text: str) -> None:
        opening = await self._opening(ref)
        did = delivery_id(ref.id, FOLLOWUP, text)
        await self._deliver(
            did, ref.id, opening.idempotency_key, FOLLOWUP, lambda: self.render_followup(opening, did, text)
        )

    async def solve(self, ref: TicketRef, alert: Alert) -> None:
        opening = await self._opening(ref)
        did = delivery_id(ref.id, SOLVE)
        text = solution_text(alert, self.locale)
        await self._deliver(
            did, ref.id, opening.idempotency_key, SOLVE, lambda: self.render_solve(opening, did, alert, text)
        )

    async def find_open(self, idempotency_key: str) -> TicketRef | None:
        opening = await self.record.opening(idempotency_key)
        if opening is None:
            return None
        if opening.state == SENDING:  # it may have reached the peer: make sure it did, same id
            log.info("%s #%s: opening %s of unknown fate, sent again", self.name, opening.ticket, opening.delivery_id)
            await self._deliver(opening.delivery_id, opening.ticket, idempotency_key, OPEN, lambda: opening.payload)
        return self._ref(opening.ticket)

    async def close(self) -> None:
        await self.record.close()

    async def _opening(self, ref: TicketRef) -> Delivery:
        opening = await self.record.get(delivery_id(ref.id, OPEN))
        if opening is None:
            raise DeliveryError(f"{self.name}: ticket #{ref.id} is not in {self.record.path}", retryable=False)
        return opening

    async def _deliver(self, did: str, ticket: str, key: str, event: str, render: Callable[[], bytes]) -> None:
        delivery = await self.record.prepare(did, ticket, key, event, render)
        if delivery.state == SENT:
            log.info("%s #%s: %s %s already sent, not sent again", self.name, ticket, event, did)
            return
        if delivery.attempts > 1:
            log.info("%s #%s: %s %s sent again (attempt %d), same id", self.name, ticket, event, did, delivery.attempts)
        try:
            await self.transmit(delivery)
        except DeliveryError as exc:
            if exc.unsure:
                await self.record.note_failure(did, str(exc))
            else:  # refused: not delivered, rendered anew next time
                await self.record.forget(did)
            raise
        self._checkpoint("after_send", did)
        await self.record.mark_sent(did)
