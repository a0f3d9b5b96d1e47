"""TicketDispatcher: alert transitions -> tickets, through a persistent outbox, one lane per target.

One row per firing occurrence (keyed by ``Alert.idempotency_key``) in the ``ticket_links`` table
(SQLite, WAL, synchronous=FULL) is the outbox *and* the alert <-> ticket link. States::

    to_open --(before the remote call: attempts+1)--> opening --> open --> to_solve --> solved
       \\__ resolved before any attempt --> cancelled       (opening + resolved -> to_solve, see below)
    any pending state --(an error a retry cannot fix: 400, 401, 403, 404...)--> failed

Who does what:

- :meth:`TicketDispatcher.record` (the alert lane, after each evaluation) writes the intents of the
  transitions to the outbox and returns once they are committed, then wakes the lanes. It makes
  no remote call, so the evaluation of the next samples never waits for an ITSM.
- One **lane** per ticket target (an asyncio task and a wake event; clients sharing a connector
  share its lane) runs that target's due rows, one at a time, oldest alert first. A GLPI that
  accepts connections and never answers holds its own lane only: the other clients' tickets go
  on. Each remote call has a deadline (``call_timeout_s``); a call past it is a retryable failure.
- All SQLite work runs on one worker thread, never on the event loop that also serves the shared
  SNMP socket. Being one thread, it also runs the writes in the order they were asked for.

Crash safety (SIGKILL anywhere):

- The row is committed as ``to_open`` before anything remote happens, and as ``opening`` (with
  ``attempts`` incremented) right before the first remote call of an open. A row found in
  ``to_open``/``opening`` later is processed again, and processing always starts with
  ``connector.find_open(key)``: a ticket created just before the kill (key in its name/content) is
  found and re-attached instead of created twice.
- An alert resolved before its ticket exists is never ticketed when no attempt was made (the
  alert was shorter than the dispatch latency): ``to_open`` with no attempt becomes
  ``cancelled``. After an attempt it becomes ``to_solve`` without ticket id, and processing looks
  the ticket up, solves it if found. If not found and the attempts had failed (the ITSM was
  unreachable while the alert fired and resolved), the ticket is opened after the fact and solved
  at once, with a follow-up saying so, when ``ticket_resolved_during_outage(alert)`` says so
  (default: critical alerts), so that the outage still counts in the client's statistics; else
  the row is cancelled.
- A retryable failure (429, 5xx, network, deadline) leaves the row where it was with
  ``last_error`` and a ``next_attempt_at`` backoff (30 s doubling per consecutive failure, max
  15 min, at least what ``Retry-After`` asked). Any other failure is reported, not retried: state
  ``failed``, ``last_error``, an ERROR log line naming client, device and rule. Failed rows get
  one more chance at the next start (the operator may have fixed the token or the rights).
- :meth:`TicketDispatcher.stop` is bounded (``stop_timeout_s``): calls still in flight are
  cancelled. The outbox makes that safe: their rows are processed again at the next start, find
  before create.
- Reconciliation (level-triggered) covers a crash between the engine's commit and the outbox's:
  at start and every ``reconcile_interval_s``, a firing alert without a row gets one, and a row
  whose alert is no longer firing is resolved. It compares the engine's firing alerts with the
  keys the outbox holds in memory, so it writes nothing when nothing is missing: its cost does
  not grow with the number of alerts already firing and linked.

``time_to_ticket_s`` = ticket creation time - alert ``started_at`` (first bad sample), the figure
for the 5-minute critical-alert SLA. Time comes from ``clock``; a lane waiting for a backoff to
expire is woken early by :meth:`TicketDispatcher.wake` (tests that drive the clock call it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from agent.api.alerts import FIRING, RESOLVED, Alert, AlertTransition
from agent.api.ticket_text import DEFAULT_LOCALE, TicketLocale, after_the_fact_text, reattached_text
from agent.api.tickets import TicketConnector, TicketError, TicketRef
from agent.db import open_db

log = logging.getLogger(__name__)

T = TypeVar("T")

CRASH_ENV = "VIGIE_TEST_CRASH_AT"  # test seam: SIGKILL self at a named point (see _checkpoint)
BACKOFF_S = 30.0
MAX_BACKOFF_S = 900.0
CALL_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
RECONCILE_INTERVAL_S = 60.0

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
    last_error TEXT,
    failures INTEGER NOT NULL DEFAULT 0,
    first_failure_at REAL
);
CREATE INDEX IF NOT EXISTS ticket_links_state ON ticket_links(state);
"""
# Columns added since the first outboxes were written, and how to add them to those.
_ADDED_COLUMNS = {"failures": "INTEGER NOT NULL DEFAULT 0", "first_failure_at": "REAL"}

PENDING_STATES = ("to_open", "opening", "to_solve")  # a lane has work to do for these
FIRING_STATES = ("to_open", "opening", "open")  # the outbox believes their alert is firing
UNFINISHED_STATES = (*FIRING_STATES, "to_solve", "failed")


def critical_alerts(alert: Alert) -> bool:
    """The default for ``ticket_resolved_during_outage``: only critical alerts."""
    return alert.severity == "critical"


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
    failures: int
    next_attempt_at: float


@dataclass
class DispatchResult:
    """What the lanes did: tickets opened, re-attached, solved; rows cancelled; failures that will
    be retried (``retrying``) and failures that will not (``failed``), as (key, error)."""

    opened: list[TicketLink] = field(default_factory=list)
    reattached: list[TicketLink] = field(default_factory=list)
    solved: list[TicketLink] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    retrying: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any((self.opened, self.reattached, self.solved, self.cancelled, self.retrying, self.failed))

    def extend(self, other: DispatchResult) -> None:
        self.opened += other.opened
        self.reattached += other.reattached
        self.solved += other.solved
        self.cancelled += other.cancelled
        self.retrying += other.retrying
        self.failed += other.failed

    def drain(self) -> DispatchResult:
        """What was gathered so far, leaving this one empty."""
        taken = DispatchResult()
        taken.extend(self)
        for items in (self.opened, self.reattached, self.solved, self.cancelled, self.retrying, self.failed):
            items.clear()
        return taken


@dataclass(eq=False)
class _Lane:
    """One ticket target's worker: its connector (None: clients without a target), the clients it
    serves, and whether it also serves every client no target names (``others``)."""

    connector: TicketConnector | None
    clients: set[str]
    others: bool
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        kind = self.connector.name if self.connector is not None else "no target"
        return f"{kind} for {', '.join(sorted(self.clients)) or 'other clients'}"


class TicketDispatcher:
    def __init__(
        self,
        db_path: str,
        targets: Mapping[str, TicketConnector],
        clock: Callable[[], float] = time.time,
        *,
        default: TicketConnector | None = None,
        checkpoint: Callable[[str, str], None] | None = None,
        call_timeout_s: float = CALL_TIMEOUT_S,
        stop_timeout_s: float = STOP_TIMEOUT_S,
        reconcile_interval_s: float = RECONCILE_INTERVAL_S,
        ticket_resolved_during_outage: Callable[[Alert], bool] = critical_alerts,
        locale_for: Callable[[str], TicketLocale] = lambda client: DEFAULT_LOCALE,
        on_result: Callable[[DispatchResult], None] | None = None,
    ) -> None:
        """``targets``: client -> connector; ``default`` serves clients not listed (or None: their
        rows fail as "no ticket target", tried again at the next start). ``call_timeout_s``: the
        deadline of each remote call. ``stop_timeout_s``: how long :meth:`stop` lets calls in
        flight finish before cancelling them. ``ticket_resolved_during_outage(alert)``: open then
        solve a ticket for an alert that fired and resolved while its target failed.
        ``locale_for(client)``: the language and timezone of the dispatcher's own follow-ups.
        ``on_result(result)``: called on the event loop after each row a lane processed.
        ``checkpoint(point, key)`` is a test seam called at "before_open", "after_open" (ticket
        created, link not yet recorded) and "after_link"; by default it SIGKILLs the process when
        ``$VIGIE_TEST_CRASH_AT`` names the point."""
        self.targets = dict(targets)
        self.default = default
        self.clock = clock
        self.call_timeout_s = call_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.reconcile_interval_s = reconcile_interval_s
        self.ticket_resolved_during_outage = ticket_resolved_during_outage
        self.locale_for = locale_for
        self.on_result = on_result
        self._checkpoint = checkpoint or _env_checkpoint
        # One connection, used by the worker thread (writes, lane reads) and, under the lock, by
        # synchronous readers such as links().
        # synchronous=FULL: a transaction lost to a power cut could be a ticket opened twice
        self._db = open_db(db_path, _SCHEMA, threads=True, synchronous="FULL")
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            have = {r["name"] for r in self._db.execute("PRAGMA table_info(ticket_links)")}
            for column, decl in _ADDED_COLUMNS.items():
                if column not in have:
                    self._db.execute(f"ALTER TABLE ticket_links ADD COLUMN {column} {decl}")
            # key -> state of every row not finished: what reconciliation compares with the engine.
            self._unfinished: dict[str, str] = {
                r["key"]: r["state"]
                for r in self._db.execute(
                    f"SELECT key, state FROM ticket_links WHERE state IN ({_marks(UNFINISHED_STATES)})",
                    UNFINISHED_STATES,
                )
            }
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ticket-outbox")
        self._lanes = self._build_lanes()
        self._observers: list[DispatchResult] = []
        self._firing: Callable[[], Iterable[Alert]] | None = None
        self._reconciler: asyncio.Task[None] | None = None
        self._stopping = False
        self._closed = False

    def _build_lanes(self) -> list[_Lane]:
        lanes: dict[int, _Lane] = {}
        for client, connector in self.targets.items():
            lanes.setdefault(id(connector), _Lane(connector, set(), others=False)).clients.add(client)
        others = lanes.setdefault(id(self.default), _Lane(self.default, set(), others=True))
        others.others = True
        return list(lanes.values())

    def _lane_of(self, client: str) -> _Lane:
        return next(
            (lane for lane in self._lanes if client in lane.clients),
            next(lane for lane in self._lanes if lane.others),
        )

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, firing: Callable[[], Iterable[Alert]] | None = None) -> None:
        """Start the lanes; with ``firing`` (the engine's firing alerts), reconcile now and every
        ``reconcile_interval_s``. Rows left by an earlier run (to open, to solve, failed) are taken
        up by the lanes, beside whatever else the agent starts: nothing remote is awaited here."""
        retried = await self._in_worker(self._retry_failed)
        if retried:
            log.info("tickets: %d row(s) that failed before this start are tried again", retried)
        self._firing = firing
        if firing is not None:
            await self.reconcile()
        for lane in self._lanes:
            lane.task = asyncio.create_task(self._run_lane(lane), name=f"tickets: {lane.name}")
        if firing is not None:
            self._reconciler = asyncio.create_task(self._reconcile_periodically(), name="tickets: reconcile")

    async def stop(self) -> None:
        """Stop the lanes within about ``stop_timeout_s`` (calls still in flight are cancelled;
        their rows are processed again at the next start), then close the outbox."""
        if self._closed:
            return
        self._stopping = True
        if self._reconciler is not None:
            self._reconciler.cancel()
        self.wake()
        tasks = [lane.task for lane in self._lanes if lane.task is not None]
        if tasks:
            _, busy = await asyncio.wait(tasks, timeout=self.stop_timeout_s)
            if busy:
                log.warning(
                    "tickets: %d call(s) still in flight after %.0f s, cancelled; their rows are retried at the "
                    "next start",
                    len(busy),
                    self.stop_timeout_s,
                )
                for task in busy:
                    task.cancel()
                _, stuck = await asyncio.wait(busy, timeout=self.stop_timeout_s)
                for task in stuck:  # a connector that swallows cancellation: not waited for
                    log.error("tickets: %s did not stop when cancelled", task.get_name())
        if self._reconciler is not None:
            tasks.append(self._reconciler)  # cancelled above; it only sleeps or waits for the worker
            await asyncio.wait([self._reconciler])
        await asyncio.gather(*(task for task in tasks if task.done()), return_exceptions=True)
        self._closed = True
        await asyncio.to_thread(self._worker.shutdown)  # the writes asked for before are done
        with self._lock:
            self._db.close()

    def wake(self) -> None:
        """Make every lane look for due rows now (after a record, or after a driven clock moved)."""
        for lane in self._lanes:
            lane.idle.clear()
            lane.wake.set()

    async def settle(self, clients: Iterable[str] | None = None) -> DispatchResult:
        """Wait until the lanes of ``clients`` (default: all) have nothing due at ``clock()``;
        return what they did meanwhile. A lane that died re-raises its exception here."""
        if clients is None:
            lanes = self._lanes
        else:
            lanes = list({id(lane): lane for lane in map(self._lane_of, clients)}.values())
        observed = DispatchResult()
        self._observers.append(observed)
        try:
            self.wake()
            for lane in lanes:
                if lane.task is None:
                    raise RuntimeError("TicketDispatcher.settle() before start()")
                idle = asyncio.ensure_future(lane.idle.wait())
                await asyncio.wait({idle, lane.task}, return_when=asyncio.FIRST_COMPLETED)
                idle.cancel()
                if lane.task.done():
                    lane.task.result()
        finally:
            self._observers.remove(observed)
        return observed

    # -- intake -------------------------------------------------------------------------------

    async def record(self, transitions: Sequence[AlertTransition], now: float | None = None) -> None:
        """Write the intents of these transitions to the outbox; return once committed (crash-safe:
        the outbox first), then wake the lanes. No remote call."""
        if not transitions:
            return
        now = self.clock() if now is None else now
        await self._in_worker(self._record, list(transitions), now)
        self.wake()

    async def reconcile(self, firing: Callable[[], Iterable[Alert]] | None = None, now: float | None = None) -> None:
        """Compare the engine's firing alerts (``firing``, default the one given to :meth:`start`)
        with the outbox: queue what is missing, resolve what no longer fires."""
        source = firing or self._firing
        if source is None:
            raise ValueError("reconcile: no source of firing alerts")
        now = self.clock() if now is None else now
        # The snapshot and the write request are made with no await in between, and the worker
        # runs writes in order: an evaluation's record cannot slip between them.
        alerts = [a for a in source() if a.fired_at is not None]
        await self._in_worker(self._reconcile, alerts, now)
        self.wake()

    async def _reconcile_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.reconcile_interval_s)
            try:
                await self.reconcile()
            except Exception:  # noqa: BLE001 - a failed pass is logged; the next one comes
                log.exception("tickets: reconciliation with the engine's firing alerts failed")

    def _record(self, transitions: list[AlertTransition], now: float) -> None:
        with self._lock, _Tx(self._db):
            for tr in transitions:
                if tr.state == FIRING:
                    self._queue_open(tr.alert, now)
                elif tr.state == RESOLVED:
                    self._queue_solve(tr.alert, now)

    def _reconcile(self, alerts: list[Alert], now: float) -> None:
        live = {a.idempotency_key: a for a in alerts}
        missing = [a for key, a in live.items() if key not in self._unfinished]
        gone = [key for key, state in self._unfinished.items() if state in FIRING_STATES and key not in live]
        if not missing and not gone:
            return
        with self._lock, _Tx(self._db):
            for alert in missing:
                self._queue_open(alert, now)
            for key in gone:
                row = self._db.execute("SELECT alert FROM ticket_links WHERE key=?", (key,)).fetchone()
                alert = Alert.from_dict(json.loads(row["alert"]))
                alert.resolved_at = alert.resolved_at or now
                alert.state = RESOLVED
                self._queue_solve(alert, now)

    def _queue_open(self, alert: Alert, now: float) -> None:
        cur = self._db.execute(
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
        if cur.rowcount:
            self._unfinished[alert.idempotency_key] = "to_open"

    def _queue_solve(self, alert: Alert, now: float) -> None:
        key = alert.idempotency_key
        row = self._db.execute("SELECT state, attempts FROM ticket_links WHERE key=?", (key,)).fetchone()
        if row is None or row["state"] in ("to_solve", "solved", "cancelled"):
            return
        resolved_at = alert.resolved_at or now
        if row["state"] == "failed":  # stays reported; the resolution is kept for the next start
            new_state = "failed"
        elif row["state"] == "to_open" and row["attempts"] == 0:
            new_state = "cancelled"  # shorter than the dispatch latency: never ticketed
            log.info("no ticket for %s: resolved before any attempt to open one [%s]", _who(alert), key)
        else:
            new_state = "to_solve"
        self._db.execute(
            "UPDATE ticket_links SET state=?, alert=?, resolved_at=?, next_attempt_at=0 WHERE key=?",
            (new_state, json.dumps(alert.to_dict()), resolved_at, key),
        )
        self._set_state(key, new_state)

    def _retry_failed(self) -> int:
        with self._lock, _Tx(self._db):
            cur = self._db.execute(
                "UPDATE ticket_links SET state = CASE WHEN resolved_at IS NOT NULL THEN 'to_solve' "
                "WHEN ticket_id IS NOT NULL THEN 'open' WHEN attempts > 0 THEN 'opening' ELSE 'to_open' END, "
                "failures=0, next_attempt_at=0 WHERE state='failed' RETURNING key, state"
            )
            rows = cur.fetchall()
            for row in rows:
                self._set_state(row["key"], row["state"])
            return len(rows)

    def _set_state(self, key: str, state: str) -> None:
        if state in UNFINISHED_STATES:
            self._unfinished[key] = state
        else:
            self._unfinished.pop(key, None)

    # -- lanes --------------------------------------------------------------------------------

    async def _run_lane(self, lane: _Lane) -> None:
        while not self._stopping:
            lane.wake.clear()
            try:
                rows, next_due = await self._in_worker(self._due, lane, self.clock())
                for row in rows:
                    if self._stopping:
                        return
                    result = DispatchResult()
                    await self._process(lane, row, result)
                    self._report(result)
            except Exception:  # noqa: BLE001 - a bug must not stop this target's tickets for good
                log.exception("tickets: lane %s failed; it starts again in %.0f s", lane.name, BACKOFF_S)
                rows, next_due = [], self.clock() + BACKOFF_S
            if rows:
                continue  # more may have come in meanwhile
            wait_s = None if next_due is None else next_due - self.clock()
            if wait_s is not None and wait_s <= 0:
                continue
            if not lane.wake.is_set():
                lane.idle.set()
            try:
                await asyncio.wait_for(lane.wake.wait(), wait_s)
            except TimeoutError:
                pass

    def _due(self, lane: _Lane, now: float) -> tuple[list[sqlite3.Row], float | None]:
        """This lane's rows due at ``now`` (oldest alert first) and when the next one falls due."""
        served = f"client IN ({_marks(lane.clients)})"
        args: list[Any] = sorted(lane.clients)
        if lane.others:
            served = f"({served} OR client NOT IN ({_marks(self.targets)}))"
            args += sorted(self.targets)
        pending = f"state IN ({_marks(PENDING_STATES)})"
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM ticket_links WHERE {pending} AND {served} AND next_attempt_at <= ? ORDER BY started_at",
                (*PENDING_STATES, *args, now),
            ).fetchall()
            (next_due,) = self._db.execute(
                f"SELECT MIN(next_attempt_at) FROM ticket_links WHERE {pending} AND {served} AND next_attempt_at > ?",
                (*PENDING_STATES, *args, now),
            ).fetchone()
        return rows, next_due

    async def _process(self, lane: _Lane, row: sqlite3.Row, result: DispatchResult) -> None:
        key = row["key"]
        alert = Alert.from_dict(json.loads(row["alert"]))
        connector = lane.connector
        if connector is None:
            error = f"no ticket target for client {row['client']!r}"
            await self._in_worker(self._record_failure, key, error, False, None, self.clock())
            log.error("ticket for %s failed, not retried until the next start: %s [%s]", _who(alert), error, key)
            result.failed.append((key, error))
            return
        action = "open" if row["state"] in ("to_open", "opening") else "solve"
        try:
            if action == "open":
                await self._open(connector, row, alert, result)
            else:
                await self._solve(connector, row, result)
            return
        except TicketError as exc:
            error, retryable, retry_after_s = str(exc), exc.retryable, exc.retry_after_s
        except Exception as exc:  # noqa: BLE001 - a connector's bug: logged whole, retried like an outage
            log.exception("ticket %s for %s: unexpected error", action, _who(alert))
            error, retryable, retry_after_s = f"{type(exc).__name__}: {exc}", True, None
        link = await self._in_worker(self._record_failure, key, error, retryable, retry_after_s, self.clock())
        if retryable:
            log.warning(
                "ticket %s for %s failed, retry in %.0f s: %s [%s]",
                action,
                _who(alert),
                link.next_attempt_at - self.clock(),
                error,
                key,
            )
            result.retrying.append((key, error))
        else:
            log.error("ticket %s for %s failed, not retried: %s [%s]", action, _who(alert), error, key)
            result.failed.append((key, error))

    async def _remote(self, connector: TicketConnector, call: Awaitable[T], what: str) -> T:
        try:
            async with asyncio.timeout(self.call_timeout_s):
                return await call
        except TimeoutError:
            raise TicketError(f"{connector.name}: no answer to {what} within {self.call_timeout_s:g} s") from None

    async def _open(self, connector: TicketConnector, row: sqlite3.Row, alert: Alert, result: DispatchResult) -> None:
        key = row["key"]
        if not await self._in_worker(self._mark_opening, key, connector.name):
            return  # resolved since the lane read it: the next pass takes it as it is now
        ref = await self._remote(connector, connector.find_open(key), "find_open")
        reused = ref is not None
        if ref is None:
            self._checkpoint("before_open", key)
            ref = await self._remote(connector, connector.open(alert), "open")
            self._checkpoint("after_open", key)
        link = await self._in_worker(self._link, key, ref, reused, self.clock())
        self._checkpoint("after_link", key)
        (result.reattached if reused else result.opened).append(link)
        log.info(
            "ticket %s#%s %s for %s (%s), %.1f s after the first bad sample [%s]",
            connector.name,
            ref.id,
            "re-attached" if reused else "opened",
            _who(alert),
            alert.summary,
            link.time_to_ticket_s,
            key,
        )
        if reused:
            text = reattached_text(alert, self.locale_for(alert.client))
            await self._follow_up(connector, ref, alert, text, "re-attached after a restart")
        if link.state == "to_solve":  # resolved while the call was in flight
            await self._solve(connector, await self._in_worker(self._row, key), result)

    async def _follow_up(self, connector: TicketConnector, ref: TicketRef, alert: Alert, text: str, why: str) -> None:
        """Leave a trace in the ticket. Best effort: the link is already recorded, and a lost
        follow-up must not make the ticket be looked for, or opened, again."""
        try:
            await self._remote(connector, connector.add_followup(ref, text), "add_followup")
        except TicketError as exc:
            log.warning("ticket %s#%s for %s: follow-up (%s) failed: %s", connector.name, ref.id, _who(alert), why, exc)
            return
        log.info("ticket %s#%s followed up for %s: %s", connector.name, ref.id, _who(alert), why)

    async def _solve(self, connector: TicketConnector, row: sqlite3.Row, result: DispatchResult) -> None:
        key = row["key"]
        alert = Alert.from_dict(json.loads(row["alert"]))  # the resolved version, with resolved_at
        if row["ticket_id"] is not None:
            ref = TicketRef(row["connector"] or connector.name, row["ticket_id"], row["ticket_url"])
        else:  # resolved while a create attempt's outcome was unknown, or after failed attempts
            found = await self._remote(connector, connector.find_open(key), "find_open")
            if found is not None:
                ref = found
                await self._in_worker(self._attach, key, ref, connector.name)
            elif row["first_failure_at"] is not None and self.ticket_resolved_during_outage(alert):
                ref = await self._open_after_the_fact(connector, key, alert, result)
            else:
                await self._in_worker(self._cancel, key)
                result.cancelled.append(key)
                log.info("no ticket for %s: resolved before one could be opened [%s]", _who(alert), key)
                return
        await self._remote(connector, connector.solve(ref, alert), "solve")
        link = await self._in_worker(self._mark_solved, key, self.clock())
        result.solved.append(link)
        log.info("ticket %s#%s solved for %s (%s) [%s]", connector.name, ref.id, _who(alert), alert.summary, key)

    async def _open_after_the_fact(
        self, connector: TicketConnector, key: str, alert: Alert, result: DispatchResult
    ) -> TicketRef:
        """The alert fired and resolved while this target failed: open its ticket now, so that the
        outage is in the client's statistics; the caller solves it at once."""
        self._checkpoint("before_open", key)
        ref = await self._remote(connector, connector.open(alert), "open")
        self._checkpoint("after_open", key)
        link = await self._in_worker(self._link, key, ref, False, self.clock())
        result.opened.append(link)
        log.info(
            "ticket %s#%s opened after the fact for %s (%s): fired and resolved while %s failed [%s]",
            connector.name,
            ref.id,
            _who(alert),
            alert.summary,
            connector.name,
            key,
        )
        text = after_the_fact_text(alert, connector.name, self.locale_for(alert.client))
        await self._follow_up(connector, ref, alert, text, "opened after the fact")
        return ref

    def _report(self, result: DispatchResult) -> None:
        if not result:
            return
        for observer in self._observers:
            observer.extend(result)
        if self.on_result is not None:
            self.on_result(result)

    # -- outbox updates (worker thread) -------------------------------------------------------

    def _mark_opening(self, key: str, connector: str) -> bool:
        with self._lock, _Tx(self._db):
            cur = self._db.execute(
                "UPDATE ticket_links SET state='opening', attempts=attempts+1, connector=? "
                "WHERE key=? AND state IN ('to_open', 'opening')",
                (connector, key),
            )
            if cur.rowcount:
                self._set_state(key, "opening")
            return bool(cur.rowcount)

    def _link(self, key: str, ref: TicketRef, reused: bool, opened_at: float) -> TicketLink:
        with self._lock:
            with _Tx(self._db):
                row = self._db.execute("SELECT state, started_at FROM ticket_links WHERE key=?", (key,)).fetchone()
                # the alert may have been resolved while the call was in flight: keep 'to_solve'
                state = "to_solve" if row["state"] == "to_solve" else "open"
                self._db.execute(
                    "UPDATE ticket_links SET state=?, connector=?, ticket_id=?, ticket_url=?, reused=?, opened_at=?, "
                    "time_to_ticket_s=?, last_error=NULL, failures=0, next_attempt_at=0 WHERE key=?",
                    (state, ref.connector, ref.id, ref.url, int(reused), opened_at, opened_at - row["started_at"], key),
                )
                self._set_state(key, state)
            return _to_link(self._row_locked(key))

    def _attach(self, key: str, ref: TicketRef, connector: str) -> None:
        with self._lock, _Tx(self._db):
            self._db.execute(
                "UPDATE ticket_links SET ticket_id=?, ticket_url=?, reused=1, connector=? WHERE key=?",
                (ref.id, ref.url, connector, key),
            )

    def _cancel(self, key: str) -> None:
        with self._lock, _Tx(self._db):
            self._db.execute("UPDATE ticket_links SET state='cancelled' WHERE key=?", (key,))
            self._set_state(key, "cancelled")

    def _mark_solved(self, key: str, solved_at: float) -> TicketLink:
        with self._lock:
            with _Tx(self._db):
                self._db.execute(
                    "UPDATE ticket_links SET state='solved', solved_at=?, last_error=NULL, failures=0 WHERE key=?",
                    (solved_at, key),
                )
                self._set_state(key, "solved")
            return _to_link(self._row_locked(key))

    def _record_failure(
        self, key: str, error: str, retryable: bool, retry_after_s: float | None, now: float
    ) -> TicketLink:
        with self._lock:
            with _Tx(self._db):
                if retryable:
                    failures = int(self._row_locked(key)["failures"]) + 1
                    delay = min(max(BACKOFF_S * 2 ** (failures - 1), retry_after_s or 0.0), MAX_BACKOFF_S)
                    self._db.execute(
                        "UPDATE ticket_links SET last_error=?, failures=?, next_attempt_at=?, "
                        "first_failure_at=COALESCE(first_failure_at, ?) WHERE key=?",
                        (error[:500], failures, now + delay, now, key),
                    )
                else:
                    self._db.execute(
                        "UPDATE ticket_links SET state='failed', last_error=? WHERE key=?", (error[:500], key)
                    )
                    self._set_state(key, "failed")
            return _to_link(self._row_locked(key))

    async def _in_worker(self, fn: Callable[..., T], *args: Any) -> T:
        # Shielded: a write asked for is carried out even if the caller is cancelled (stop()).
        return await asyncio.shield(asyncio.get_running_loop().run_in_executor(self._worker, fn, *args))

    # -- queries ------------------------------------------------------------------------------

    def _row_locked(self, key: str) -> sqlite3.Row:
        return self._db.execute("SELECT * FROM ticket_links WHERE key=?", (key,)).fetchone()

    def _row(self, key: str) -> sqlite3.Row:
        with self._lock:
            return self._row_locked(key)

    def link(self, key: str) -> TicketLink | None:
        row = self._row(key)
        return _to_link(row) if row else None

    def links(self, client: str | None = None, states: Iterable[str] | None = None) -> list[TicketLink]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM ticket_links ORDER BY queued_at, key").fetchall()
        wanted = set(states) if states is not None else None
        return [
            _to_link(r)
            for r in rows
            if (client is None or r["client"] == client) and (wanted is None or r["state"] in wanted)
        ]


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _marks(values: Iterable[Any]) -> str:
    return ",".join("?" for _ in values)


def _who(alert: Alert) -> str:
    return f"{alert.client}/{alert.device or '-'} {alert.rule}"


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
        failures=row["failures"],
        next_attempt_at=row["next_attempt_at"],
    )


def _env_checkpoint(point: str, key: str) -> None:
    if os.environ.get(CRASH_ENV) == point:
        log.error("%s=%s: killing the process at %s (%s)", CRASH_ENV, point, point, key)
        os.kill(os.getpid(), signal.SIGKILL)
