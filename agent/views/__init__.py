"""Read-only views of an agent's state directory, shared by the CLI (`vigie status`, `vigie alerts`,
`vigie tickets`) and, later, the web app and the reports.

Each view is a function from a :class:`~agent.statedir.StateDir` to plain dataclasses
(:class:`DeviceStatus`, :class:`AlertRow`, :class:`TicketRow`); drawing them is another module's
job (agent/views/terminal.py for the terminal). The views open the state files read-only (SQLite
``mode=ro``): they need no secret, take no lock, write nothing, and work while the agent runs.
"""

from agent.views.alerts import AlertRow, alert_rows
from agent.views.estate import Estate, Receiver, read_estate
from agent.views.status import DOWN, UNKNOWN, UNREACHABLE, UP, CollectorStatus, DeviceStatus, device_statuses
from agent.views.tickets import (
    TicketPlace,
    TicketRow,
    TransmissionRow,
    has_tickets_state,
    ticket_places,
    ticket_rows,
    transmission_rows,
)

__all__ = [
    "DOWN",
    "UNKNOWN",
    "UNREACHABLE",
    "UP",
    "AlertRow",
    "CollectorStatus",
    "DeviceStatus",
    "Estate",
    "Receiver",
    "TicketPlace",
    "TicketRow",
    "TransmissionRow",
    "alert_rows",
    "device_statuses",
    "has_tickets_state",
    "read_estate",
    "ticket_places",
    "ticket_rows",
    "transmission_rows",
]
