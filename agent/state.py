"""The agent's own rollups, kept in its state database whatever store the samples go to.

Built-in views and reports read these tables only, so they work the same with the embedded store
or an external TSDB, and keep working while that TSDB is down. Three rollups, all maintained by
``StateDB.update(samples, now_ns)``:

- latest value per (measurement, series tags, field), ``None`` included: a field that became
  unknown must not keep showing its last known value (an error text after recovery, say);
- state intervals for the state fields (the kernel's ``STATE_FIELDS`` plus those plugins declare,
  ``PluginSpec.state_fields``): [start, end) of each value per series,
  with explicit unknown (``None``) intervals where the series stopped reporting for longer than
  ``stale_after_ns`` or reported the state as unknown, so availability over any window can be
  computed;
- daily aggregates (min/max/avg/count/last) of every numeric field per series and local date, the
  date taken in the client's timezone.

Finished intervals and daily rows older than ``retention_days`` are deleted a bounded step at a
time by ``update`` (a flapping interface would otherwise grow the file forever); open intervals
and ``latest`` rows are never deleted, however old: they are the current state.

The methods are synchronous and serialised by a lock; call them through ``asyncio.to_thread`` from
the event loop.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agent.api import FieldValue, Sample
from agent.db import SERIES_SCHEMA, open_db, sqlite_value
from agent.stores.sqlite import (
    DEFAULT_RETENTION_DAYS,
    NS_PER_DAY,
    PRUNE_STEP_ROWS,
    SeriesIds,
    tag_filter_sql,
)

# (measurement, field) pairs whose values are states: each value holds until the next one. The
# kernel's own is whether a device answered; plugins declare theirs (PluginSpec.state_fields).
STATE_FIELDS: frozenset[tuple[str, str]] = frozenset({("collection", "status")})

# A state is taken as still holding this long after it was last seen; past that it is unknown.
# Generous against a 60 s poll with a few misses, short enough to show a dead agent within minutes.
DEFAULT_STALE_AFTER_NS = 10 * 60 * 1_000_000_000
DEFAULT_TZ = ZoneInfo("Europe/Paris")
# A read-only reader that meets the agent's checkpoint waits this long rather than failing.
READ_ONLY_BUSY_TIMEOUT_S = 5.0

SCHEMA = SERIES_SCHEMA + """
CREATE TABLE IF NOT EXISTS latest (
    series_id INTEGER NOT NULL,
    field TEXT NOT NULL,
    value,
    ts INTEGER NOT NULL,
    PRIMARY KEY (series_id, field)
) WITHOUT ROWID;
-- end_ns NULL: the interval is open and holds until last_ns + stale_after at most.
CREATE TABLE IF NOT EXISTS state_interval (
    series_id INTEGER NOT NULL,
    field TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER,
    last_ns INTEGER NOT NULL,
    value TEXT,
    PRIMARY KEY (series_id, field, start_ns)
) WITHOUT ROWID;
-- For retention; end_ns is written once, when the interval closes.
CREATE INDEX IF NOT EXISTS state_interval_end ON state_interval (end_ns);
CREATE TABLE IF NOT EXISTS daily (
    series_id INTEGER NOT NULL,
    field TEXT NOT NULL,
    day TEXT NOT NULL,
    min REAL NOT NULL,
    max REAL NOT NULL,
    sum REAL NOT NULL,
    count INTEGER NOT NULL,
    last REAL NOT NULL,
    last_ts INTEGER NOT NULL,
    PRIMARY KEY (series_id, field, day)
) WITHOUT ROWID;
-- For retention; indexed on the day rather than last_ts, which changes with every sample.
CREATE INDEX IF NOT EXISTS daily_day ON daily (day);
"""

TzFor = Callable[[Sample], dt.tzinfo]
# (series_id, field) -> (start_ns, last_ns, value) of its open interval
OpenIntervals = dict[tuple[int, str], tuple[int, int, str | None]]


def tz_by_client(zones: Mapping[str, str | dt.tzinfo], default: str | dt.tzinfo = DEFAULT_TZ) -> TzFor:
    """A ``tz_for`` from a {client: timezone} mapping, e.g. {"cd971": "America/Guadeloupe"}."""

    def zone(value: str | dt.tzinfo) -> dt.tzinfo:
        return ZoneInfo(value) if isinstance(value, str) else value

    by_client = {client: zone(tz) for client, tz in zones.items()}
    fallback = zone(default)
    return lambda sample: by_client.get(sample.tags.get("client", ""), fallback)


@dataclass(frozen=True)
class Latest:
    measurement: str
    tags: dict[str, str]
    field: str
    value: FieldValue
    timestamp_ns: int


@dataclass(frozen=True)
class Interval:
    """[start_ns, end_ns) during which ``value`` held; ``value`` None means unknown."""

    tags: dict[str, str]
    value: str | None
    start_ns: int
    end_ns: int


@dataclass(frozen=True)
class Daily:
    tags: dict[str, str]
    day: dt.date
    min: float
    max: float
    avg: float
    count: int
    last: float


class StateDB:
    def __init__(
        self,
        path: Path,
        state_fields: Iterable[tuple[str, str]] = STATE_FIELDS,
        stale_after_ns: int = DEFAULT_STALE_AFTER_NS,
        tz_for: TzFor | None = None,
        retention_days: float = DEFAULT_RETENTION_DAYS,
        prune_step_rows: int = PRUNE_STEP_ROWS,
        *,
        read_only: bool = False,
    ) -> None:
        """``read_only``: for the views and reports beside a live agent: the file opened ``mode=ro``
        (no schema written, no lock taken; a missing file raises ``sqlite3.OperationalError``);
        only the queries work."""
        self.path = Path(path)
        self.state_fields = frozenset(state_fields)
        self.stale_after_ns = stale_after_ns
        self.retention_ns = int(retention_days * NS_PER_DAY)
        self.prune_step_rows = prune_step_rows
        self._tz_for = tz_for or (lambda sample: DEFAULT_TZ)
        self._lock = threading.Lock()
        if read_only:
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=READ_ONLY_BUSY_TIMEOUT_S)
        else:
            self._conn = open_db(self.path, SCHEMA, threads=True)
        # Every series id of the file, read once: the agent is its only writer, and a SELECT per
        # new series was a fifth of a first poll's rollup cost.
        self._series_ids = SeriesIds(read_all=True)
        self._open: OpenIntervals | None = None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- update ----------------------------------------------------------------------------------

    def update(self, samples: Sequence[Sample], now_ns: int) -> None:
        """Fold a batch into the rollups and take one retention step, in one transaction.

        ``now_ns`` bounds trust in timestamps: a sample stamped in the future (a device clock
        ahead) is taken as seen at ``now_ns``, so it cannot hold a state open into the future.
        It is also the clock of the retention.

        The batch is folded in Python and written with one statement per table (a poll of a
        48-port switch is ~800 rows): ``latest`` and ``daily`` rows as upserts in sample order,
        the state intervals as the final content of each row touched, from the open intervals
        this process keeps (it is the database's only writer).
        """
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                open_intervals = self._open_intervals()
                series_tags: list[tuple[int, str, str]] = []  # of the series this batch creates
                latest: list[tuple[int, str, Any, int]] = []
                daily: list[tuple[int, str, str, float, float, float, float, int]] = []
                intervals: dict[tuple[int, str, int], tuple[int, str, int, int | None, int, str | None]] = {}
                for sample in sorted(samples, key=lambda s: s.timestamp_ns):
                    ts = min(sample.timestamp_ns, now_ns)
                    series_id = self._series_ids.get(conn, sample.measurement, sample.tags, series_tags)
                    day = None
                    for field, value in sample.fields.items():
                        latest.append((series_id, field, sqlite_value(value) if value is not None else None, ts))
                        if (sample.measurement, field) in self.state_fields:
                            self._fold_interval(open_intervals, intervals, series_id, field, value, ts)
                        elif isinstance(value, int | float) and not isinstance(value, bool):
                            if day is None:
                                day = dt.datetime.fromtimestamp(ts / 1e9, self._tz_for(sample)).date().isoformat()
                            number = float(value)
                            daily.append((series_id, field, day, number, number, number, number, ts))
                conn.executemany("INSERT INTO series_tag VALUES (?, ?, ?)", series_tags)
                conn.executemany(
                    "INSERT INTO latest VALUES (?, ?, ?, ?) ON CONFLICT (series_id, field) DO UPDATE"
                    " SET value = excluded.value, ts = excluded.ts WHERE excluded.ts >= latest.ts",
                    latest,
                )
                conn.executemany("INSERT OR REPLACE INTO state_interval VALUES (?, ?, ?, ?, ?, ?)", intervals.values())
                conn.executemany(
                    "INSERT INTO daily VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)"
                    " ON CONFLICT (series_id, field, day) DO UPDATE SET"
                    " min = min(daily.min, excluded.min), max = max(daily.max, excluded.max),"
                    " sum = daily.sum + excluded.sum, count = daily.count + 1,"
                    " last = CASE WHEN excluded.last_ts >= daily.last_ts THEN excluded.last ELSE daily.last END,"
                    " last_ts = max(daily.last_ts, excluded.last_ts)",
                    daily,
                )
                self._prune(now_ns)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                self._series_ids.clear()
                self._open = None
                raise

    def _open_intervals(self) -> OpenIntervals:
        """The open interval of every (series, state field): (start_ns, last_ns, value), read once."""
        if self._open is None:
            rows = self._conn.execute(
                "SELECT series_id, field, start_ns, last_ns, value FROM state_interval WHERE end_ns IS NULL"
            )
            self._open = {(series_id, field): (start, last, value) for series_id, field, start, last, value in rows}
        return self._open

    def _fold_interval(
        self,
        open_intervals: OpenIntervals,
        written: dict[tuple[int, str, int], tuple[int, str, int, int | None, int, str | None]],
        series_id: int,
        field: str,
        value: FieldValue,
        ts: int,
    ) -> None:
        """One state report into the open intervals and the rows to write (keyed by primary key:
        a row written twice in a batch is written once, with its last content)."""

        def write(start: int, end: int | None, last: int, state: str | None) -> None:
            written[(series_id, field, start)] = (series_id, field, start, end, last, state)

        state = None if value is None else _state_text(value)
        key = (series_id, field)
        found = open_intervals.get(key)
        if found is not None:
            start_ns, last_ns, open_value = found
            if ts < last_ns:
                # Older than what is already folded in: the intervals cannot be rewritten.
                return
            stale_at = last_ns + self.stale_after_ns
            if ts <= stale_at and open_value == state:
                open_intervals[key] = (start_ns, ts, open_value)
                write(start_ns, None, ts, open_value)
                return
            if ts > stale_at:
                # Silence longer than the staleness horizon: the old value ends there, unknown after.
                if open_value is not None:
                    write(start_ns, stale_at, last_ns, open_value)
                    write(stale_at, ts, stale_at, None)
                else:
                    write(start_ns, ts, last_ns, open_value)
            else:
                write(start_ns, ts, last_ns, open_value)
        # A report at the very start of the open interval replaces it (same primary key).
        open_intervals[key] = (ts, ts, state)
        write(ts, None, ts, state)

    def _prune(self, now_ns: int) -> None:
        """Delete up to ``prune_step_rows`` finished intervals and daily rows past the retention."""
        cutoff_ns = now_ns - self.retention_ns
        # `end_ns < ?` is never true of an open interval (end_ns NULL).
        cur = self._conn.execute(
            "DELETE FROM state_interval WHERE (series_id, field, start_ns) IN"
            " (SELECT series_id, field, start_ns FROM state_interval WHERE end_ns < ? LIMIT ?)",
            (cutoff_ns, self.prune_step_rows),
        )
        left = self.prune_step_rows - cur.rowcount
        if left <= 0:
            return
        # A row's day is local to its client, whose timezone is not stored: a local date ends at
        # the latest at noon UTC the next day (UTC-12), so a date two days before the cutoff's
        # UTC date is wholly past it. Kept a day or two longer, never dropped early.
        cutoff_day = dt.datetime.fromtimestamp(cutoff_ns / 1e9, dt.UTC).date() - dt.timedelta(days=2)
        self._conn.execute(
            "DELETE FROM daily WHERE (series_id, field, day) IN"
            " (SELECT series_id, field, day FROM daily WHERE day <= ? LIMIT ?)",
            (cutoff_day.isoformat(), left),
        )

    # -- queries ---------------------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _series_where(self, measurement: str | None, tag_filter: Mapping[str, str] | None) -> tuple[str, list[Any]]:
        where, params = tag_filter_sql(tag_filter)
        if measurement is not None:
            return " AND s.measurement = ?" + where, [measurement, *params]
        return where, params

    def latest(self, measurement: str | None = None, tag_filter: Mapping[str, str] | None = None) -> list[Latest]:
        """The last value of every field of every matching series."""
        where, params = self._series_where(measurement, tag_filter)
        rows = self._query(
            "SELECT s.measurement, s.tags, l.field, l.value, l.ts FROM latest l"
            f" JOIN series s ON s.id = l.series_id WHERE 1 = 1{where}"
            " ORDER BY s.measurement, s.tags, l.field",
            params,
        )
        return [Latest(m, json.loads(tags), field, value, ts) for m, tags, field, value, ts in rows]

    def intervals(
        self,
        measurement: str,
        field: str,
        start_ns: int,
        end_ns: int,
        tag_filter: Mapping[str, str] | None = None,
    ) -> list[Interval]:
        """State intervals clipped to [start_ns, end_ns), per series, unknown ones included.

        Time not covered by any observation (before a series' first report, or after its last
        one went stale) is returned as unknown, so each series' intervals tile the window.
        """
        if end_ns <= start_ns:
            return []
        where, params = self._series_where(measurement, tag_filter)
        series = self._query(f"SELECT s.id, s.tags FROM series s WHERE 1 = 1{where} ORDER BY s.tags", params)
        result: list[Interval] = []
        for series_id, tags_json in series:
            rows = self._query(
                "SELECT start_ns, end_ns, last_ns, value FROM state_interval"
                " WHERE series_id = ? AND field = ? AND start_ns < ?"
                " AND (end_ns IS NULL OR end_ns > ?) ORDER BY start_ns",
                (series_id, field, end_ns, start_ns),
            )
            if not rows:
                continue
            tags = json.loads(tags_json)
            cursor = start_ns
            for start, end, last, value in rows:
                if end is None:
                    end = last + self.stale_after_ns
                lo, hi = max(start, start_ns), min(end, end_ns)
                if lo >= hi:
                    continue
                if lo > cursor:
                    result.append(Interval(tags, None, cursor, lo))
                result.append(Interval(tags, value, lo, hi))
                cursor = hi
            if cursor < end_ns:
                result.append(Interval(tags, None, cursor, end_ns))
        return _merge(result)

    def durations(
        self,
        measurement: str,
        field: str,
        start_ns: int,
        end_ns: int,
        tag_filter: Mapping[str, str] | None = None,
    ) -> dict[str | None, int]:
        """Nanoseconds spent in each value over the window, summed over matching series."""
        totals: dict[str | None, int] = {}
        for interval in self.intervals(measurement, field, start_ns, end_ns, tag_filter):
            totals[interval.value] = totals.get(interval.value, 0) + interval.end_ns - interval.start_ns
        return totals

    def availability(
        self,
        measurement: str,
        field: str,
        good_values: Iterable[str],
        start_ns: int,
        end_ns: int,
        tag_filter: Mapping[str, str] | None = None,
    ) -> float | None:
        """Share (0..1) of the known time spent in a good value; None when nothing is known.

        Unknown time is left out of both sides: a gap in supervision is reported as unknown
        (see ``durations``), not charged to the client as downtime.
        """
        good = {_state_text(v) for v in good_values}
        totals = self.durations(measurement, field, start_ns, end_ns, tag_filter)
        known = sum(ns for value, ns in totals.items() if value is not None)
        if known == 0:
            return None
        return sum(ns for value, ns in totals.items() if value in good) / known

    def daily(
        self,
        measurement: str,
        field: str,
        date_from: dt.date,
        date_to: dt.date,
        tag_filter: Mapping[str, str] | None = None,
    ) -> list[Daily]:
        """Daily aggregates for local dates date_from..date_to inclusive, per series then day."""
        where, params = self._series_where(measurement, tag_filter)
        rows = self._query(
            "SELECT s.tags, d.day, d.min, d.max, d.sum, d.count, d.last FROM daily d"
            f" JOIN series s ON s.id = d.series_id WHERE d.field = ? AND d.day >= ? AND d.day <= ?{where}"
            " ORDER BY s.tags, d.day",
            [field, date_from.isoformat(), date_to.isoformat(), *params],
        )
        return [
            Daily(json.loads(tags), dt.date.fromisoformat(day), lo, hi, total / count, count, last)
            for tags, day, lo, hi, total, count, last in rows
        ]


def _state_text(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _merge(intervals: list[Interval]) -> list[Interval]:
    """Join touching intervals of the same series and value (an unknown gap next to unknown)."""
    merged: list[Interval] = []
    for interval in intervals:
        last = merged[-1] if merged else None
        if (
            last is not None
            and last.tags == interval.tags
            and last.value == interval.value
            and last.end_ns == interval.start_ns
        ):
            merged[-1] = Interval(last.tags, last.value, last.start_ns, interval.end_ns)
        else:
            merged.append(interval)
    return merged
