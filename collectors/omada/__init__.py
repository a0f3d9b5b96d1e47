"""The TP-Link Omada collector: one controller (OC200/OC300 or the software controller) reports
every site it manages — devices, gateway WAN ports (which one carries traffic), site-to-site VPN
tunnels, wireless clients per AP and SSID, the controller's own alert and event logs.

Options and measurements: README.md beside this file, docs/CONFIGURATION.md and docs/METRICS.md
("Omada"). The samples about an Omada device go to the inventory device of the same name (or the
one ``devices`` maps its name or MAC to), as piggyback data, so its alerts follow that device's
parents; a device the inventory does not know is reported on the controller itself. When the
controller does not answer, the run is ``unreachable`` and no Omada device gets a sample: they are
unknown, and the only alert is the controller's own ``device_unreachable``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError

from agent.api import (
    CollectError,
    CollectorContext,
    Edge,
    EdgeSource,
    FieldValue,
    PluginSpec,
    Rule,
    Sink,
    Target,
    UnknownDevice,
    Unreachable,
    field_text,
)
from agent.api.tls import client_tls
from collectors.omada import models
from collectors.omada.client import BadAnswer, Controller, NoAnswer, Site

__all__ = ["PLUGIN", "OmadaCollector", "OmadaCredentials", "OmadaOptions", "default_rules"]

log = logging.getLogger(__name__)

CONTROLLER = "omada_controller"
SITE = "omada_site"
DEVICE = "omada_device"
WAN_PORT = "omada_wan_port"
GATEWAY = "omada_gateway"
TUNNEL = "omada_vpn_tunnel"
SSID = "omada_ap_ssid"
UPLINK = "omada_uplink"
# omada_site's fields read from the controller's alert and event logs
LOG_FIELDS = ("alerts_unresolved", "last_alert", "last_alert_at", "events", "last_event", "last_event_at")


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


def _controller_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r}: expected https://HOST[:PORT]")
    if parts.username or parts.password:
        raise ValueError("a login in the URL would be written in the config: use the device's credentials")
    return url.rstrip("/")


class OmadaOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # default: https://ADDRESS[:PORT] of the device
    url: Annotated[str, BeforeValidator(_controller_url)] | None = None
    # Omada site names to read; empty: every site the account sees
    sites: list[Annotated[str, StringConstraints(min_length=1)]] = []
    # Omada device name or MAC -> inventory device, where the names differ
    devices: dict[str, str] = {}
    ca_bundle: Path | None = None
    verify_tls: bool = True
    timeout_s: Annotated[float, Field(gt=0, le=120), BeforeValidator(_not_bool)] = 10.0
    rate_limit_retries: Annotated[int, Field(ge=0, le=10), BeforeValidator(_not_bool)] = 2
    rate_limit_wait_s: Annotated[float, Field(ge=0, le=30), BeforeValidator(_not_bool)] = 1.0
    # the controller's limit is about 10 requests a second; null: no pacing
    max_requests_per_s: Annotated[float, Field(gt=0, le=1000), BeforeValidator(_not_bool)] | None = 10.0
    clients: bool = True  # read the client list (per-SSID counts); the heaviest call on a busy site
    vpn: bool = True
    logs: bool = True
    # read each connected switch's and AP's uplink (one call per device): the topology's parents
    uplinks: bool = True


class OmadaCredentials(BaseModel):
    """A controller account (a Viewer role is enough), as the web interface logs in."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    username: Annotated[str, StringConstraints(min_length=1)]
    password: Annotated[str, StringConstraints(min_length=1)]


class OmadaCollector:
    def __init__(self, options: OmadaOptions, context: CollectorContext) -> None:
        self.options = options
        self.tls = client_tls(options.ca_bundle, options.verify_tls)
        if not options.verify_tls:
            log.warning("%s/%s: omada: TLS verification disabled by verify_tls: false", context.client, context.device)

    def _controller(self, target: Target) -> Controller:
        try:
            login = OmadaCredentials.model_validate(dict(target.credentials))
        except ValidationError as exc:
            # never echo the input: it is a secret
            fields = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors())
            raise CollectError(f"credentials: invalid or missing {fields} (username and password)") from None
        port = f":{target.port}" if target.port else ""
        return Controller(
            self.options.url or f"https://{target.address}{port}",
            login.username,
            login.password,
            tls=self.tls,
            timeout_s=self.options.timeout_s,
            retries=self.options.rate_limit_retries,
            retry_wait_s=self.options.rate_limit_wait_s,
            max_requests_per_s=self.options.max_requests_per_s,
        )

    async def collect(self, target: Target, sink: Sink) -> None:
        # One session per poll, closed at its end: the agent has no hook to close a collector, and
        # a login a minute is two requests among the poll's dozens.
        controller = self._controller(target)
        try:
            await self._collect(controller, sink)
        except NoAnswer as exc:
            raise Unreachable(str(exc)) from None
        except BadAnswer as exc:
            raise CollectError(str(exc)) from None
        finally:
            await controller.close()

    async def _collect(self, controller: Controller, sink: Sink) -> None:
        version = await controller.login()
        sites = await controller.sites()
        wanted = set(self.options.sites)
        missing = wanted - {s.name for s in sites}
        if missing:
            sink.error(f"sites {', '.join(sorted(missing))}: not visible to {controller.username} on the controller")
        totals = {"devices": 0, "devices_connected": 0, "devices_disconnected": 0, "clients": 0}
        read_sites = [s for s in sites if not wanted or s.name in wanted]
        for site in read_sites:
            counts = await self._site(controller, site, sink)
            for key, value in counts.items():
                totals[key] += value or 0
        sink.emit(CONTROLLER, {"version": version, "sites": len(read_sites), **totals})

    async def _site(self, controller: Controller, site: Site, sink: Sink) -> dict[str, int | None]:
        """One site's samples; a call that fails is an error of the run (``partial``), the rest
        of the site is still read. A call without answer ends the run (NoAnswer)."""
        site_tags = {"omada_site": site.name}
        try:
            raw_devices = await controller.devices(site)
        except BadAnswer as exc:
            sink.error(str(exc))
            sink.emit(SITE, {**_site_fields(None, None, None, None), **dict.fromkeys(LOG_FIELDS)}, site_tags)
            return {}
        devices = [d for d in map(models.device, raw_devices) if d is not None]
        sinks = {d.mac: self._sink_of(sink, d) for d in devices}
        for dev in devices:
            sinks[dev.mac].emit(DEVICE, dev.fields, _device_tags(site, dev))
        for gateway in (d for d in devices if d.type == "gateway" and d.connected):
            await self._gateway(controller, site, gateway, sinks[gateway.mac], sink)
        if self.options.uplinks:
            await self._uplinks(controller, site, devices, sinks, sink)
        clients = await self._clients(controller, site, devices, sinks, sink)
        if self.options.vpn and any(d.type == "gateway" for d in devices):
            await self._tunnels(controller, site, devices, sinks, sink)
        logs = await self._logs(controller, site, sink)
        connected = sum(1 for d in devices if d.connected)
        down = sum(1 for d in devices if d.fields["connected"] is False)
        sink.emit(SITE, {**_site_fields(len(devices), connected, down, clients), **logs}, site_tags)
        return {"devices": len(devices), "devices_connected": connected, "devices_disconnected": down,
                "clients": clients[0] if clients else None}

    def _inventory_name(self, mac: str, name: str) -> str:
        """The inventory device an Omada device's samples go to."""
        return self.options.devices.get(mac) or self.options.devices.get(name) or name.lower()

    def _sink_of(self, sink: Sink, dev: models.Device) -> Sink:
        try:
            return sink.for_device(self._inventory_name(dev.mac, dev.name))
        except UnknownDevice:
            return sink

    async def _uplinks(
        self, controller: Controller, site: Site, devices: list[models.Device], sinks: Mapping[str, Sink], sink: Sink
    ) -> None:
        """Each connected switch's and wired AP's uplink device, named as the inventory names it
        (the topology's edge, uplink = parent). A disconnected device is not asked: the topology
        keeps its last uplink, which is what holds its alerts back when the switch above it fails."""
        names = {d.mac: d.name for d in devices}
        for dev in (d for d in devices if d.type in models.UPLINK_FIELDS and d.connected):
            try:
                detail = await controller.detail(site, dev.type, dev.mac)
            except BadAnswer as exc:
                sink.error(str(exc))
                continue
            found = models.device_uplink(dev.type, detail)
            if found is None:
                continue
            omada_name = names.get(found.mac) or found.name or found.mac
            sinks[dev.mac].emit(UPLINK, {
                "uplink_device": self._inventory_name(found.mac, omada_name),
                "uplink_mac": found.mac,
                "uplink_type": found.type,
                "port": found.port,
            }, _device_tags(site, dev))

    async def _gateway(
        self, controller: Controller, site: Site, gateway: models.Device, own: Sink, sink: Sink
    ) -> None:
        try:
            detail = await controller.gateway(site, gateway.mac)
        except BadAnswer as exc:
            sink.error(str(exc))
            return
        ports = models.wan_ports(detail)
        tags = _device_tags(site, gateway)
        for port in ports:
            own.emit(WAN_PORT, port.fields, {**tags, "port": str(port.port), "port_name": port.name})
        own.emit(GATEWAY, models.uplink(ports), tags)

    async def _clients(
        self, controller: Controller, site: Site, devices: list[models.Device], sinks: Mapping[str, Sink], sink: Sink
    ) -> tuple[int, int, int] | None:
        """(clients, wireless, wired) of the site, after the per-AP, per-SSID counts."""
        if not self.options.clients:
            return None
        try:
            clients = await controller.clients(site)
        except BadAnswer as exc:
            sink.error(str(exc))
            return None
        per_ap, ssids, wireless, wired = models.ssid_counts(clients)
        for ap in (d for d in devices if d.type == "ap" and d.connected):
            for ssid in sorted(ssids):
                sinks[ap.mac].emit(SSID, {"clients": per_ap[(ap.mac, ssid)]}, {**_device_tags(site, ap), "ssid": ssid})
        return len(clients), wireless, wired

    async def _tunnels(
        self, controller: Controller, site: Site, devices: list[models.Device], sinks: Mapping[str, Sink], sink: Sink
    ) -> None:
        try:
            rows = await controller.vpn_status(site)
        except BadAnswer as exc:
            sink.error(str(exc))
            return
        # the tunnels are the site's gateway's: its alerts follow that gateway's parents
        gateway = next(d for d in devices if d.type == "gateway")
        for found in (models.tunnel(r) for r in rows if isinstance(r, Mapping)):
            if found is not None:
                tags = {**_device_tags(site, gateway), "tunnel": found.name}
                sinks[gateway.mac].emit(TUNNEL, found.fields, tags)

    async def _logs(self, controller: Controller, site: Site, sink: Sink) -> dict[str, Any]:
        fields: dict[str, Any] = dict.fromkeys(LOG_FIELDS)
        if not self.options.logs:
            return fields
        try:
            alerts = await controller.log(site, "alerts", {"filters.resolved": "false"})
            events = await controller.log(site, "events", {})
        except BadAnswer as exc:
            sink.error(str(exc))
            return fields
        fields["alerts_unresolved"] = alerts.total
        fields["last_alert"], fields["last_alert_at"] = models.newest(alerts.rows[0] if alerts.rows else None)
        fields["events"] = events.total
        fields["last_event"], fields["last_event_at"] = models.newest(events.rows[0] if events.rows else None)
        return fields


def _device_tags(site: Site, dev: models.Device) -> dict[str, str]:
    return {"omada_site": site.name, "mac": dev.mac, "type": dev.type, "omada_device": dev.name}


def _site_fields(
    devices: int | None, connected: int | None, down: int | None, clients: tuple[int, int, int] | None
) -> dict[str, Any]:
    total, wireless, wired = clients if clients else (None, None, None)
    return {"devices": devices, "devices_connected": connected, "devices_disconnected": down,
            "clients": total, "wireless_clients": wireless, "wired_clients": wired}


def default_rules() -> list[Rule]:
    where = "{omada_device} ({type} {mac}, Omada site {omada_site})"
    return [
        Rule(
            name="omada_device_disconnected",
            measurement=DEVICE,
            when="connected == False",
            # the controller misses a heartbeat now and then: two polls in a row at 60 s
            for_s=120,
            severity="major",
            summary=f"{where} is {{status}} on the Omada controller",
        ),
        Rule(
            name="omada_wan_failover",
            measurement=GATEWAY,
            when="on_backup == True",
            for_s=60,
            severity="warning",
            summary=f"{where}: traffic on backup WAN {{active_wan}}, primary {{primary_wan}} is down",
        ),
        Rule(
            name="omada_vpn_tunnel_down",
            measurement=TUNNEL,
            when="up == False",
            for_s=120,
            severity="major",
            summary=f"{where}: site-to-site VPN {{tunnel}} to {{remote}} is down",
        ),
    ]


def _uplink_edge(client: str, device: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue]) -> Edge | None:
    """An omada_uplink sample on the switch's or AP's device: its uplink device is its parent."""
    uplink = field_text(fields.get("uplink_device"))
    port = fields.get("port")  # the uplink device's port (the Open API's uplinkDevicePort)
    their_port = str(port) if isinstance(port, int) and not isinstance(port, bool) else None
    return Edge(client, device, uplink, "omada", b_port=their_port, upstream=uplink) if uplink else None


PLUGIN = PluginSpec(
    name="omada",
    kind="collector",
    factory=OmadaCollector,
    options=OmadaOptions,
    credentials=OmadaCredentials,
    default_rules=default_rules,
    state_fields=frozenset({(DEVICE, "status"), (TUNNEL, "status")}),
    counter_fields=frozenset({(m, f) for m in (WAN_PORT, TUNNEL) for f in ("rx_bytes", "tx_bytes")}),
    descriptive_tags=frozenset({"omada_device"}),
    # polled_by itself: a device the controller sees disconnected is not asked, and keeps the
    # uplink it had (the switch above it, whose outage must hold its alerts back)
    edge_sources={UPLINK: EdgeSource(("omada",), UPLINK, _uplink_edge, controller="omada")},
    description="TP-Link Omada controller: devices, gateway WAN failover, VPN tunnels, clients per SSID, its logs",
)
