"""Ticket connectors: the protocol, the shared reference type and the entry-point loader.

A connector is registered in the ``vigie.ticketing`` entry-point group (``log`` = the embedded
SQLite :class:`~alerting.ticketing.log.TicketLog`, ``glpi`` =
:class:`~alerting.ticketing.glpi.GlpiConnector`) and built with ``cls.from_options(options)``.

Contract (as Alertmanager's Jira notifier): the ticket carries the alert's idempotency key
(``Alert.idempotency_key``) in its title and body, :meth:`TicketConnector.find_open` looks it up
among open tickets before anything is created, :meth:`TicketConnector.solve` is idempotent
(solving a ticket already solved is not an error). What a ticket says, in the client's language
and timezone, is built by :mod:`alerting.ticketing.text`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from alerting.models import Alert

ENTRY_POINT_GROUP = "vigie.ticketing"


@dataclass(frozen=True)
class TicketRef:
    connector: str  # "log", "glpi"
    id: str
    url: str | None = None


class TicketError(Exception):
    """A connector failed. ``retryable`` says whether a later attempt may succeed."""

    retryable = True


@runtime_checkable
class TicketConnector(Protocol):
    name: str

    async def open(self, alert: Alert) -> TicketRef: ...

    async def add_followup(self, ref: TicketRef, text: str) -> None: ...

    async def solve(self, ref: TicketRef, alert: Alert) -> None: ...

    async def find_open(self, idempotency_key: str) -> TicketRef | None: ...

    async def close(self) -> None: ...


def load_connector(kind: str, options: Mapping[str, Any] | None = None) -> TicketConnector:
    """Build the connector registered under ``kind`` in the ``vigie.ticketing`` group."""
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == kind]
    if not found:
        known = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
        raise ValueError(f"unknown ticket connector {kind!r} (known: {', '.join(known) or 'none'})")
    cls = found[0].load()
    return cls.from_options(dict(options or {}))

