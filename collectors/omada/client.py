"""The Omada controller as the collector reads it, through ``tplink-omada-client`` (the library
Home Assistant's ``tplink_omada`` integration uses). No vigie import.

The library speaks the controller's web API (``/{omadacId}/api/v2/...``: ``/api/info``, login with
a session cookie and a CSRF token, re-login when the session is gone) and wraps sites, devices,
gateways and the paged client list. It has no call for the site-to-site VPN status nor for the
controller's alert and event logs: those go through the same library connection
(:meth:`OmadaApiConnection.request` / ``iterate_pages``), so one login and one session serve every
call. The Open API (OAuth client credentials) would need a second credential set for the same
data; see README.md.

Every failure comes out as one of two exceptions naming the call that failed: :class:`NoAnswer`
(no connection, no answer within the timeout) or :class:`BadAnswer` (an HTTP error, an Omada
``errorCode``, a body that is not JSON). The library's own exceptions never leave this module.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from tplink_omada_client.exceptions import (
    BadControllerUrl,
    ConnectionFailed,
    LoginFailed,
    LoginSessionClosed,
    OmadaClientException,
    RequestFailed,
    UnsupportedControllerVersion,
)
from tplink_omada_client.omadaapiconnection import OmadaApiConnection
from tplink_omada_client.omadasiteclient import OmadaSiteClient

T = TypeVar("T")

# errorCode values the web API answers (the library's -30109; -1005 and -1505 from TP-Link's API guide)
ERROR_CODES = {
    -30109: "bad username or password",
    -1005: "operation forbidden for this account",
    -1505: "the account has no permission on this site (give it the site in Omada's admin roles)",
}
HTTP_RATE_LIMITED = 429
# alert and event logs: only the count and the newest entry are read
LOG_PAGE_SIZE = 1


class OmadaFailure(Exception):
    """``CALL: REASON``: what was asked (``GET sites/{site}/devices``) and why it failed."""

    def __init__(self, call: str, reason: str) -> None:
        super().__init__(f"{call}: {reason}")


class NoAnswer(OmadaFailure):
    pass


class BadAnswer(OmadaFailure):
    pass


@dataclass(frozen=True)
class Site:
    name: str
    key: str


@dataclass(frozen=True)
class Grid:
    """One page of a paged answer: the total the controller counts and the rows read."""

    total: int | None
    rows: list[dict[str, Any]]


def _error_code(exc: RequestFailed) -> int | None:
    # tplink-omada-client 1.4 keeps the code in a private attribute and in the message only
    code = getattr(exc, "_error_code", None)
    return code if isinstance(code, int) else None


def explain(code: int | None, message: str) -> str:
    if code == HTTP_RATE_LIMITED:
        return "rate limited by the controller (HTTP 429)"
    if code is not None and code >= 400:
        return f"HTTP {code}"
    if code in ERROR_CODES:
        return f"errorCode {code}: {ERROR_CODES[code]}"
    return message


class Pacer:
    """At most ``rate`` requests a second, a burst of ``rate`` at once (a token bucket). The
    requests of one poll go one after the other, so no lock is needed."""

    def __init__(
        self,
        rate: float | None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self.monotonic = monotonic
        self.sleep = sleep
        self.tokens = rate or 0.0
        self.at = monotonic()

    async def wait(self) -> None:
        if self.rate is None:
            return
        now = self.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            await self.sleep((1 - self.tokens) / self.rate)
            self.tokens, self.at = 1.0, self.monotonic()
        self.tokens -= 1


class Controller:
    """One controller session (a login, then the session cookie and CSRF token), until closed.

    ``timeout_s`` bounds every request; ``max_requests_per_s`` paces them (the controller allows
    about 10 a second); a 429 is still retried ``retries`` times ``retry_wait_s`` apart; a lost
    session is logged in again once.
    """

    def __init__(
        self,
        url: str,
        username: str,
        password: str,
        *,
        tls: ssl.SSLContext,
        timeout_s: float,
        retries: int,
        retry_wait_s: float,
        max_requests_per_s: float | None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.username = username
        self.password = password
        self.tls = tls
        self.timeout_s = timeout_s
        self.retries = retries
        self.retry_wait_s = retry_wait_s
        self.sleep = sleep
        self.pacer = Pacer(max_requests_per_s, sleep=sleep)
        self._session: aiohttp.ClientSession | None = None
        self._api: OmadaApiConnection | None = None
        self.version: str | None = None

    def _connection(self) -> OmadaApiConnection:
        if self._api is None:
            # Our own session: a timeout on every request, our TLS settings, and a cookie jar that
            # keeps the session cookie of a controller named by its IP address; every request the
            # library makes (pages of a list, a re-login) waits its turn.
            paced = aiohttp.TraceConfig()
            paced.on_request_start.append(self._turn)
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                cookie_jar=aiohttp.CookieJar(unsafe=True),
                connector=aiohttp.TCPConnector(ssl=self.tls),
                trace_configs=[paced],
            )
            self._api = OmadaApiConnection(self.url, self.username, self.password, self._session, verify_ssl=self.tls)
        return self._api

    async def _turn(self, session: aiohttp.ClientSession, context: Any, params: Any) -> None:
        await self.pacer.wait()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._session = None
        self._api = None
        self.version = None  # the next poll logs in again

    async def _call(self, call: str, request: Callable[[OmadaApiConnection], Awaitable[T]]) -> T:
        api = self._connection()
        relogged = False
        attempt = 0
        while True:
            try:
                return await request(api)
            except LoginSessionClosed:
                # the controller answered its login page: the session lapsed before the library's hour
                if relogged:
                    raise BadAnswer(call, "the controller closed the session again right after a login") from None
                relogged = True
                await self._login(api)
            except RequestFailed as exc:
                code = _error_code(exc)
                if code == HTTP_RATE_LIMITED and attempt < self.retries:
                    attempt += 1
                    await self.sleep(self.retry_wait_s)
                    continue
                if isinstance(exc, LoginFailed):
                    raise BadAnswer(call, f"login refused: {explain(code, str(exc))}") from None
                raise BadAnswer(call, explain(code, str(exc))) from None
            except (ConnectionFailed, BadControllerUrl) as exc:
                cause = exc.__cause__ or exc
                if isinstance(cause, aiohttp.ClientSSLError):  # it answered, with a certificate we refuse
                    raise BadAnswer(call, f"TLS refused: {cause}") from None
                if isinstance(cause, TimeoutError):  # aiohttp's read and connect timeouts are both
                    raise NoAnswer(call, f"no answer within {self.timeout_s:g} s") from None
                raise NoAnswer(call, f"no connection to {self.url}: {cause}") from None
            except TimeoutError:
                raise NoAnswer(call, f"no answer within {self.timeout_s:g} s") from None
            except UnsupportedControllerVersion as exc:
                raise BadAnswer(call, str(exc)) from None
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise BadAnswer(call, f"malformed JSON ({exc})") from None
            except (KeyError, TypeError, ValueError) as exc:
                # the library reads fields without checking them: an answer of another shape
                raise BadAnswer(call, f"unexpected answer ({type(exc).__name__}: {exc})") from None
            except OmadaClientException as exc:
                raise BadAnswer(call, f"{type(exc).__name__}: {exc}") from None

    async def _login(self, api: OmadaApiConnection) -> None:
        await api.login()
        self.version = getattr(api, "_controller_version", None)

    async def login(self) -> str | None:
        """Logs in unless a session is open; the controller's version."""
        if self.version is None:
            await self._call("POST login", self._login)
        return self.version

    async def sites(self) -> list[Site]:
        async def read(api: OmadaApiConnection) -> list[Site]:
            result = await api.request("get", api.format_url("users/current"))
            return [Site(str(s["name"]), str(s["key"])) for s in result["privilege"]["sites"]]

        return await self._call("GET users/current", read)

    async def devices(self, site: Site) -> list[dict[str, Any]]:
        async def read(api: OmadaApiConnection) -> list[dict[str, Any]]:
            return [d.raw_data for d in await OmadaSiteClient(site.key, api).get_devices()]

        return await self._call(f"GET sites/{site.name}/devices", read)

    async def gateway(self, site: Site, mac: str) -> dict[str, Any]:
        async def read(api: OmadaApiConnection) -> dict[str, Any]:
            return (await OmadaSiteClient(site.key, api).get_gateway(mac)).raw_data

        return await self._call(f"GET sites/{site.name}/gateways/{mac}", read)

    async def detail(self, site: Site, kind: str, mac: str) -> dict[str, Any]:
        """A switch's (``switches/{mac}``) or an AP's (``eaps/{mac}``) details, where the
        controller says what it is plugged into (``uplink`` / ``wiredUplink``)."""

        async def read(api: OmadaApiConnection) -> dict[str, Any]:
            site_client = OmadaSiteClient(site.key, api)
            found = await (site_client.get_switch(mac) if kind == "switch" else site_client.get_access_point(mac))
            return found.raw_data

        endpoint = "switches" if kind == "switch" else "eaps"
        return await self._call(f"GET sites/{site.name}/{endpoint}/{mac}", read)

    async def clients(self, site: Site) -> list[dict[str, Any]]:
        async def read(api: OmadaApiConnection) -> list[dict[str, Any]]:
            return [c.raw_data async for c in OmadaSiteClient(site.key, api).get_connected_clients()]

        return await self._call(f"GET sites/{site.name}/clients", read)

    async def vpn_status(self, site: Site) -> list[dict[str, Any]]:
        """Site-to-site IPsec tunnels as the gateway reports them (Insight > VPN Status)."""

        async def read(api: OmadaApiConnection) -> list[dict[str, Any]]:
            result = await api.request("get", api.format_url("insight/vpn/ipsec/status", site.key))
            rows = result.get("data") if isinstance(result, dict) else result
            if not isinstance(rows, list):
                raise TypeError(f"expected a list of tunnels, got {type(rows).__name__}")
            return rows

        return await self._call(f"GET sites/{site.name}/insight/vpn/ipsec/status", read)

    async def log(self, site: Site, kind: str, params: dict[str, str]) -> Grid:
        """The newest entry of the site's ``alerts`` or ``events`` log and how many there are."""

        async def read(api: OmadaApiConnection) -> Grid:
            query = {"currentPage": 1, "currentPageSize": LOG_PAGE_SIZE, **params}
            result = await api.request("get", api.format_url(f"logs/{kind}", site.key), query)
            total = result.get("totalRows")
            return Grid(total if isinstance(total, int) else None, list(result["data"]))

        return await self._call(f"GET sites/{site.name}/logs/{kind}", read)
