"""A fake Cisco Meraki Dashboard API v1 on loopback, for the Meraki collector's tests and the lab.

Written from the vendor's contract (../shared/contracts/meraki.md: the OpenAPI spec v1, the
official SDK's session code, the rate-limit and pagination pages); tests/meraki/fixtures holds
answers in the documented shapes with their provenance. What it answers, under ``/api/v1``:

- ``GET /organizations``; ``GET /organizations/{id}/networks``, ``/devices/statuses``,
  ``/appliance/uplink/statuses``, ``/wireless/clients/overview/byDevice`` (paginated: ``perPage``
  3-1000, ``startingAfter``, a ``Link`` header with ``rel=first`` and ``rel=next``);
  ``/devices/uplinksLossAndLatency`` (not paginated); ``GET /devices/{serial}/lldpCdp``;
- the key as ``Authorization: Bearer KEY`` or ``X-Cisco-Meraki-API-Key``: none or a wrong one is
  a 401 ``{"errors": ["Invalid API key"]}``; an organization the key cannot see, or an unknown
  one, a 404 (Meraki answers 404, not 403, for those); an organization with API access disabled a
  404 asking to enable it (meraki/dashboard-api-python#134); every error body ``{"errors": [...]}``;
- the organization's own limit: 10 requests/s with a burst of 10, then a 429 with ``Retry-After``
  and ``{"errors": ["API rate limit exceeded for organization"]}``.

One deviation, for the SDK: a ``Link`` URL is written relative to the base URL
(``</organizations/1/devices/statuses?perPage=3&startingAfter=Q2XX>; rel=next``) where Meraki
writes an absolute ``https://api.meraki.com/...`` one — the SDK takes any host that is not a
Meraki domain as a path under its ``base_url`` (meraki.common.validate_base_url), so a loopback
absolute URL would be mangled, and the real host must never be reached from the lab.

Faults (tests call them; lab/meraki_service.py maps `vigie lab fault` onto them):
``rate_limit_storm(seconds, retry_after_s)`` every request a 429; ``fail_next(n, status, path)``
the next n requests (to that path) a 5xx (or any status); ``malformed_next(n)`` a 200 whose body
is not JSON; ``reshape_next(path, body, after)`` one answer of another shape; ``delay_s`` every
answer that late; ``set_down(True)`` the port refuses connections; ``revoke(key)``; a device's
``status`` and ``last_reported_at`` set directly.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

API = "/api/v1"
ORG_RATE_PER_S = 10.0
ORG_BURST = 10


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class FakeNetwork:
    id: str
    name: str
    tags: list[str] = field(default_factory=list)
    product_types: list[str] = field(default_factory=lambda: ["wireless"])
    time_zone: str = "Europe/Paris"


@dataclass
class FakeDevice:
    serial: str
    name: str
    model: str
    network_id: str
    mac: str
    lan_ip: str | None = None
    tags: list[str] = field(default_factory=list)
    status: str = "online"  # online | alerting | offline | dormant
    last_reported_at: dt.datetime | None = None  # None: "now" while online, else when the fake started
    clients: int = 0  # wireless clients online on it now
    neighbors: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)  # port -> {lldp|cdp: {...}}
    uplinks: list[dict[str, Any]] = field(default_factory=list)  # appliances only
    loss_latency: dict[str, list[tuple[float | None, float | None]]] = field(default_factory=dict)

    @property
    def product_type(self) -> str:
        prefix = self.model[:2].upper()
        return {"MR": "wireless", "CW": "wireless", "MS": "switch", "MX": "appliance", "Z3": "appliance",
                "MV": "camera", "MG": "cellularGateway", "MT": "sensor"}.get(prefix, "wireless")


@dataclass
class FakeOrg:
    id: str
    name: str
    networks: list[FakeNetwork] = field(default_factory=list)
    devices: list[FakeDevice] = field(default_factory=list)
    api_enabled: bool = True

    def device(self, serial: str) -> FakeDevice | None:
        return next((d for d in self.devices if d.serial == serial), None)


class _Bucket:
    """The Dashboard's per-organization limiter: GCRA, ``rate`` per second, ``burst`` at once."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.interval, self.burst, self.clock = 1.0 / rate, burst, clock
        self.tat = 0.0

    def take(self) -> float | None:
        """None when the request may pass, else the seconds before one may."""
        now = self.clock()
        tat = max(self.tat, now)
        allowed_at = tat - (self.burst - 1) * self.interval
        if allowed_at > now:
            return allowed_at - now
        self.tat = tat + self.interval
        return None


@dataclass(frozen=True)
class Seen:
    path: str
    query: str
    status: int
    at: float


class MerakiFake:
    def __init__(
        self,
        orgs: Iterable[FakeOrg],
        keys: Mapping[str, Iterable[str]],
        *,
        max_per_page: int = 1000,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.orgs = {org.id: org for org in orgs}
        self.keys = {key: set(ids) for key, ids in keys.items()}  # API key -> organization ids it sees
        self.max_per_page = max_per_page
        self.clock = clock
        self.monotonic = monotonic
        self.requests: list[Seen] = []
        self.delay_s = 0.0
        self.limit_enabled = True
        self._buckets: dict[str, _Bucket] = {}
        self._storm_until = 0.0
        self._storm_retry_after_s = 1
        self._failures: list[tuple[int, str]] = []  # (status, path suffix) of the next requests
        self._malformed = 0
        self._reshaped: list[tuple[str, int, Any]] = []  # (path suffix, matching answers to skip, body)
        self._down = False
        self._tls: ssl.SSLContext | None = None
        self.started_at = dt.datetime.fromtimestamp(clock(), dt.UTC)
        self.host, self.port = "127.0.0.1", 0
        self.url = ""
        self.app = web.Application()
        self.app.router.add_get(API + "/organizations", self._organizations)
        self.app.router.add_get(API + "/organizations/{org}/networks", self._networks)
        self.app.router.add_get(API + "/organizations/{org}/devices/statuses", self._statuses)
        self.app.router.add_get(API + "/organizations/{org}/appliance/uplink/statuses", self._uplinks)
        self.app.router.add_get(API + "/organizations/{org}/devices/uplinksLossAndLatency", self._loss_latency)
        self.app.router.add_get(API + "/organizations/{org}/wireless/clients/overview/byDevice", self._clients)
        self.app.router.add_get(API + "/devices/{serial}/lldpCdp", self._lldp_cdp)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    # -- faults ------------------------------------------------------------------------------

    def rate_limit_storm(self, seconds: float, retry_after_s: int = 1) -> None:
        """Every request a 429 for ``seconds`` (another application spending the budget)."""
        self._storm_until = self.monotonic() + seconds
        self._storm_retry_after_s = retry_after_s

    def fail_next(self, requests: int, status: int = 500, path: str = "") -> None:
        """The next ``requests`` requests whose path ends with ``path`` answer ``status``."""
        self._failures.extend([(status, path)] * requests)

    def malformed_next(self, requests: int) -> None:
        self._malformed += requests

    def reshape_next(self, path: str, body: Any, after: int = 0) -> None:
        """The answer to a request whose path ends with ``path``, ``after`` such answers from now,
        is ``body`` instead (an answer of another shape than documented)."""
        self._reshaped.append((path, after, body))

    def revoke(self, key: str) -> None:
        self.keys.pop(key, None)

    async def set_down(self, down: bool) -> None:
        """Down: the port is closed (connections refused); up again on the same port."""
        if down == self._down:
            return
        self._down = down
        if down and self._site is not None:
            await self._site.stop()
            self._site = None
        elif not down and self._runner is not None:
            self._site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self._tls)
            await self._site.start()

    # -- server ------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None) -> str:
        """Listen (HTTPS with ``tls``, as the real Dashboard; the lab speaks http on loopback)."""
        # a stop does not wait for answers held back by delay_s
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        self._tls = tls
        self.started_at = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        self._site = web.TCPSite(self._runner, host, port, ssl_context=tls)
        await self._site.start()
        self.host, self.port = host, self._site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"{'https' if tls else 'http'}://{host}:{self.port}{API}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = self._site = None

    def count(self, suffix: str) -> int:
        return sum(1 for seen in self.requests if seen.path.endswith(suffix))

    # -- the common path of every request ------------------------------------------------------

    async def _gate(self, request: web.Request, org_id: str | None) -> web.Response | FakeOrg | None:
        """The answer every endpoint gives before its own: auth, faults, the organization's limit."""
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        key = _api_key(request)
        if key is None or key not in self.keys:
            return _errors(401, "Invalid API key")
        failure = next((f for f in self._failures if request.path.endswith(f[1])), None)
        if failure is not None:
            self._failures.remove(failure)
            status = failure[0]
            return _errors(status, "Something went wrong" if status >= 500 else f"HTTP {status}")
        if self.monotonic() < self._storm_until:
            return _rate_limited(self._storm_retry_after_s)
        if org_id is None:
            return None
        org = self.orgs.get(org_id)
        if org is None or org_id not in self.keys[key]:
            return _errors(404, "Not found")
        if not org.api_enabled:
            return _errors(404, f"API access is disabled for this organization. To make API requests for "
                                f"this organization you must first enable API access via {org.name}'s settings.")
        if self.limit_enabled:
            wait = self._buckets.setdefault(org_id, _Bucket(ORG_RATE_PER_S, ORG_BURST, self.monotonic)).take()
            if wait is not None:
                return _rate_limited(max(1, math.ceil(wait)))
        return org

    def _answer(self, request: web.Request, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
        if self._malformed > 0:
            self._malformed -= 1
            return web.Response(text='[{"serial": "Q2', content_type="application/json")
        for i, (path, after, other) in enumerate(self._reshaped):
            if request.path.endswith(path):
                if after:
                    self._reshaped[i] = (path, after - 1, other)
                else:
                    del self._reshaped[i]
                    body = other
                break
        return web.Response(text=json.dumps(body), content_type="application/json", headers=headers)

    def _page(self, request: web.Request, items: Sequence[dict[str, Any]], token: str) -> tuple[list, dict | None]:
        """One page of ``items`` (sorted by ``token``) and its Link header, or a 400 for a bad perPage."""
        per_page_text = request.query.get("perPage", str(self.max_per_page))
        if not per_page_text.isdigit() or not 3 <= int(per_page_text) <= 1000:
            raise web.HTTPBadRequest(
                text=json.dumps({"errors": ["'perPage' must be an integer between 3 and 1000"]}),
                content_type="application/json",
            )
        per_page = min(int(per_page_text), self.max_per_page)
        ordered = sorted(items, key=lambda item: str(item[token]))
        after = request.query.get("startingAfter")
        if after is not None:
            ordered = [item for item in ordered if str(item[token]) > after]
        page = ordered[:per_page]
        path = request.path.removeprefix(API)
        links = [f"<{path}?{urlencode({'perPage': per_page})}>; rel=first"]
        if len(ordered) > per_page:
            query = urlencode({"perPage": per_page, "startingAfter": page[-1][token]})
            links.append(f"<{path}?{query}>; rel=next")
        return page, {"Link": ", ".join(links)}

    def _record(self, request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        self.requests.append(Seen(request.path, request.query_string, response.status, self.monotonic()))
        return response

    # -- endpoints ---------------------------------------------------------------------------

    async def _organizations(self, request: web.Request) -> web.StreamResponse:
        gate = await self._gate(request, None)
        if isinstance(gate, web.Response):
            return self._record(request, gate)
        key = _api_key(request) or ""
        body = [
            {"id": org.id, "name": org.name, "url": f"https://dashboard.meraki.com/o/{org.id}/manage/organization/overview",
             "api": {"enabled": org.api_enabled}, "licensing": {"model": "co-term"},
             "cloud": {"region": {"name": "Europe"}}, "management": {"details": []}}
            for org in self.orgs.values() if org.id in self.keys.get(key, set())
        ]
        return self._record(request, self._answer(request, body))

    async def _org_endpoint(
        self, request: web.Request, build: Callable[[FakeOrg], tuple[Any, Mapping[str, str] | None]]
    ) -> web.StreamResponse:
        gate = await self._gate(request, request.match_info["org"])
        if isinstance(gate, web.Response):
            return self._record(request, gate)
        assert isinstance(gate, FakeOrg)
        try:
            body, headers = build(gate)
        except web.HTTPException as exc:
            return self._record(request, exc)
        return self._record(request, self._answer(request, body, headers))

    async def _networks(self, request: web.Request) -> web.StreamResponse:
        def build(org: FakeOrg) -> tuple[Any, Mapping[str, str] | None]:
            items = [
                {"id": n.id, "organizationId": org.id, "name": n.name, "productTypes": n.product_types,
                 "timeZone": n.time_zone, "tags": n.tags, "enrollmentString": None,
                 "url": f"https://n1.meraki.com/{n.name}/n/{n.id}/manage/usage/list", "notes": "",
                 "isBoundToConfigTemplate": False}
                for n in org.networks
            ]
            return self._page(request, items, "id")

        return await self._org_endpoint(request, build)

    def _status_of(self, device: FakeDevice) -> dict[str, Any]:
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        # a device set offline without a time stopped reporting when the fake started
        reported = device.last_reported_at or (now if device.status in ("online", "alerting") else self.started_at)
        return {
            "name": device.name, "serial": device.serial, "mac": device.mac, "publicIp": "203.0.113.10",
            "networkId": device.network_id, "status": device.status,
            "lastReportedAt": iso(reported) if reported else None,
            "lanIp": device.lan_ip, "gateway": "10.0.0.1", "ipType": "dhcp", "primaryDns": "10.0.0.1",
            "secondaryDns": None, "productType": device.product_type, "model": device.model, "tags": device.tags,
        }

    async def _statuses(self, request: web.Request) -> web.StreamResponse:
        def build(org: FakeOrg) -> tuple[Any, Mapping[str, str] | None]:
            items = [self._status_of(d) for d in org.devices]
            for name, key in (("statuses[]", "status"), ("serials[]", "serial"), ("networkIds[]", "networkId"),
                              ("productTypes[]", "productType")):
                wanted = request.query.getall(name, [])
                if wanted:
                    items = [item for item in items if item[key] in wanted]
            return self._page(request, items, "serial")

        return await self._org_endpoint(request, build)

    async def _uplinks(self, request: web.Request) -> web.StreamResponse:
        def build(org: FakeOrg) -> tuple[Any, Mapping[str, str] | None]:
            now = iso(dt.datetime.fromtimestamp(self.clock(), dt.UTC))
            items = [
                {"networkId": d.network_id, "serial": d.serial, "model": d.model, "lastReportedAt": now,
                 "highAvailability": {"enabled": False, "role": "primary"}, "uplinks": d.uplinks}
                for d in org.devices if d.product_type == "appliance"
            ]
            return self._page(request, items, "serial")

        return await self._org_endpoint(request, build)

    async def _loss_latency(self, request: web.Request) -> web.StreamResponse:
        def build(org: FakeOrg) -> tuple[Any, Mapping[str, str] | None]:
            end = dt.datetime.fromtimestamp(self.clock() - 120, dt.UTC).replace(second=0, microsecond=0)
            items = []
            for d in org.devices:
                for uplink, points in d.loss_latency.items():
                    series = [
                        {"ts": iso(end - dt.timedelta(minutes=len(points) - 1 - i)).replace(".000000", ""),
                         "lossPercent": loss, "latencyMs": latency}
                        for i, (loss, latency) in enumerate(points)
                    ]
                    items.append({"networkId": d.network_id, "serial": d.serial, "uplink": uplink,
                                  "ip": "8.8.8.8", "timeSeries": series})
            return items, None

        return await self._org_endpoint(request, build)

    async def _clients(self, request: web.Request) -> web.StreamResponse:
        def build(org: FakeOrg) -> tuple[Any, Mapping[str, str] | None]:
            items = [
                {"network": {"id": d.network_id}, "serial": d.serial,
                 "counts": {"byStatus": {"online": d.clients if d.status in ("online", "alerting") else 0}}}
                for d in org.devices if d.product_type == "wireless"
            ]
            page, headers = self._page(request, items, "serial")
            after = request.query.get("startingAfter") or ""
            remaining = sum(1 for item in items if item["serial"] > after) - len(page)
            meta = {"counts": {"items": {"total": len(items), "remaining": remaining}}}
            return {"items": page, "meta": meta}, headers

        return await self._org_endpoint(request, build)

    async def _lldp_cdp(self, request: web.Request) -> web.StreamResponse:
        serial = request.match_info["serial"]
        owner = next((org for org in self.orgs.values() if org.device(serial) is not None), None)
        gate = await self._gate(request, owner.id if owner else None)
        if isinstance(gate, web.Response):
            return self._record(request, gate)
        if owner is None:
            return self._record(request, _errors(404, "Not found"))
        device = owner.device(serial)
        assert device is not None
        body: dict[str, Any] = {"sourceMac": device.mac, "ports": device.neighbors} if device.neighbors else {}
        return self._record(request, self._answer(request, body))


def _api_key(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer "):].strip() or None
    return request.headers.get("X-Cisco-Meraki-API-Key") or None


def _errors(status: int, *messages: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, text=json.dumps({"errors": list(messages)}), content_type="application/json", headers=headers
    )


def _rate_limited(retry_after_s: int) -> web.Response:
    return _errors(429, "API rate limit exceeded for organization", headers={"Retry-After": str(retry_after_s)})
