"""The ticket receiver contract: how the dispatcher opens, follows and solves tickets in an ITSM.

A receiver is registered in the ``vigie.ticketing`` entry-point group and declared by a
:class:`~agent.api.plugin.PluginSpec` whose options model validates its configuration.

Contract (as Alertmanager's Jira notifier): the ticket carries the alert's idempotency key
(``Alert.idempotency_key``) in its title and body, :meth:`TicketConnector.find_open` looks it up
among open tickets before anything is created, :meth:`TicketConnector.solve` is idempotent
(solving a ticket already solved is not an error). A failure raises :class:`TicketError`, whose
``retryable`` says whether waiting can help (429, 5xx, network) or not (a 4xx: the request itself
is wrong, retrying it forever would hide the problem).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from agent.api.alerts import Alert


@dataclass(frozen=True)
class TicketRef:
    connector: str  # "log", "glpi"
    id: str
    url: str | None = None


class TicketError(Exception):
    """A receiver failed. ``retryable`` says whether a later attempt may succeed;
    ``retry_after_s`` how long the ITSM asked to wait (HTTP Retry-After), if it said."""

    retryable = True
    retry_after_s: float | None = None


@runtime_checkable
class TicketConnector(Protocol):
    name: str

    async def open(self, alert: Alert) -> TicketRef: ...

    async def add_followup(self, ref: TicketRef, text: str) -> None: ...

    async def solve(self, ref: TicketRef, alert: Alert) -> None: ...

    async def find_open(self, idempotency_key: str) -> TicketRef | None: ...

    async def close(self) -> None: ...
