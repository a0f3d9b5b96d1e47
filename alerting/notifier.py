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

Grouping (``grouping_for(client)``, see :class:`Grouping`): alerts of one group share one ticket,
whose outbox row is in ``ticket_groups`` (same columns and states, processed by the same code:
the writes below dispatch on the table holding the key); each alert keeps its own ``ticket_links``
row with ``group_key``, linked to the group's ticket when it exists. Open groups also fall due at
``flush_at`` for the follow-up naming the alerts that joined or resolved, or a reminder.

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

from agent.api.alerts import FIRING, RESOLVED, Alert, AlertTransition, fingerprint
from agent.api.rules import SEVERITIES
from agent.api.ticket_text import (
    DEFAULT_LOCALE,
    TicketLocale,
    after_the_fact_text,
    group_followup_text,
    group_summary,
    member_line,
    reattached_text,
    reopened_text,
)
from agent.api.tickets import Reopenable, TicketConnector, TicketError, TicketRef
from agent.db import open_db

log = logging.getLogger(__name__)

T = TypeVar("T")

CRASH_ENV = "VIGIE_TEST_CRASH_AT"  # test seam: SIGKILL self at a named point (see _checkpoint)
BACKOFF_S = 30.0
MAX_BACKOFF_S = 900.0
CALL_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
RECONCILE_INTERVAL_S = 60.0

# The columns an outbox row has, whether it links one alert (ticket_links) or a group of alerts to
# one ticket (ticket_groups): the lanes, the failure/backoff bookkeeping and the link/solve writes
# run on either.
_ROW_COLUMNS = """
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
    first_failure_at REAL,
    reopens TEXT,
    taken_at REAL"""
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS ticket_links ({_ROW_COLUMNS}
);
CREATE INDEX IF NOT EXISTS ticket_links_state ON ticket_links(state);
CREATE TABLE IF NOT EXISTS ticket_groups ({_ROW_COLUMNS},
    labels TEXT NOT NULL,
    listed TEXT NOT NULL DEFAULT '[]',
    flush_at REAL,
    notified_at REAL
);
CREATE INDEX IF NOT EXISTS ticket_groups_state ON ticket_groups(state);
CREATE INDEX IF NOT EXISTS ticket_groups_fingerprint ON ticket_groups(fingerprint, client);
"""
# Columns added to ticket_links since the first outboxes were written, and how to add them to those.
# group_key: the ticket_groups row whose ticket the alert is on (NULL: its own ticket); announced:
# what that ticket said of it so far (0 nothing, 1 firing, 2 resolved); taken_at: when the ITSM
# says someone took the ticket in charge.
_ADDED_COLUMNS = {"failures": "INTEGER NOT NULL DEFAULT 0", "first_failure_at": "REAL", "reopens": "TEXT",
                  "group_key": "TEXT", "announced": "INTEGER NOT NULL DEFAULT 0", "taken_at": "REAL"}
GROUPS = "ticket_groups"
LINKS = "ticket_links"

PENDING_STATES = ("to_open", "opening", "to_solve")  # a lane has work to do for these
# the outbox believes their alert is firing; "maintenance": fired inside a maintenance window,
# held (no ticket) until the window ends, then "to_open" if it still fires
FIRING_STATES = ("to_open", "opening", "open", "maintenance")
UNFINISHED_STATES = (*FIRING_STATES, "to_solve", "failed")


def critical_alerts(alert: Alert) -> bool:
    """The default for ``ticket_resolved_during_outage``: only critical alerts."""
    return alert.severity == "critical"


@dataclass(frozen=True)
class Grouping:
    """How a client's firing alerts are gathered into tickets, as Alertmanager's route does it.

    Alerts with equal ``client`` and equal values of the ``by`` labels (a missing label is "")
    share one ticket. ``wait_s``: how long a new group waits before its ticket is opened, so that
    alerts firing together land in it (``group_wait``). ``interval_s``: at most one follow-up per
    interval listing the alerts that joined or resolved since the last one (``group_interval``).
    ``repeat_s``: a reminder follow-up on a group still firing with nothing new to say
    (``repeat_interval``). No grouping (``group_by: ["..."]``) is ``None`` where a ``Grouping``
    is expected: one ticket per alert, keyed by the alert."""

    by: tuple[str, ...] = ("client", "site", "alertname")
    wait_s: float = 30.0
    interval_s: float = 300.0
    repeat_s: float = 4 * 3600.0

    def labels(self, alert: Alert) -> dict[str, str]:
        return {name: alert.labels.get(name, "") for name in ("client", *self.by)}

    def fingerprint(self, alert: Alert) -> str:
        # the label names are part of the identity: grouping by [site] and by [site, alertname]
        # never name the same group, and a group never takes the fingerprint of an alert
        return fingerprint({**self.labels(alert), "vigie_group_by": ",".join(self.by)})


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
    taken_at: float | None = None  # read back from the ITSM (alerting/acknowledgement.py)


@dataclass
class DispatchResult:
    """What the lanes did: tickets opened, re-attached, solved; rows cancelled; failures that will
    be retried (``retrying``) and failures that will not (``failed``), as (key, error)."""

    opened: list[TicketLink] = field(default_factory=list)
    reopened: list[TicketLink] = field(default_factory=list)
    reattached: list[TicketLink] = field(default_factory=list)
    solved: list[TicketLink] = field(default_factory=list)
    followed_up: list[TicketLink] = field(default_factory=list)  # group tickets told what joined/resolved
    cancelled: list[str] = field(default_factory=list)
    retrying: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any((self.opened, self.reopened, self.reattached, self.solved, self.followed_up, self.cancelled,
                    self.retrying, self.failed))

    def extend(self, other: DispatchResult) -> None:
        self.opened += other.opened
        self.reopened += other.reopened
        self.reattached += other.reattached
        self.solved += other.solved
        self.followed_up += other.followed_up
        self.cancelled += other.cancelled
        self.retrying += other.retrying
        self.failed += other.failed

    def drain(self) -> DispatchResult:
        """What was gathered so far, leaving this one empty."""
        taken = DispatchResult()
        taken.extend(self)
        for items in (self.opened, self.reopened, self.reattached, self.solved, self.followed_up, self.cancelled,
                      self.retrying, self.failed):
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
        in_maintenance: Callable[[Alert, float], tuple[str, float] | None] = lambda alert, at: None,
        prepare: Callable[[Alert, float], None] = lambda alert, now: None,
        reopen_within_s: Callable[[str], float] = lambda client: 0.0,
        grouping_for: Callable[[str], Grouping | None] = lambda client: None,
    ) -> None:
        """``targets``: client -> connector; ``default`` serves clients not listed (or None: their
        rows fail as "no ticket target", tried again at the next start). ``call_timeout_s``: the
        deadline of each remote call. ``stop_timeout_s``: how long :meth:`stop` lets calls in
        flight finish before cancelling them. ``ticket_resolved_during_outage(alert)``: open then
        solve a ticket for an alert that fired and resolved while its target failed.
        ``locale_for(client)``: the language and timezone of the dispatcher's own follow-ups.
        ``on_result(result)``: called on the event loop after each row a lane processed.
        ``in_maintenance(alert, at)``: (window name, its end) when a maintenance window covers the
        alert: its row waits in ``maintenance``, and reconciliation queues it once the window is
        over and it still fires (one that resolves meanwhile never opens a ticket).
        ``prepare(alert, now)``: what the kernel sets on an alert as it is queued for its ticket
        (its contract priority, the changes of the last hour on the device and its parents).
        ``reopen_within_s(client)``: an alert firing again that soon after its previous ticket
        was solved reopens that ticket (receivers with ``reopen``) instead of opening another.
        ``grouping_for(client)``: how that client's alerts share tickets (:class:`Grouping`; None,
        the default: one ticket per alert).
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
        self.in_maintenance = in_maintenance
        self.prepare = prepare
        self.reopen_within_s = reopen_within_s
        self.grouping_for = grouping_for
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
            self._db.execute("CREATE INDEX IF NOT EXISTS ticket_links_group ON ticket_links(group_key)")
            # key -> state of every row not finished: what reconciliation compares with the engine.
            self._unfinished: dict[str, str] = {
                r["key"]: r["state"]
                for r in self._db.execute(
                    f"SELECT key, state FROM ticket_links WHERE state IN ({_marks(UNFINISHED_STATES)})",
                    UNFINISHED_STATES,
                )
            }
        # groups whose ticket text changed in the transaction being written (worker thread only)
        self._dirty_groups: set[str] = set()
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
            # at the interval, or as soon as a maintenance window holding an alert ends
            held_until = await self._in_worker(self._first_window_end)
            wait_s = self.reconcile_interval_s if held_until is None else min(
                self.reconcile_interval_s, max(0.0, held_until - self.clock()) + 0.5)
            await asyncio.sleep(wait_s)
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
            self._render_groups()

    def _reconcile(self, alerts: list[Alert], now: float) -> None:
        live = {a.idempotency_key: a for a in alerts}
        missing = [a for key, a in live.items() if key not in self._unfinished]
        gone = [key for key, state in self._unfinished.items() if state in FIRING_STATES and key not in live]
        held = [key for key, state in self._unfinished.items() if state == "maintenance" and key in live]
        if not missing and not gone and not held:
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
            for key in held:
                self._end_maintenance(live[key], now)
            self._render_groups()

    def _first_window_end(self) -> float | None:
        with self._lock:
            (end,) = self._db.execute("SELECT MIN(next_attempt_at) FROM ticket_links WHERE state='maintenance'"
                                      ).fetchone()
        return end

    def _end_maintenance(self, alert: Alert, now: float) -> None:
        """A held alert still firing: queued for its ticket once no window covers it any more."""
        key = alert.idempotency_key
        row = self._db.execute("SELECT next_attempt_at FROM ticket_links WHERE key=?", (key,)).fetchone()
        if row["next_attempt_at"] > now:
            return  # its window is not over yet
        covered = self.in_maintenance(alert, now)
        if covered is not None:  # another window took over
            self._db.execute("UPDATE ticket_links SET next_attempt_at=?, last_error=? WHERE key=?",
                             (covered[1], _held_text(*covered), key))
            return
        self._db.execute("UPDATE ticket_links SET state='to_open', next_attempt_at=0, last_error=NULL, queued_at=? "
                         "WHERE key=?", (now, key))
        self._set_state(key, "to_open")
        log.info("maintenance over, %s still fires: its ticket is opened now [%s]", _who(alert), key)
        grouping = self.grouping_for(alert.client)
        if grouping is not None:
            self._join_group(alert, grouping, now)

    def _queue_open(self, alert: Alert, now: float) -> None:
        self.prepare(alert, now)
        covered = self.in_maintenance(alert, now)
        state = "to_open" if covered is None else "maintenance"
        # a grouped alert reopens through its group (_new_group); a held one joins it when let go
        grouping = self.grouping_for(alert.client)
        window = self.reopen_within_s(alert.client) if grouping is None else 0.0
        previous = None if window <= 0 else self._db.execute(
            "SELECT key, connector, ticket_id, ticket_url FROM ticket_links WHERE fingerprint=? AND state='solved' "
            "AND ticket_id IS NOT NULL AND solved_at >= ? ORDER BY solved_at DESC LIMIT 1",
            (alert.fingerprint, now - window),
        ).fetchone()
        cur = self._db.execute(
            "INSERT OR IGNORE INTO ticket_links(key, fingerprint, client, rule, state, alert, started_at, "
            "fired_at, queued_at, next_attempt_at, last_error, reopens, connector, ticket_id, ticket_url) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                alert.idempotency_key,
                alert.fingerprint,
                alert.client,
                alert.rule,
                state,
                json.dumps(alert.to_dict()),
                alert.started_at,
                alert.fired_at,
                now,
                0 if covered is None else covered[1],
                None if covered is None else _held_text(*covered),
                None if previous is None else previous["key"],
                None if previous is None else previous["connector"],
                None if previous is None else previous["ticket_id"],
                None if previous is None else previous["ticket_url"],
            ),
        )
        if cur.rowcount:
            self._unfinished[alert.idempotency_key] = state
            if covered is not None:
                log.info("no ticket yet for %s: %s [%s]", _who(alert), _held_text(*covered), alert.idempotency_key)
            elif grouping is not None:
                self._join_group(alert, grouping, now)

    def _queue_solve(self, alert: Alert, now: float) -> None:
        key = alert.idempotency_key
        row = self._db.execute("SELECT state, attempts, group_key FROM ticket_links WHERE key=?", (key,)).fetchone()
        if row is None or row["state"] in ("to_solve", "solved", "cancelled"):
            return
        resolved_at = alert.resolved_at or now
        if row["state"] == "failed":  # stays reported; the resolution is kept for the next start
            new_state = "failed"
        elif row["state"] == "to_open" and row["attempts"] == 0:
            new_state = "cancelled"  # shorter than the dispatch latency: never ticketed
            log.info("no ticket for %s: resolved before any attempt to open one [%s]", _who(alert), key)
        elif row["state"] == "maintenance":
            new_state = "cancelled"  # over inside its maintenance window: recorded, never ticketed
            log.info("no ticket for %s: resolved inside its maintenance window [%s]", _who(alert), key)
        else:
            new_state = "to_solve"
        self._db.execute(
            "UPDATE ticket_links SET state=?, alert=?, resolved_at=?, next_attempt_at=0 WHERE key=?",
            (new_state, json.dumps(alert.to_dict()), resolved_at, key),
        )
        self._set_state(key, new_state)
        if row["group_key"] is not None:
            self._member_resolved(row["group_key"], now)

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
            groups = self._db.execute(
                "UPDATE ticket_groups SET state = CASE WHEN resolved_at IS NOT NULL THEN 'to_solve' "
                "WHEN ticket_id IS NOT NULL THEN 'open' WHEN attempts > 0 THEN 'opening' ELSE 'to_open' END, "
                "failures=0, next_attempt_at=0 WHERE state='failed'"
            ).rowcount
            return len(rows) + groups

    def _set_state(self, key: str, state: str) -> None:
        if state in UNFINISHED_STATES:
            self._unfinished[key] = state
        else:
            self._unfinished.pop(key, None)

    # -- groups (worker thread, inside the caller's transaction) --------------------------------

    def _join_group(self, alert: Alert, grouping: Grouping, now: float) -> None:
        """Put a queued alert on its group's ticket: the group still gathering or open, else a new
        one. Joining an open ticket links the alert at once (the ticket covers it from now on)
        and schedules the follow-up that names it."""
        key = alert.idempotency_key
        group = self._db.execute(
            "SELECT key, state, connector, ticket_id, ticket_url FROM ticket_groups WHERE fingerprint=? AND client=? "
            "AND state IN ('to_open', 'opening', 'open') ORDER BY queued_at DESC LIMIT 1",
            (grouping.fingerprint(alert), alert.client),
        ).fetchone()
        group_key = self._new_group(alert, grouping, now) if group is None else group["key"]
        self._db.execute("UPDATE ticket_links SET group_key=? WHERE key=?", (group_key, key))
        if group is not None and group["state"] == "open":
            self._db.execute(
                "UPDATE ticket_links SET state='open', connector=?, ticket_id=?, ticket_url=?, opened_at=?, "
                "time_to_ticket_s=? - started_at WHERE key=?",
                (group["connector"], group["ticket_id"], group["ticket_url"], now, now, key),
            )
            self._set_state(key, "open")
            self._group_changed(group_key, grouping, now)
        self._dirty_groups.add(group_key)

    def _new_group(self, alert: Alert, grouping: Grouping, now: float) -> str:
        """A group row for the first alert of a group: its ticket is due ``wait_s`` from now. Its
        key is the idempotency key of the group's ticket: the group's fingerprint and the first
        alert's firing time (a second later while that key is taken)."""
        group_fp = grouping.fingerprint(alert)
        window = self.reopen_within_s(alert.client)
        previous = None if window <= 0 else self._db.execute(
            "SELECT key, connector, ticket_id, ticket_url FROM ticket_groups WHERE fingerprint=? AND client=? "
            "AND state='solved' AND ticket_id IS NOT NULL AND solved_at >= ? ORDER BY solved_at DESC LIMIT 1",
            (group_fp, alert.client, now - window),
        ).fetchone()
        fired = int(alert.fired_at or now)
        while self._db.execute("SELECT 1 FROM ticket_groups WHERE key=?", (f"vigie:{group_fp}:{fired}",)).fetchone():
            fired += 1
        key = f"vigie:{group_fp}:{fired}"
        self._db.execute(
            "INSERT INTO ticket_groups(key, fingerprint, client, rule, state, alert, labels, started_at, fired_at, "
            "queued_at, next_attempt_at, reopens, connector, ticket_id, ticket_url) "
            "VALUES (?,?,?,?,'to_open','{}',?,?,?,?,?,?,?,?,?)",
            (
                key, group_fp, alert.client, alert.rule, json.dumps(grouping.labels(alert)), alert.started_at, fired,
                now, now + grouping.wait_s,
                *((None, None, None, None) if previous is None else
                  (previous["key"], previous["connector"], previous["ticket_id"], previous["ticket_url"])),
            ),
        )
        return key

    def _group_changed(self, group_key: str, grouping: Grouping | None, now: float) -> None:
        """An alert joined or resolved on an open group ticket: its follow-up is due one
        ``interval_s`` after the previous one (now if that is past), not before."""
        row = self._db.execute("SELECT state, notified_at FROM ticket_groups WHERE key=?", (group_key,)).fetchone()
        if row["state"] != "open":
            return  # the opening lists it, or the group is over
        interval = (grouping or Grouping()).interval_s
        due = max(now, (row["notified_at"] or now) + interval)
        self._db.execute("UPDATE ticket_groups SET flush_at=MIN(COALESCE(flush_at, ?), ?) WHERE key=?",
                         (due, due, group_key))

    def _member_resolved(self, group_key: str, now: float) -> None:
        """One alert of a group resolved: the group's ticket is solved once none fires any more."""
        self._dirty_groups.add(group_key)
        group = self._db.execute("SELECT state, attempts, client FROM ticket_groups WHERE key=?",
                                 (group_key,)).fetchone()
        (firing, last) = self._db.execute(
            "SELECT SUM(resolved_at IS NULL), MAX(resolved_at) FROM ticket_links WHERE group_key=? "
            "AND state != 'cancelled'", (group_key,)).fetchone()
        if firing:
            self._group_changed(group_key, self.grouping_for(group["client"]), now)
            return
        if group["state"] == "to_open" and group["attempts"] == 0:
            state = "cancelled"  # every alert of it was shorter than group_wait + the dispatch latency
        elif group["state"] in ("to_open", "opening", "open"):
            state = "to_solve"
        else:
            state = group["state"]  # failed: the resolution is kept for the next start
        self._db.execute("UPDATE ticket_groups SET state=?, resolved_at=?, next_attempt_at=0 WHERE key=?",
                         (state, last or now, group_key))

    def _render_groups(self) -> None:
        """Write the ticket text (a synthetic alert) of the groups changed in this transaction."""
        for group_key in self._dirty_groups:
            group = self._db.execute("SELECT fingerprint, labels, fired_at, client FROM ticket_groups WHERE key=?",
                                     (group_key,)).fetchone()
            members = [Alert.from_dict(json.loads(r["alert"])) for r in self._db.execute(
                "SELECT alert FROM ticket_links WHERE group_key=? AND state != 'cancelled' ORDER BY started_at, key",
                (group_key,))]
            if not members:
                continue
            alert = group_alert(group["fingerprint"], json.loads(group["labels"]), group["fired_at"], members,
                                self.locale_for(group["client"]))
            listed = [m.idempotency_key for m in members if m.resolved_at is None]
            self._db.execute("UPDATE ticket_groups SET alert=?, rule=?, started_at=?, listed=? WHERE key=?",
                             (json.dumps(alert.to_dict()), alert.rule, alert.started_at, json.dumps(listed),
                              group_key))
        self._dirty_groups.clear()

    def _group_news(self, group_key: str) -> tuple[list[Alert], list[Alert], int]:
        """What a group's ticket has not said yet: alerts that joined, alerts that resolved; and
        how many still fire."""
        joined, resolved, firing = [], [], 0
        with self._lock:
            rows = self._db.execute(
                "SELECT alert, announced, resolved_at FROM ticket_links WHERE group_key=? AND state != 'cancelled' "
                "ORDER BY started_at, key", (group_key,)).fetchall()
        for row in rows:
            if row["resolved_at"] is None:
                firing += 1
                if row["announced"] == 0:
                    joined.append(Alert.from_dict(json.loads(row["alert"])))
            elif row["announced"] < 2:
                resolved.append(Alert.from_dict(json.loads(row["alert"])))
        return joined, resolved, firing

    def _mark_notified(self, group_key: str, joined: list[str], resolved: list[str], now: float) -> TicketLink:
        """The follow-up was posted: what it named is announced; the next one is due at the next
        change (``_group_changed``) or at the reminder."""
        with self._lock:
            with _Tx(self._db):
                self._db.executemany("UPDATE ticket_links SET announced=1 WHERE key=? AND announced=0",
                                     [(k,) for k in joined])
                self._db.executemany("UPDATE ticket_links SET announced=2 WHERE key=?", [(k,) for k in resolved])
                row = self._db.execute("SELECT client FROM ticket_groups WHERE key=?", (group_key,)).fetchone()
                self._db.execute("UPDATE ticket_groups SET notified_at=?, flush_at=? WHERE key=?",
                                 (now, now + (self.grouping_for(row["client"]) or Grouping()).repeat_s, group_key))
                if self._has_news_locked(group_key):  # changes came in while the follow-up was posted
                    self._group_changed(group_key, self.grouping_for(row["client"]), now)
            return _to_link(self._row_locked(group_key))

    def _has_news_locked(self, group_key: str) -> bool:
        return self._db.execute(
            "SELECT 1 FROM ticket_links WHERE group_key=? AND state != 'cancelled' AND "
            "((resolved_at IS NULL AND announced=0) OR (resolved_at IS NOT NULL AND announced<2)) LIMIT 1",
            (group_key,)).fetchone() is not None

    def _postpone_flush(self, group_key: str, at: float) -> None:
        with self._lock, _Tx(self._db):
            self._db.execute("UPDATE ticket_groups SET flush_at=? WHERE key=?", (at, group_key))

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
        """This lane's rows due at ``now`` (oldest alert first) and when the next one falls due:
        alerts with their own ticket, group tickets to open or solve, open groups to follow up."""
        served = f"client IN ({_marks(lane.clients)})"
        args: list[Any] = sorted(lane.clients)
        if lane.others:
            served = f"({served} OR client NOT IN ({_marks(self.targets)}))"
            args += sorted(self.targets)
        pending = f"state IN ({_marks(PENDING_STATES)})"
        # A retry due further ahead than the longest backoff was scheduled before the wall clock
        # stepped back: it is due now, not after the jump is waited out.
        due = "(next_attempt_at <= ? OR next_attempt_at > ?)"
        later = "next_attempt_at > ? AND next_attempt_at <= ?"
        window = (now, now + MAX_BACKOFF_S)
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM ticket_links WHERE {pending} AND {served} AND group_key IS NULL AND {due}",
                (*PENDING_STATES, *args, *window),
            ).fetchall()
            rows += self._db.execute(
                f"SELECT * FROM ticket_groups WHERE {served} AND (({pending} AND {due}) OR "
                "(state='open' AND flush_at <= ?))",
                (*args, *PENDING_STATES, *window, now),
            ).fetchall()
            (next_due,) = self._db.execute(
                f"SELECT MIN(at) FROM (SELECT next_attempt_at AS at FROM ticket_links WHERE {pending} AND {served}"
                f" AND group_key IS NULL AND {later} UNION ALL SELECT next_attempt_at FROM ticket_groups"
                f" WHERE {pending} AND {served} AND {later} UNION ALL SELECT flush_at FROM ticket_groups"
                f" WHERE state='open' AND {served} AND flush_at > ?)",
                (*PENDING_STATES, *args, *window, *PENDING_STATES, *args, *window, *args, now),
            ).fetchone()
        return sorted(rows, key=lambda r: r["started_at"]), next_due

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
        if row["state"] == "open":  # a group ticket with news, or due for its reminder
            await self._follow_up_group(connector, row, result)
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
        reopen = isinstance(connector, Reopenable) and row["reopens"] is not None and row["ticket_id"] is not None
        if not await self._in_worker(self._mark_opening, key, connector.name):
            return  # resolved since the lane read it: the next pass takes it as it is now
        if reopen:
            ref = TicketRef(row["connector"] or connector.name, row["ticket_id"], row["ticket_url"])
            text = reopened_text(alert, self.locale_for(alert.client))
            await self._remote(connector, connector.reopen(ref, text), "reopen")  # type: ignore[attr-defined]
            # the reopening text names none of a group's alerts: its next follow-up does
            link = await self._in_worker(self._link, key, ref, False, self.clock())
            result.reopened.append(link)
            log.info("ticket %s#%s reopened for %s (%s): it fired again %.0f s after its previous one [%s]",
                     connector.name, ref.id, _who(alert), alert.summary, link.time_to_ticket_s, key)
            if link.state == "to_solve":
                await self._solve(connector, await self._in_worker(self._row, key), result)
            return
        ref = await self._remote(connector, connector.find_open(key), "find_open")
        reused = ref is not None
        if ref is None:
            self._checkpoint("before_open", key)
            ref = await self._remote(connector, connector.open(alert), "open")
            self._checkpoint("after_open", key)
        link = await self._in_worker(self._link, key, ref, reused, self.clock(), _listed(row))
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

    async def _follow_up_group(self, connector: TicketConnector, row: sqlite3.Row, result: DispatchResult) -> None:
        """Tell a group's ticket which alerts joined and resolved since its last follow-up, or
        remind it that the group still fires. Best effort, like every follow-up: a failure tries
        again one backoff later; a crash after the post and before the record posts it twice."""
        key = row["key"]
        ref = TicketRef(row["connector"] or connector.name, row["ticket_id"], row["ticket_url"])
        joined, resolved, firing = await self._in_worker(self._group_news, key)
        text = group_followup_text(joined, resolved, firing, key, self.locale_for(row["client"]))
        try:
            await self._remote(connector, connector.add_followup(ref, text), "add_followup")
        except TicketError as exc:
            await self._in_worker(self._postpone_flush, key, self.clock() + BACKOFF_S)
            log.warning("ticket %s#%s for group %s: follow-up failed, tried again in %.0f s: %s [%s]",
                        connector.name, ref.id, row["rule"], BACKOFF_S, exc, key)
            return
        link = await self._in_worker(self._mark_notified, key, [a.idempotency_key for a in joined],
                                     [a.idempotency_key for a in resolved], self.clock())
        result.followed_up.append(link)
        log.info("ticket %s#%s followed up for %s/%s: %d alert(s) joined, %d resolved, %d firing [%s]",
                 connector.name, ref.id, row["client"], row["rule"], len(joined), len(resolved), firing, key)

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
                ref = await self._open_after_the_fact(connector, key, alert, _listed(row), result)
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
        self, connector: TicketConnector, key: str, alert: Alert, listed: list[str], result: DispatchResult
    ) -> TicketRef:
        """The alert fired and resolved while this target failed: open its ticket now, so that the
        outage is in the client's statistics; the caller solves it at once."""
        self._checkpoint("before_open", key)
        ref = await self._remote(connector, connector.open(alert), "open")
        self._checkpoint("after_open", key)
        link = await self._in_worker(self._link, key, ref, False, self.clock(), listed)
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
            table = self._table_locked(key)
            cur = self._db.execute(
                f"UPDATE {table} SET state='opening', attempts=attempts+1, connector=? "
                "WHERE key=? AND state IN ('to_open', 'opening')",
                (connector, key),
            )
            if cur.rowcount and table == GROUPS:  # its alerts are being opened with it
                for member in self._db.execute(
                    "UPDATE ticket_links SET state='opening', attempts=attempts+1, connector=? "
                    "WHERE group_key=? AND state IN ('to_open', 'opening') RETURNING key", (connector, key),
                ).fetchall():
                    self._set_state(member["key"], "opening")
            elif cur.rowcount:
                self._set_state(key, "opening")
            return bool(cur.rowcount)

    def _link(self, key: str, ref: TicketRef, reused: bool, opened_at: float, listed: Sequence[str] = ()) -> TicketLink:
        """Record the ticket of ``key``; a group's alerts are linked to it too, and those named
        firing in the text it was opened with (``listed``) are announced."""
        with self._lock:
            with _Tx(self._db):
                table = self._table_locked(key)
                row = self._db.execute(f"SELECT state, started_at FROM {table} WHERE key=?", (key,)).fetchone()
                # the alert may have been resolved while the call was in flight: keep 'to_solve'
                state = "to_solve" if row["state"] == "to_solve" else "open"
                self._db.execute(
                    f"UPDATE {table} SET state=?, connector=?, ticket_id=?, ticket_url=?, reused=?, opened_at=?, "
                    "time_to_ticket_s=?, last_error=NULL, failures=0, next_attempt_at=0 WHERE key=?",
                    (state, ref.connector, ref.id, ref.url, int(reused), opened_at, opened_at - row["started_at"], key),
                )
                if table == GROUPS:
                    self._link_members(key, ref, reused, opened_at, listed)
                else:
                    self._set_state(key, state)
            return _to_link(self._row_locked(key))

    def _link_members(self, group_key: str, ref: TicketRef, reused: bool, opened_at: float,
                      listed: Sequence[str]) -> None:
        """The group's ticket exists: each of its alerts is linked to it, ticketed when it was
        created (or when the alert joined, if later: SLA time_to_ticket_s per alert)."""
        members = self._db.execute(
            "UPDATE ticket_links SET state=CASE WHEN state='to_solve' THEN 'to_solve' ELSE 'open' END, connector=?, "
            "ticket_id=?, ticket_url=?, reused=?, opened_at=MAX(?, queued_at), "
            "time_to_ticket_s=MAX(?, queued_at) - started_at, last_error=NULL, failures=0, next_attempt_at=0 "
            "WHERE group_key=? AND ticket_id IS NULL AND state IN ('to_open', 'opening', 'to_solve') "
            "RETURNING key, state",
            (ref.connector, ref.id, ref.url, int(reused), opened_at, opened_at, group_key),
        ).fetchall()
        for member in members:
            self._set_state(member["key"], member["state"])
        group = self._db.execute("SELECT client FROM ticket_groups WHERE key=?", (group_key,)).fetchone()
        self._db.executemany("UPDATE ticket_links SET announced=1 WHERE key=? AND announced=0",
                             [(k,) for k in listed])
        grouping = self.grouping_for(group["client"]) or Grouping()
        self._db.execute("UPDATE ticket_groups SET notified_at=?, flush_at=? WHERE key=?",
                         (opened_at, opened_at + grouping.repeat_s, group_key))
        if self._has_news_locked(group_key):  # alerts that joined or resolved while it was being opened
            self._group_changed(group_key, grouping, opened_at)

    def _attach(self, key: str, ref: TicketRef, connector: str) -> None:
        with self._lock, _Tx(self._db):
            self._db.execute(
                f"UPDATE {self._table_locked(key)} SET ticket_id=?, ticket_url=?, reused=1, connector=? WHERE key=?",
                (ref.id, ref.url, connector, key),
            )
            self._db.execute(
                "UPDATE ticket_links SET ticket_id=?, ticket_url=?, reused=1, connector=? "
                "WHERE group_key=? AND ticket_id IS NULL AND state != 'cancelled'",
                (ref.id, ref.url, connector, key),
            )

    def _cancel(self, key: str) -> None:
        with self._lock, _Tx(self._db):
            self._db.execute(f"UPDATE {self._table_locked(key)} SET state='cancelled' WHERE key=?", (key,))
            self._set_state(key, "cancelled")
            for member in self._db.execute(
                "UPDATE ticket_links SET state='cancelled' WHERE group_key=? AND state IN ('to_open', 'opening', "
                "'to_solve') RETURNING key", (key,),
            ).fetchall():
                self._set_state(member["key"], "cancelled")

    def _mark_solved(self, key: str, solved_at: float) -> TicketLink:
        with self._lock:
            with _Tx(self._db):
                self._db.execute(
                    f"UPDATE {self._table_locked(key)} SET state='solved', solved_at=?, last_error=NULL, failures=0 "
                    "WHERE key=?",
                    (solved_at, key),
                )
                self._set_state(key, "solved")
                for member in self._db.execute(
                    "UPDATE ticket_links SET state='solved', solved_at=?, last_error=NULL, failures=0 "
                    "WHERE group_key=? AND state IN ('to_solve', 'open') RETURNING key", (solved_at, key),
                ).fetchall():
                    self._set_state(member["key"], "solved")
            return _to_link(self._row_locked(key))

    def _record_failure(
        self, key: str, error: str, retryable: bool, retry_after_s: float | None, now: float
    ) -> TicketLink:
        with self._lock:
            with _Tx(self._db):
                table = self._table_locked(key)
                if retryable:
                    failures = int(self._row_locked(key)["failures"]) + 1
                    delay = min(max(BACKOFF_S * 2 ** (failures - 1), retry_after_s or 0.0), MAX_BACKOFF_S)
                    self._db.execute(
                        f"UPDATE {table} SET last_error=?, failures=?, next_attempt_at=?, "
                        "first_failure_at=COALESCE(first_failure_at, ?) WHERE key=?",
                        (error[:500], failures, now + delay, now, key),
                    )
                    # a group's alerts say why they have no ticket yet (vigie tickets)
                    self._db.execute("UPDATE ticket_links SET last_error=? WHERE group_key=? AND ticket_id IS NULL "
                                     "AND state != 'cancelled'", (error[:500], key))
                else:
                    self._db.execute(f"UPDATE {table} SET state='failed', last_error=? WHERE key=?", (error[:500], key))
                    if table == LINKS:
                        self._set_state(key, "failed")
                    for member in self._db.execute(
                        "UPDATE ticket_links SET state='failed', last_error=? WHERE group_key=? "
                        "AND state IN ('to_open', 'opening', 'to_solve') RETURNING key", (error[:500], key),
                    ).fetchall():
                        self._set_state(member["key"], "failed")
            return _to_link(self._row_locked(key))

    async def _in_worker(self, fn: Callable[..., T], *args: Any) -> T:
        # Shielded: a write asked for is carried out even if the caller is cancelled (stop()).
        return await asyncio.shield(asyncio.get_running_loop().run_in_executor(self._worker, fn, *args))

    # -- queries ------------------------------------------------------------------------------

    def _table_locked(self, key: str) -> str:
        """The table holding ``key``: a group's ticket, or one alert's."""
        return GROUPS if self._db.execute("SELECT 1 FROM ticket_groups WHERE key=?", (key,)).fetchone() else LINKS

    def _row_locked(self, key: str) -> sqlite3.Row:
        return self._db.execute(f"SELECT * FROM {self._table_locked(key)} WHERE key=?", (key,)).fetchone()

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

    async def record_taken(self, key: str, taken_at: float) -> bool:
        """The ITSM says the ticket of ``key`` was taken in charge at ``taken_at``: kept once (the
        first answer stands), in the outbox's own order of writes. True when it was recorded.

        Every alert on that ticket (a group's) gets it, but those solved before the take (an
        earlier occurrence of a reopened ticket); an alert that joined the ticket after it was
        taken counts as taken when it started: it landed in someone's hands."""
        def write() -> bool:
            with self._lock, _Tx(self._db):
                return bool(self._db.execute(
                    # the alert asked about keeps the ITSM's time as it is (whole seconds: it may
                    # precede a same-second onset); the others on its ticket are taken from their start
                    "UPDATE ticket_links SET taken_at=CASE WHEN key=? THEN ? ELSE MAX(?, started_at) END "
                    "WHERE taken_at IS NULL "
                    "AND (solved_at IS NULL OR solved_at >= ?) AND (key=? OR (ticket_id IS NOT NULL AND "
                    "(client, connector, ticket_id) = "
                    "(SELECT client, connector, ticket_id FROM ticket_links WHERE key=?)))",
                    (key, taken_at, taken_at, taken_at, key, key)).rowcount)
        return await self._in_worker(write)

    def groups(self, client: str | None = None) -> list[TicketLink]:
        """The group tickets (``key`` is the ticket's idempotency key, ``fingerprint`` the group's)."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM ticket_groups ORDER BY queued_at, key").fetchall()
        return [_to_link(r) for r in rows if client is None or r["client"] == client]

    def members(self, group_key: str) -> list[TicketLink]:
        """The alerts on one group's ticket."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM ticket_links WHERE group_key=? ORDER BY started_at, key",
                                    (group_key,)).fetchall()
        return [_to_link(r) for r in rows]

    def fingerprints_on(self, link: TicketLink) -> list[str]:
        """The alerts a ticket of a lane's result is about: a group's alerts, else its own."""
        return [member.fingerprint for member in self.members(link.key)] or [link.fingerprint]


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def group_alert(group_fp: str, labels: dict[str, str], fired_at: float, members: Sequence[Alert],
                locale: TicketLocale = DEFAULT_LOCALE) -> Alert:
    """What a group's ticket says, as the alert the connectors render: its idempotency key is the
    group's (``vigie:<group fingerprint>:<first firing time>``), its headline names the group
    ("12 alerts on site hdv: interface_down"), its body lists the alerts; the severity, priority
    and context are the worst firing alert's. A group of one reads as that alert."""
    firing = [m for m in members if m.resolved_at is None]
    worst = min(firing or members, key=lambda m: SEVERITIES.index(m.severity) if m.severity in SEVERITIES else 99)
    rules = sorted({m.rule for m in members})
    alert = Alert.from_dict(worst.to_dict())
    alert.fingerprint, alert.fired_at, alert.id = group_fp, fired_at, None
    alert.started_at = min(m.started_at for m in members)
    alert.state = FIRING if firing else RESOLVED
    alert.resolved_at = None if firing else max(m.resolved_at or 0.0 for m in members)
    if len(members) > 1:
        alert.rule = labels.get("alertname") or ",".join(rules)
        alert.labels = dict(labels)
        alert.summary = group_summary(len(members), labels, rules, locale)
        alert.impacted = list(dict.fromkeys(d for m in members for d in m.impacted))
        alert.flapping = any(m.flapping for m in members)
        alert.context = [locale.word("group_members").format(count=len(members)),
                         *(member_line(m, locale) for m in members), *worst.context]
    return alert


def _held_text(window: str, ends_at: float) -> str:
    ends = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(ends_at))
    return f"maintenance window {window} until {ends}: the ticket waits for its end"


def _listed(row: sqlite3.Row) -> list[str]:
    """The alerts a group row's text names firing (none for an alert's own row)."""
    return json.loads(row["listed"]) if "listed" in row.keys() else []


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
        taken_at=row["taken_at"],
    )


def _env_checkpoint(point: str, key: str) -> None:
    if os.environ.get(CRASH_ENV) == point:
        log.error("%s=%s: killing the process at %s (%s)", CRASH_ENV, point, point, key)
        os.kill(os.getpid(), signal.SIGKILL)
