"""The compact embedded store: per-series chunks in one SQLite file, and rollups for 13 months.

Where the row store (agent/stores/sqlite.py) spends a row of about 90 bytes on every point, this one
keeps one row per series and time window (``chunk``), its points encoded as columns by
agent/stores/codec.py (timestamps once per row of fields, delta-of-delta integers, XOR floats,
strings and states as runs). Three levels share the table:

- level 0, raw points, windows of ``RAW_WINDOW_NS`` (2 h), kept ``Retention.raw_days`` (30);
- level 1, 5-minute rollups (min, max, sum, count of every numeric field per bucket; a counter's
  increase and count), windows of a day, kept ``Retention.five_minute_days`` (30);
- level 2, hourly rollups, windows of a week, kept ``Retention.days`` (400: 13 rolling months).

The 5-minute rollups cost about as much as the raw points they sum up (4 statistics for 5 points),
so keeping them 13 months would cost ten times the raw month: bench/bench_storage.py measures it
and bench/README.md gives the sizes that decided the defaults.

Every ``write`` appends to the open chunks of its series (in memory, each encoder keeps its state)
and writes those chunks to ``open_chunk`` in one transaction: a SIGKILL loses at most the batch
being written, and SQLite's WAL keeps every committed chunk intact. A raw window is rolled up
("sealed") once it is ``SEAL_GRACE_NS`` past its end, and moves to ``chunk`` (as a rollup window
does once no raw window can reach it): rewritten rows leave holes in their pages, so the churning
chunks stay in a small table of their own and the big one is only appended to, its pages full. A
late point moves its window back to ``open_chunk`` and the next sealing step replaces that window's
rollup buckets. A point older than the raw retention is refused:
its window's rollups can no longer be recomputed from the whole window.

A counter (a field a plugin declares in ``PluginSpec.counter_fields``: a raw octet count that only
grows) is rolled up as its increase per bucket, as Prometheus' ``increase()`` counts it: the sum of
the steps between consecutive points, the step into a bucket's first point included (taken from the
previous raw window when the point opens its window), a decrease being a reset (the value after it
is the increase). Its min, max and sum would say little its rate fields do not and cost three
noisy integers a bucket. The declared counters are kept in the file (``counter_field``) for the
readers; a rollup column says which statistic it holds, so buckets rolled up before a field was
declared keep their min/max/sum. A late point in a sealed window re-rolls that window only: the
next window's first step keeps the previous last value it was rolled up with.

Retention deletes whole chunks, a bounded number per write. String fields have no rollups: the
agent's StateDB keeps states as intervals for the reports; their raw runs hold their changes.
Raw points round-trip exactly; the rollups' float statistics are kept to single precision (7
significant digits), integer ones exactly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import struct
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TypeVar

from agent.api import Sample
from agent.db import SERIES_SCHEMA, open_db
from agent.stores.codec import (
    KIND_STR,
    ChunkBuilder,
    ColumnKey,
    Row,
    Value,
    add_segment,
    build_chunk,
    chunk_rows,
    decode_chunk,
    finish_chunk,
    merge_segments,
    segment_count,
    value_kind,
)
from agent.stores.sqlite import NS_PER_DAY, SeriesPoints, canonical_tags, tag_filter_sql

log = logging.getLogger(__name__)

NS_PER_MINUTE = 60 * 1_000_000_000
RAW_WINDOW_NS = 120 * NS_PER_MINUTE
# A raw window is rolled up this long after its end: a poll that started before the end and
# returned after it still lands in the window it belongs to before the window is summed up.
SEAL_GRACE_NS = 10 * NS_PER_MINUTE
DEFAULT_RAW_RETENTION_DAYS = 30
DEFAULT_FIVE_MINUTE_RETENTION_DAYS = 30
DEFAULT_ROLLUP_RETENTION_DAYS = 400
# Chunks sealed or deleted per write: one step never holds the write lock for long.
STEP_CHUNKS = 2_000
# Segments an open rollup window holds before they are merged: a day of raw windows.
MAX_SEGMENTS = 12

RAW = 0
# The finished chunks' table, then the open ones'.
TABLES = ("chunk", "open_chunk")
PAGE_SIZE = 16384
WAL_PAGES = 256


@dataclass(frozen=True)
class Level:
    """A rollup resolution: its buckets and the window of its chunks."""

    level: int
    name: str
    bucket_ns: int
    window_ns: int


ROLLUPS = (
    Level(1, "5m", 5 * NS_PER_MINUTE, NS_PER_DAY),
    Level(2, "1h", 60 * NS_PER_MINUTE, 7 * NS_PER_DAY),
)
ROLLUP_BY_NAME = {level.name: level for level in ROLLUPS}
WINDOW_NS = {RAW: RAW_WINDOW_NS, **{level.level: level.window_ns for level in ROLLUPS}}

# A rollup column's number: the field's id times STATS plus the statistic. Files of format 0 had
# no increase, and STATS_V0 statistics a field.
STAT_MIN, STAT_MAX, STAT_SUM, STAT_COUNT, STAT_INCREASE = range(5)
STATS = 5
STATS_V0 = 4
GAUGE_STATS = (STAT_MIN, STAT_MAX, STAT_SUM, STAT_COUNT)
COUNTER_STATS = (STAT_INCREASE, STAT_COUNT)
# The file's layout, in PRAGMA user_version: 0 before counters (4 statistics a field), 1 since.
FORMAT_VERSION = 1
# The statistics a query may ask for, and the columns each needs (count always).
STATISTICS = {"min": (STAT_MIN,), "max": (STAT_MAX,), "avg": (STAT_SUM,)}

SCHEMA = (
    SERIES_SCHEMA
    + """
CREATE TABLE IF NOT EXISTS field (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
-- One series' window at one level, data encoded by agent/stores/codec.py: finished (a raw window
-- rolled up, a rollup window past) in chunk, still written to in open_chunk.
CREATE TABLE IF NOT EXISTS chunk (
    series_id INTEGER NOT NULL,
    level INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    data BLOB NOT NULL,
    UNIQUE (series_id, level, start_ns)
);
CREATE INDEX IF NOT EXISTS chunk_age ON chunk (level, start_ns);
CREATE TABLE IF NOT EXISTS open_chunk (
    series_id INTEGER NOT NULL,
    level INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    data BLOB NOT NULL,
    UNIQUE (series_id, level, start_ns)
);
CREATE INDEX IF NOT EXISTS open_chunk_age ON open_chunk (level, start_ns);
-- The counters the writer was told of (PluginSpec.counter_fields), for readers of the file.
CREATE TABLE IF NOT EXISTS counter_field (
    measurement TEXT NOT NULL,
    field TEXT NOT NULL,
    PRIMARY KEY (measurement, field)
);
"""
)

T = TypeVar("T")
ChunkKey = tuple[int, int, int]  # (series id, level, window start)


@dataclass(frozen=True)
class Retention:
    """Days kept at each level: raw points, 5-minute rollups, hourly rollups (``days``, also the
    StateDB's, as for every embedded store)."""

    raw_days: float = DEFAULT_RAW_RETENTION_DAYS
    five_minute_days: float = DEFAULT_FIVE_MINUTE_RETENTION_DAYS
    days: float = DEFAULT_ROLLUP_RETENTION_DAYS

    def __post_init__(self) -> None:
        if not 0 < self.raw_days <= self.five_minute_days <= self.days:
            raise ValueError(
                f"retention: raw_retention_days ({self.raw_days}) <= five_minute_retention_days"
                f" ({self.five_minute_days}) <= retention_days ({self.days}) expected: a rollup is kept at least"
                " as long as what it sums up"
            )

    def ns(self, level: int) -> int:
        days = {RAW: self.raw_days, 1: self.five_minute_days, 2: self.days}[level]
        return int(days * NS_PER_DAY)


class Bucket(NamedTuple):
    """One rollup bucket [start_ns, start_ns + resolution) of one field (a tuple: a month of a
    client's interfaces is tens of thousands of them). A gauge has min, max and avg (those asked
    for; the others None); a counter its ``increase`` (and None for the three); both a count of
    points."""

    start_ns: int
    min: float | int | None
    max: float | int | None
    avg: float | None
    count: int
    increase: float | int | None = None


@dataclass(frozen=True)
class SeriesRollup:
    tags: dict[str, str]
    buckets: list[Bucket]


def stored_value(value: bool | int | float | str) -> Value:
    return int(value) if isinstance(value, bool) else value


def rollup_rows(
    timestamps: Sequence[int],
    columns: Mapping[ColumnKey, list],
    bucket_ns: int,
    counters: Mapping[int, Value | None] | None = None,
) -> list[Row]:
    """The rollup rows of decoded raw rows: min, max, sum, count of each numeric field per bucket,
    and for a counter (a field id of ``counters``, with its value before the first row or None)
    its increase and count."""
    stats: dict[int, dict[int, list]] = {}
    counters = counters or {}
    for (field_id, kind), values in columns.items():
        if kind == KIND_STR:
            continue
        if field_id in counters:
            _increases(stats, timestamps, values, bucket_ns, field_id, counters[field_id])
            continue
        for ts, value in zip(timestamps, values, strict=True):
            if value is None:
                continue
            by_field = stats.setdefault(ts - ts % bucket_ns, {})
            held = by_field.get(field_id)
            if held is None:
                by_field[field_id] = [value, value, value, 1]
            else:
                if value < held[0]:
                    held[0] = value
                if value > held[1]:
                    held[1] = value
                held[2] += value
                held[3] += 1
    rows: list[Row] = []
    for bucket in sorted(stats):
        values: dict[ColumnKey, Value] = {}
        for field_id, held in stats[bucket].items():
            base = field_id * STATS
            for stat, value in zip(COUNTER_STATS if field_id in counters else GAUGE_STATS, held, strict=True):
                if isinstance(value, float):
                    value = _single(value)
                values[(base + stat, value_kind(value))] = value
        rows.append((bucket, values))
    return rows


def _increases(
    stats: dict[int, dict[int, list]],
    timestamps: Sequence[int],
    values: Sequence[Value | None],
    bucket_ns: int,
    field_id: int,
    previous: Value | None,
) -> None:
    """A counter's [increase, count] per bucket into ``stats``: each step goes to the bucket of its
    later point; a decrease is a reset, the value after it the increase (Prometheus' increase())."""
    for ts, value in zip(timestamps, values, strict=True):
        if value is None:
            continue
        step = 0 if previous is None else value - previous if value >= previous else value
        previous = value
        by_field = stats.setdefault(ts - ts % bucket_ns, {})
        held = by_field.get(field_id)
        if held is None:
            by_field[field_id] = [step, 1]
        else:
            held[0] += step
            held[1] += 1


_float32 = struct.Struct("<f")


def _single(value: float) -> float:
    """``value`` to single precision (7 significant digits), kept as a double: a statistic on a
    dashboard needs no more, and its XOR with the next then spans half the bits (the rollups of
    noisy rates are most of their bytes). Raw points stay exact. Beyond single range: as is."""
    try:
        return _float32.unpack(_float32.pack(value))[0]
    except OverflowError:
        return value


def _buckets(
    timestamps: Sequence[int], columns: Mapping[ColumnKey, list], field_id: int, stats_per_field: int = STATS
) -> dict[int, Bucket]:
    """The buckets of one field in decoded rollup rows, from the statistics decoded (its
    statistics may sit in columns of several kinds when the field changed type)."""
    by_stat: dict[int, list[list]] = {}
    for (number, _), values in columns.items():
        if number // stats_per_field == field_id:
            by_stat.setdefault(number % stats_per_field, []).append(values)
    if STAT_COUNT not in by_stat:
        return {}
    nothing = [None] * len(timestamps)
    columns_of = (_one_column(by_stat[stat]) if stat in by_stat else nothing for stat in _BUCKET_STATS)
    rows = zip(timestamps, *columns_of, strict=True)
    # A window rolled up before its field was declared a counter holds both kinds of bucket.
    return {
        ts: Bucket(ts, None, None, None, n, up)
        if up is not None
        else Bucket(ts, lo, hi, None if total is None else total / n, n)
        for ts, lo, hi, total, n, up in rows
        if n
    }


_BUCKET_STATS = (STAT_MIN, STAT_MAX, STAT_SUM, STAT_COUNT, STAT_INCREASE)


def _create(path: Path) -> None:
    """A new file with ``PAGE_SIZE`` pages: chunks of one to a few kB pack into 4 kB pages with a
    quarter of each left empty, into 16 kB ones with a few percent. The page size is fixed by the
    first table, before the file goes to WAL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    try:
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        conn.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
        conn.execute("CREATE TABLE IF NOT EXISTS field (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
        conn.commit()
    finally:
        conn.close()


class CompactDB:
    """The store's file, synchronous: the async ``CompactStore`` runs it on one thread; a view or
    a report beside a live agent opens it ``read_only`` for the queries."""

    def __init__(
        self,
        path: Path,
        retention: Retention = Retention(),
        *,
        read_only: bool = False,
        counter_fields: Iterable[tuple[str, str]] = (),
    ) -> None:
        """``counter_fields``: the (measurement, field) pairs rolled up as increases (a writer's;
        a reader takes those the file's writer was told of)."""
        self.path = Path(path)
        self.retention = retention
        if read_only:
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            self._conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=5.0)
            self._version = self._format_version()
        else:
            if not self.path.exists():
                _create(self.path)
            self._conn = open_db(self.path, SCHEMA, foreign_keys=True)
            # SQLite checkpoints every 1,000 pages and keeps the WAL at its largest: 16 MB of
            # 16 kB pages, more than a small site's whole store. A quarter of that, truncated back.
            self._conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_PAGES}")
            self._conn.execute(f"PRAGMA journal_size_limit = {WAL_PAGES * PAGE_SIZE}")
            self._version = self._format_version()
            if self._version < FORMAT_VERSION:
                self._migrate()
            self._declare_counters(counter_fields)
        self._stats_per_field = STATS if self._version >= 1 else STATS_V0
        self._series_ids: dict[tuple[str, str], int] = {}
        self._field_ids: dict[str, int] = dict(self._conn.execute("SELECT name, id FROM field"))
        self._column_keys: dict[tuple[str, int], ColumnKey] = {}
        self._counters: frozenset[tuple[str, str]] = frozenset(
            self._conn.execute("SELECT measurement, field FROM counter_field") if self._version >= 1 else ()
        )
        self._measurements: dict[int, str] = {}
        # Raw windows being appended to, until rolled up.
        self._open: dict[ChunkKey, ChunkBuilder] = {}

    def _format_version(self) -> int:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > FORMAT_VERSION:
            raise ValueError(
                f"{self.path}: compact store format {version}, this vigie reads up to {FORMAT_VERSION}"
                " (written by a newer vigie)"
            )
        return version

    def _migrate(self) -> None:
        """A file of format 0 (4 statistics a field, before counters) to the current one: every
        rollup chunk's columns renumbered, its values as they were (a counter rolled up then keeps
        its min/max/sum buckets), in one transaction."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for table in TABLES:
                rows = conn.execute(f"SELECT rowid, data FROM {table} WHERE level > 0").fetchall()
                for rowid, data in rows:
                    renumbered = [
                        (ts, {(n // STATS_V0 * STATS + n % STATS_V0, kind): v for (n, kind), v in values.items()})
                        for ts, values in chunk_rows(data)
                    ]
                    encoded = build_chunk(renumbered).encode()
                    if table == "chunk":
                        encoded = finish_chunk(encoded)
                    conn.execute(f"UPDATE {table} SET data = ? WHERE rowid = ?", (encoded, rowid))
            conn.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("compact store %s: format %d migrated to %d", self.path, self._version, FORMAT_VERSION)
        self._version = FORMAT_VERSION

    def _declare_counters(self, counter_fields: Iterable[tuple[str, str]]) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM counter_field")
        conn.executemany("INSERT OR IGNORE INTO counter_field (measurement, field) VALUES (?, ?)", counter_fields)
        conn.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()

    # -- writing ---------------------------------------------------------------------------------

    def write(self, samples: Iterable[Sample], now_ns: int) -> int:
        """Append a batch and write the chunks it touched, in one transaction; returns the number
        of samples refused as older than the raw retention."""
        conn = self._conn
        oldest = now_ns - self.retention.ns(RAW)
        refused = 0
        late: dict[ChunkKey, list[Row]] = {}
        touched: set[ChunkKey] = set()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sample in sorted(samples, key=lambda s: s.timestamp_ns):
                known = sample.known_fields()
                if not known:
                    continue
                ts = sample.timestamp_ns
                if ts < oldest:
                    refused += 1
                    continue
                values: dict[ColumnKey, Value] = {}
                for name, value in known.items():
                    stored = stored_value(value)
                    values[self._column_key(name, value_kind(stored))] = stored
                key = (self._series_id(sample.measurement, sample.tags), RAW, ts - ts % RAW_WINDOW_NS)
                if not self._builder(key).append(ts, values):
                    late.setdefault(key, []).append((ts, values))
                touched.add(key)
            for key, rows in late.items():
                self._open[key] = build_chunk(chunk_rows(self._open[key].encode()) + rows)
            self._save(touched)
            conn.execute("COMMIT")
        except BaseException:
            self._rolled_back()
            raise
        if refused:
            log.warning("compact store: %d samples older than the raw retention refused", refused)
        return refused

    def _rolled_back(self) -> None:
        self._conn.execute("ROLLBACK")
        # Ids and chunks cached during the transaction may not be on disk: disk is the truth.
        self._series_ids.clear()
        self._measurements.clear()
        self._field_ids = dict(self._conn.execute("SELECT name, id FROM field"))
        self._column_keys.clear()
        self._open.clear()

    def _builder(self, key: ChunkKey) -> ChunkBuilder:
        """The open chunk of ``key``: cached, else read back from open_chunk (after a restart),
        else a finished one reopened (a late point), else a new one."""
        builder = self._open.get(key)
        if builder is None:
            conn = self._conn
            where = "WHERE series_id = ? AND level = ? AND start_ns = ?"
            row = conn.execute(f"SELECT data FROM open_chunk {where}", key).fetchone()
            if row is None:
                row = conn.execute(f"SELECT data FROM chunk {where}", key).fetchone()
                if row is not None:
                    conn.execute(f"DELETE FROM chunk {where}", key)
            builder = build_chunk(chunk_rows(row[0])) if row else ChunkBuilder()
            self._open[key] = builder
        return builder

    def _save(self, keys: Iterable[ChunkKey]) -> None:
        self._conn.executemany(
            "INSERT INTO open_chunk (series_id, level, start_ns, data) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (series_id, level, start_ns) DO UPDATE SET data = excluded.data",
            [(*key, self._open[key].encode()) for key in keys],
        )

    def _series_id(self, measurement: str, tags: Mapping[str, str]) -> int:
        key = (measurement, canonical_tags(tags))
        found = self._series_ids.get(key)
        if found is None:
            conn = self._conn
            row = conn.execute("SELECT id FROM series WHERE measurement = ? AND tags = ?", key).fetchone()
            if row is None:
                found = int(conn.execute("INSERT INTO series (measurement, tags) VALUES (?, ?)", key).lastrowid)
                conn.executemany(
                    "INSERT INTO series_tag (series_id, key, value) VALUES (?, ?, ?)",
                    [(found, k, v) for k, v in json.loads(key[1]).items()],
                )
            else:
                found = row[0]
            self._series_ids[key] = found
        return found

    def _column_key(self, name: str, kind: int) -> ColumnKey:
        """The one ``(field id, kind)`` tuple of a field and kind: every open chunk's columns are
        keyed by it, so a shared key costs its 56 bytes once, not once per column of every series."""
        found = self._column_keys.get((name, kind))
        if found is None:
            found = self._column_keys[(name, kind)] = (self._field_id(name), kind)
        return found

    def _field_id(self, name: str) -> int:
        found = self._field_ids.get(name)
        if found is None:
            found = int(self._conn.execute("INSERT INTO field (name) VALUES (?)", (name,)).lastrowid)
            self._field_ids[name] = found
        return found

    def _counter_ids(self, series_id: int) -> list[int]:
        """The field ids of the series' counters."""
        if not self._counters:
            return []
        measurement = self._measurements.get(series_id)
        if measurement is None:
            row = self._conn.execute("SELECT measurement FROM series WHERE id = ?", (series_id,)).fetchone()
            measurement = self._measurements[series_id] = row[0] if row else ""
        found = (self._known_field(name) for m, name in self._counters if m == measurement)
        return [field_id for field_id in found if field_id is not None]

    def _counters_before(self, series_id: int, start_ns: int) -> dict[int, Value | None]:
        """Each counter of the series with its last value in the raw window before ``start_ns``
        (None without one): the step into the window's first point."""
        field_ids = self._counter_ids(series_id)
        if not field_ids:
            return {}
        previous: dict[int, Value | None] = dict.fromkeys(field_ids)
        before = start_ns - RAW_WINDOW_NS
        for data in self._chunks(series_id, RAW, before, before + 1):
            _, columns = decode_chunk(data, field_ids)
            for (field_id, _), values in columns.items():
                last = next((v for v in reversed(values) if v is not None), None)
                if last is not None:
                    previous[field_id] = last
        return previous

    # -- sealing and retention -------------------------------------------------------------------

    def seal(self, now_ns: int, max_chunks: int = STEP_CHUNKS) -> int:
        """Roll up to ``max_chunks`` raw windows past their grace, and finish the rollup windows no
        raw window can reach any more; returns how many raw windows were rolled up.

        A rollup window still open is a run of segments, one per raw window rolled into it: adding
        one is a concatenation, so no rollup chunk is held in memory or decoded to grow it; it is
        merged into one chunk (a replayed bucket's later segment winning) when it finishes."""
        conn = self._conn
        horizon = now_ns - RAW_WINDOW_NS - SEAL_GRACE_NS
        due = conn.execute(
            "SELECT series_id, start_ns, data FROM open_chunk WHERE level = 0 AND start_ns < ?"
            " ORDER BY start_ns LIMIT ?",
            (horizon, max_chunks),
        ).fetchall()
        past = conn.execute(
            "SELECT series_id, level, start_ns FROM open_chunk WHERE level > 0 AND start_ns < ? LIMIT ?",
            (horizon - min(r.window_ns for r in ROLLUPS), max_chunks),
        ).fetchall()
        past = [key for key in past if key[2] + WINDOW_NS[key[1]] < horizon]
        if not due and not past:
            return 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            segments: dict[ChunkKey, list[Row]] = {}
            for series_id, start_ns, data in due:
                timestamps, columns = decode_chunk(data)
                counters = self._counters_before(series_id, start_ns)
                for level in ROLLUPS:
                    for bucket, values in rollup_rows(timestamps, columns, level.bucket_ns, counters):
                        key = (series_id, level.level, bucket - bucket % level.window_ns)
                        segments.setdefault(key, []).append((bucket, values))
            for key, rows in segments.items():
                self._add_segment(key, build_chunk(rows).encode())
            self._finish([(series_id, RAW, start_ns) for series_id, start_ns, _ in due])
            self._finish(past)
            conn.execute("COMMIT")
        except BaseException:
            self._rolled_back()
            raise
        return len(due)

    def _add_segment(self, key: ChunkKey, segment: bytes) -> None:
        conn = self._conn
        where = "WHERE series_id = ? AND level = ? AND start_ns = ?"
        row = conn.execute(f"SELECT data FROM open_chunk {where}", key).fetchone()
        if row is None:
            # A finished rollup window that a late point's window reopens.
            row = conn.execute(f"SELECT data FROM chunk {where}", key).fetchone()
            if row is not None:
                conn.execute(f"DELETE FROM chunk {where}", key)
        container = add_segment(row[0] if row else None, segment)
        if segment_count(container) > MAX_SEGMENTS:
            # Every read of the window parses every segment's column headers: merged now and then.
            container = merge_segments(container)
        conn.execute(
            "INSERT INTO open_chunk (series_id, level, start_ns, data) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (series_id, level, start_ns) DO UPDATE SET data = excluded.data",
            (*key, container),
        )

    def _finish(self, keys: list[ChunkKey]) -> None:
        """Move chunks that will not grow any more from open_chunk to the end of chunk, merged into
        one chunk, their timestamps in their final form."""
        conn = self._conn
        where = "WHERE series_id = ? AND level = ? AND start_ns = ?"
        finished = []
        for key in keys:
            row = conn.execute(f"SELECT data FROM open_chunk {where}", key).fetchone()
            if row is not None:
                finished.append((*key, finish_chunk(row[0])))
            self._open.pop(key, None)
        conn.executemany(
            "INSERT OR REPLACE INTO chunk (series_id, level, start_ns, data) VALUES (?, ?, ?, ?)", finished
        )
        conn.executemany(f"DELETE FROM open_chunk {where}", keys)

    def prune(self, now_ns: int, max_chunks: int = STEP_CHUNKS) -> int:
        """Delete up to ``max_chunks`` whole chunks past their level's retention (a raw window only
        once rolled up); when that empties the backlog, series left without chunks go too."""
        conn = self._conn
        deleted = 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            for level in (RAW, *(r.level for r in ROLLUPS)):
                if deleted >= max_chunks:
                    break
                cutoff = now_ns - self.retention.ns(level) - WINDOW_NS[level]
                # Finished chunks only: a raw window is rolled up before it goes.
                deleted += conn.execute(
                    "DELETE FROM chunk WHERE rowid IN"
                    " (SELECT rowid FROM chunk WHERE level = ? AND start_ns < ? LIMIT ?)",
                    (level, cutoff, max_chunks - deleted),
                ).rowcount
            gone = 0
            if 0 < deleted < max_chunks:
                gone = conn.execute(
                    "DELETE FROM series WHERE NOT EXISTS (SELECT 1 FROM chunk c WHERE c.series_id = series.id)"
                    " AND NOT EXISTS (SELECT 1 FROM open_chunk c WHERE c.series_id = series.id)"
                ).rowcount
            conn.execute("COMMIT")
        except BaseException:
            self._rolled_back()
            raise
        if gone:
            self._series_ids.clear()
            self._measurements.clear()
        if deleted:
            log.debug("compact store retention removed %d chunks, %d series", deleted, gone)
        return deleted

    # -- queries ---------------------------------------------------------------------------------

    def series(self, measurement: str, tag_filter: Mapping[str, str] | None = None) -> list[dict[str, str]]:
        return [tags for _, tags in self._series_rows(measurement, tag_filter)]

    def _series_rows(self, measurement: str, tag_filter: Mapping[str, str] | None) -> list[tuple[int, dict[str, str]]]:
        where, params = tag_filter_sql(tag_filter)
        rows = self._conn.execute(
            f"SELECT s.id, s.tags FROM series s WHERE s.measurement = ?{where} ORDER BY s.tags",
            [measurement, *params],
        )
        return [(series_id, json.loads(tags)) for series_id, tags in rows]

    def _known_field(self, field: str) -> int | None:
        found = self._field_ids.get(field)
        if found is None:
            row = self._conn.execute("SELECT id FROM field WHERE name = ?", (field,)).fetchone()
            found = row[0] if row else None
        return found

    def _chunks(
        self, series_id: int, level: int, start_ns: int | None, end_ns: int | None, tables: Sequence[str] = TABLES
    ) -> list[bytes]:
        """The data of the chunks of a series' level overlapping [start_ns, end_ns), oldest first,
        from ``tables`` (finished chunks, open ones or both)."""
        return [data for _, data in self._windows(series_id, level, start_ns, end_ns, tables)]

    def _windows(
        self, series_id: int, level: int, start_ns: int | None, end_ns: int | None, tables: Sequence[str] = TABLES
    ) -> list[tuple[int, bytes]]:
        """(window start, data) of the chunks ``_chunks`` returns."""
        lo = -(2**63) if start_ns is None else start_ns - WINDOW_NS[level] + 1
        hi = 2**63 - 1 if end_ns is None else end_ns
        where = "WHERE series_id = ? AND level = ? AND start_ns >= ? AND start_ns < ?"
        sql = " UNION ALL ".join(f"SELECT start_ns, data FROM {table} {where}" for table in tables)
        return self._conn.execute(f"{sql} ORDER BY start_ns", (series_id, level, lo, hi) * len(tables)).fetchall()

    def points(
        self,
        measurement: str,
        field: str,
        tag_filter: Mapping[str, str] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> list[SeriesPoints]:
        """Raw points of ``field`` in [start_ns, end_ns), one entry per matching series."""
        field_id = self._known_field(field)
        if field_id is None:
            return []
        lo = -(2**63) if start_ns is None else start_ns
        hi = 2**63 - 1 if end_ns is None else end_ns
        result = []
        for series_id, tags in self._series_rows(measurement, tag_filter):
            points: list[tuple[int, Value]] = []
            for data in self._chunks(series_id, RAW, start_ns, end_ns):
                timestamps, columns = decode_chunk(data, (field_id,))
                if not columns:
                    continue
                merged = _one_column(columns.values())
                if lo <= timestamps[0] and timestamps[-1] < hi and None not in merged:
                    points += zip(timestamps, merged, strict=True)
                else:
                    pairs = zip(timestamps, merged, strict=True)
                    points += [(ts, v) for ts, v in pairs if v is not None and lo <= ts < hi]
            if points:
                result.append(SeriesPoints(tags, points))
        return result

    def rollups(
        self,
        measurement: str,
        field: str,
        resolution: str,
        tag_filter: Mapping[str, str] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        statistics: Iterable[str] = tuple(STATISTICS),
    ) -> list[SeriesRollup]:
        """Buckets of ``field`` starting in [start_ns, end_ns) at ``resolution`` ("5m" or "1h"),
        one entry per matching series; windows not rolled up yet are summed up from their raw
        points, so the buckets run up to the last point. Only the ``statistics`` asked for ("min",
        "max", "avg"; the others None) are decoded: a chunk keeps each in a column of its own, and
        a chart of averages need not decode the extremes. A counter's buckets have its increase."""
        level = ROLLUP_BY_NAME.get(resolution)
        if level is None:
            raise ValueError(f"unknown resolution {resolution!r} (expected one of {sorted(ROLLUP_BY_NAME)})")
        statistics = tuple(statistics)
        unknown = sorted(set(statistics) - set(STATISTICS))
        if unknown:
            raise ValueError(f"unknown statistic(s) {', '.join(unknown)} (expected some of {', '.join(STATISTICS)})")
        field_id = self._known_field(field)
        if field_id is None:
            return []
        lo = -(2**63) if start_ns is None else start_ns
        hi = 2**63 - 1 if end_ns is None else end_ns
        per_field = self._stats_per_field
        stats = {STAT_COUNT, *(stat for name in statistics for stat in STATISTICS[name])}
        if per_field > STAT_INCREASE:
            stats.add(STAT_INCREASE)
        wanted = [field_id * per_field + stat for stat in sorted(stats)]
        result = []
        for series_id, tags in self._series_rows(measurement, tag_filter):
            buckets: dict[int, Bucket] = {}
            for data in self._chunks(series_id, level.level, start_ns, end_ns):
                buckets.update(_buckets(*decode_chunk(data, wanted), field_id, per_field))
            # Raw windows not rolled up yet, summed up here.
            for window_ns, data in self._windows(series_id, RAW, start_ns, end_ns, ("open_chunk",)):
                timestamps, columns = decode_chunk(data, (field_id,))
                counted = field_id in self._counter_ids(series_id)
                counters = self._counters_before(series_id, window_ns) if counted else {}
                rows = rollup_rows(timestamps, columns, level.bucket_ns, counters)
                summed = _buckets(*_columns_of(rows), field_id)
                buckets.update({ts: _only(bucket, statistics) for ts, bucket in summed.items()})
            kept = [buckets[ts] for ts in sorted(buckets) if lo <= ts < hi]
            if kept:
                result.append(SeriesRollup(tags, kept))
        return result


def _only(bucket: Bucket, statistics: Sequence[str]) -> Bucket:
    """``bucket`` with the gauge statistics not asked for as None, as decoded chunks give them."""
    if bucket.increase is not None:
        return bucket
    return bucket._replace(**{name: None for name in STATISTICS if name not in statistics})


def _one_column(columns: Iterable[list]) -> list:
    """The columns of one field (one per kind it had) as one: each row has at most one value."""
    merged: list | None = None
    for values in columns:
        if merged is None:
            merged = list(values)
        else:
            merged = [a if b is None else b for a, b in zip(merged, values, strict=True)]
    return merged or []


def _columns_of(rows: Sequence[Row]) -> tuple[list[int], dict[ColumnKey, list]]:
    timestamps = [ts for ts, _ in rows]
    columns: dict[ColumnKey, list] = {}
    for index, (_, values) in enumerate(rows):
        for key, value in values.items():
            columns.setdefault(key, [None] * len(rows))[index] = value
    return timestamps, columns


class CompactStore:
    """The async ``Store`` over ``CompactDB``: every call runs on one dedicated thread that owns the
    connection, so polling never waits on the disk; each write also takes a sealing and a
    retention step at the clock's time."""

    def __init__(
        self,
        path: Path,
        retention: Retention = Retention(),
        clock_ns: Callable[[], int] = time.time_ns,
        counter_fields: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.path = Path(path)
        self.retention = retention
        self._clock_ns = clock_ns
        self._counter_fields = frozenset(counter_fields)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="compact-store")
        self._db: CompactDB | None = None

    async def write(self, samples: Sequence[Sample]) -> None:
        if samples:
            await self._run(self._write_sync, list(samples), self._clock_ns())

    async def series(self, measurement: str, tag_filter: Mapping[str, str] | None = None) -> list[dict[str, str]]:
        return await self._run(lambda: self._open().series(measurement, tag_filter))

    async def points(
        self,
        measurement: str,
        field: str,
        tag_filter: Mapping[str, str] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> list[SeriesPoints]:
        return await self._run(lambda: self._open().points(measurement, field, tag_filter, start_ns, end_ns))

    async def rollups(
        self,
        measurement: str,
        field: str,
        resolution: str,
        tag_filter: Mapping[str, str] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        statistics: Iterable[str] = tuple(STATISTICS),
    ) -> list[SeriesRollup]:
        statistics = tuple(statistics)
        return await self._run(
            lambda: self._open().rollups(measurement, field, resolution, tag_filter, start_ns, end_ns, statistics)
        )

    async def maintain(self, now_ns: int, max_chunks: int = STEP_CHUNKS) -> tuple[int, int]:
        """One sealing and one retention step at ``now_ns``: (windows sealed, chunks deleted)."""
        return await self._run(self._maintain_sync, now_ns, max_chunks)

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)

    async def _run(self, func: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    def _open(self) -> CompactDB:
        if self._db is None:
            self._db = CompactDB(self.path, self.retention, counter_fields=self._counter_fields)
        return self._db

    def _write_sync(self, samples: list[Sample], now_ns: int) -> None:
        self._open().write(samples, now_ns)
        self._maintain_sync(now_ns, STEP_CHUNKS)

    def _maintain_sync(self, now_ns: int, max_chunks: int) -> tuple[int, int]:
        db = self._open()
        return db.seal(now_ns, max_chunks), db.prune(now_ns, max_chunks)
