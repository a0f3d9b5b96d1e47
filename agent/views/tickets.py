"""Tickets: every ticket the agent opened, whatever receiver holds it.

The dispatcher's outbox (``ticket_links`` in the ticket outbox) is the one record of every ticket,
in the built-in log or in a client's ITSM: client, device (in the alert it keeps), receiver, ticket
id and URL, when it opened and was solved; the title is the one every receiver writes
(``ticket_title``). A view reads no receiver's own storage (the kernel names no plugin): the
outbox says it all. Rows still waiting for their ticket (being opened, retried, failed) are listed
too, with their last error: that is where a ticket that never came is explained. Rows cancelled
(the alert resolved before any attempt) never had a ticket and are left out. Alerts grouped into one
ticket (``ticket_groups``) are one row each, with the group ticket's title and key.

Alerts on the client's own equipment (its perimeter, agent/duty.py) open no ticket: they are
passed on to the client's contacts, and the notification log (alerting/contacts.py) keeps each
transmission, when, to whom and whether it was delivered: :func:`transmission_rows`.
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

# The receiver a client has when its config names none (agent/config/schema.py, Client.ticketing).
BUILT_IN_RECEIVER = "log"
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
    started_at: float  # the alert's first bad sample
    time_to_ticket_s: float | None  # first bad sample -> ticket created (the dispatcher's figure)
    error: str | None  # why it is not open (yet): the last failure
    key: str | None  # the idempotency key its ticket carries (the group's when grouped)
    taken_at: float | None = None  # when the ITSM says someone took it in charge (read back)


def ticket_rows(files: StateDir, client: str | None = None) -> list[TicketRow]:
    """The tickets by the time their alert started, then client and device."""
    with read_only(files.outbox_db) as conn:
        links = rows(conn, "SELECT * FROM ticket_links WHERE state != 'cancelled'")
        groups = {str(g["key"]): Alert.from_dict(json.loads(g["alert"]))
                  for g in rows(conn, "SELECT key, alert FROM ticket_groups WHERE state != 'cancelled'")}
    found = []
    for link in links:
        if client is not None and link["client"] != client:
            continue
        alert = Alert.from_dict(json.loads(link["alert"]))
        group_key = link["group_key"] if "group_key" in link.keys() else None
        ticket = groups.get(str(group_key), alert)  # what the ticket says: its group's text when grouped
        found.append(
            TicketRow(
                client=str(link["client"]),
                device=alert.device,
                rule=str(link["rule"]),
                severity=alert.severity,
                receiver=as_str(link["connector"]),
                ticket_id=as_str(link["ticket_id"]),
                url=as_str(link["ticket_url"]),
                status=STATUS_OF_STATE.get(str(link["state"]), str(link["state"])),
                title=ticket_title(ticket),
                opened_at=as_float(link["opened_at"]),
                solved_at=as_float(link["solved_at"]),
                started_at=float(link["started_at"]),
                time_to_ticket_s=as_float(link["time_to_ticket_s"]),
                error=as_str(link["last_error"]) if link["state"] != "solved" else None,
                key=str(group_key if ticket is not alert else link["key"]),
                # an outbox the agent has not migrated yet (older than the read-back) has no column
                taken_at=as_float(link["taken_at"]) if "taken_at" in link.keys() else None,
            )
        )
    return sorted(found, key=lambda t: (t.started_at, t.client, t.device))


# the notification log's states (alerting/contacts.py), for a transmission
STATUS_OF_TRANSMISSION = {"sent": "transmitted", "pending": "transmitting", "failed": "transmission failed"}
TRANSMISSION = "transmission"  # the purpose of a perimeter alert's message (alerting/escalation.py)


@dataclass(frozen=True)
class TransmissionRow:
    """An alert of the client's perimeter passed on to one of its contacts by one channel."""

    client: str
    device: str
    rule: str
    severity: str
    title: str
    contact: str
    channel: str  # email | teams
    address: str  # the mail address; for Teams the contact's name (the URL is a secret)
    status: str  # transmitted | transmitting | transmission failed
    started_at: float
    fired_at: float | None
    queued_at: float  # when the agent decided to pass it on
    sent_at: float | None  # when the contact's relay or workflow accepted it
    attempts: int
    error: str | None
    key: str


def transmission_rows(files: StateDir, client: str | None = None) -> list[TransmissionRow]:
    """The perimeter's transmissions, by the time their alert started, then client and device."""
    if not files.notifications_db.is_file():
        return []
    with read_only(files.notifications_db) as conn:
        found = rows(conn, "SELECT * FROM notifications WHERE purpose=?", (TRANSMISSION,))
    result = []
    for row in found:
        if client is not None and row["client"] != client:
            continue
        alert = Alert.from_dict(json.loads(row["alert"]))
        result.append(TransmissionRow(
            client=str(row["client"]), device=alert.device, rule=alert.rule, severity=alert.severity,
            title=ticket_title(alert), contact=str(row["contact"]), channel=str(row["channel"]),
            address=str(row["address"]), status=STATUS_OF_TRANSMISSION.get(str(row["state"]), str(row["state"])),
            started_at=alert.started_at, fired_at=alert.fired_at, queued_at=float(row["queued_at"]),
            sent_at=as_float(row["sent_at"]), attempts=int(row["attempts"]), error=as_str(row["last_error"]),
            key=str(row["alert_key"]),
        ))
    return sorted(result, key=lambda t: (t.started_at, t.client, t.device, t.contact, t.channel))


def has_tickets_state(files: StateDir) -> bool:
    """Whether an agent has run with this state directory (it creates the outbox at start)."""
    return files.outbox_db.is_file()


@dataclass(frozen=True)
class TicketPlace:
    """Where a client's tickets are: its receiver and, when known, the URL it sends them to."""

    client: str
    receiver: str
    where: str | None


def ticket_places(tickets: Sequence[TicketRow], receivers: Sequence[Receiver] | None = None) -> list[TicketPlace]:
    """Each client's receiver: from the config's ``receivers`` when given (clients without a
    ticket yet included), else those the tickets went to."""
    if receivers is not None:
        return [TicketPlace(r.client, r.kind, r.url) for r in receivers]
    seen = dict.fromkeys((t.client, t.receiver) for t in tickets if t.receiver is not None)
    return [TicketPlace(client, receiver, None) for client, receiver in seen]
