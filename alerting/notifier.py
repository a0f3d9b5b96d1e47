"""TicketDispatcher: alert transitions -> tickets, through a persistent outbox.

One row per firing occurrence (keyed by ``Alert.idempotency_key``) in the ``ticket_links`` table
(SQLite, WAL, synchronous=FULL) is the outbox *and* the alert <-> ticket link. States::

    to_open --(before the remote call: attempts+1)--> opening --> open --> to_solve --> solved
       \\__ resolved before any attempt --> cancelled       (opening + resolved -> to_solve, see below)

Crash safety (SIGKILL anywhere):

- The row is committed as ``to_open`` before anything remote happens, and as ``opening`` (with
  ``attempts`` incremented) right before the create call. A row found in ``to_open``/``opening``
  on the next cycle is processed again, and processing always starts with
  ``connector.find_open(key)``: a ticket created just before the kill (key in its name/content) is
  found and re-attached instead of created twice.
- An alert resolved before its ticket exists is never ticketed: ``to_open`` with no attempt
  becomes ``cancelled``; after an attempt (the create may have reached the ITSM) it becomes
  ``to_solve`` without ticket id, and processing looks the ticket up, solves it if found, else
  cancels.
- Failed calls leave the row where it was with ``last_error`` and a ``next_attempt_at`` backoff
  (30 s doubling, max 15 min); each :meth:`TicketDispatcher.dispatch` call retries what is due.
- ``dispatch(..., firing=engine.firing())`` also reconciles (level-triggered): a firing alert
  without a row gets one (covers a crash between the engine's commit and the dispatcher's), and a
  linked ticket whose alert is no longer firing is solved.

``time_to_ticket_s`` = ticket creation time - alert ``started_at`` (first bad sample), the figure
for the 5-minute critical-alert SLA.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from alerting.models import FIRING, RESOLVED, Alert, AlertTransition
from alerting.ticketing import TicketConnector, TicketError, TicketRef

log = logging.getLogger(__name__)

CRASH_ENV = "VIGIE_TEST_CRASH_AT"  # test seam: SIGKILL self at a named point (see _checkpoint)
BACKOFF_S = 30.0
MAX_BACKOFF_S = 900.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ticket_links (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    client TEXT NOT NULL,
    rule TEXT NOT NULL,
    state TEXT NOT NULL,
    alert TEXT NOT NULL,
    connector TEXT,
    ticket_id TEXT,
    ticket_url TEXT,
    reused INTEGER NOT NULL DEFAULT 0,
    started_at REAL NOT NULL,
    fired_at REAL,
    queued_at REAL NOT NULL,
    opened_at REAL,
    time_to_ticket_s REAL,
    resolved_at REAL,
    solved_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS ticket_links_state ON ticket_links(state);
"""

ACTIVE_STATES = ("to_open", "opening", "open", "to_solve")


@dataclass(frozen=True)
class TicketLink:
    key: str
    fingerprint: str
    client: str
    rule: str
    state: str
    connector: str | None
    ticket_id: str | None
    ticket_url: str | None
    reused: bool
    started_at: float
    fired_at: float | None
    opened_at: float | None
    time_to_ticket_s: float | None
    resolved_at: float | None
    solved_at: float | None
    attempts: int
    last_error: str | None


@dataclass
class DispatchResult:
    opened: list[TicketLink] = field(default_factory=list)
    reattached: list[TicketLink] = field(default_factory=list)
    solved: list[TicketLink] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (key, error)


class TicketDispatcher:
    def __init__(
        self,
        db_path: str,
        targets: Mapping[str, TicketConnector],
        clock: Callable[[], float] = time.time,
        *,
        default: TicketConnector | None = None,
        checkpoint: Callable[[str, str], None] | None = None,
    ) -> None:
        """``targets``: client -> connector; ``default`` serves clients not listed (or None: the
        rows wait, retried, until a target exists). ``checkpoint(point, key)`` is a test seam
        called at "before_open", "after_open" (ticket created, link not yet recorded) and
        "after_link"; by default it SIGKILLs the process when ``$VIGIE_TEST_CRASH_AT`` names the
        point."""
        self.targets = dict(targets)
        self.default = default
        self.clock = clock
        self._checkpoint = checkpoint or _env_checkpoint
        self._db = sqlite3.connect(db_path, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- intake -------------------------------------------------------------------------------

    def record(self, transitions: Sequence[AlertTransition], now: float, firing: Iterable[Alert] | None = None) -> None:
        """Write the intents of these transitions to the outbox (no remote call)."""
        with self._tx():
            for tr in transitions:
                if tr.state == FIRING:
                    self._queue_open(tr.alert, now)
                elif tr.state == RESOLVED:
                    self._queue_solve(tr.alert, now)
            if firing is not None:
                firing = [a for a in firing if a.fired_at is not None]
                live = {a.idempotency_key for a in firing}
                for alert in firing:
                    self._queue_open(alert, now)
                for row in self._db.execute(
                    "SELECT * FROM ticket_links WHERE state IN ('to_open', 'opening', 'open')"
                ).fetchall():
                    if row["key"] not in live:
                        alert = Alert.from_dict(json.loads(row["alert"]))
                        alert.resolved_at = alert.resolved_at or now
                        alert.state = RESOLVED
                        self._queue_solve(alert, now)

    def _queue_open(self, alert: Alert, now: float) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO ticket_links(key, fingerprint, client, rule, state, alert, started_at, "
            "fired_at, queued_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                alert.idempotency_key,
                alert.fingerprint,
                alert.client,
                alert.rule,
                "to_open",
                json.dumps(alert.to_dict()),
                alert.started_at,
                alert.fired_at,
                now,
            ),
        )

    def _queue_solve(self, alert: Alert, now: float) -> None:
        row = self._db.execute("SELECT * FROM ticket_links WHERE key=?", (alert.idempotency_key,)).fetchone()
        if row is None or row["state"] in ("to_solve", "solved", "cancelled"):
            return
        resolved_at = alert.resolved_at or now
        if row["state"] == "to_open" and row["attempts"] == 0:
            new_state = "cancelled"  # never open a ticket for an alert already resolved
        else:
            new_state = "to_solve"
        self._db.execute(
            "UPDATE ticket_links SET state=?, alert=?, resolved_at=?, next_attempt_at=0 WHERE key=?",
            (new_state, json.dumps(alert.to_dict()), resolved_at, alert.idempotency_key),
        )

    # -- processing ---------------------------------------------------------------------------

    async def dispatch(
        self,
        transitions: Sequence[AlertTransition] = (),
        now: float | None = None,
        firing: Iterable[Alert] | None = None,
    ) -> DispatchResult:
        """Record the transitions, then run every due outbox row (per target concurrently)."""
        now = self.clock() if now is None else now
        self.record(transitions, now, firing)
        result = DispatchResult()
        rows = self._db.execute(
            "SELECT * FROM ticket_links WHERE state IN ('to_open', 'opening', 'to_solve') "
            "AND next_attempt_at <= ? ORDER BY started_at",
            (now,),
        ).fetchall()
        by_target: dict[int, tuple[TicketConnector | None, list[sqlite3.Row]]] = {}
        for row in rows:
            connector = self.targets.get(row["client"], self.default)
            by_target.setdefault(id(connector), (connector, []))[1].append(row)
        await asyncio.gather(
            *(self._run_target(connector, group, now, result) for connector, group in by_target.values())
        )
        return result

    async def _run_target(
        self, connector: TicketConnector | None, rows: list[sqlite3.Row], now: float, result: DispatchResult
    ) -> None:
        for row in rows:
            key = row["key"]
            if connector is None:
                self._fail(row, now, f"no ticket target for client {row['client']!r}", result)
                continue
            try:
                if row["state"] in ("to_open", "opening"):
                    await self._open(connector, row, now, result)
                else:
                    await self._solve(connector, row, now, result)
            except Exception as exc:  # noqa: BLE001 - one bad ticket must not stop the others
                log.warning("ticket %s for %s failed: %s", row["state"], key, exc)
                self._fail(row, now, str(exc), result)

    async def _open(self, connector: TicketConnector, row: sqlite3.Row, now: float, result: DispatchResult) -> None:
        key = row["key"]
        alert = Alert.from_dict(json.loads(row["alert"]))
        with self._tx():
            self._db.execute(
                "UPDATE ticket_links SET state='opening', attempts=attempts+1, connector=? WHERE key=?",
                (connector.name, key),
            )
        ref = await connector.find_open(key)
        reused = ref is not None
        if ref is None:
            self._checkpoint("before_open", key)
            ref = await connector.open(alert)
            self._checkpoint("after_open", key)
        opened_at = self.clock()
        tto = opened_at - alert.started_at
        with self._tx():
            # the alert may have been resolved while the call was in flight: keep 'to_solve'
            state = self._db.execute("SELECT state FROM ticket_links WHERE key=?", (key,)).fetchone()["state"]
            self._db.execute(
                "UPDATE ticket_links SET state=?, ticket_id=?, ticket_url=?, reused=?, opened_at=?, "
                "time_to_ticket_s=?, last_error=NULL, next_attempt_at=0 WHERE key=?",
                ("to_solve" if state == "to_solve" else "open", ref.id, ref.url, int(reused), opened_at, tto, key),
            )
        self._checkpoint("after_link", key)
        link = self.link(key)
        assert link is not None
        (result.reattached if reused else result.opened).append(link)
        log.info(
            "%s ticket %s for %s (%s), %.1f s after the first bad sample",
            "re-attached" if reused else "opened",
            ref.id,
            alert.summary,
            key,
            tto,
        )
        if reused:
            await self._note_reattached(connector, ref, alert)
        if state == "to_solve":
            await self._solve(connector, self._row(key), now, result)

    async def _note_reattached(self, connector: TicketConnector, ref: TicketRef, alert: Alert) -> None:
        """Leave a trace in the ticket of why no second one was opened. Best effort: the link is
        already recorded, and a lost follow-up must not make the ticket be looked for again."""
        text = (
            f"vigie found this ticket still open after a restart and re-attached it: the alert is still "
            f"firing ({alert.summary}) [{alert.idempotency_key}]"
        )
        try:
            await connector.add_followup(ref, text)
        except TicketError as exc:
            log.warning("follow-up on re-attached ticket %s failed: %s", ref.id, exc)

    async def _solve(self, connector: TicketConnector, row: sqlite3.Row, now: float, result: DispatchResult) -> None:
        key = row["key"]
        alert = Alert.from_dict(json.loads(row["alert"]))
        ticket_id = row["ticket_id"]
        if ticket_id is None:  # resolved while a create attempt's outcome was unknown
            ref = await connector.find_open(key)
            if ref is None:
                with self._tx():
                    self._db.execute("UPDATE ticket_links SET state='cancelled' WHERE key=?", (key,))
                result.cancelled.append(key)
                return
            with self._tx():
                self._db.execute(
                    "UPDATE ticket_links SET ticket_id=?, ticket_url=?, reused=1, connector=? WHERE key=?",
                    (ref.id, ref.url, connector.name, key),
                )
        else:
            ref = TicketRef(row["connector"] or connector.name, ticket_id, row["ticket_url"])
        await connector.solve(ref, alert)
        with self._tx():
            self._db.execute(
                "UPDATE ticket_links SET state='solved', solved_at=?, last_error=NULL WHERE key=?",
                (self.clock(), key),
            )
        link = self.link(key)
        assert link is not None
        result.solved.append(link)

    def _fail(self, row: sqlite3.Row, now: float, error: str, result: DispatchResult) -> None:
        current = self._row(row["key"])
        attempts = max(int(current["attempts"]), 1)
        delay = min(BACKOFF_S * 2 ** (attempts - 1), MAX_BACKOFF_S)
        with self._tx():
            self._db.execute(
                "UPDATE ticket_links SET last_error=?, next_attempt_at=? WHERE key=?",
                (error[:500], now + delay, row["key"]),
            )
        result.failed.append((row["key"], error))

    # -- queries ------------------------------------------------------------------------------

    def _row(self, key: str) -> sqlite3.Row:
        return self._db.execute("SELECT * FROM ticket_links WHERE key=?", (key,)).fetchone()

    def link(self, key: str) -> TicketLink | None:
        row = self._row(key)
        return _to_link(row) if row else None

    def links(self, client: str | None = None, states: Iterable[str] | None = None) -> list[TicketLink]:
        rows = self._db.execute("SELECT * FROM ticket_links ORDER BY queued_at, key").fetchall()
        wanted = set(states) if states is not None else None
        return [
            _to_link(r)
            for r in rows
            if (client is None or r["client"] == client) and (wanted is None or r["state"] in wanted)
        ]

    def _tx(self) -> _Tx:
        return _Tx(self._db)


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _to_link(row: sqlite3.Row) -> TicketLink:
    return TicketLink(
        key=row["key"],
        fingerprint=row["fingerprint"],
        client=row["client"],
        rule=row["rule"],
        state=row["state"],
        connector=row["connector"],
        ticket_id=row["ticket_id"],
        ticket_url=row["ticket_url"],
        reused=bool(row["reused"]),
        started_at=row["started_at"],
        fired_at=row["fired_at"],
        opened_at=row["opened_at"],
        time_to_ticket_s=row["time_to_ticket_s"],
        resolved_at=row["resolved_at"],
        solved_at=row["solved_at"],
        attempts=row["attempts"],
        last_error=row["last_error"],
    )


def _env_checkpoint(point: str, key: str) -> None:
    if os.environ.get(CRASH_ENV) == point:
        log.error("%s=%s: killing the process at %s (%s)", CRASH_ENV, point, point, key)
        os.kill(os.getpid(), signal.SIGKILL)
