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


@dataclass(frozen=True)
class OnlineCheck:
    """One finding of a receiver's ``check_online()`` (``vigie check-config --online``): what was
    checked, whether it is fine, and what was seen (a failed one says what to fix)."""

    what: str
    ok: bool
    detail: str = ""


class TicketError(Exception):
    """A receiver failed. ``retryable`` says whether a later attempt may succeed;
    ``retry_after_s`` how long the ITSM asked to wait (HTTP Retry-After), if it said."""

    retryable = True
    retry_after_s: float | None = None


@runtime_checkable
class Reopenable(Protocol):
    """A receiver that can set a solved ticket back to in progress (``clients[].reopen_within_s``:
    an alert firing again soon after its ticket was solved reopens it with ``text`` as a
    follow-up, instead of opening another). Idempotent: a reopen repeated after a crash leaves
    one open ticket (its follow-up may repeat). A receiver without it opens a new ticket."""

    async def reopen(self, ref: TicketRef, text: str) -> None: ...


@runtime_checkable
class TakeoverReadable(Protocol):
    """A receiver that can say whether, and when, someone took a ticket in charge in the ITSM (a
    technician assigned to it, or who acted on it): the time the contract's "taken in charge
    within 5 minutes" (the public body's KPI 3) is measured against. ``taken_in_charge(ref)``
    answers the epoch seconds of that moment as the ITSM recorded it, or None while nobody has;
    a failure raises :class:`TicketError` (retried later by the read-back worker). It reads
    only: it never changes the ticket."""

    async def taken_in_charge(self, ref: TicketRef) -> float | None: ...


@runtime_checkable
class Takeable(Protocol):
    """A receiver that is its own ITSM (the built-in log): the NOC takes its tickets in charge
    through vigie, ``vigie tickets take ID``. ``take`` answers who took the ticket and when (the
    first one stands: taking it again changes nothing), and raises LookupError for an unknown id."""

    def take(self, ticket_id: str, by: str, at: float | None = None) -> tuple[str, float]: ...


@runtime_checkable
class TicketConnector(Protocol):
    name: str

    async def open(self, alert: Alert) -> TicketRef: ...

    async def add_followup(self, ref: TicketRef, text: str) -> None: ...

    async def solve(self, ref: TicketRef, alert: Alert) -> None: ...

    async def find_open(self, idempotency_key: str) -> TicketRef | None: ...

    async def close(self) -> None: ...


@runtime_checkable
class OnlineCheckable(Protocol):
    """A receiver that can check, against the live ITSM and without changing anything there, that
    it may do what the dispatcher will ask of it (``vigie check-config --online``)."""

    async def check_online(self) -> list[OnlineCheck]: ...
