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
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.api import CollectError, FieldValue, Unreachable
from collectors.snmp.client import ReadBudget, SnmpClient, SnmpValue, oid_key
from collectors.snmp.profile import Profile, ResolvedTable, ResolvedValue

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


class CounterStore:
    """Previous readings of one device, owned by the engine: counters for rates, values for
    "went backwards" checks (uptime -> reboot), and when a row's condition was first true
    (``seen_before``). It lives as long as the collector instance: an agent restart forgets it.

    Keys are (table id, row index, name). ``evaluate`` marks every row it reads (``saw_row``) and
    ends each poll with ``end_poll``; the readings of a row missing from ``forget_after_polls``
    consecutive polls are dropped, so it comes back as a new row would (no rate on its first
    reading, ``seen_before`` unknown). Polls are counted, not timed: a device that does not answer
    is not evaluated and loses nothing."""

    def __init__(self, forget_after_polls: int = FORGET_AFTER_POLLS) -> None:
        self.forget_after_polls = forget_after_polls
        self._counters: dict[tuple[str, str, str], tuple[int, str, float]] = {}
        self._previous: dict[tuple[str, str, str], int] = {}
        self._first_true: dict[tuple[str, str, str], float] = {}
        self._poll = 0
        self._last_seen: dict[tuple[str, str], int] = {}  # (table id, index) -> poll number

    def rate(self, key: tuple[str, str, str], value: SnmpValue, now: float, limit: float | None) -> float | None:
        """Per-second increase; ``None`` on the first reading, after a reset, or when the increase
        is impossible (above ``limit``, e.g. more bytes than the link can carry)."""
        previous = self._counters.get(key)
        current = int(value.value)
        self._counters[key] = (current, value.kind, now)
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
        previous = self._previous.get(key)
        current = int(value.value)
        self._previous[key] = current
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
        first = self._first_true.get(key)
        if first is None and value:
            self._first_true[key] = first = now
        return True if first is not None and first < now else None

    def reset_counters(self) -> None:
        self._counters.clear()

    def saw_row(self, table: str, index: str) -> None:
        """The row is present in this poll, whichever of its readings were used."""
        self._last_seen[(table, index)] = self._poll

    def end_poll(self) -> None:
        """Forget the rows missing from the last ``forget_after_polls`` polls, then count one."""
        gone = {row for row, seen in self._last_seen.items() if self._poll - seen >= self.forget_after_polls}
        if gone:
            for readings in (self._counters, self._previous, self._first_true):
                for key in [key for key in readings if key[:2] in gone]:
                    del readings[key]
            for row in gone:
                del self._last_seen[row]
        self._poll += 1


def planned_oids(tables: tuple[ResolvedTable, ...]) -> tuple[list[str], list[str]]:
    """(column OIDs to walk, scalar OIDs to GET), each once, in declaration order."""
    walks: dict[str, None] = {}
    gets: dict[str, None] = {}
    for table in tables:
        for column in table.columns:
            (gets if table.scalar and not column.walk else walks)[column.oid] = None
    return list(walks), list(gets)


async def fetch(client: SnmpClient, profile: Profile, known: Mapping[str, SnmpValue] | None = None) -> Snapshot:
    """Read everything ``profile`` declares. ``known`` are scalars already read this poll.

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
    await _fetch_tables(client, primary, snapshot, budget, failures)
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
) -> None:
    """Read ``tables`` into ``snapshot``, recording each failed read in ``failures``; after an
    :class:`Unreachable` one (here or in an earlier pass of the poll) nothing more is tried."""
    walks, gets = planned_oids(tables)

    def silence() -> Unreachable | None:
        return next((exc for exc in failures if isinstance(exc, Unreachable)), None)

    def not_tried(oids: list[str], after: Unreachable) -> None:
        snapshot.errors.update({oid: f"not tried after {after}" for oid in oids if oid not in snapshot.columns})

    missing = [oid for oid in gets if oid not in snapshot.scalars and oid not in snapshot.errors]
    if missing:
        gone = silence()
        if gone is not None:
            not_tried([*missing, *walks], gone)
            return
        try:
            snapshot.scalars.update(await client.get(missing, budget))
        except CollectError as exc:
            failures.append(exc)
            snapshot.errors.update({oid: str(exc) for oid in missing})
            if isinstance(exc, Unreachable):
                not_tried(walks, exc)
                return
    gate = asyncio.Semaphore(WALKS_IN_FLIGHT)

    async def walk(oid: str) -> None:
        if oid in snapshot.columns or oid in snapshot.errors:
            return
        async with gate:
            gone = silence()
            if gone is not None:
                not_tried([oid], gone)
                return
            found = await client.walk_partial(oid, budget)
        if found.error is not None:
            failures.append(found.error)
            snapshot.errors[oid] = str(found.error)
            if found.values:
                kept = len(found.values)
                snapshot.errors[oid] += f" ({kept} {'row' if kept == 1 else 'rows'} read before it kept)"
            else:
                return
        prefix_len = len(oid) + 1
        snapshot.columns[oid] = {full[prefix_len:]: value for full, value in found.values.items()}

    await asyncio.gather(*(walk(oid) for oid in walks))


def _has_rows(table: ResolvedTable, snapshot: Snapshot) -> bool:
    if table.scalar:
        return any(snapshot.columns.get(c.oid) if c.walk else c.oid in snapshot.scalars for c in table.columns)
    return any(snapshot.columns.get(c.oid) for c in table.own_columns)


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
    for column in table.columns:
        if column.walk:
            # The whole column as a tuple in index order: () when the table is empty, None when
            # it could not be read entirely (a summary of half a column, "is this alarm in the
            # alarm table", would be wrong).
            found = None if column.oid in snapshot.errors else snapshot.columns.get(column.oid)
            raw[column.name] = None
            env[column.name] = None if found is None else tuple(found[k].value for k in sorted(found, key=oid_key))
            oids[column.name] = column.oid
            continue
        if table.scalar:
            value = snapshot.scalars.get(column.oid)
            oids[column.name] = column.oid
        else:
            key = index if column.join is None else column.join.evaluate(env)
            value = None if key is None else snapshot.columns.get(column.oid, {}).get(str(key))
            if key is not None:
                oids[column.name] = f"{column.oid}.{key}"
        raw[column.name] = value
        env[column.name] = None if value is None else value.value

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

    stateful = {"rate": rate, "went_backwards": went_backwards, "bits": bits, "seen_before": seen_before}
    for name, spec in table.vars:
        env[name] = _compute(spec, env, stateful)
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


def set_bits(value: SnmpValue, names: tuple[str, ...]) -> str | None:
    """Names of the bits set in a BITS-style OCTET STRING (bit 0 = most significant bit of the
    first octet, as SNMP BITS and hrPrinterDetectedErrorState number them), comma-separated in bit
    order; "" when none is set. A bit beyond ``names`` is called ``bit<n>``.

    The client hands out printable octets as text and others as hex, so both are turned back into
    the octets (text loses only trailing NULs, which carry no set bit). ``None`` for a non-octet
    value: its bits have no defined order."""
    if value.kind == "hex":
        octets = bytes.fromhex(str(value.value))
    elif value.kind == "string":
        octets = str(value.value).encode("utf-8")
    else:
        return None
    found = []
    for number in range(len(octets) * 8):
        if octets[number // 8] & (0x80 >> (number % 8)):
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
