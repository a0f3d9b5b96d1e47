"""The state directory's SQLite files, opened the way a view must: read-only.

A view runs beside a live agent and may be run by an operator who cannot (or must not) write the
state directory. ``mode=ro`` refuses every write, so a view can never create a missing file, an
empty schema or a lock; in WAL mode a reader never blocks the agent's writer, nor waits for it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# The agent commits in short transactions; a reader that meets a checkpoint in progress waits this
# long rather than failing.
BUSY_TIMEOUT_S = 5.0


class NoState(LookupError):
    """The state directory has none of the files a view reads: no agent has run with it."""


@contextmanager
def read_only(path: Path) -> Iterator[sqlite3.Connection | None]:
    """A read-only connection to ``path``, or None when the file does not exist (yet)."""
    if not path.is_file():
        yield None
        return
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    conn.row_factory = sqlite3.Row
    try:
        yield conn
    finally:
        conn.close()


def rows(conn: sqlite3.Connection | None, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
    """The rows of ``sql``; none when the file or its table does not exist yet (an agent that has
    just started creates its schema on its first write)."""
    if conn is None:
        return []
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if str(exc).startswith("no such table"):
            return []
        raise


def as_str(value: object) -> str | None:
    return None if value is None else str(value)


def as_float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def as_int(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) else None
