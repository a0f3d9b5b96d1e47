"""The Meraki Dashboard collector: one organization's devices, appliance uplinks, wireless clients
and LLDP/CDP neighbours from organization-wide calls of the Dashboard API v1 (collectors/meraki/
client.py says which SDK and why), never one call per device except the neighbours, a few per poll.

Each Meraki device that is an inventory device of the client (``devices: {SERIAL: NAME}``, else
its Dashboard name) gets its samples through ``sink.for_device``: an AP in the inventory with a
``parent`` (its site's switch) has its offline alert held back while that switch is unreachable.
Devices outside the inventory are reported on the polled device, tagged by serial. A Meraki
network maps to a vigie site (``sites:``, else a network or device tag ``site-SLUG``), kept as
the ``vigie_site`` tag.

Per poll: device statuses, the networks (refreshed every ``networks_refresh_s``), wireless
clients per AP, appliance uplink statuses (and loss/latency when there are appliances), and the
LLDP/CDP of ``neighbors_per_poll`` devices whose answer is older than ``neighbors_refresh_s``.
Every request takes a slot of the organization's budget (``rate_per_s``), shared by every poll of
that organization; a 429's Retry-After holds them all. The device statuses are the poll: when
they fail the run fails (``unreachable`` or ``error`` naming the call, status and cause); the
other calls failing make it ``partial``. docs/CONFIGURATION.md "Meraki", docs/METRICS.md "Meraki".
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, StringConstraints

from agent.api import (
    CollectError,
    CollectorContext,
    EdgeSource,
    FieldValue,
    PluginSpec,
    Rule,
    Sighting,
    Sink,
    Target,
    Unreachable,
    field_text,
)
from agent.api.samples import UnknownDevice
from collectors.meraki import parse
from collectors.meraki.client import (
    DEFAULT_BASE_URL,
    Budgets,
    Dashboard,
    DashboardError,
    Unanswered,
    tls_context,
)

__all__ = ["PLUGIN", "MerakiCollector", "MerakiCredentials", "MerakiOptions", "default_rules"]

DEVICE, UPLINK, NETWORK, NEIGHBOR, ORGANIZATION = (
    "meraki_device", "meraki_uplink", "meraki_network", "meraki_neighbor", "meraki_organization",
)


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


def _base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"{url!r}: expected the Dashboard API's base URL, e.g. {DEFAULT_BASE_URL}")
    return url.rstrip("/")


Seconds = Annotated[float, BeforeValidator(_not_bool)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class MerakiOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    organization_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    base_url: Annotated[str, AfterValidator(_base_url)] = DEFAULT_BASE_URL
    ca_bundle: str | None = None  # None: the system's trust store
    timeout_s: Annotated[Seconds, Field(gt=0, le=120)] = 10.0
    wait_s: Annotated[Seconds, Field(ge=0, le=300)] = 15.0
    # the organization allows 10 calls/s to all its applications together: leave them half
    rate_per_s: Annotated[Seconds, Field(gt=0, le=10)] = 5.0
    burst: Annotated[int, Field(ge=1, le=10), BeforeValidator(_not_bool)] = 5
    per_page: Annotated[int, Field(ge=3, le=1000), BeforeValidator(_not_bool)] = 1000
    sites: dict[Name, Name] = {}  # Meraki network name or id -> vigie site
    site_tag_prefix: Annotated[str, StringConstraints(min_length=1, max_length=40)] = "site-"
    devices: dict[Name, Name] = {}  # serial -> inventory device
    networks_refresh_s: Annotated[Seconds, Field(ge=0, le=86400)] = 3600.0
    neighbors_per_poll: Annotated[int, Field(ge=0, le=50), BeforeValidator(_not_bool)] = 5
    neighbors_refresh_s: Annotated[Seconds, Field(ge=0, le=7 * 86400)] = 3600.0


class MerakiCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: SecretStr


@dataclass(frozen=True)
class Known:
    """An answer kept between polls and when it was fetched (``time.monotonic``)."""

    value: Any
    at: float


class MerakiCollector:
    def __init__(
        self, options: MerakiOptions, context: CollectorContext, budgets: Budgets,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self.clock = context.clock
        self.monotonic = monotonic
        self.budget = budgets.of(options.base_url, options.organization_id, options.rate_per_s, options.burst)
        self.tls = tls_context(options.ca_bundle)  # read once, here: check-config names a bad file
        self.networks: Known | None = None
        self.neighbors: dict[str, Known] = {}  # serial -> its parse.Neighbor list

    async def collect(self, target: Target, sink: Sink) -> None:
        options = self.options
        api_key = target.credentials.get("api_key")
        key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else str(api_key or "")
        if not key:  # never empty: the SDK would then read MERAKI_DASHBOARD_API_KEY from the environment
            raise CollectError("no Meraki API key: give the device credentials whose secret has an api_key")
        dashboard = Dashboard(
            key, options.organization_id, self.budget, base_url=options.base_url, timeout_s=options.timeout_s,
            wait_s=options.wait_s, per_page=options.per_page, tls=self.tls, wall_clock=self.clock,
        )
        async with dashboard:
            try:
                answer = await dashboard.device_statuses()
            except Unanswered as exc:
                raise Unreachable(f"{options.base_url}: {exc}") from None
            except DashboardError as exc:
                raise CollectError(f"{options.base_url}: {exc}") from None
            if not isinstance(answer, list):
                kind = type(answer).__name__
                raise CollectError(f"{options.base_url}: devices/statuses: expected a list, got {kind}")
            devices = parse.device_statuses(answer)
            networks = await self._networks(dashboard, sink)
            if devices.dropped:
                sink.error(f"devices/statuses: {devices.dropped} item(s) without a serial left out")
            clients = await self._part(sink, "wireless clients", dashboard.wireless_clients, parse.wireless_clients)
            appliances = [d for d in devices.items if d.product_type == "appliance"]
            uplinks = await self._part(sink, "appliance uplinks", dashboard.appliance_uplinks, parse.appliance_uplinks)
            measured = (
                await self._part(sink, "uplink loss/latency", dashboard.uplinks_loss_latency, parse.loss_latency)
                if appliances else {}
            )
            await self._refresh_neighbors(dashboard, devices.items, sink)
        self._emit(sink, networks, devices.items, clients or {}, uplinks, measured or {}, dashboard)

    async def _networks(self, dashboard: Dashboard, sink: Sink) -> dict[str, parse.Network]:
        """The networks, read again every networks_refresh_s; when that fails, the last list read
        (or none: the samples then name networks by id) and the run is partial."""
        now = self.monotonic()
        if self.networks is None or now - self.networks.at >= self.options.networks_refresh_s:
            parsed = await self._part(sink, "networks", dashboard.networks, parse.networks)
            if parsed is None:
                return self.networks.value if self.networks else {}
            if parsed.dropped:
                sink.error(f"networks: {parsed.dropped} item(s) without an id left out")
            self.networks = Known({n.id: n for n in parsed.items}, now)
        return self.networks.value

    async def _part(self, sink: Sink, what: str, call: Callable[[], Any], parser: Callable[[Any], Any]) -> Any:
        """A call whose failure leaves the rest of the poll standing (the run ends partial)."""
        try:
            return parser(await call())
        except DashboardError as exc:
            sink.error(f"{what}: {exc}")
            return None

    async def _refresh_neighbors(self, dashboard: Dashboard, devices: list[parse.DeviceStatus], sink: Sink) -> None:
        now = self.monotonic()
        stale = sorted(
            (d for d in devices if d.status in ("online", "alerting")),
            key=lambda d: self.neighbors[d.serial].at if d.serial in self.neighbors else float("-inf"),
        )
        due = [d for d in stale if d.serial not in self.neighbors
               or now - self.neighbors[d.serial].at >= self.options.neighbors_refresh_s]
        for device in due[: self.options.neighbors_per_poll]:
            try:
                self.neighbors[device.serial] = Known(parse.neighbors(await dashboard.lldp_cdp(device.serial)), now)
            except DashboardError as exc:
                sink.error(f"LLDP/CDP of {device.serial}: {exc}")
                return  # the budget or the Dashboard said no: the others wait for the next poll
        known = {d.serial for d in devices}
        for serial in [s for s in self.neighbors if s not in known]:
            del self.neighbors[serial]

    def _site(self, network: parse.Network | None, tags: tuple[str, ...]) -> str | None:
        prefix = self.options.site_tag_prefix
        for tag in tags:
            if tag.startswith(prefix) and len(tag) > len(prefix):
                return tag[len(prefix):]
        if network is None:
            return None
        for key in (network.id, network.name):
            if key is not None and key in self.options.sites:
                return self.options.sites[key]
        for tag in network.tags:
            if tag.startswith(prefix) and len(tag) > len(prefix):
                return tag[len(prefix):]
        return None

    def _sink_of(self, sink: Sink, device: parse.DeviceStatus, unknown: list[str]) -> Sink:
        """The inventory device's sink when the Meraki device is one, else the polled device's."""
        name = self.options.devices.get(device.serial) or device.name
        if name is None:
            return sink
        try:
            return sink.for_device(name)
        except UnknownDevice:
            if device.serial in self.options.devices:
                unknown.append(f"{device.serial} -> {name}")
            return sink

    def _emit(
        self,
        sink: Sink,
        networks: Mapping[str, parse.Network],
        devices: list[parse.DeviceStatus],
        clients: Mapping[str, int | None],
        uplinks: parse.Parsed | None,
        measured: Mapping[tuple[str, str], parse.LossLatency],
        dashboard: Dashboard,
    ) -> None:
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        unknown: list[str] = []
        sinks: dict[str, Sink] = {}
        per_network: dict[str, list[parse.DeviceStatus]] = {}
        for device in devices:
            network = networks.get(device.network_id or "")
            tags = {
                "serial": device.serial,
                "name": device.name,
                "model": device.model,
                "product_type": device.product_type,
                "network": network.name if network else device.network_id,
                "vigie_site": self._site(network, device.tags),
            }
            sinks[device.serial] = self._sink_of(sink, device, unknown)
            sinks[device.serial].emit(DEVICE, parse.device_fields(device, clients.get(device.serial), now), tags)
            per_network.setdefault(device.network_id or "", []).append(device)
            for neighbor in self.neighbors.get(device.serial, Known([], 0)).value:
                sinks[device.serial].emit(
                    NEIGHBOR,
                    {"system_name": neighbor.system_name, "port_id": neighbor.port_id, "address": neighbor.address},
                    {"serial": device.serial, "name": device.name, "port": neighbor.port,
                     "protocol": neighbor.protocol},
                )
        for uplink in uplinks.items if uplinks else ():
            target = sinks.get(uplink.serial, sink)
            network = networks.get(uplink.network_id or "")
            target.emit(
                UPLINK,
                parse.uplink_fields(uplink, measured.get((uplink.serial, uplink.interface))),
                {"serial": uplink.serial, "interface": uplink.interface,
                 "network": network.name if network else uplink.network_id},
            )
        if uplinks is not None and uplinks.dropped:
            sink.error(f"appliance uplinks: {uplinks.dropped} item(s) without a serial or interface left out")
        for network_id, members in sorted(per_network.items()):
            network = networks.get(network_id)
            wireless = [clients.get(d.serial) for d in members if d.product_type == "wireless"]
            sink.emit(
                NETWORK,
                {
                    "devices": len(members),
                    **parse.status_counts(members),
                    "wireless_clients": sum(c for c in wireless if c is not None) if any(
                        c is not None for c in wireless) else None,
                },
                {"network_id": network_id or None, "network": network.name if network else None,
                 "vigie_site": self._site(network, ())},
            )
        exchange = dashboard.exchange
        sink.emit(
            ORGANIZATION,
            {
                "devices": len(devices),
                **parse.status_counts(devices),
                "networks": len(networks),
                "api_requests": exchange.requests,
                "api_rate_limited": exchange.rate_limited,
                "api_wait_s": round(exchange.waited_s, 3),
            },
            {"organization_id": self.options.organization_id},
        )
        if unknown:
            sink.error(f"devices: not in the inventory of this client: {', '.join(unknown)}")


def default_rules() -> list[Rule]:
    where = "{name} ({model}, network {network}, serial {serial})"
    return [
        Rule(
            name="meraki_ap_offline",
            measurement=DEVICE,
            when="status in ('offline', 'dormant')",
            match={"product_type": "wireless"},
            # the Dashboard marks an AP offline after a few missed check-ins; its switch's SNMP
            # poll says unreachable well within this, so a dead switch holds its APs back
            for_s=300,
            severity="major",
            summary="{device}: Meraki access point " + where + " is {status}, last reported {last_reported_at}",
        ),
        Rule(
            name="meraki_device_offline",
            measurement=DEVICE,
            when="status in ('offline', 'dormant')",
            match={"product_type": "!wireless"},
            for_s=300,
            severity="major",
            summary="{device}: Meraki {product_type} " + where + " is {status}, last reported {last_reported_at}",
        ),
        Rule(
            name="meraki_device_alerting",
            measurement=DEVICE,
            when="status == 'alerting'",
            for_s=900,
            severity="warning",
            summary="{device}: the Dashboard reports an alert on " + where,
        ),
        Rule(
            name="meraki_uplink_failed",
            measurement=UPLINK,
            when="status == 'failed'",
            for_s=120,
            severity="major",
            summary="{device}: Meraki appliance uplink {interface} ({network}) failed",
        ),
        Rule(
            name="meraki_uplink_loss",
            measurement=UPLINK,
            when="loss_percent > 10",
            for_s=300,
            severity="warning",
            summary="{device}: Meraki uplink {interface} loses {loss_percent} % of probes ({latency_ms} ms)",
        ),
    ]


class _Factory:
    """The plugin's factory: one :class:`Budgets` for every collector it builds, so every poll of
    an organization shares that organization's budget."""

    def __init__(self) -> None:
        self.budgets = Budgets()

    def __call__(self, options: MerakiOptions, context: CollectorContext) -> MerakiCollector:
        return MerakiCollector(options, context, self.budgets)


def _neighbor(client: str, device: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue]) -> Sighting:
    """A meraki_neighbor sample: what the device's LLDP/CDP table says, matched like SNMP's."""
    return Sighting(client, device, "meraki", tags.get("port"), field_text(fields.get("system_name")),
                    field_text(fields.get("port_id")), field_text(fields.get("address")))


PLUGIN = PluginSpec(
    name="meraki",
    kind="collector",
    factory=_Factory(),
    options=MerakiOptions,
    credentials=MerakiCredentials,
    default_rules=default_rules,
    state_fields=frozenset({(DEVICE, "status"), (UPLINK, "status")}),
    descriptive_tags=frozenset({"name", "model", "network", "vigie_site"}),
    # the neighbours of a device the dashboard reported (meraki_device) replace its earlier ones
    edge_sources={NEIGHBOR: EdgeSource(("meraki",), DEVICE, _neighbor, controller="meraki")},
    description="Cisco Meraki Dashboard API v1 (official SDK, aio): device statuses, uplinks, clients, LLDP/CDP",
)
