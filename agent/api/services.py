"""Services: plugins with a lifecycle that run beside the polls (the SNMP trap receiver, the web
app, the report scheduler).

A service is declared by a :class:`~agent.api.plugin.PluginSpec` of kind ``service``, configured
under ``agent.services.<name>`` and built with ``factory(options)``. The agent calls
``await service.start(context)`` once it is running and ``await service.stop()`` on shutdown
(bounded: a stop that takes longer than ``STOP_TIMEOUT_S`` is abandoned and logged).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.api.samples import Sample

STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class DeviceInfo:
    """One inventory device as a service sees it (read-only)."""

    client: str
    site: str
    name: str
    address: str
    tags: Mapping[str, str]
    collectors: tuple[str, ...]
    parent: str | None


@dataclass(frozen=True)
class DeviceMessage:
    """A raw message a service keeps about a device (a syslog line), shown beside its alerts."""

    at: float  # epoch seconds it was received
    origin: str  # the plugin that keeps it: "syslog"
    source: str  # the sender's address
    severity: str | None
    text: str
    event: str | None = None  # the event a pattern made of it, if any


class Inventory(Protocol):
    def devices(self, client: str | None = None) -> Sequence[DeviceInfo]: ...

    def find(self, client: str, name: str) -> DeviceInfo | None: ...

    def by_address(self, address: str) -> Sequence[DeviceInfo]: ...


class StateView(Protocol):
    """Read-only access to the agent's state: the latest value of each field (rows with
    ``measurement``, ``tags``, ``field``, ``value``, ``timestamp_ns``) and the alerts."""

    def latest(self, measurement: str, tags: Mapping[str, str] | None = None) -> list[Any]: ...

    def alerts(self, states: Sequence[str] | None = None, client: str | None = None) -> list[Any]: ...


@dataclass(frozen=True)
class ServiceContext:
    """What a service is given at start: time, scheduling, the inventory, the state, and a way in.

    ``submit`` feeds samples into the pipeline exactly as a poll's (store, state, alert engine):
    a trap receiver submits the samples of a trap; ``tags_for(client, device)`` gives the base tags
    of an inventory device, so submitted samples look like polled ones.
    """

    clock: Callable[[], float]
    every: Callable[[float, Callable[[], Awaitable[None]], str], None]
    inventory: Inventory
    state: StateView
    submit: Callable[[Sequence[Sample]], Awaitable[None]]
    tags_for: Callable[[str, str], Mapping[str, str] | None]
    state_dir: Any
    # ``poll_now(client, device, collector=None, focus=None) -> turns added``: poll that device
    # now, ahead of the schedule and without moving it (a trap's report confirmed by the device in
    # seconds); ``focus`` {"measurement": M, TAG: VALUE} narrows the run to that object where the
    # collector can (``collect_focused``, agent.api.collector)
    poll_now: Callable[..., int] = field(default=lambda client, device, collector=None, focus=None: 0)
    # ``credentials(client, device, collector) -> mapping | None``: the device's credentials for
    # that collector, as the collector gets them (an SNMPv3 trap is checked with the device's USM
    # user); None when the device has none for it
    credentials: Callable[[str, str, str], Mapping[str, Any] | None] = field(
        default=lambda client, device, collector: None
    )


class Service(Protocol):
    async def start(self, context: ServiceContext) -> None: ...

    async def stop(self) -> None: ...
