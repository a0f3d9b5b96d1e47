"""One engine for every profile: fetch (the only I/O) -> evaluate (pure, plus the counter store).

``fetch`` walks each column OID the profile declares once (a column shared by two tables, e.g.
hrStorage for memory and for disks, or entPhysicalName joined by several tables, is walked once)
and GETs the scalar ones, within one :class:`ReadBudget` per poll. ``Snapshot.failed_tables`` says
which tables lost columns to a failed read (the collector reports them: the poll is ``partial``).
``evaluate`` turns the snapshot into :class:`Row` s: columns -> fields (in declared order, each may
use the previous ones) -> filter -> tags, with rates computed from the engine-owned
:class:`CounterStore`.

A table the device does not implement is not a failure: its walk ends at once (noSuchObject,
endOfMibView, or the next subtree) and the table has no rows. A failure is a read that got no
valid answer, an error-status, a malformed or oversized answer.
"""

from __future__ import annotations

import asyncio
import math
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeVar

from agent.api import CollectError, FieldValue, Unreachable
from collectors.snmp.client import ReadBudget, SnmpClient, SnmpValue, oid_key
from collectors.snmp.expr import inet_text
from collectors.snmp.profile import Profile, ResolvedColumn, ResolvedTable, ResolvedValue

# The tag naming the profile that polled the device, on every sample of the SNMP collector.
PROFILE_TAG = "profile"
# Column walks in flight per device: enough to hide latency, few enough not to flood a switch CPU.
WALKS_IN_FLIGHT = 4
# Polls a row may be missing before its readings are forgotten: a port or stack member gone for
# good must not be held in memory for the agent's life, one missing for a few polls (a walk that
# timed out, a flapping stack link) keeps its rates and `seen_before` history.
FORGET_AFTER_POLLS = 10
_TIMETICKS_WRAP = 2**32
_ONE_DAY_TICKS = 86400 * 100
# Smart polling (as LibreNMS and Checkmk split discovery from polling): columns that change only
# with configuration are walked at discovery cadence and reused in between; status and counters
# are walked every poll. Static here: IF-MIB ifDescr, ifType, ifMtu, ifSpeed, ifPhysAddress, ifName,
# ifHighSpeed, ifAlias; ENTITY-MIB entPhysicalTable (descriptions, containment, class, names,
# revisions, serial numbers, vendor, model).
STATIC_COLUMNS = frozenset({
    "1.3.6.1.2.1.2.2.1.2", "1.3.6.1.2.1.2.2.1.3", "1.3.6.1.2.1.2.2.1.4", "1.3.6.1.2.1.2.2.1.5",
    "1.3.6.1.2.1.2.2.1.6", "1.3.6.1.2.1.31.1.1.1.1", "1.3.6.1.2.1.31.1.1.1.15", "1.3.6.1.2.1.31.1.1.1.18",
    *(f"1.3.6.1.2.1.47.1.1.1.1.{column}" for column in range(2, 14)),
})
# The static columns are walked again after this long, and at once when a discovery mark below
# changes, sysUpTime goes back (a reboot renumbers), a walked column gains or loses a row, or an
# ifOperStatus changes (a link that comes up may have renegotiated its speed).
REDISCOVER_AFTER_S = 3600.0
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
# ifNumber, ifTableLastChange (sysUpTime at the last row created or deleted, where implemented),
# entLastChangeTime (sysUpTime at the last change of the entity tables: a module or SFP swapped).
DISCOVERY_MARKS = ("1.3.6.1.2.1.2.1.0", "1.3.6.1.2.1.31.1.5.0", "1.3.6.1.2.1.47.1.4.1.0")
IF_OPER_STATUS = "1.3.6.1.2.1.2.2.1.8"
T = TypeVar("T")
# The integers a field may hold: Integer32 to Counter64. Beyond is arithmetic on hostile values,
# not a reading, and no store holds it.
_FIELD_INT_RANGE = (-(2**63), 2**64 - 1)


@dataclass
class Snapshot:
    """What one poll read: column OID -> {index suffix -> value}, scalars by full OID."""

    columns: dict[str, dict[str, SnmpValue]] = field(default_factory=dict)
    scalars: dict[str, SnmpValue] = field(default_factory=dict)
    # OID -> why it is missing, or incomplete: a walk that failed half way keeps the rows it read
    # in ``columns``.
    errors: dict[str, str] = field(default_factory=dict)
    # Wall-clock time the poll started (epoch s): expressions see it as `now` (days to a date).
    read_at: float | None = None

    def failed_tables(self, profile: Profile) -> list[str]:
        """One line per table of ``profile`` that lost columns to a failed read, in profile order:
        how many, which (the first three), and the first one's reason. A fallback table that was
        not needed was not read and has none."""
        lines = []
        for table in profile.tables:
            failed = [column for column in table.columns if column.oid in self.errors]
            if not failed:
                continue
            how = "GET" if table.scalar and not failed[0].walk else "walk"
            named = ", ".join(f"{column.name} {column.oid}" for column in failed[:3])
            if len(failed) > 3:
                named += f", +{len(failed) - 3} more"
            lines.append(f"{how} of table {table.id} failed for {len(failed)} of {len(table.columns)} "
                         f"columns ({named}): {self.errors[failed[0].oid]}")
        return lines


@dataclass(frozen=True)
class Row:
    table: str
    measurement: str
    index: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    oids: dict[str, str]  # column name -> the OID instance the value was read from


class _RowReadings:
    """The readings of one row of a :class:`CounterStore`, a dict per kind made when first needed.

    Kept per row, not one entry per reading keyed by (table, index, name): a 48-port switch holds
    about 330 counters, and a key tuple and a dict entry per reading cost as much memory as the
    readings themselves (the Python heap of a polled switch: 175 kB before, 138 kB so)."""

    __slots__ = ("seen", "counters", "previous", "first_true")

    def __init__(self, seen: int) -> None:
        self.seen = seen  # the number of the last poll the row was present in
        self.counters: dict[str, tuple[int, str, float]] | None = None
        self.previous: dict[str, int] | None = None
        self.first_true: dict[str, float] | None = None


class CounterStore:
    """Previous readings of one device, owned by the engine: counters for rates, values for
    "went backwards" checks (uptime -> reboot), and when a row's condition was first true
    (``seen_before``). It lives as long as the collector instance: an agent restart forgets it.

    Keys are (table id, row index, name). ``evaluate`` marks every row it reads (``saw_row``) and
    ends each poll with ``end_poll``; the readings of a row missing from ``forget_after_polls``
    consecutive polls are dropped, so it comes back as a new row would (no rate on its first
    reading, ``seen_before`` unknown). Polls are counted, not timed: a device that does not answer
    is not evaluated and loses nothing. A row without readings (most of an entPhysicalTable) is
    not held at all."""

    def __init__(self, forget_after_polls: int = FORGET_AFTER_POLLS) -> None:
        self.forget_after_polls = forget_after_polls
        self._rows: dict[tuple[str, str], _RowReadings] = {}
        self._poll = 0

    def __len__(self) -> int:
        """The rows whose readings are held."""
        return len(self._rows)

    def _row(self, table: str, index: str) -> _RowReadings:
        row = self._rows.get((table, index))
        if row is None:
            row = self._rows[(table, index)] = _RowReadings(self._poll)
        return row

    def rate(self, key: tuple[str, str, str], value: SnmpValue, now: float, limit: float | None) -> float | None:
        """Per-second increase; ``None`` on the first reading, after a reset, or when the increase
        is impossible (above ``limit``, e.g. more bytes than the link can carry)."""
        table, index, name = key
        row = self._row(table, index)
        counters = row.counters
        if counters is None:
            counters = row.counters = {}
        previous = counters.get(name)
        current = int(value.value)
        counters[name] = (current, value.kind, now)
        if previous is None:
            return None
        last, kind, then = previous
        elapsed = now - then
        if kind != value.kind or elapsed <= 0:
            return None
        delta = current - last
        if delta < 0:
            if value.kind != "counter32":
                # A Counter64 does not wrap within a human lifetime: going back means reset.
                return None
            delta += 2**32
        per_second = delta / elapsed
        if limit is not None and per_second > limit:
            return None
        return per_second

    def went_backwards(self, key: tuple[str, str, str], value: SnmpValue) -> bool | None:
        table, index, name = key
        row = self._row(table, index)
        if row.previous is None:
            row.previous = {}
        previous = row.previous.get(name)
        current = int(value.value)
        row.previous[name] = current
        if previous is None:
            return None
        if current >= previous:
            return False
        # TimeTicks wrap after 497 days: a drop from the last day before the wrap is not a reboot.
        return not (value.kind == "timeticks" and previous > _TIMETICKS_WRAP - _ONE_DAY_TICKS)

    def seen_before(self, key: tuple[str, str, str], value: Any, now: float) -> bool | None:
        """``True`` when the condition ``key`` was true at an earlier poll (``now`` is the poll's
        time, so evaluating it twice in one poll gives one answer), else ``None``: not seen yet is
        unknown, never ``False`` (after a restart nobody knows what the row was before)."""
        table, index, condition = key
        row = self._rows.get((table, index))
        first = None if row is None or row.first_true is None else row.first_true.get(condition)
        if first is None and value:
            row = self._row(table, index)
            if row.first_true is None:
                row.first_true = {}
            row.first_true[condition] = first = now
        return True if first is not None and first < now else None

    def reset_counters(self) -> None:
        for row in self._rows.values():
            row.counters = None

    def saw_row(self, table: str, index: str) -> None:
        """The row is present in this poll, whichever of its readings were used."""
        row = self._rows.get((table, index))
        if row is not None:
            row.seen = self._poll

    def end_poll(self) -> None:
        """Forget the rows missing from the last ``forget_after_polls`` polls, then count one."""
        gone = [key for key, row in self._rows.items() if self._poll - row.seen >= self.forget_after_polls]
        for key in gone:
            del self._rows[key]
        self._poll += 1


class StaticColumns:
    """The static columns (:data:`STATIC_COLUMNS`) of one device as last walked, and what says
    they still hold: the discovery marks, sysUpTime and the rows of the other columns then. Owned
    by the collector of that device, like :class:`CounterStore`. A poll that reuses them gives the
    snapshot a full walk gives while the device's configuration has not changed."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 rediscover_after_s: float = REDISCOVER_AFTER_S, spread: float = 0.0) -> None:
        """``spread``, in [0, 1): the first walk's columns are walked again that share of half of
        ``rediscover_after_s`` sooner, every later walk's after the whole of it. Why: the devices
        an agent discovers when it starts would otherwise all walk their static columns again in
        the same minute every hour, a minute that costs twice a normal one (1,000 switches on one
        core: the start-up's backlog, 19-30 s of drift, again every hour); given each device's
        own spread (`agent.api.stable_fraction` of where it answers), an hour's rediscoveries
        are spread over its second half, then stay so."""
        if not 0.0 <= spread < 1.0:
            raise ValueError(f"spread must be in [0, 1), not {spread}")
        self.clock = clock
        self.rediscover_after_s = rediscover_after_s
        self.spread = spread
        # column OID -> (row indexes, values): kept compact, for thousands of devices (the indexes
        # interned, equal values shared), and made a column again for each poll that reuses it
        self.columns: dict[str, tuple[tuple[str, ...], tuple[SnmpValue, ...]]] | None = None
        self._walked_at = 0.0
        self._early: float | None = None  # the share of the period the next walk comes sooner; None: never walked
        self._marks: dict[str, SnmpValue] = {}
        self._uptime: int | None = None
        # What the other columns were when the static ones were walked, as hashes: holding every
        # device's row indexes and statuses would cost more memory than the static columns save.
        self._rows = 0
        self._oper = 0

    def reusable(self, oids: list[str], marks: Mapping[str, SnmpValue], scalars: Mapping[str, SnmpValue]) -> set[str]:
        """Which of ``oids`` (the static columns a poll would walk) need no walk now."""
        now = self.clock()
        uptime = _ticks(scalars.get(SYS_UPTIME))
        if (
            self.columns is None
            or not set(oids) <= self.columns.keys()
            or self._early is None
            or now - self._walked_at >= self.rediscover_after_s * (1 - self._early)
            or now < self._walked_at
            or dict(marks) != self._marks
            or uptime is None
            or self._uptime is None
            or uptime < self._uptime
        ):
            return set()
        return set(oids)

    def still_hold(self, snapshot: Snapshot) -> bool:
        """Whether the other columns this poll walked have the rows (and the ifOperStatus) they
        had when the static ones were walked."""
        return self._row_sets(snapshot) == self._rows and _oper(snapshot) == self._oper

    def remember(self, oids: list[str], marks: Mapping[str, SnmpValue], snapshot: Snapshot) -> None:
        """Keep the static columns a full poll walked, unless one of them failed (walked again next
        poll)."""
        if any(oid in snapshot.errors for oid in oids):
            self.columns = None
            return
        self.columns = {}
        for oid in oids:
            rows = snapshot.columns.get(oid, {})
            indexes = _shared(tuple(sys.intern(index) for index in rows))  # one per table layout
            self.columns[oid] = (indexes, tuple(_shared(v) for v in rows.values()))
        self._early = self.spread / 2 if self._early is None else 0.0
        self._walked_at = self.clock()
        self._marks = dict(marks)
        self._uptime = _ticks(snapshot.scalars.get(SYS_UPTIME))
        self._rows = self._row_sets(snapshot)
        self._oper = _oper(snapshot)

    @staticmethod
    def _row_sets(snapshot: Snapshot) -> int:
        return hash(frozenset(
            (oid, frozenset(rows)) for oid, rows in snapshot.columns.items() if oid not in STATIC_COLUMNS
        ))


def _oper(snapshot: Snapshot) -> int:
    return hash(frozenset(snapshot.columns.get(IF_OPER_STATUS, {}).items()))


@lru_cache(maxsize=65536)
def _shared(value: T) -> T:
    """The first equal value seen: a fleet's static columns repeat (ifType, speeds, port names and
    the row indexes of one model), and one object per distinct value costs less than one per
    device. Bounded: past it, a value is simply not shared."""
    return value


def _ticks(value: SnmpValue | None) -> int | None:
    return value.value if value is not None and isinstance(value.value, int) else None


def planned_oids(tables: tuple[ResolvedTable, ...]) -> tuple[list[str], list[str]]:
    """(column OIDs to walk, scalar OIDs to GET), each once, in declaration order."""
    walks: dict[str, None] = {}
    gets: dict[str, None] = {}
    for table in tables:
        for column in table.columns:
            (gets if table.scalar and not column.walk else walks)[column.oid] = None
    return list(walks), list(gets)


async def fetch(
    client: SnmpClient,
    profile: Profile,
    known: Mapping[str, SnmpValue] | None = None,
    statics: StaticColumns | None = None,
) -> Snapshot:
    """Read everything ``profile`` declares. ``known`` are scalars already read this poll.

    With ``statics`` (the device's :class:`StaticColumns`) the static columns are reused from an
    earlier poll while they hold, and walked (and kept) otherwise.

    A fallback table is fetched only when the table it stands in for came back empty. A column
    that fails is recorded in ``errors`` (with the rows read before the failure, if any); once the
    device stops answering mid-poll the remaining columns are not tried (each would wait for its
    own timeout). When every read failed, so that nothing but ``known`` answered, the poll has
    nothing to report: :class:`Unreachable` when no read got an answer (a device answering its
    system GET and nothing else), else :class:`CollectError`.
    """
    snapshot = Snapshot(scalars=dict(known or {}), read_at=time.time())
    budget = ReadBudget()
    failures: list[CollectError] = []
    primary = tuple(t for t in profile.tables if not t.fallback_for)
    await _fetch_tables(client, primary, snapshot, budget, failures, statics)
    by_id = {t.id: t for t in profile.tables}
    fallbacks = tuple(
        t for t in profile.tables if t.fallback_for and not _has_rows(by_id[t.fallback_for], snapshot)
    )
    if fallbacks:
        await _fetch_tables(client, fallbacks, snapshot, budget, failures)
    if failures and not snapshot.columns and len(snapshot.scalars) == len(known or {}):
        first = failures[0]
        cause = Unreachable if all(isinstance(exc, Unreachable) for exc in failures) else CollectError
        raise cause(f"{first} (the system GET was answered, none of the {len(snapshot.errors)} reads of "
                    f"profile {profile.name} were)")
    return snapshot


async def _fetch_tables(
    client: SnmpClient,
    tables: tuple[ResolvedTable, ...],
    snapshot: Snapshot,
    budget: ReadBudget,
    failures: list[CollectError],
    statics: StaticColumns | None = None,
) -> None:
    """Read ``tables`` into ``snapshot``, recording each failed read in ``failures``; after an
    :class:`Unreachable` one (here or in an earlier pass of the poll) nothing more is tried.
    ``statics``: see :func:`fetch`."""
    walks, gets = planned_oids(tables)
    static = [oid for oid in walks if oid in STATIC_COLUMNS] if statics is not None else []
    marks: dict[str, SnmpValue] = {}

    def silence() -> Unreachable | None:
        return next((exc for exc in failures if isinstance(exc, Unreachable)), None)

    def not_tried(oids: list[str], after: Unreachable) -> None:
        snapshot.errors.update({oid: f"not tried after {after}" for oid in oids if oid not in snapshot.columns})

    missing = [oid for oid in gets if oid not in snapshot.scalars and oid not in snapshot.errors]

    def failed(exc: CollectError) -> bool:
        """Record a failed GET of the scalars; True when nothing more is to be tried."""
        failures.append(exc)
        snapshot.errors.update({oid: str(exc) for oid in missing})
        if isinstance(exc, Unreachable):
            not_tried(walks, exc)
            return True
        return False

    if missing or static:
        gone = silence()
        if gone is not None:
            not_tried([*missing, *walks], gone)
            return
        found: dict[str, SnmpValue] | None = None
        if static:
            try:
                # The discovery marks ride on the poll's GET; they are not the profile's scalars.
                found = await client.get([*missing, *DISCOVERY_MARKS], budget)
            except Unreachable as exc:
                failed(exc)
                return
            except CollectError:
                static = []  # the marks refused (an odd SNMPv1 agent): a full poll, the scalars asked alone
            else:
                marks = {oid: found.pop(oid) for oid in DISCOVERY_MARKS if oid in found and oid not in missing}
        if found is None and missing:
            try:
                found = await client.get(missing, budget)
            except CollectError as exc:
                if failed(exc):
                    return
        snapshot.scalars.update(found or {})
    reused = statics.reusable(static, marks, snapshot.scalars) if statics is not None and static else set()
    gate = asyncio.Semaphore(WALKS_IN_FLIGHT)

    async def walk(batch: list[str]) -> None:
        batch = [oid for oid in batch if oid not in snapshot.columns and oid not in snapshot.errors]
        if not batch:
            return
        async with gate:
            gone = silence()
            if gone is not None:
                not_tried(batch, gone)
                return
            walked = await client.walk_columns(batch, budget)
        for oid, found in walked.items():
            if found.error is not None:
                failures.append(found.error)
                snapshot.errors[oid] = str(found.error)
                if found.values:
                    kept = len(found.values)
                    snapshot.errors[oid] += f" ({kept} {'row' if kept == 1 else 'rows'} read before it kept)"
                else:
                    continue
            snapshot.columns[oid] = found.values

    def walked(oids: Iterable[str]) -> Awaitable[list[None]]:
        return asyncio.gather(*(walk(batch) for batch in client.walk_batches(oids)))

    await walked(oid for oid in walks if oid not in reused)
    if statics is None or not static:
        return
    if reused and statics.still_hold(snapshot) and statics.columns is not None:
        for oid in reused:
            indexes, values = statics.columns[oid]
            snapshot.columns[oid] = dict(zip(indexes, values, strict=True))
        return
    if reused:  # the device changed since: walk them now, as a full poll would have
        await walked(reused)
    statics.remember(static, marks, snapshot)


def _has_rows(table: ResolvedTable, snapshot: Snapshot) -> bool:
    if table.scalar:
        return any(snapshot.columns.get(c.oid) if c.walk else c.oid in snapshot.scalars for c in table.columns)
    return any(snapshot.columns.get(c.oid) for c in table.own_columns)


def row_tables(profile: Profile, measurement: str, index_tag: str) -> tuple[ResolvedTable, ...] | None:
    """The tables of ``measurement`` whose rows one GET per column at an index can read whole:
    their ``index_tag`` tag is the row's index and no column is joined from another table (a
    join reads another table's index). None when a table of that measurement is not so (or there
    is none): the caller then polls the whole device."""
    tables = tuple(t for t in profile.tables if t.measurement == measurement)
    if not tables:
        return None
    for table in tables:
        tag = dict(table.tags).get(index_tag)
        if table.scalar or table.fallback_for or len(table.own_columns) != len(table.columns):
            return None
        if tag is None or tag.map is not None or tag.expr.source.strip() != "index":
            return None
    return tables


async def fetch_row(client: SnmpClient, tables: tuple[ResolvedTable, ...], index: str) -> Snapshot:
    """One row of ``tables`` (from :func:`row_tables`): a GET of each column at ``index``, in
    one request where the agent takes it. The row's columns the agent lacks are left out, as a
    walk leaves them; an agent that answers none of them raises as a poll would."""
    if not re.fullmatch(r"\d+(\.\d+)*", index):
        raise CollectError(f"row index {index!r} is not an OID suffix")
    columns = list(dict.fromkeys(c.oid for t in tables for c in t.columns))
    values = await client.get([f"{oid}.{index}" for oid in columns])
    snapshot = Snapshot(read_at=time.time())
    for oid in columns:
        value = values.get(f"{oid}.{index}")
        if value is not None:
            snapshot.columns[oid] = {index: value}
    return snapshot


def evaluate_row(profile: Profile, tables: tuple[ResolvedTable, ...], snapshot: Snapshot, store: CounterStore,
                 now: float) -> list[Row]:
    """The rows of a :func:`fetch_row` read. Not a poll for ``store``: the other rows keep their
    readings and their misses (no :meth:`CounterStore.end_poll`)."""
    return [row for table in tables for row in _evaluate_table(profile, table, snapshot, store, now)]


def evaluate(profile: Profile, snapshot: Snapshot, store: CounterStore, now: float) -> list[Row]:
    """Rows of every table, in profile order; a fallback table only if its target had no row.

    One call is one poll for ``store``: it ends the poll there (see :class:`CounterStore`)."""
    rows: list[Row] = []
    produced: dict[str, int] = {}
    for table in profile.tables:
        if table.fallback_for:
            continue
        table_rows = _evaluate_table(profile, table, snapshot, store, now)
        produced[table.id] = len(table_rows)
        rows.extend(table_rows)
    for table in profile.tables:
        if table.fallback_for and not produced.get(table.fallback_for):
            rows.extend(_evaluate_table(profile, table, snapshot, store, now))
    store.end_poll()
    return rows


def _evaluate_table(
    profile: Profile, table: ResolvedTable, snapshot: Snapshot, store: CounterStore, now: float
) -> list[Row]:
    if table.scalar:
        indexes = ["0"] if _has_rows(table, snapshot) else []
    else:
        seen: set[str] = set()
        for column in table.own_columns:
            seen.update(snapshot.columns.get(column.oid, {}))
        indexes = sorted(seen, key=oid_key)
    rows = []
    for index in indexes:
        # Before the filter: a row filtered out is still there and keeps its readings.
        store.saw_row(table.id, index)
        row = _evaluate_row(profile, table, index, snapshot, store, now)
        if row is not None:
            rows.append(row)
            if table.resets_counters and row.fields.get(table.resets_counters) is True:
                store.reset_counters()
    return rows


def _evaluate_row(
    profile: Profile,
    table: ResolvedTable,
    index: str,
    snapshot: Snapshot,
    store: CounterStore,
    now: float,
) -> Row | None:
    env: dict[str, Any] = {"index": index, "profile": profile.name, "now": snapshot.read_at}
    raw: dict[str, SnmpValue | None] = {}
    oids: dict[str, str] = {}
    columns = table.columns
    if table.early_columns is not None:
        # The early filter reads these columns only: a row it drops reads no other (a row it keeps
        # has it tried again below, after the vars, as any early filter is).
        for column in table.early_columns:
            _read_column(table, column, index, snapshot, env, raw, oids)
        if not table.early_filter.evaluate(env):  # type: ignore[union-attr]  # (set with early_columns)
            return None
        columns = tuple(c for c in columns if c.name not in raw)
    for column in columns:
        _read_column(table, column, index, snapshot, env, raw, oids)

    def rate(*names: str, limit: float | None = None) -> float | None:
        for name in names:
            value = raw.get(name)
            # A counter column holding text (a redacted "<private>", a broken agent) is no reading.
            if value is not None and isinstance(value.value, int):
                return store.rate((table.id, index, name), value, now, limit)
        return None

    def went_backwards(name: str) -> bool | None:
        value = raw.get(name)
        if value is None or not isinstance(value.value, int):
            return None
        return store.went_backwards((table.id, index, name), value)

    def bits(name: str, names: tuple[str, ...] = ()) -> str | None:
        value = raw.get(name)
        return None if value is None else set_bits(value, names)

    def seen_before(condition: str, value: Any) -> bool | None:
        return store.seen_before((table.id, index, condition), value, now)

    def inet(name: str) -> str | None:
        value = raw.get(name)
        if value is not None and value.kind == "ipaddress":
            return str(value.value)
        found = _address_octets(value, (4, 16))
        return None if found is None else inet_text(1 if len(found) == 4 else 2, found)

    def mac(name: str) -> str | None:
        found = _address_octets(raw.get(name), (6,))
        return None if found is None else ":".join(f"{octet:02x}" for octet in found)

    stateful = {"rate": rate, "went_backwards": went_backwards, "bits": bits, "seen_before": seen_before,
                "inet": inet, "mac": mac}
    for name, spec in table.vars:
        env[name] = _compute(spec, env, stateful)
    if table.early_filter is not None and not table.early_filter.evaluate(env, stateful):
        return None
    fields: dict[str, FieldValue] = {}
    for name, spec in table.fields:
        fields[name] = env[name] = _field_value(_compute(spec, env, stateful))
    if table.filter is not None and not table.filter.evaluate(env, stateful):
        return None
    tags: dict[str, str] = {}
    for name, spec in table.tags:
        value = _compute(spec, env, stateful)
        if value is not None and value != "":
            tags[name] = str(value)
    # Stamped here, on every row of every table, so per-family rules can match on it; a profile
    # does not declare it (and could not change it).
    tags[PROFILE_TAG] = profile.name
    return Row(table.id, table.measurement, index, tags, fields, oids)


def _read_column(table: ResolvedTable, column: ResolvedColumn, index: str, snapshot: Snapshot, env: dict[str, Any],
                 raw: dict[str, SnmpValue | None], oids: dict[str, str]) -> None:
    """``column``'s value at row ``index`` into ``env`` (its value), ``raw`` and ``oids``."""
    if column.walk:
        # The whole column as a tuple in index order: () when the table is empty, None when it
        # could not be read entirely (a summary of half a column, "is this alarm in the alarm
        # table", would be wrong).
        found = None if column.oid in snapshot.errors else snapshot.columns.get(column.oid)
        raw[column.name] = None
        env[column.name] = None if found is None else tuple(found[k].value for k in sorted(found, key=oid_key))
        oids[column.name] = column.oid
        return
    if table.scalar:
        value = snapshot.scalars.get(column.oid)
        oids[column.name] = column.oid
    elif column.under is not None:
        value = _first_under(snapshot.columns.get(column.oid, {}), column.under.evaluate(env))
        if value is not None:
            oids[column.name] = f"{column.oid}.{value.value}"
    else:
        key = index if column.join is None else column.join.evaluate(env)
        value = None if key is None else snapshot.columns.get(column.oid, {}).get(str(key))
        if key is not None:
            oids[column.name] = f"{column.oid}.{key}"
    raw[column.name] = value
    env[column.name] = None if value is None else value.value


def _first_under(column: Mapping[str, SnmpValue], prefix: Any) -> SnmpValue | None:
    """The rest of the index (dotted, as an OID value) of the first row of ``column`` whose index
    starts with ``prefix``: a table that keeps its data in its index (lldpRemManAddrTable)."""
    if prefix is None:
        return None
    start = f"{prefix}."
    below = [index[len(start):] for index in column if index.startswith(start)]
    return SnmpValue(min(below, key=oid_key), "oid") if below else None


def _address_octets(value: SnmpValue | None, widths: tuple[int, ...]) -> bytes | None:
    """The octets of an address of one of ``widths`` octets. Sent as printable text it lost its
    trailing NULs (see ``decode_octets``): they are put back up to the smallest width it fits."""
    found = None if value is None else octets(value)
    if found is None or value is None:
        return None
    if value.kind == "string":
        width = next((width for width in widths if len(found) <= width), None)
        found = None if width is None else found.ljust(width, b"\0")
    return found if found is not None and len(found) in widths else None


def octets(value: SnmpValue) -> bytes | None:
    """The octets of an OCTET STRING whatever the client's decoding (printable text, or hex);
    text has lost any trailing NULs. ``None`` for a value of another type."""
    if value.kind == "hex":
        return bytes.fromhex(str(value.value))
    if value.kind == "string":
        return str(value.value).encode("utf-8")
    return None


def set_bits(value: SnmpValue, names: tuple[str, ...]) -> str | None:
    """Names of the bits set in a BITS-style OCTET STRING (bit 0 = most significant bit of the
    first octet, as SNMP BITS and hrPrinterDetectedErrorState number them), comma-separated in bit
    order; "" when none is set. A bit beyond ``names`` is called ``bit<n>``.

    The client hands out printable octets as text and others as hex, so both are turned back into
    the octets (text loses only trailing NULs, which carry no set bit). ``None`` for a non-octet
    value: its bits have no defined order."""
    raw = octets(value)
    if raw is None:
        return None
    found = []
    for number in range(len(raw) * 8):
        if raw[number // 8] & (0x80 >> (number % 8)):
            found.append(names[number] if number < len(names) else f"bit{number}")
    return ",".join(found)


def _compute(spec: ResolvedValue, env: Mapping[str, Any], stateful: Mapping[str, Any]) -> Any:
    value = spec.expr.evaluate(env, stateful)
    if spec.map is None:
        return value
    if value is None:
        return spec.default
    # An unmapped code becomes the profile's default (e.g. "unknown"), else its raw value as text:
    # a map yields labels, and one field must keep one type for the stores.
    return spec.map.get(str(value), str(value) if spec.default is None else spec.default)


def _field_value(value: Any) -> FieldValue:
    """Only sample-safe values leave the engine; a tuple, an integer beyond 64 bits, a non-finite
    float or anything odd becomes unknown."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if _FIELD_INT_RANGE[0] <= value <= _FIELD_INT_RANGE[1] else None
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    return None
