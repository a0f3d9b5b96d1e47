"""The agent's one SQLite setup and the series tables its databases share.

Every kernel database (samples, rollups, alerts, ticket outbox) opens through :func:`open_db`, so
journal mode, durability and threading are decided once; the samples store and the rollups keep
series the same way (:data:`SERIES_SCHEMA`).
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Literal

SERIES_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    measurement TEXT NOT NULL,
    tags TEXT NOT NULL,
    UNIQUE (measurement, tags)
);
CREATE TABLE IF NOT EXISTS series_tag (
    series_id INTEGER NOT NULL REFERENCES series(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (series_id, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS series_tag_kv ON series_tag (key, value);
"""


def open_db(
    path: Path | str,
    schema: str,
    *,
    foreign_keys: bool = False,
    threads: bool = False,
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
) -> sqlite3.Connection:
    """Parent folder created, autocommit (transactions are explicit), WAL, then ``schema``.

    ``synchronous=NORMAL`` is durable against an agent crash in WAL mode; only a power cut may
    lose the last transactions, which the next poll refills. ``FULL`` where a lost transaction
    would be a lost or doubled ticket (the outbox). ``threads``: the connection is used from
    several threads, under the caller's lock.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=not threads)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    if foreign_keys:
        conn.execute("PRAGMA foreign_keys=ON")
    conn.executescript(schema)
    return conn


INT64_MAX = 2**63 - 1


def sqlite_value(value: bool | int | float | str) -> int | float | str:
    """A field value as SQLite stores it: booleans as 0/1, and integers beyond SQLite's signed 64
    bits (a Counter64 near its top) as floats — sqlite3 raises OverflowError on them, which would
    roll back the whole batch; for the same reason a lone surrogate in a string (text decoded with
    ``surrogateescape``, no UTF-8) becomes U+FFFD."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and not -INT64_MAX - 1 <= value <= INT64_MAX:
        return float(value)
    if isinstance(value, str) and not value.isascii():
        return utf8_text(value)
    return value


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def utf8_text(text: str) -> str:
    """``text`` with each lone surrogate (text decoded with ``surrogateescape``, no UTF-8, which
    SQLite refuses to bind) replaced by U+FFFD."""
    return _LONE_SURROGATE.sub("\ufffd", text)
