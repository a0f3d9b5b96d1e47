"""The raw messages of the inventory's devices, kept for a bounded time beside their alerts.

SQLite in the state directory (``syslog.db``): at most ``max_messages`` and none older than
``keep_s``, pruned by :meth:`MessageStore.prune` (the receiver calls it with its health sample).
Blocking: the receiver calls it from a thread.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.api import DeviceMessage

STORE_FILE = "syslog.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    client TEXT NOT NULL,
    device TEXT NOT NULL,
    source TEXT NOT NULL,
    facility TEXT NOT NULL,
    severity TEXT NOT NULL,
    app TEXT,
    event TEXT,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_device ON messages(client, device, at);
CREATE INDEX IF NOT EXISTS messages_at ON messages(at);
"""


@dataclass(frozen=True)
class StoredMessage:
    at: float
    client: str
    device: str
    source: str
    facility: str
    severity: str
    app: str | None
    event: str | None  # the event a pattern made of it, if any
    text: str


class MessageStore:
    def __init__(self, path: Path, clock: Callable[[], float], keep_s: float, max_messages: int) -> None:
        self.clock = clock
        self.keep_s = keep_s
        self.max_messages = max_messages
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, messages: Sequence[StoredMessage]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO messages(at, client, device, source, facility, severity, app, event, text) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                [(m.at, m.client, m.device, m.source, m.facility, m.severity, m.app, m.event, m.text)
                 for m in messages],
            )
            self._db.execute("COMMIT")

    def prune(self) -> int:
        """Drop what is past ``keep_s`` or beyond ``max_messages`` (oldest first); how many."""
        with self._lock:
            aged = self._db.execute("DELETE FROM messages WHERE at < ?", (self.clock() - self.keep_s,)).rowcount
            over = self._db.execute(
                "DELETE FROM messages WHERE id <= (SELECT id FROM messages ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (self.max_messages,),
            ).rowcount
        return aged + over

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])

    def recent(self, client: str, device: str, limit: int = 100, since: float | None = None) -> list[StoredMessage]:
        """A device's latest messages, newest first: what a view shows beside its alerts."""
        with self._lock:
            return _recent(self._db, client, device, limit, since)


def _recent(db: sqlite3.Connection, client: str, device: str, limit: int, since: float | None) -> list[StoredMessage]:
    rows = db.execute(
        "SELECT at, client, device, source, facility, severity, app, event, text FROM messages "
        "WHERE client = ? AND device = ? AND at >= ? ORDER BY at DESC, id DESC LIMIT ?",
        (client, device, since if since is not None else 0.0, limit),
    ).fetchall()
    return [StoredMessage(*row) for row in rows]


def device_messages(state_dir: Path, client: str, device: str, limit: int) -> list[DeviceMessage]:
    """``PluginSpec.device_messages``: a device's latest messages from ``<state_dir>/syslog.db``,
    opened read-only (no lock, no write, beside the live receiver); none without the file."""
    path = Path(state_dir) / STORE_FILE
    if not path.exists():
        return []
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        found = _recent(db, client, device, limit, None)
    finally:
        db.close()
    return [DeviceMessage(m.at, "syslog", m.source, m.severity, m.text, m.event) for m in found]
