"""A fake TP-Link Omada controller (OC200, controller 5.13) on loopback: the web API that
``tplink-omada-client`` speaks, written from shared/contracts/omada.md, and the lab service that
plays the estates' Omada controllers.

The API (every answer ``{"errorCode", "msg", "result"}``, application errors with HTTP 200):

- ``GET /api/info`` (no login): ``controllerVer``, ``omadacId``;
- ``POST /{omadacId}/api/v2/login`` ``{"username", "password"}``: ``result.token`` (the CSRF token)
  and the ``TPOMADA_SESSIONID`` cookie; a bad password is ``errorCode -30109``;
- every other call needs the cookie and the ``Csrf-Token`` header. A missing, unknown or expired
  session (``session_ttl_s``, :meth:`OmadaFake.expire_sessions`, or ``lapse_after`` calls in the
  middle of a poll) is answered as the controller does: HTTP 200 with its HTML login page.
  ``GET loginStatus`` says ``{"login": bool}``;
- ``GET users/current`` (the sites), and per site ``devices`` (a plain list), ``gateways/{mac}``
  (``portStats``), ``switches/{mac}`` (``uplink``) and ``eaps/{mac}`` (``wiredUplink``),
  ``clients`` and ``logs/alerts`` / ``logs/events`` (paged: ``currentPage``, ``currentPageSize``,
  at most ``max_page_size`` rows a page), ``insight/vpn/ipsec/status``.
  A site the account may not see answers ``errorCode -1505``.

Misbehaviour, as the tests and the lab's faults set it: ``slow_s`` (every answer that late),
``http_status`` (every API call answers it, a 5xx page), ``malformed`` (answers cut mid-JSON),
``rate_limited`` (that many next requests answer HTTP 429), ``rate_per_s`` (a token bucket, as
the controller's limit of about 10 requests a second: beyond it, HTTP 429), ``forbidden_sites``.

The estate (lab convention): for each client with a device whose ``collectors`` name ``omada``,
the fake plays one Omada site per vigie site of that client, whose devices are the client's
devices named ``gw-*`` (gateway: fibre WAN1 + USB 4G backup), ``sw-*`` (switch) and ``ap-*``
(access point), under the same names, wired gateway -> switches -> APs (a device behind one that
is disconnected is disconnected too); each branch gateway has an IPsec tunnel to the first site's.
The controller's account is the device's credentials secret (``username``/``password``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import secrets
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml
from aiohttp import web

from lab.estate import EstateError, expand, is_loopback, variables_in
from lab.services import Context, Fault, FaultError, FaultKind, LabService

CONTROLLER_VERSION = "5.13.30.8"
SESSION_COOKIE = "TPOMADA_SESSIONID"
SSIDS = ("MLHG-Personnel", "MLHG-Public", "MLHG-IoT")
LOGIN_PAGE = "<!DOCTYPE html><html><head><title>Omada Controller</title></head><body>login</body></html>"
MODELS = {
    "gateway": ("ER605", "ER605(UN) v2.0", "2.2.3 Build 20231201"),
    "switch": ("SG2218P", "SG2218P(UN) v1.0", "1.0.6 Build 20230614"),
    "ap": ("EAP245", "EAP245(EU) v3.0", "5.1.0 Build 20230915"),
}
KINDS = {"gw": "gateway", "sw": "switch", "ap": "ap"}


def _mac(name: str) -> str:
    digest = hashlib.sha256(name.encode()).digest()
    return "-".join(f"{b:02X}" for b in (0x50, 0xC7, 0xBF, *digest[:3]))


@dataclass
class FakeDevice:
    name: str
    type: str  # gateway | switch | ap
    ip: str
    connected: bool = True
    uplink: FakeDevice | None = None  # what it is plugged into (a gateway: none)
    uplink_port: int | None = None  # the uplink device's port

    @property
    def mac(self) -> str:
        return _mac(self.name)

    @property
    def reachable(self) -> bool:
        """Connected, and so is everything between it and the gateway: the controller loses the
        APs behind a switch that goes down."""
        return self.connected and (self.uplink is None or self.uplink.reachable)

    def entry(self, clients: int) -> dict[str, Any]:
        """The device as ``sites/{site}/devices`` lists it."""
        model, shown, firmware = MODELS[self.type]
        base: dict[str, Any] = {
            "type": self.type, "mac": self.mac, "name": self.name, "model": model, "showModel": shown,
            "ip": self.ip, "firmwareVersion": firmware,
        }
        if not self.reachable:
            return {**base, "status": 0, "statusCategory": 0}
        load = int.from_bytes(hashlib.sha256(self.name.encode()).digest()[:2], "big")
        return {
            **base, "status": 14, "statusCategory": 1, "uptime": "12day(s) 3h 4m 5s", "uptimeLong": 1047845,
            "cpuUtil": 3 + load % 20, "memUtil": 30 + load % 40, "needUpgrade": False, "fwDownload": False,
            "clientNum": clients,
        }

    def detail(self) -> dict[str, Any]:
        """``switches/{mac}`` or ``eaps/{mac}``: the entry, its ports' count, and its uplink as
        ``tplink-omada-client`` reads it (OmadaSwitch.uplink, OmadaAccessPoint.wired_uplink)."""
        found: dict[str, Any] = {**self.entry(0), "ledSetting": 2}
        found.pop("clientNum", None)
        link = None
        if self.uplink is not None:
            link = {"uplinkMac": self.uplink.mac, "name": self.uplink.name, "type": self.uplink.type,
                    "port": self.uplink_port, "linkSpeed": 3, "duplex": 2}
        if self.type == "switch":
            found.update({"portNum": 18, "uplink": link, "deviceMisc": {"portNum": 18}})
        else:
            found.update({"wiredUplink": link, "wirelessLinked": False, "lanPortSettings": []})
        return found


@dataclass
class FakeSite:
    name: str
    devices: list[FakeDevice]
    clients: int  # active clients, spread over the APs and SSIDs
    wired: int = 4
    peer: str | None = None  # the site its gateway has a tunnel to (None: the hub)
    failover: bool = False  # the fibre WAN is down, the 4G modem carries the traffic
    vpn_down: bool = False

    @property
    def key(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()[:24]

    @property
    def gateway(self) -> FakeDevice | None:
        return next((d for d in self.devices if d.type == "gateway"), None)

    def client_list(self) -> list[dict[str, Any]]:
        aps = [d for d in self.devices if d.type == "ap" and d.reachable]
        rows = []
        for n in range(self.clients if aps else 0):
            ap = aps[n % len(aps)]
            rows.append({
                "mac": _mac(f"{self.name}-client-{n}"), "name": f"client-{n}", "ip": f"10.20.{n // 250}.{n % 250 + 2}",
                "wireless": True, "active": True, "ssid": SSIDS[n % len(SSIDS)], "apMac": ap.mac, "apName": ap.name,
                "signalLevel": 70, "uptime": 3600 + n,
            })
        switch = next((d for d in self.devices if d.type == "switch" and d.reachable), None)
        for n in range(self.wired if switch else 0):
            rows.append({
                "mac": _mac(f"{self.name}-wired-{n}"), "name": f"poste-{n}", "ip": f"10.10.0.{n + 10}",
                "wireless": False, "active": True, "switchMac": switch.mac, "port": n + 1, "uptime": 7200 + n,
            })
        return rows

    def clients_of(self, dev: FakeDevice, rows: Sequence[Mapping[str, Any]]) -> int:
        key = {"ap": "apMac", "switch": "switchMac"}.get(dev.type)
        if key is None:
            return len(rows)
        return sum(1 for r in rows if r.get(key) == dev.mac)

    def port_stats(self) -> list[dict[str, Any]]:
        """WAN1 the fibre (ADISTA), port 5 the USB 4G modem; LAN ports after."""
        fibre_up = not self.failover
        return [
            {"port": 1, "name": "WAN1 Fibre", "type": 0, "mode": 0, "status": 1 if fibre_up else 0,
             "internetState": 1 if fibre_up else 0, "ip": "203.0.113.10" if fibre_up else "", "speed": 3,
             "duplex": 2, "tx": 81234567890, "rx": 912345678901, "proto": "dhcp"},
            {"port": 5, "name": "USB 4G", "type": 0, "mode": 0, "status": 1, "internetState": 1,
             "ip": "100.64.12.34", "speed": 2, "duplex": 2, "tx": 123456 if fibre_up else 98765432,
             "rx": 654321 if fibre_up else 876543210, "proto": "usb"},
            {"port": 2, "name": "LAN2", "type": 2, "mode": 1, "status": 1, "internetState": 0, "speed": 3,
             "duplex": 2, "tx": 5555, "rx": 6666},
        ]


@dataclass
class OmadaFake:
    sites: list[FakeSite]
    username: str
    password: str
    omadac_id: str = "c0ffee5ca1ab1e0123456789abcdef01"
    session_ttl_s: float = 3600.0
    max_page_size: int = 100
    clock: Callable[[], float] = time.monotonic
    slow_s: float = 0.0
    http_status: int | None = None
    malformed: bool = False
    rate_limited: int = 0
    rate_per_s: float | None = None  # a token bucket (burst: as many): beyond it, HTTP 429
    lapse_after: int | None = None  # the sessions are dropped once, after that many more API calls
    forbidden_sites: set[str] = field(default_factory=set)
    requests: list[tuple[str, str]] = field(default_factory=list)
    logins: int = 0
    throttled: int = 0  # requests answered 429
    url: str = ""
    _sessions: dict[str, tuple[str, float]] = field(default_factory=dict)  # cookie -> (csrf, opened)
    _runner: web.AppRunner | None = None
    _bucket: tuple[float, float] | None = None  # (tokens, at)

    def site(self, name: str) -> FakeSite:
        for site in self.sites:
            if site.name == name:
                return site
        raise KeyError(name)

    def device(self, name: str) -> tuple[FakeSite, FakeDevice]:
        for site in self.sites:
            for dev in site.devices:
                if dev.name == name:
                    return site, dev
        raise KeyError(name)

    def expire_sessions(self) -> None:
        self._sessions.clear()

    # -- serving ------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None) -> str:
        """Serves HTTP, or HTTPS with ``tls`` (the tests make a certificate with trustme)."""
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=tls)
        await site.start()
        real_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"{'https' if tls else 'http'}://{host}:{real_port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        if self.slow_s:
            await asyncio.sleep(self.slow_s)
        if self.rate_limited > 0 or not self._within_rate():
            self.rate_limited = max(0, self.rate_limited - 1)
            self.throttled += 1
            return web.Response(status=429, text="Too Many Requests", headers={"Retry-After": "1"})
        if request.path == "/api/info":
            return self._ok({"controllerVer": CONTROLLER_VERSION, "apiVer": "3", "configured": True, "type": 1,
                             "supportApp": True, "omadacId": self.omadac_id, "registeredRoot": True,
                             "omadacCategory": "advanced", "mspMode": False})
        prefix = f"/{self.omadac_id}/api/v2/"
        if not request.path.startswith(prefix):
            return web.Response(status=404, text="Not Found")
        if self.http_status is not None:
            return web.Response(status=self.http_status, text=f"<html><body>HTTP {self.http_status}</body></html>",
                                content_type="text/html")
        endpoint = request.path[len(prefix):]
        if endpoint == "login" and request.method == "POST":
            return await self._login(request)
        if self.lapse_after is not None:
            self.lapse_after -= 1
            if self.lapse_after < 0:
                self.lapse_after = None
                self.expire_sessions()
        if not self._session_ok(request):
            if endpoint == "loginStatus":
                return self._ok({"login": False})
            return web.Response(text=LOGIN_PAGE, content_type="text/html")
        if endpoint == "loginStatus":
            return self._ok({"login": True})
        if endpoint == "users/current":
            return self._ok({"name": self.username, "privilege": {
                "sites": [{"name": s.name, "key": s.key} for s in self.sites]}})
        parts = endpoint.split("/")
        if len(parts) >= 3 and parts[0] == "sites" and request.method == "GET":
            site = next((s for s in self.sites if s.key == parts[1]), None)
            if site is None:
                return self._error(-1001, "Site not exist.")
            if site.name in self.forbidden_sites:
                return self._error(-1505, "The current user does not have permissions to access this site.")
            return self._site(site, "/".join(parts[2:]), request.query)
        return self._error(-1600, f"Unsupported request path {endpoint}.")

    def _within_rate(self) -> bool:
        if self.rate_per_s is None:
            return True
        now = self.clock()
        tokens, at = self._bucket or (self.rate_per_s, now)
        tokens = min(self.rate_per_s, tokens + (now - at) * self.rate_per_s)
        self._bucket = (tokens - 1 if tokens >= 1 else tokens, now)
        return tokens >= 1

    async def _login(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return self._error(-1001, "Invalid request parameters.")
        if body.get("username") != self.username or body.get("password") != self.password:
            return self._error(-30109, "Invalid username or password.")
        self.logins += 1
        cookie, csrf = secrets.token_hex(16), secrets.token_hex(16)
        self._sessions[cookie] = (csrf, self.clock())
        response = self._ok({"roleType": 1, "token": csrf})
        response.set_cookie(SESSION_COOKIE, cookie, httponly=True)
        return response

    def _session_ok(self, request: web.Request) -> bool:
        found = self._sessions.get(request.cookies.get(SESSION_COOKIE, ""))
        if found is None:
            return False
        csrf, opened = found
        return request.headers.get("Csrf-Token") == csrf and self.clock() - opened < self.session_ttl_s

    def _site(self, site: FakeSite, endpoint: str, query: Mapping[str, str]) -> web.Response:
        clients = site.client_list()
        if endpoint == "devices":
            return self._ok([d.entry(site.clients_of(d, clients)) for d in site.devices])
        if endpoint.startswith("gateways/"):
            gateway = site.gateway
            if gateway is None or endpoint != f"gateways/{gateway.mac}":
                return self._error(-39701, "The device does not exist.")
            model, shown, firmware = MODELS["gateway"]
            return self._ok({"type": "gateway", "mac": gateway.mac, "name": gateway.name, "model": model,
                             "showModel": shown, "firmwareVersion": firmware, "ip": gateway.ip, "status": 14,
                             "statusCategory": 1, "portNum": 5, "supportPoe": False, "ledSetting": 2,
                             "portStats": site.port_stats(), "portConfigs": []})
        kind = {"switches": "switch", "eaps": "ap"}.get(endpoint.split("/")[0])
        if kind is not None:
            dev = next((d for d in site.devices if d.type == kind and endpoint == f"{endpoint.split('/')[0]}/{d.mac}"),
                       None)
            return self._error(-39701, "The device does not exist.") if dev is None else self._ok(dev.detail())
        if endpoint == "clients":
            return self._page(clients, query)
        if endpoint == "insight/vpn/ipsec/status":
            return self._ok(self._tunnels(site))
        if endpoint == "logs/alerts":
            alerts = self._alerts(site)
            if query.get("filters.resolved") == "false":
                alerts = [a for a in alerts if not a["resolved"]]
            return self._page(alerts, query)
        if endpoint == "logs/events":
            return self._page(self._events(site), query)
        return self._error(-1600, f"Unsupported request path sites/{site.key}/{endpoint}.")

    def _tunnels(self, site: FakeSite) -> list[dict[str, Any]]:
        """The site's IPsec tunnels: a branch has one to the hub, the hub one to each branch."""
        peers = [site.peer] if site.peer else [s.name for s in self.sites if s.peer == site.name]
        rows = []
        for peer in peers:
            branch = site if site.peer else self.site(peer)
            up = not branch.vpn_down
            rows.append({"name": f"ipsec-{branch.name}", "remoteGateway": f"gw-{peer}", "status": 1 if up else 0,
                         "uptime": 86400 if up else 0, "tx": 1234567 if up else 0, "rx": 7654321 if up else 0})
        return rows

    def _alerts(self, site: FakeSite) -> list[dict[str, Any]]:
        now_ms = int(time.time() * 1000)
        rows = []
        for dev in site.devices:
            if not dev.reachable:
                rows.append({"key": f"{dev.mac}-lost", "time": now_ms, "level": "Error", "resolved": False,
                             "msg": f"[{dev.type}:{dev.name}] was disconnected."})
        if site.failover:
            rows.append({"key": f"{site.key}-wan", "time": now_ms, "level": "Warning", "resolved": False,
                         "msg": "WAN1 Fibre of the gateway is offline; traffic moved to USB 4G."})
        rows.append({"key": f"{site.key}-old", "time": now_ms - 86_400_000, "level": "Warning", "resolved": True,
                     "msg": "[ap] signal interference detected."})
        return rows

    def _events(self, site: FakeSite) -> list[dict[str, Any]]:
        now_ms = int(time.time() * 1000)
        return [{"key": f"{site.key}-e{n}", "time": now_ms - n * 60_000, "level": "Info",
                 "msg": f"[client:client-{n}] connected."} for n in range(7)]

    # -- the envelope -------------------------------------------------------------------------

    def _json(self, payload: Mapping[str, Any]) -> web.Response:
        text = json.dumps(payload)
        if self.malformed:
            text = text[: max(1, len(text) // 2)]
        return web.Response(text=text, content_type="application/json")

    def _ok(self, result: Any) -> web.Response:
        return self._json({"errorCode": 0, "msg": "Success.", "result": result})

    def _error(self, code: int, msg: str) -> web.Response:
        return self._json({"errorCode": code, "msg": msg})

    def _page(self, rows: list[dict[str, Any]], query: Mapping[str, str]) -> web.Response:
        try:
            page = max(1, int(query.get("currentPage", "1")))
            size = min(self.max_page_size, max(1, int(query.get("currentPageSize", "10"))))
        except ValueError:
            return self._error(-1001, "Invalid request parameters.")
        chunk = rows[(page - 1) * size: page * size]
        return self._ok({"totalRows": len(rows), "currentPage": page, "currentSize": size, "data": chunk})


# -- the lab service ----------------------------------------------------------------------------

DEFAULT_URL = "http://127.0.0.1:8043"
HUB_CLIENTS = 230  # more than two pages of the client list
BRANCH_CLIENTS = 25


@dataclass
class Controller:
    key: str  # CLIENT/DEVICE of the controller
    url: str
    variables: list[str]
    fake: OmadaFake
    reported: list[tuple[str, str]]  # (CLIENT/DEVICE, what it is) of the devices it reports


def _controllers(context: Context) -> Iterable[tuple[str, str, str, dict[str, Any], list[Any]]]:
    """(client, device, url as written, the device's entry, the client's sites) per Omada controller."""
    for path in context.estate.paths:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for client in data.get("clients") or []:
            for site in client.get("sites") or []:
                for dev in site.get("devices") or []:
                    collectors = dev.get("collectors") or {}
                    if "omada" in collectors:
                        url = str((collectors["omada"] or {}).get("url") or DEFAULT_URL)
                        yield client["name"], dev["name"], url, dev, client.get("sites") or []


def build_sites(sites: Sequence[Mapping[str, Any]]) -> list[FakeSite]:
    """One Omada site per vigie site that has gw-/sw-/ap- devices; the first is the VPN hub."""
    built: list[FakeSite] = []
    for raw in sites:
        devices = []
        for n, dev in enumerate(raw.get("devices") or []):
            kind = KINDS.get(str(dev["name"]).split("-", 1)[0])
            if kind is not None:
                devices.append(FakeDevice(str(dev["name"]), kind, f"10.{len(built) + 1}.0.{n + 1}"))
        _cable(devices)
        if devices:
            hub = built[0].name if built else None
            built.append(FakeSite(str(raw["name"]), devices, BRANCH_CLIENTS if hub else HUB_CLIENTS, peer=hub))
    return built


def _cable(devices: Sequence[FakeDevice]) -> None:
    """The site's wiring: the switches on the gateway's LAN ports (from 2), the APs on the first
    switch's ports (from 1; on the gateway's when the site has no switch)."""
    gateway = next((d for d in devices if d.type == "gateway"), None)
    switches = [d for d in devices if d.type == "switch"]
    for port, switch in enumerate(switches, start=2):
        switch.uplink, switch.uplink_port = gateway, port if gateway else None
    above = switches[0] if switches else gateway
    for port, ap in enumerate((d for d in devices if d.type == "ap"), start=1 if switches else 2):
        ap.uplink, ap.uplink_port = above, port if above else None


class OmadaService(LabService):
    name = "omada"
    fault_kinds = (
        FaultKind("omada-wan-failover", "device", "", "the Omada gateway's fibre WAN goes down, its 4G backup "
                  "carries the traffic"),
        FaultKind("omada-ap-down", "device", "", "the Omada device (an AP, a switch: and the APs behind it) is "
                  "disconnected from its controller"),
        FaultKind("omada-vpn-down", "device", "", "the Omada gateway's site-to-site VPN tunnel to the hub is down"),
        FaultKind("omada-controller-down", "device", "", "the Omada controller answers nothing (connection refused)"),
        FaultKind("omada-controller-slow", "device", "SECONDS", "the Omada controller answers every request "
                  "SECONDS late"),
    )

    def __init__(self, controllers: list[Controller]) -> None:
        self.controllers = controllers

    @classmethod
    def add_options(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--omada-port",
            type=int,
            metavar="N",
            help="TCP port of the fake Omada controller (0: any free port); default: the port of the "
            "estate's omada url, read from the environment first",
        )

    @classmethod
    def for_estate(cls, context: Context) -> OmadaService | None:
        override = getattr(context.options, "omada_port", None)
        controllers = []
        for client, device, url, entry, sites in _controllers(context):
            key = f"{client}/{device}"
            expanded = urlsplit(expand(url, context.environ))
            if not is_loopback(expanded.hostname or "") or expanded.scheme != "http":
                raise EstateError(f"{key}: omada url {url!r}: the lab's Omada fake answers http:// on loopback only")
            login = context.estate.secret(str(entry.get("credentials") or ""))
            if not isinstance(login, Mapping) or "username" not in login or "password" not in login:
                raise EstateError(f"{key}: its credentials secret must hold username and password (generate.py)")
            fake = OmadaFake(build_sites(sites), str(login["username"]), str(login["password"]))
            variables = [v.name for v in variables_in(url)]
            if override is not None:
                expanded = expanded._replace(netloc=f"{expanded.hostname}:{override}")
            # the devices only the controller reports (no collector of their own), for the listing
            polled = {str(d["name"]) for site in sites for d in site.get("devices") or [] if d.get("collectors")}
            reported = [(f"{client}/{d.name}", f"{d.type} reported by {key}, Omada site {s.name}")
                        for s in fake.sites for d in s.devices if d.name not in polled]
            controllers.append(Controller(key, expanded.geturl().rstrip("/"), variables, fake, reported))
        return cls(controllers) if controllers else None

    async def start(self) -> None:
        for controller in self.controllers:
            await self._listen(controller)

    async def _listen(self, controller: Controller) -> None:
        parts = urlsplit(controller.url)
        try:
            port = 80 if parts.port is None else parts.port
            controller.url = await controller.fake.start(parts.hostname or "127.0.0.1", port)
        except OSError as exc:
            hint = ", ".join(controller.variables) or "the omada url"
            raise EstateError(f"tcp {parts.hostname}:{parts.port}: {exc.strerror} (another lab? set {hint})") from None

    async def stop(self) -> None:
        for controller in self.controllers:
            await controller.fake.stop()

    def endpoints(self) -> list[str]:
        return [f"http {c.url}/  Omada controller of {c.key} ({len(c.fake.sites)} sites, "
                f"{sum(len(s.devices) for s in c.fake.sites)} devices)" for c in self.controllers]

    def devices(self) -> list[tuple[str, str]]:
        return [entry for c in self.controllers for entry in [(c.key, c.url), *c.reported]]

    def examples(self) -> list[str]:
        # the estate's file is not known here, only its client: mlhg's controller is in mlhg.yaml
        return [f"vigie collect --config lab/estates/{c.key.split('/')[0]}.yaml --secrets lab/estates/secrets.yaml "
                f"--device {c.key.split('/')[1]} --json" for c in self.controllers[:1]]

    def environment(self) -> dict[str, str]:
        return {name: c.url for c in self.controllers for name in c.variables}

    def _target(self, fault: Fault) -> tuple[Controller, FakeSite | None, FakeDevice | None]:
        client, _, name = fault.target.partition("/")
        for controller in self.controllers:
            if controller.key == fault.target:
                return controller, None, None
            if controller.key.split("/")[0] != client:
                continue
            try:
                site, dev = controller.fake.device(name)
            except KeyError:
                continue
            return controller, site, dev
        raise FaultError(f"{fault.target}: not an Omada controller nor a device of one in the lab")

    def check_fault(self, fault: Fault) -> str:
        controller, site, dev = self._target(fault)
        kind = fault.kind
        if kind in ("omada-controller-down", "omada-controller-slow"):
            if dev is not None:
                raise FaultError(f"{kind}: give the controller ({controller.key}), not {fault.target}")
            if kind == "omada-controller-slow":
                return f"{controller.url} answers {_seconds(fault):g} s late"
            return f"{controller.url} refuses connections"
        if fault.args:
            raise FaultError(f"{kind}: takes no arguments")
        if dev is None or site is None:
            raise FaultError(f"{kind}: give a device of the controller, not the controller")
        if kind == "omada-ap-down":
            return f"{dev.name} ({dev.type}) is disconnected from {controller.key}"
        if dev.type != "gateway":
            raise FaultError(f"{kind}: {fault.target} is a {dev.type}, not a gateway")
        if kind == "omada-vpn-down":
            if site.peer is None:
                raise FaultError(f"{kind}: {dev.name} is the VPN hub; give a branch gateway")
            return f"the IPsec tunnel {site.name} <-> {site.peer} is down"
        return f"{dev.name}: WAN1 Fibre down, USB 4G carries the traffic"

    async def apply_faults(self, faults: Sequence[Fault]) -> None:
        for controller in self.controllers:
            fake = controller.fake
            for site in fake.sites:
                site.failover = site.vpn_down = False
                for dev in site.devices:
                    dev.connected = True
            fake.slow_s = 0.0
            down = False
            for fault in faults:
                owner, site, dev = self._target(fault)
                if owner is not controller:
                    continue
                if fault.kind == "omada-controller-down":
                    down = True
                elif fault.kind == "omada-controller-slow":
                    fake.slow_s = _seconds(fault)
                elif fault.kind == "omada-ap-down" and dev is not None:
                    dev.connected = False
                elif fault.kind == "omada-wan-failover" and site is not None:
                    site.failover = True
                elif fault.kind == "omada-vpn-down" and site is not None:
                    site.vpn_down = True
            listening = fake._runner is not None
            if down and listening:
                await fake.stop()
            elif not down and not listening:
                await self._listen(controller)

    def status(self) -> list[str]:
        lines = []
        for c in self.controllers:
            fake = c.fake
            state = "down" if fake._runner is None else f"{fake.logins} login(s), {len(fake.requests)} request(s)"
            lines.append(f"omada {c.key}: {state}")
        return lines


def _seconds(fault: Fault) -> float:
    try:
        (value,) = fault.args
        seconds = float(value)
    except ValueError:
        raise FaultError(f"{fault.kind}: give SECONDS, e.g. 15 (beyond the collector's timeout_s)") from None
    if not 0 < seconds <= 600:
        raise FaultError(f"{fault.kind}: SECONDS must be between 0 and 600")
    return seconds
