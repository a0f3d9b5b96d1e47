"""TicketLog: the embedded default "ITSM" — tickets kept in a local SQLite file.

Used when a client has no ITSM of its own (or for the demo); ``vigie tickets`` lists it with
:meth:`TicketLog.list`. The NOC marks a ticket taken in charge with ``vigie tickets take ID``
(:meth:`TicketLog.take`): the time the alert SLA's "taken in charge within 5 minutes" reads back
(:meth:`TicketLog.taken_in_charge`). One log may serve several clients: each ticket is written in its client's
language and timezone (``locale_for``). Its writes run in a worker thread, not on the event loop
the agent's polls share.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from agent.api.alerts import Alert
from agent.api.ticket_text import DEFAULT_LOCALE, TicketLocale, solution_text, ticket_body, ticket_title
from agent.api.tickets import TicketRef

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tickets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL,
    client TEXT NOT NULL,
    alert TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    severity TEXT NOT NULL,
    title TEXT NOT NULL,
    content TEXT NOT NULL,
    status TEXT NOT NULL,
    opened_at REAL NOT NULL,
    solved_at REAL,
    solution TEXT,
    taken_at REAL,
    taken_by TEXT
);
CREATE INDEX IF NOT EXISTS tickets_key ON tickets(idempotency_key);
CREATE TABLE IF NOT EXISTS followups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id INTEGER NOT NULL REFERENCES tickets(id),
    at REAL NOT NULL,
    content TEXT NOT NULL
);
"""


# Columns added since the first logs were written, and how to add them to those.
_ADDED_COLUMNS = {"taken_at": "REAL", "taken_by": "TEXT"}

T = TypeVar("T")


class UnknownTicket(LookupError):
    """``vigie tickets take`` named a ticket the log does not hold."""


@dataclass(frozen=True)
class TicketRecord:
    id: int
    client: str
    alert: str
    severity: str
    title: str
    status: str  # open | solved
    opened_at: float
    solved_at: float | None
    idempotency_key: str
    content: str
    taken_at: float | None = None  # when someone took it in charge (vigie tickets take)
    taken_by: str | None = None


class TicketLog:
    name = "log"

    def __init__(
        self,
        path: str,
        clock: Callable[[], float] = time.time,
        *,
        locale_for: Callable[[str], TicketLocale] = lambda client: DEFAULT_LOCALE,
    ) -> None:
        """``locale_for(client)``: the language and timezone of that client's tickets."""
        self.path = path
        self.clock = clock
        self.locale_for = locale_for
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            have = {r["name"] for r in self._db.execute("PRAGMA table_info(tickets)")}
            for column, decl in _ADDED_COLUMNS.items():
                if column not in have:
                    self._db.execute(f"ALTER TABLE tickets ADD COLUMN {column} {decl}")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> TicketLog:
        """``path``; ``timezone`` and ``language`` for every client, or per client under
        ``clients: {name: {timezone: ..., language: ...}}``."""
        unknown = set(options) - {"path", "timezone", "language", "clients"}
        if unknown:
            raise ValueError(f"log: unknown options {sorted(unknown)}")
        default = TicketLocale(
            str(options.get("timezone", DEFAULT_LOCALE.timezone)), str(options.get("language", DEFAULT_LOCALE.language))
        )
        per_client = {
            str(name): TicketLocale(
                str(spec.get("timezone", default.timezone)), str(spec.get("language", default.language))
            )
            for name, spec in (options.get("clients") or {}).items()
        }
        return cls(
            str(options.get("path", "tickets.sqlite")), locale_for=lambda client: per_client.get(client, default)
        )

    def _locked(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            return fn(*args)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(self._locked, fn, *args)

    async def open(self, alert: Alert) -> TicketRef:
        return await self._in_thread(self._open, alert)

    def _open(self, alert: Alert) -> TicketRef:
        cur = self._db.execute(
            "INSERT INTO tickets(idempotency_key, client, alert, fingerprint, severity, title, content, "
            "status, opened_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                alert.idempotency_key,
                alert.client,
                alert.rule,
                alert.fingerprint,
                alert.severity,
                ticket_title(alert),
                ticket_body(alert, self.locale_for(alert.client)),
                "open",
                self.clock(),
            ),
        )
        return TicketRef(self.name, str(cur.lastrowid))

    async def add_followup(self, ref: TicketRef, text: str) -> None:
        await self._in_thread(
            self._db.execute,
            "INSERT INTO followups(ticket_id, at, content) VALUES (?,?,?)",
            (int(ref.id), self.clock(), text),
        )

    async def solve(self, ref: TicketRef, alert: Alert) -> None:
        await self._in_thread(
            self._db.execute,
            "UPDATE tickets SET status='solved', solved_at=?, solution=? WHERE id=? AND status='open'",
            (self.clock(), solution_text(alert, self.locale_for(alert.client)), int(ref.id)),
        )

    async def reopen(self, ref: TicketRef, text: str) -> None:
        await self._in_thread(self._reopen, int(ref.id), text)

    def _reopen(self, ticket_id: int, text: str) -> None:
        # open again for a new occurrence: the NOC takes it in charge again (vigie tickets take)
        self._db.execute("UPDATE tickets SET status='open', solved_at=NULL, taken_at=NULL, taken_by=NULL WHERE id=?",
                         (ticket_id,))
        said = self._db.execute("SELECT 1 FROM followups WHERE ticket_id=? AND content=?", (ticket_id, text))
        if said.fetchone() is None:  # a reopen repeated after a crash says it once
            self._db.execute("INSERT INTO followups(ticket_id, at, content) VALUES (?,?,?)",
                             (ticket_id, self.clock(), text))

    def take(self, ticket_id: str | int, by: str, at: float | None = None) -> tuple[str, float]:
        """``by`` takes ticket ``ticket_id`` in charge at ``at`` (default: now); answers who took it
        and when: the first one stands, taking it again changes nothing (``agent.api.Takeable``).
        Raise :class:`UnknownTicket` for an id the log does not hold."""
        number = int(ticket_id) if str(ticket_id).isdigit() else -1

        def write() -> sqlite3.Row | None:
            self._db.execute("UPDATE tickets SET taken_at=?, taken_by=? WHERE id=? AND taken_at IS NULL",
                             (self.clock() if at is None else at, by, number))
            return self._db.execute("SELECT taken_by, taken_at FROM tickets WHERE id=?", (number,)).fetchone()
        row = self._locked(write)
        if row is None:
            raise UnknownTicket(f"no ticket #{ticket_id} in {self.path}")
        return str(row["taken_by"]), float(row["taken_at"])

    async def taken_in_charge(self, ref: TicketRef) -> float | None:
        row = await self._in_thread(
            lambda: self._db.execute("SELECT taken_at FROM tickets WHERE id=?", (int(ref.id),)).fetchone())
        return None if row is None else row["taken_at"]

    async def find_open(self, idempotency_key: str) -> TicketRef | None:
        row = await self._in_thread(self._find_open, idempotency_key)
        return TicketRef(self.name, str(row["id"])) if row else None

    def _find_open(self, idempotency_key: str) -> sqlite3.Row | None:
        return self._db.execute(
            "SELECT id FROM tickets WHERE idempotency_key=? AND status='open' ORDER BY id LIMIT 1",
            (idempotency_key,),
        ).fetchone()

    def list(self, client: str | None = None, status: str | None = None) -> list[TicketRecord]:
        sql = "SELECT * FROM tickets WHERE 1=1"
        args: list[Any] = []
        if client is not None:
            sql += " AND client=?"
            args.append(client)
        if status is not None:
            sql += " AND status=?"
            args.append(status)
        return [_to_record(r) for r in self._locked(lambda: self._db.execute(sql + " ORDER BY id", args).fetchall())]

    def followups(self, ticket_id: int) -> list[str]:
        rows = self._locked(
            lambda: self._db.execute(
                "SELECT content FROM followups WHERE ticket_id=? ORDER BY id", (ticket_id,)
            ).fetchall()
        )
        return [r["content"] for r in rows]

    async def close(self) -> None:
        self._locked(self._db.close)


def _to_record(r: sqlite3.Row) -> TicketRecord:
    return TicketRecord(
        id=r["id"],
        client=r["client"],
        alert=r["alert"],
        severity=r["severity"],
        title=r["title"],
        status=r["status"],
        opened_at=r["opened_at"],
        solved_at=r["solved_at"],
        idempotency_key=r["idempotency_key"],
        content=r["content"],
        taken_at=r["taken_at"],
        taken_by=r["taken_by"],
    )
