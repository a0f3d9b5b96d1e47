"""The Meraki Dashboard API v1 through the official SDK's asyncio flavour
(``meraki.aio.AsyncDashboardAPI``), under one call budget per organization. No vigie import.

Why the aio flavour: the agent's scheduler is one asyncio loop; the synchronous SDK (``requests``)
would hold a worker thread per poll for the whole call, sleeps included. The SDK is configured so
it never holds a poll on its own: ``wait_on_rate_limit=False`` (a 429 comes back at once instead of
up to five sleeps of ``Retry-After``), ``maximum_retries=2`` (one retry after 1 s on a 5xx or a
2xx that is not JSON), SmartFlow off (its token bucket lives in one SDK session and persists a
cache in ``~/.meraki``; ours is shared by every poll of the organization), no log files.

The SDK builds its own ``httpx.AsyncClient`` with no transport argument; :class:`Dashboard` puts
its own in place (``BudgetTransport``) so that *every* HTTP request the SDK sends, pages of a
paginated call included, first takes a slot of the organization's budget, a 429's ``Retry-After``
holds every later request of that organization, a request without an answer is reported as such
(the SDK would turn it into a made-up 503 after a 1 s sleep), and TLS is verified against the CA
bundle given. That attribute is the SDK's (4.x) own: tests/meraki run the real SDK against the
lab's fake on every change.

Link pagination is the SDK's (``total_pages="all"``). Its one quirk: a ``Link`` URL whose host is
not a Meraki domain is taken as relative to ``base_url`` (meraki.common.validate_base_url).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import meraki.aio
from meraki.exceptions import APIError

DEFAULT_BASE_URL = "https://api.meraki.com/api/v1"
DEFAULT_RETRY_AFTER_S = 2.0  # a 429 without Retry-After (Meraki's docs: retry after a second or two)
RATE_LIMIT_ATTEMPTS = 4  # one call asked again at most this often after 429s, within the poll's wait


class DashboardError(Exception):
    """The Dashboard answered, but not something usable (the message names the call and status)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Unanswered(DashboardError):
    """No answer at all: refused, reset, timed out."""


class BudgetExhausted(DashboardError):
    """The organization's budget (or a 429's Retry-After) has no slot before this poll must end."""


def retry_after_s(value: str | None, now: float) -> float | None:
    """Retry-After in seconds, from delay-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(text).timestamp() - now)
    except (TypeError, ValueError):
        return None


class OrgBudget:
    """The calls one organization allows: a GCRA token bucket (``rate_per_s``, ``burst`` calls at
    once) shared by every poll of that organization, and the time before which nobody may ask
    again after a 429 (``hold``). One asyncio loop runs every poll, so the arithmetic needs no lock.
    """

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / rate_per_s
        self.burst = burst
        self.clock = clock
        self._tat = 0.0  # theoretical arrival time of the next call
        self.not_before = 0.0
        self.calls = 0
        self.rate_limited = 0

    def configure(self, rate_per_s: float, burst: int) -> None:
        self.interval, self.burst = 1.0 / rate_per_s, burst

    def reserve(self, deadline: float) -> float:
        """Take the next slot; returns how long to wait for it. BudgetExhausted, taking nothing,
        when that slot comes after ``deadline`` (a ``clock`` time)."""
        now = self.clock()
        tat = max(self._tat, now)
        start = max(now, tat - (self.burst - 1) * self.interval, self.not_before)
        if start > deadline:
            if self.not_before > deadline:
                wait = self.not_before - now
                raise BudgetExhausted(f"HTTP 429 rate limited, the Dashboard asked to wait {wait:.0f} s more")
            raise BudgetExhausted(f"the organization's call budget has no slot in the next {deadline - now:.0f} s")
        self._tat = max(tat, start) + self.interval
        self.calls += 1
        return start - now

    def hold(self, seconds: float) -> None:
        """A 429: nobody asks this organization again for ``seconds``."""
        self.rate_limited += 1
        self.not_before = max(self.not_before, self.clock() + seconds)


class Budgets:
    """The budget of each organization (by Dashboard base URL and organization id), shared by the
    polls of every device that names it. One instance per plugin (collectors.meraki.PLUGIN)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._budgets: dict[tuple[str, str], OrgBudget] = {}

    def of(self, base_url: str, organization_id: str, rate_per_s: float, burst: int) -> OrgBudget:
        key = (base_url.rstrip("/"), organization_id)
        budget = self._budgets.get(key)
        if budget is None:
            budget = self._budgets[key] = OrgBudget(rate_per_s, burst, self.clock)
        else:  # the strictest wins: two polls must not each spend the whole allowance
            budget.configure(min(rate_per_s, 1 / budget.interval), min(burst, budget.burst))
        return budget


@dataclass
class Exchange:
    """What one collection run asked of the Dashboard (for the meraki_organization sample)."""

    requests: int = 0
    rate_limited: int = 0
    waited_s: float = 0.0


class BudgetTransport(httpx.AsyncBaseTransport):
    def __init__(
        self, inner: httpx.AsyncBaseTransport, budget: OrgBudget, deadline: float, exchange: Exchange,
        wall_clock: Callable[[], float],
    ) -> None:
        self.inner = inner
        self.budget = budget
        self.deadline = deadline
        self.exchange = exchange
        self.wall_clock = wall_clock

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            wait = self.budget.reserve(self.deadline)
        except BudgetExhausted as exc:
            raise BudgetExhausted(f"GET {request.url.path}: not asked, {exc}", 429) from None
        if wait > 0:
            self.exchange.waited_s += wait
            await asyncio.sleep(wait)
        self.exchange.requests += 1
        try:
            response = await self.inner.handle_async_request(request)
        except (httpx.TimeoutException, httpx.NetworkError) as exc:
            refused = _tls_failure(exc)
            if refused is not None:  # it answered, with a certificate we do not trust
                raise DashboardError(f"GET {request.url.path}: TLS: {refused} (see the ca_bundle option)") from None
            reason = str(exc) or "timed out"
            raise Unanswered(f"GET {request.url.path}: no answer ({type(exc).__name__}: {reason})") from None
        except httpx.HTTPError as exc:
            raise Unanswered(f"GET {request.url.path}: {type(exc).__name__}: {exc}") from None
        if response.status_code == 429:
            wait_s = retry_after_s(response.headers.get("Retry-After"), self.wall_clock())
            self.budget.hold(DEFAULT_RETRY_AFTER_S if wait_s is None else wait_s)
            self.exchange.rate_limited += 1
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def _tls_failure(exc: BaseException) -> str | None:
    """The certificate verification error under a connection error, if that is what it was."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """The verifying context of every request (ValueError naming the file it cannot read)."""
    try:
        return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"ca_bundle: cannot read {ca_bundle}: {exc}") from None


def _describe(exc: APIError, path: str) -> DashboardError:
    """The SDK's APIError as a message naming the call, the status and Meraki's own words."""
    status = exc.status
    errors = exc.message.get("errors") if isinstance(exc.message, dict) else exc.message
    said = "; ".join(str(e) for e in errors) if isinstance(errors, list) else str(errors or exc.reason or "")
    call = f"GET {path} ({exc.operation})"
    if status == 401:
        hint = "the API key is missing, wrong or revoked: check the device's meraki credentials (api_key)"
    elif status == 403:
        hint = "this API key's administrator has no read access here (organization read-only at least)"
    elif status == 404:
        hint = "the organization does not exist, this API key cannot see it, or its API access is disabled"
    elif status == 429:
        hint = "rate limited: the organization's 10 calls/s are spent (by vigie or another application)"
    elif status is not None and 200 <= status < 300:
        hint = "the answer is not JSON"
    else:
        hint = "the Dashboard failed"
    return DashboardError(f"{call}: HTTP {status} — {hint}" + (f" (Meraki: {said})" if said else ""), status)


class Dashboard:
    """One collection run's session: ``async with Dashboard(...) as dashboard``."""

    def __init__(
        self,
        api_key: str,
        organization_id: str,
        budget: OrgBudget,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = 10.0,
        wait_s: float = 15.0,
        per_page: int = 1000,
        tls: ssl.SSLContext | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.organization_id = organization_id
        self.budget = budget
        self.per_page = per_page
        self.exchange = Exchange()
        self._api = meraki.aio.AsyncDashboardAPI(
            api_key=api_key,
            base_url=base_url.rstrip("/"),
            single_request_timeout=timeout_s,
            wait_on_rate_limit=False,
            maximum_retries=2,
            output_log=False,
            print_console=False,
            suppress_logging=True,
            smart_flow_enabled=False,
            caller="vigie/0.1 vigie",  # the SDK insists on "Application/version Vendor"
        )
        session = self._api._session
        sdk_client = session._client
        inner = httpx.AsyncHTTPTransport(verify=tls or tls_context(None))
        self.deadline = budget.clock() + wait_s
        transport = BudgetTransport(inner, budget, self.deadline, self.exchange, wall_clock)
        session._client = httpx.AsyncClient(transport=transport, timeout=timeout_s, headers=sdk_client.headers)
        self._sdk_client = sdk_client

    async def __aenter__(self) -> Dashboard:
        await self._sdk_client.aclose()  # never used: ours replaces it
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._api._session.close()

    async def _call(self, path: str, call: Callable[[], Any]) -> Any:
        """One SDK call; after a 429 it is asked again once the Retry-After has passed (the
        transport holds every request of the organization until then), while the poll may wait."""
        attempt = 1
        while True:
            try:
                return await call()
            except APIError as exc:
                if exc.status == 429 and attempt < RATE_LIMIT_ATTEMPTS and self.budget.not_before <= self.deadline:
                    attempt += 1
                    continue
                raise _describe(exc, path) from None
            except json.JSONDecodeError:
                raise DashboardError(f"GET {path}: a page is not JSON") from None
            except (KeyError, TypeError, AttributeError) as exc:  # the SDK's paging met a shape it did not expect
                shape = f"{type(exc).__name__}: {exc}"
                raise DashboardError(f"GET {path}: an answer of unexpected shape ({shape})") from None

    def _org(self, suffix: str) -> str:
        return f"/organizations/{self.organization_id}{suffix}"

    async def networks(self) -> list[dict[str, Any]]:
        org = self._api.organizations
        return await self._call(
            self._org("/networks"),
            lambda: org.getOrganizationNetworks(self.organization_id, total_pages="all", perPage=self.per_page),
        )

    async def device_statuses(self) -> list[dict[str, Any]]:
        org = self._api.organizations
        return await self._call(
            self._org("/devices/statuses"),
            lambda: org.getOrganizationDevicesStatuses(self.organization_id, total_pages="all", perPage=self.per_page),
        )

    async def wireless_clients(self) -> list[dict[str, Any]]:
        wireless = self._api.wireless
        answer = await self._call(
            self._org("/wireless/clients/overview/byDevice"),
            lambda: wireless.getOrganizationWirelessClientsOverviewByDevice(
                self.organization_id, total_pages="all", perPage=self.per_page
            ),
        )
        return answer.get("items", []) if isinstance(answer, dict) else answer

    async def appliance_uplinks(self) -> list[dict[str, Any]]:
        appliance = self._api.appliance
        return await self._call(
            self._org("/appliance/uplink/statuses"),
            lambda: appliance.getOrganizationApplianceUplinkStatuses(
                self.organization_id, total_pages="all", perPage=self.per_page
            ),
        )

    async def uplinks_loss_latency(self) -> list[dict[str, Any]]:
        org = self._api.organizations
        return await self._call(
            self._org("/devices/uplinksLossAndLatency"),
            lambda: org.getOrganizationDevicesUplinksLossAndLatency(self.organization_id, timespan=300),
        )

    async def lldp_cdp(self, serial: str) -> dict[str, Any]:
        devices = self._api.devices
        return await self._call(f"/devices/{serial}/lldpCdp", lambda: devices.getDeviceLldpCdp(serial))
