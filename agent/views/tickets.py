"""Tickets: every ticket the agent opened, whatever receiver holds it.

The dispatcher's outbox (``ticket_links`` in the ticket outbox) is the one record of every ticket,
in the built-in log or in a client's ITSM: client, device (in the alert it keeps), receiver, ticket
id and URL, when it opened and was solved. The built-in log adds its own tickets' titles; an
ITSM's tickets are shown by id and URL, the title being the one the receivers write
(``ticket_title``). Rows still waiting for their ticket (being opened, retried, failed) are listed
too, with their last error: that is where a ticket that never came is explained. Rows cancelled
(the alert resolved before any attempt) never had a ticket and are left out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from agent.api.alerts import Alert
from agent.api.ticket_text import ticket_title
from agent.statedir import StateDir
from agent.views.db import as_float, as_str, read_only, rows
from agent.views.estate import Receiver
from alerting.ticketing.plugins import TICKET_LOG_FILE

LOG_RECEIVER = "log"
# The outbox's states, as an operator reads them.
STATUS_OF_STATE = {
    "to_open": "opening",
    "opening": "opening",
    "open": "open",
    "to_solve": "solving",
    "solved": "solved",
    "failed": "failed",
}


@dataclass(frozen=True)
class TicketRow:
    client: str
    device: str
    rule: str
    severity: str
    receiver: str | None  # "log", "glpi"; None while no attempt was made
    ticket_id: str | None
    url: str | None
    status: str  # opening | open | solving | solved | failed
    title: str
    opened_at: float | None  # when the ticket was created (epoch seconds)
    solved_at: float | None
    started_at: float | None  # the alert's first bad sample
    time_to_ticket_s: float | None  # first bad sample -> ticket created (the dispatcher's figure)
    error: str | None  # why it is not open (yet): the last failure
    key: str | None  # the alert's idempotency key, carried by the ticket


def ticket_rows(files: StateDir, client: str | None = None) -> list[TicketRow]:
    """The outbox's tickets and the built-in log's tickets no outbox row knows, by the time their
    alert started (the log's: by when opened), then client and device."""
    with read_only(files.outbox_db) as conn:
        links = rows(conn, "SELECT * FROM ticket_links WHERE state != 'cancelled'")
    with read_only(files.path / TICKET_LOG_FILE) as conn:
        logged = {str(r["id"]): r for r in rows(conn, "SELECT * FROM tickets ORDER BY id")}
    found = []
    for link in links:
        alert = Alert.from_dict(json.loads(link["alert"]))
        receiver, ticket_id = as_str(link["connector"]), as_str(link["ticket_id"])
        logged_row = logged.pop(ticket_id, None) if receiver == LOG_RECEIVER and ticket_id is not None else None
        found.append(
            TicketRow(
                client=str(link["client"]),
                device=alert.device,
                rule=str(link["rule"]),
                severity=alert.severity,
                receiver=receiver,
                ticket_id=ticket_id,
                url=as_str(link["ticket_url"]),
                status=STATUS_OF_STATE.get(str(link["state"]), str(link["state"])),
                title=str(logged_row["title"]) if logged_row is not None else ticket_title(alert),
                opened_at=as_float(link["opened_at"]),
                solved_at=as_float(link["solved_at"]),
                started_at=as_float(link["started_at"]),
                time_to_ticket_s=as_float(link["time_to_ticket_s"]),
                error=as_str(link["last_error"]) if link["state"] != "solved" else None,
                key=str(link["key"]),
            )
        )
    for ticket_id, row in logged.items():  # in the log, not in the outbox (an outbox removed since)
        found.append(
            TicketRow(
                client=str(row["client"]),
                device="",
                rule=str(row["alert"]),
                severity=str(row["severity"]),
                receiver=LOG_RECEIVER,
                ticket_id=ticket_id,
                url=None,
                status=str(row["status"]),
                title=str(row["title"]),
                opened_at=as_float(row["opened_at"]),
                solved_at=as_float(row["solved_at"]),
                started_at=None,
                time_to_ticket_s=None,
                error=None,
                key=str(row["idempotency_key"]),
            )
        )
    found.sort(key=lambda t: (t.started_at if t.started_at is not None else t.opened_at or 0.0, t.client, t.device))
    return [t for t in found if client is None or t.client == client]


def has_tickets_state(files: StateDir) -> bool:
    """Whether an agent has run with this state directory (it creates the outbox at start)."""
    return files.outbox_db.is_file() or (files.path / TICKET_LOG_FILE).is_file()


@dataclass(frozen=True)
class TicketPlace:
    """Where a client's tickets are: its receiver and, when known, the file or URL holding them."""

    client: str
    receiver: str
    where: str | None


def ticket_places(
    files: StateDir, tickets: Sequence[TicketRow], receivers: Sequence[Receiver] | None = None
) -> list[TicketPlace]:
    """Each client's receiver: from the config's ``receivers`` when given (clients without a
    ticket yet included), else those the tickets went to."""
    if receivers is not None:
        pairs = [(r.client, r.kind, r.url) for r in receivers]
    else:
        pairs = [(c, kind, None) for c, kind in dict.fromkeys((t.client, t.receiver) for t in tickets if t.receiver)]
    return [
        TicketPlace(client, kind, str(files.path / TICKET_LOG_FILE) if kind == LOG_RECEIVER else url)
        for client, kind, url in pairs
    ]
