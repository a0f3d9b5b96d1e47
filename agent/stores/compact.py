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

Every ``write`` appends its samples to ``recent_row``, one row per sample (its fields as JSON),
in one transaction: a SIGKILL loses at most the batch being written, SQLite's WAL keeps every
committed row, and the writer holds no series' state in memory (an encoder per open series cost
about 3 kB each: 280 MB at a thousand switches). Rows older than ``FLUSH_AGE_NS`` are moved, a
series' window at a time, into its open chunk in ``open_chunk`` as one more segment (a
concatenation: the window is not decoded to grow), each write moving twice the rows of its batch
(the flush paced like the writes); a value is thus encoded twice, once in its segment and once
when its window is finished into one chunk. A raw window is rolled up ("sealed") once it is
``SEAL_GRACE_NS`` past its end, and moves to ``chunk`` (as a rollup window does once no raw
window can reach it): rewritten rows leave holes in their
pages, so the churning rows and chunks stay in small tables of their own and the big one is only
appended to, its pages full. A late point moves its window back to ``open_chunk`` when it is
flushed and the next sealing step replaces that window's rollup buckets. Queries read the three
tables, a later row of a timestamp replacing the fields it has. A point older than the raw
retention is refused: its window's rollups can no longer be recomputed from the whole window.

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
from itertools import pairwise
from pathlib import Path
from typing import NamedTuple, TypeVar

from agent.api import Sample
from agent.db import SERIES_SCHEMA, open_db
from agent.stores.codec import (
    KIND_STR,
    SEGMENTS,
    ColumnKey,
    Row,
    Value,
    add_segment,
    chunk_rows,
    column_rows,
    decode_chunk,
    encode_rows,
    finish_chunk,
    merge_rows,
    merge_segments,
    segment_count,
    value_kind,
)
from agent.stores.sqlite import NS_PER_DAY, SeriesIds, SeriesPoints, tag_filter_sql

log = logging.getLogger(__name__)

NS_PER_MINUTE = 60 * 1_000_000_000
RAW_WINDOW_NS = 120 * NS_PER_MINUTE
# A raw window is rolled up this long after its end: a poll that started before the end and
# returned after it still lands in the window it belongs to before the window is summed up.
SEAL_GRACE_NS = 10 * NS_PER_MINUTE
DEFAULT_RAW_RETENTION_DAYS = 30
DEFAULT_FIVE_MINUTE_RETENTION_DAYS = 30
DEFAULT_ROLLUP_RETENTION_DAYS = 400
# Chunks sealed or deleted per step at most: one step never holds the write lock for long.
STEP_CHUNKS = 2_000
# The windows due when a sealing begins are sealed over this much of the clock, a share at each
# write (at least one window a write). Every series' raw window ends at the same moment, and a
# window costs about 3 ms to roll up: 2,000 a write made the sealing of 1,500 switches' 142,000
# windows bursts of 6 s of a core, every 2 hours, and the polls behind them 20 s late. Spread
# over an hour it is about a tenth of the core; it ends well before the next windows are due.
SEAL_SPREAD_NS = 60 * NS_PER_MINUTE
# Segments an open rollup window holds before they are merged: a day of raw windows.
MAX_SEGMENTS = 12
# A raw window's segments: one per flush of its rows, every FLUSH_AGE_NS, merged when it finishes.
RAW_MAX_SEGMENTS = 32
# Rows wait this long in recent_row before they become a segment: a series' segment then holds
# about five polls a minute apart (fewer, larger segments cost less to write and to read), and
# the last rows of a raw window are in its chunk before the window is sealed (SEAL_GRACE_NS).
FLUSH_AGE_NS = 5 * NS_PER_MINUTE
# Rows of recent_row moved per flush step of a write: twice the batch (at least
# FLUSH_STEP_MIN_ROWS), so that a flush, once begun, ends within about half of FLUSH_AGE_NS and
# its cost is spread like the writes'. Not more: a step holds the store's thread and, on one core,
# the GIL; 5,000 rows a write (0.1 s of a core each) made the flush of 1,000 switches' 5 minutes a
# burst of 10 s at 100 % of the core every 5 minutes, and the polls due behind it up to 12 s late.
FLUSH_STEP_MIN_ROWS = 100
# Rows moved by a flush step on its own (`flush`, what `maintain` takes).
FLUSH_ROWS = 5_000

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
# The file's layout, in PRAGMA user_version: 0 before counters (4 statistics a field), 1 with
# them, 2 with recent_row (a reader of format 1 would not see the rows written there).
FORMAT_VERSION = 2
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
-- Samples written in the last FLUSH_AGE_NS, in the order written (rowid): their known fields as a
-- JSON list [field id, value, field id, value, ...].
CREATE TABLE IF NOT EXISTS recent_row (
    series_id INTEGER NOT NULL,
    window_ns INTEGER NOT NULL,
    ts_ns INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS recent_row_window ON recent_row (series_id, window_ns);
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
        # A reader of a file of format 1 finds no recent_row table: all its points are in chunks.
        self._has_recent = self._version >= 2
        self._stats_per_field = STATS if self._version >= 1 else STATS_V0
        self._series_ids = SeriesIds()
        self._field_ids: dict[str, int] = dict(self._conn.execute("SELECT name, id FROM field"))
        self._counters: frozenset[tuple[str, str]] = frozenset(
            self._conn.execute("SELECT measurement, field FROM counter_field") if self._version >= 1 else ()
        )
        self._measurements: dict[int, str] = {}
        # The flush in progress: every row of recent_row up to ``_flush_rowid`` goes, series by
        # series from ``_flush_series``; and the clock at the first write after it began (the age
        # of the oldest row waiting for the next one). Rows found in the file when it opens are
        # flushed at once: the previous process wrote them, how long ago is not known.
        self._flush_rowid: int | None = None
        self._flush_series = 0
        self._waiting_since: int | None = None
        # The sealing in progress (``seal_step``): the clock when it began, the windows then due,
        # and how many its steps have sealed since.
        self._seal_began: int | None = None
        self._seal_due = 0
        self._sealed = 0
        if not read_only:
            self._flush_rowid = self._conn.execute("SELECT max(rowid) FROM recent_row").fetchone()[0]

    def _format_version(self) -> int:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > FORMAT_VERSION:
            raise ValueError(
                f"{self.path}: compact store format {version}, this vigie reads up to {FORMAT_VERSION}"
                " (written by a newer vigie)"
            )
        return version

    def _migrate(self) -> None:
        """An older file to the current format, in one transaction. From format 0 (4 statistics a
        field, before counters): every rollup chunk's columns renumbered, its values as they were
        (a counter rolled up then keeps its min/max/sum buckets). From 1: recent_row is new (the
        schema made it), an open raw chunk of format 1 is the first segment of its window."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for table in TABLES if self._version < 1 else ():
                rows = conn.execute(f"SELECT rowid, data FROM {table} WHERE level > 0").fetchall()
                for rowid, data in rows:
                    renumbered = [
                        (ts, {(n // STATS_V0 * STATS + n % STATS_V0, kind): v for (n, kind), v in values.items()})
                        for ts, values in chunk_rows(data)
                    ]
                    encoded = encode_rows(renumbered)
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
        """Append a batch to recent_row and take a flush step, in one transaction; returns the
        number of samples refused as older than the raw retention."""
        conn = self._conn
        oldest = now_ns - self.retention.ns(RAW)
        refused = 0
        rows = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sample in samples:
                known = sample.known_fields()
                if not known:
                    continue
                ts = sample.timestamp_ns
                if ts < oldest:
                    refused += 1
                    continue
                flat: list[Value] = []
                for name, value in known.items():
                    flat += (self._field_id(name), stored_value(value))
                series_id = self._series_ids.get(self._conn, sample.measurement, sample.tags)
                rows.append((series_id, ts - ts % RAW_WINDOW_NS, ts, json.dumps(flat)))
            conn.executemany("INSERT INTO recent_row (series_id, window_ns, ts_ns, data) VALUES (?, ?, ?, ?)", rows)
            if rows and self._waiting_since is None:
                self._waiting_since = now_ns
            self._flush(now_ns, max(FLUSH_STEP_MIN_ROWS, 2 * len(rows)))
            conn.execute("COMMIT")
        except BaseException:
            self._rolled_back()
            raise
        if refused:
            log.warning("compact store: %d samples older than the raw retention refused", refused)
        return refused

    def flush(self, now_ns: int, max_rows: int = FLUSH_ROWS) -> int:
        """One flush step on its own (a write takes one): returns the rows moved into chunks."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            moved = self._flush(now_ns, max_rows)
            conn.execute("COMMIT")
        except BaseException:
            self._rolled_back()
            raise
        return moved

    def _flush(self, now_ns: int, max_rows: int = FLUSH_ROWS) -> int:
        """A step of the flush in progress, or of a new one once the oldest row waiting is
        FLUSH_AGE_NS old (or stamped later than now: the clock went back): every row written so
        far, series by series, each window's rows as one segment of its open chunk; up to about
        ``max_rows`` rows a step (a series is never split). Returns the rows moved."""
        waiting = self._waiting_since
        if self._flush_rowid is None and waiting is not None and not now_ns - FLUSH_AGE_NS < waiting <= now_ns:
            self._flush_rowid = self._conn.execute("SELECT max(rowid) FROM recent_row").fetchone()[0]
            self._flush_series = 0
            self._waiting_since = None
        upto = self._flush_rowid
        if upto is None:
            return 0
        conn = self._conn
        first = self._flush_series
        rows = conn.execute(
            "SELECT series_id, window_ns, ts_ns, data FROM recent_row WHERE series_id >= ? AND rowid <= ?"
            " ORDER BY series_id, window_ns, rowid LIMIT ?",
            (first, upto, max_rows),
        ).fetchall()
        end: int | None = None
        if len(rows) == max_rows:
            end = rows[-1][0]
            taken = [row for row in rows if row[0] != end]
            if taken:
                rows = taken
            else:
                # One series with more rows than a step: it goes whole.
                rows = conn.execute(
                    "SELECT series_id, window_ns, ts_ns, data FROM recent_row WHERE series_id = ? AND rowid <= ?"
                    " ORDER BY window_ns, rowid",
                    (end, upto),
                ).fetchall()
                end += 1
        by_window: dict[ChunkKey, list[tuple[int, str]]] = {}
        for series_id, window_ns, ts, data in rows:
            by_window.setdefault((series_id, RAW, window_ns), []).append((ts, data))
        last = 2**63 - 1 if end is None else end
        # The open windows of this step's series only: by series id (``+level``: not by the age
        # index, whose level = 0 the planner otherwise prefers, which read every series' open
        # window at each step, a fifth of the agent's CPU at 1,000 switches).
        held = {
            (series_id, RAW, start_ns): data
            for series_id, start_ns, data in conn.execute(
                "SELECT series_id, start_ns, data FROM open_chunk"
                " WHERE series_id >= ? AND series_id < ? AND +level = 0",
                (first, rows[-1][0] + 1 if rows else first),
            )
        }
        segments = {key: encode_rows(_recent_rows(window_rows)) for key, window_rows in by_window.items()}
        self._add_segments(segments, RAW_MAX_SEGMENTS, held)
        conn.execute(
            "DELETE FROM recent_row WHERE series_id >= ? AND series_id < ? AND rowid <= ?", (first, last, upto)
        )
        if end is None:
            self._flush_rowid = None
        else:
            self._flush_series = end
        return len(rows)

    def _recent(self, series_id: int, start_ns: int | None, end_ns: int | None) -> dict[int, list[Row]]:
        """The rows of recent_row of a series' raw windows overlapping [start_ns, end_ns), by window,
        in the order written."""
        if not self._has_recent:
            return {}
        lo = -(2**63) if start_ns is None else start_ns - RAW_WINDOW_NS + 1
        hi = 2**63 - 1 if end_ns is None else end_ns
        found: dict[int, list[Row]] = {}
        rows = self._conn.execute(
            "SELECT window_ns, ts_ns, data FROM recent_row WHERE series_id = ? AND window_ns >= ? AND window_ns < ?"
            " ORDER BY window_ns, rowid",
            (series_id, lo, hi),
        ).fetchall()
        for window_ns, ts, data in rows:
            found.setdefault(window_ns, []).append((ts, data))
        return {window_ns: _recent_rows(held) for window_ns, held in found.items()}

    def _rolled_back(self) -> None:
        self._conn.execute("ROLLBACK")
        # Ids cached during the transaction may not be on disk: disk is the truth. A flush step
        # undone starts over, every row waiting included.
        self._flush_rowid = self._conn.execute("SELECT max(rowid) FROM recent_row").fetchone()[0]
        self._flush_series = 0
        self._series_ids.clear()
        self._measurements.clear()
        self._field_ids = dict(self._conn.execute("SELECT name, id FROM field"))

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
        for _, timestamps, columns in self._raw_windows(series_id, field_ids, before, before + 1):
            last_ts: dict[int, int] = {}
            for (field_id, _), values in columns.items():
                at = next((i for i in range(len(values) - 1, -1, -1) if values[i] is not None), None)
                # A field that changed kind: the column with the later point holds its last value.
                if at is not None and timestamps[at] >= last_ts.get(field_id, -(2**63)):
                    previous[field_id] = values[at]
                    last_ts[field_id] = timestamps[at]
        return previous

    # -- sealing and retention -------------------------------------------------------------------

    def seal_step(self, now_ns: int) -> int:
        """What a write takes of the sealing due: of the windows due when the sealing began, the
        share of ``SEAL_SPREAD_NS`` elapsed since, less what earlier steps sealed; at least one
        window, at most STEP_CHUNKS (a write after a long silence takes what came due meanwhile).
        Returns the raw windows rolled up."""
        if self._seal_began is None:
            self._seal_due = self._windows_due(now_ns)
            if not self._seal_due:
                return 0
            self._seal_began, self._sealed = now_ns, 0
        elapsed = min(max(now_ns - self._seal_began, 0), SEAL_SPREAD_NS)
        allowed = -(-self._seal_due * elapsed // SEAL_SPREAD_NS) - self._sealed
        step = min(max(allowed, 1), STEP_CHUNKS)
        sealed = self.seal(now_ns, step)
        self._sealed += sealed
        if sealed < step:
            self._seal_began = None  # nothing more was due: the next step counts again
        return sealed

    def _windows_due(self, now_ns: int) -> int:
        """The raw windows past their grace and the rollup windows past their end that ``seal``
        would take (counted on the age index)."""
        horizon = now_ns - RAW_WINDOW_NS - SEAL_GRACE_NS
        ends = [(RAW, horizon), *((r.level, horizon - r.window_ns) for r in ROLLUPS)]
        return sum(
            self._conn.execute("SELECT count(*) FROM open_chunk WHERE level = ? AND start_ns < ?", end).fetchone()[0]
            for end in ends
        )

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
            finished: dict[ChunkKey, bytes] = {}
            for series_id, start_ns, data in due:
                # Its segments merged once, for its rollups and for its finished chunk.
                data = finished[(series_id, RAW, start_ns)] = finish_chunk(data)
                timestamps, columns = decode_chunk(data)
                counters = self._counters_before(series_id, start_ns)
                for level in ROLLUPS:
                    for bucket, values in rollup_rows(timestamps, columns, level.bucket_ns, counters):
                        key = (series_id, level.level, bucket - bucket % level.window_ns)
                        segments.setdefault(key, []).append((bucket, values))
            self._add_segments({key: encode_rows(rows) for key, rows in segments.items()})
            self._finish(list(finished), finished)
            self._finish(past)
            conn.execute("COMMIT")
        except BaseException:
            self._rolled_back()
            raise
        return len(due)

    def _add_segments(
        self,
        segments: Mapping[ChunkKey, bytes],
        max_segments: int = MAX_SEGMENTS,
        held: Mapping[ChunkKey, bytes] | None = None,
    ) -> None:
        """Each segment after what its window holds in open_chunk (``held``: those windows'
        data, read beforehand; a window not there has none), or in chunk (a finished window that
        a late point reopens), or as the window's first."""
        conn = self._conn
        where = "WHERE series_id = ? AND level = ? AND start_ns = ?"
        grown = []
        for key, segment in segments.items():
            if held is not None:
                data = held.get(key)
            else:
                row = conn.execute(f"SELECT data FROM open_chunk {where}", key).fetchone()
                data = row[0] if row else None
            if data is None:
                row = conn.execute(f"SELECT data FROM chunk {where}", key).fetchone()
                if row is not None:
                    data = row[0]
                    conn.execute(f"DELETE FROM chunk {where}", key)
            container = add_segment(data, segment)
            if segment_count(container) > max_segments:
                # Every read of the window parses every segment's column headers: merged now and then.
                container = merge_segments(container)
            grown.append((*key, container))
        conn.executemany(
            "INSERT INTO open_chunk (series_id, level, start_ns, data) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (series_id, level, start_ns) DO UPDATE SET data = excluded.data",
            grown,
        )

    def _finish(self, keys: list[ChunkKey], ready: Mapping[ChunkKey, bytes] | None = None) -> None:
        """Move chunks that will not grow any more from open_chunk to the end of chunk, merged into
        one chunk, their timestamps in their final form (``ready``: those already finished)."""
        conn = self._conn
        where = "WHERE series_id = ? AND level = ? AND start_ns = ?"
        finished = []
        for key in keys:
            data = ready.get(key) if ready else None
            if data is None:
                row = conn.execute(f"SELECT data FROM open_chunk {where}", key).fetchone()
                data = finish_chunk(row[0]) if row is not None else None
            if data is not None:
                finished.append((*key, data))
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
                    " AND NOT EXISTS (SELECT 1 FROM recent_row r WHERE r.series_id = series.id)"
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

    def _raw_windows(
        self,
        series_id: int,
        field_ids: Sequence[int],
        start_ns: int | None,
        end_ns: int | None,
        *,
        open_only: bool = False,
    ) -> list[tuple[int, list[int], dict[ColumnKey, list]]]:
        """(window start, timestamps, columns of ``field_ids``) of a series' raw windows overlapping
        [start_ns, end_ns), oldest first, with their rows of recent_row: one row per timestamp, a
        later row's fields winning. ``open_only``: the windows not rolled up yet, and those with
        rows not flushed yet."""
        recent = self._recent(series_id, start_ns, end_ns)
        chunks = dict(self._windows(series_id, RAW, start_ns, end_ns, ("open_chunk",) if open_only else TABLES))
        if open_only:
            where = "WHERE series_id = ? AND level = ? AND start_ns = ?"
            for window_ns in recent.keys() - chunks.keys():
                # A late row of a window already rolled up: the window is summed up again whole.
                row = self._conn.execute(f"SELECT data FROM chunk {where}", (series_id, RAW, window_ns)).fetchone()
                if row is not None:
                    chunks[window_ns] = row[0]
        wanted = set(field_ids)
        found = []
        for window_ns in sorted(chunks.keys() | recent.keys()):
            data = chunks.get(window_ns)
            timestamps, columns = decode_chunk(data, field_ids) if data else ([], {})
            rows = recent.get(window_ns)
            # A finished chunk has one row per timestamp; segments may repeat one (a replay).
            if rows or (data and data[0] == SEGMENTS and not _increasing(timestamps)):
                held = column_rows(timestamps, columns)
                for ts, values in rows or ():
                    held.append((ts, {key: value for key, value in values.items() if key[0] in wanted}))
                timestamps, columns = _columns_of(merge_rows(held))
            if columns:
                found.append((window_ns, timestamps, columns))
        return found

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
            for _, timestamps, columns in self._raw_windows(series_id, (field_id,), start_ns, end_ns):
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
            # Raw windows not rolled up yet (or with rows not flushed yet), summed up here.
            for window_ns, timestamps, columns in self._raw_windows(
                series_id, (field_id,), start_ns, end_ns, open_only=True
            ):
                counted = field_id in self._counter_ids(series_id)
                counters = self._counters_before(series_id, window_ns) if counted else {}
                rows = rollup_rows(timestamps, columns, level.bucket_ns, counters)
                summed = _buckets(*_columns_of(rows), field_id)
                buckets.update({ts: _only(bucket, statistics) for ts, bucket in summed.items()})
            kept = [buckets[ts] for ts in sorted(buckets) if lo <= ts < hi]
            if kept:
                result.append(SeriesRollup(tags, kept))
        return result


def _recent_rows(rows: Iterable[tuple[int, str]]) -> list[Row]:
    """Rows of recent_row as codec rows (the kind of a value is its JSON type: a float is
    written with its point, an integer without)."""
    out: list[Row] = []
    for ts, data in rows:
        flat = json.loads(data)
        out.append((ts, {(flat[i], value_kind(flat[i + 1])): flat[i + 1] for i in range(0, len(flat), 2)}))
    return out


def _increasing(timestamps: Sequence[int]) -> bool:
    return all(a < b for a, b in pairwise(timestamps))


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
        """One flush, one sealing and one retention step at ``now_ns`` (what a write takes after
        its batch): (windows sealed, chunks deleted)."""
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
        # The write took its flush step in its own transaction.
        db = self._open()
        db.write(samples, now_ns)
        db.seal_step(now_ns)
        db.prune(now_ns, STEP_CHUNKS)

    def _maintain_sync(self, now_ns: int, max_chunks: int) -> tuple[int, int]:
        db = self._open()
        db.flush(now_ns)
        return db.seal(now_ns, max_chunks), db.prune(now_ns, max_chunks)
