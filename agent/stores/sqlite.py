"""The default, embedded store: one SQLite file in WAL mode.

Schema, chosen for the built-in views (one series over a time range) and reports (every series of a
measurement for a client):

- ``series``: one row per (measurement, tag set), tags as canonical JSON;
- ``series_tag``: the same tags normalised, indexed by (key, value) to filter on any tag;
- ``field``: field names, so points carry a small integer instead of the name;
- ``point_num`` / ``point_str``: (series, field, ts) -> value, numeric (bools as 0/1) and string.
  ``value`` has no declared type so SQLite keeps ints as ints and floats (even 1.0) as floats.
  The primary key makes a replayed point overwrite itself instead of doubling.

Every SQLite call runs on one dedicated thread that owns the connection: polling never waits on the
disk and no lock is needed around the connection.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from agent.api import Sample
from agent.db import SERIES_SCHEMA, open_db, sqlite_value, utf8_text

log = logging.getLogger(__name__)

NS_PER_DAY = 86_400 * 1_000_000_000
DEFAULT_RETENTION_DAYS = 400
# Rows deleted per retention step: small enough that one step never holds the write lock for long.
PRUNE_STEP_ROWS = 20_000

SCHEMA = (
    SERIES_SCHEMA
    + """
CREATE TABLE IF NOT EXISTS field (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS point_num (
    series_id INTEGER NOT NULL,
    field_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    value,
    PRIMARY KEY (series_id, field_id, ts)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS point_num_ts ON point_num (ts);
CREATE TABLE IF NOT EXISTS point_str (
    series_id INTEGER NOT NULL,
    field_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    value TEXT,
    PRIMARY KEY (series_id, field_id, ts)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS point_str_ts ON point_str (ts);
"""
)

T = TypeVar("T")
Value = float | int | str


@dataclass(frozen=True)
class SeriesPoints:
    """The points of one field of one series, oldest first."""

    tags: dict[str, str]
    points: list[tuple[int, Value]]


# json.dumps with any option builds a new encoder per call; this runs for every sample stored
_TAGS_ENCODER = json.JSONEncoder(ensure_ascii=False)


def canonical_tags(tags: Mapping[str, str]) -> str:
    """The one spelling of a tag set used as a key (sorted, empty values dropped like the LP form).

    A lone surrogate (text decoded with ``surrogateescape``) is no UTF-8 and SQLite refuses to bind
    it, which would roll back the whole batch: it becomes U+FFFD, as in line protocol."""
    text = _TAGS_ENCODER.encode({k: str(v) for k, v in sorted(tags.items()) if v != ""})
    return text if text.isascii() else utf8_text(text)


class SeriesIds:
    """The id of each row of a :data:`SERIES_SCHEMA` ``series`` table, cached by a digest of its key.

    Every sample stored or rolled up looks its series up. Keyed by the (measurement, canonical
    tags) strings, the cache held each series' tag JSON once more in memory (an interface's
    description and alias). Keyed by a 16-byte BLAKE2b digest, the compact store's writer costs
    309 B a series against 518 (tests/stores/test_compact.py); the chance that two of a million
    series share a digest is ~10^-27.

    ``read_all``: the caller is the file's only writer, so every id is read in one query at the first
    lookup and a key not cached is a new series (no SELECT per miss). Otherwise a miss is looked up.
    """

    def __init__(self, read_all: bool = False) -> None:
        self._read_all = read_all
        self._ids: dict[bytes, int] | None = None

    def clear(self) -> None:
        """Forget every id (after a rollback: ids cached in the transaction may not exist)."""
        self._ids = None

    def get(
        self,
        conn: sqlite3.Connection,
        measurement: str,
        tags: Mapping[str, str],
        new_tags: list[tuple[int, str, str]] | None = None,
    ) -> int:
        """The series' id, the series inserted if new; its tag rows go to ``new_tags`` if given
        (written by the caller with its batch), else are inserted here."""
        ids = self._ids
        if ids is None:
            rows = conn.execute("SELECT measurement, tags, id FROM series") if self._read_all else ()
            ids = self._ids = {_series_digest(m, t): series_id for m, t, series_id in rows}
        tags_json = canonical_tags(tags)
        digest = _series_digest(measurement, tags_json)
        found = ids.get(digest)
        if found is not None:
            return found
        row = (
            None
            if self._read_all
            else conn.execute(
                "SELECT id FROM series WHERE measurement = ? AND tags = ?", (measurement, tags_json)
            ).fetchone()
        )
        if row is None:
            found = int(
                conn.execute("INSERT INTO series (measurement, tags) VALUES (?, ?)", (measurement, tags_json)).lastrowid
            )
            tag_rows = [(found, k, v) for k, v in json.loads(tags_json).items()]
            if new_tags is None:
                conn.executemany("INSERT INTO series_tag (series_id, key, value) VALUES (?, ?, ?)", tag_rows)
            else:
                new_tags.extend(tag_rows)
        else:
            found = row[0]
        ids[digest] = found
        return found


def _series_digest(measurement: str, tags_json: str) -> bytes:
    return hashlib.blake2b(f"{measurement}\0{tags_json}".encode(), digest_size=16).digest()


def tag_filter_sql(tag_filter: Mapping[str, str] | None, series_alias: str = "s") -> tuple[str, list[str]]:
    """SQL conditions keeping series whose tags hold every (key, value) of the filter."""
    clauses: list[str] = []
    params: list[str] = []
    for key, value in sorted((tag_filter or {}).items()):
        clauses.append(
            f" AND EXISTS (SELECT 1 FROM series_tag t WHERE t.series_id = {series_alias}.id"
            " AND t.key = ? AND t.value = ?)"
        )
        params += [key, str(value)]
    return "".join(clauses), params


class SqliteStore:
    def __init__(
        self,
        path: Path,
        retention_days: float = DEFAULT_RETENTION_DAYS,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.path = Path(path)
        self.retention_ns = int(retention_days * NS_PER_DAY)
        self._clock_ns = clock_ns
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._conn: sqlite3.Connection | None = None
        self._series_ids = SeriesIds()
        self._field_ids: dict[str, int] = {}

    # -- async API -------------------------------------------------------------------------------

    async def write(self, samples: Sequence[Sample]) -> None:
        """Write a batch in one transaction, then take one retention step."""
        if samples:
            await self._run(self._write_sync, list(samples), self._clock_ns())

    async def series(self, measurement: str, tag_filter: Mapping[str, str] | None = None) -> list[dict[str, str]]:
        """Tag sets of the series of ``measurement`` matching every tag of ``tag_filter``."""
        return await self._run(self._series_sync, measurement, tag_filter)

    async def points(
        self,
        measurement: str,
        field: str,
        tag_filter: Mapping[str, str] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> list[SeriesPoints]:
        """Points of ``field`` in [start_ns, end_ns), one entry per matching series."""
        return await self._run(self._points_sync, measurement, field, tag_filter, start_ns, end_ns)

    async def prune(self, now_ns: int, max_rows: int = PRUNE_STEP_ROWS) -> int:
        """Delete up to ``max_rows`` points older than the retention; returns how many went."""
        return await self._run(self._prune_sync, now_ns, max_rows)

    async def close(self) -> None:
        if self._conn is not None:
            await self._run(self._close_sync)
        self._executor.shutdown(wait=True)

    async def _run(self, func: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    # -- on the store's thread -------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = open_db(self.path, SCHEMA, foreign_keys=True)
            self._field_ids = dict(conn.execute("SELECT name, id FROM field"))
            self._conn = conn
        return self._conn

    def _field_id(self, conn: sqlite3.Connection, name: str) -> int:
        found = self._field_ids.get(name)
        if found is None:
            conn.execute("INSERT OR IGNORE INTO field (name) VALUES (?)", (name,))
            found = conn.execute("SELECT id FROM field WHERE name = ?", (name,)).fetchone()[0]
            self._field_ids[name] = found
        return found

    def _write_sync(self, samples: list[Sample], now_ns: int) -> None:
        conn = self._db()
        nums: list[tuple[int, int, int, Value]] = []
        strs: list[tuple[int, int, int, str]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sample in samples:
                known = sample.known_fields()
                if not known:
                    continue
                series_id = self._series_ids.get(conn, sample.measurement, sample.tags)
                for name, value in known.items():
                    field_id = self._field_id(conn, name)
                    if isinstance(value, str):
                        strs.append((series_id, field_id, sample.timestamp_ns, value))
                    else:
                        nums.append((series_id, field_id, sample.timestamp_ns, sqlite_value(value)))
            conn.executemany("INSERT OR REPLACE INTO point_num VALUES (?, ?, ?, ?)", nums)
            conn.executemany("INSERT OR REPLACE INTO point_str VALUES (?, ?, ?, ?)", strs)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            # Ids cached during a rolled-back transaction no longer exist.
            self._series_ids.clear()
            self._field_ids = dict(conn.execute("SELECT name, id FROM field"))
            raise
        self._prune_sync(now_ns, PRUNE_STEP_ROWS)

    def _prune_sync(self, now_ns: int, max_rows: int) -> int:
        conn = self._db()
        cutoff = now_ns - self.retention_ns
        deleted = 0
        for table in ("point_num", "point_str"):
            if deleted >= max_rows:
                break
            cur = conn.execute(
                f"DELETE FROM {table} WHERE (series_id, field_id, ts) IN"
                f" (SELECT series_id, field_id, ts FROM {table} WHERE ts < ? LIMIT ?)",
                (cutoff, max_rows - deleted),
            )
            deleted += cur.rowcount
        if 0 < deleted < max_rows:
            # This step emptied the backlog: drop series no point refers to any more.
            cur = conn.execute(
                "DELETE FROM series WHERE NOT EXISTS (SELECT 1 FROM point_num p WHERE p.series_id = series.id)"
                " AND NOT EXISTS (SELECT 1 FROM point_str p WHERE p.series_id = series.id)"
            )
            if cur.rowcount:
                self._series_ids.clear()
            log.debug("retention removed %d points, %d series", deleted, cur.rowcount)
        return deleted

    def _series_rows(
        self, conn: sqlite3.Connection, measurement: str, tag_filter: Mapping[str, str] | None
    ) -> list[tuple[int, dict[str, str]]]:
        where, params = tag_filter_sql(tag_filter)
        rows = conn.execute(
            f"SELECT s.id, s.tags FROM series s WHERE s.measurement = ?{where} ORDER BY s.tags",
            [measurement, *params],
        )
        return [(series_id, json.loads(tags)) for series_id, tags in rows]

    def _series_sync(self, measurement: str, tag_filter: Mapping[str, str] | None) -> list[dict[str, str]]:
        return [tags for _, tags in self._series_rows(self._db(), measurement, tag_filter)]

    def _points_sync(
        self,
        measurement: str,
        field: str,
        tag_filter: Mapping[str, str] | None,
        start_ns: int | None,
        end_ns: int | None,
    ) -> list[SeriesPoints]:
        conn = self._db()
        field_id = self._field_ids.get(field)
        if field_id is None:
            return []
        start = start_ns if start_ns is not None else -(2**63)
        end = end_ns if end_ns is not None else 2**63 - 1
        result = []
        for series_id, tags in self._series_rows(conn, measurement, tag_filter):
            points: list[tuple[int, Value]] = []
            for table in ("point_num", "point_str"):
                points += conn.execute(
                    f"SELECT ts, value FROM {table} WHERE series_id = ? AND field_id = ?"
                    " AND ts >= ? AND ts < ? ORDER BY ts",
                    (series_id, field_id, start, end),
                ).fetchall()
            if points:
                points.sort(key=lambda p: p[0])
                result.append(SeriesPoints(tags, points))
        return result

    def _close_sync(self) -> None:
        assert self._conn is not None
        self._conn.close()
        self._conn = None
