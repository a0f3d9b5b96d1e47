"""A client of the Veeam Backup & Replication REST API (v1), on httpx. No vigie import.

What Veeam documents and this client does (vbr_rest 1.1-1.3, "Authorization and Security",
"Versioning"):

- every request, the token request included, carries ``x-api-version`` (``1.2-rev1``...);
- OAuth2 password grant on ``POST /api/oauth2/token`` (form-encoded), then ``Authorization: Bearer``;
  the access token lives ``expires_in`` seconds (15 min by default), the refresh token is single-use:
  it is spent before the access token expires, and a refused refresh (an agent restarted on
  another host, a server restored) falls back to a new password login;
- collections are paged with ``skip``/``limit`` and answer ``{"data": [...], "pagination": {"total",
  "count", "skip", "limit"}}``: pages are read until ``skip >= total``;
- errors answer ``{"errorCode", "message", "resourceId"}``.

Veeam documents no rate limit; a 429 is still honoured (``Retry-After``, bounded), as a proxy or
a future build may send one. 502/503/504 are retried once (every call here is a GET but the login).
The :class:`Tokens` outlive one run: the collector keeps them, a run makes its own HTTP client.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

TOKEN_PATH = "/api/oauth2/token"
# Refresh this long before the access token's announced end: a request must not carry a token
# that expires on its way.
EXPIRY_MARGIN_S = 30.0
MAX_RATE_LIMITED = 3  # 429 answers waited out per request
RETRIED_STATUSES = frozenset({502, 503, 504})
RETRY_5XX_AFTER_S = 1.0
MAX_PAGES = 10_000  # a server whose pagination never ends is answering garbage


class VeeamError(Exception):
    """Base of what this client raises; the message names the request."""


class ApiUnreachable(VeeamError):
    """No answer: connection refused or reset, TLS or a timeout."""


class TlsRefused(VeeamError):
    """The server's certificate does not verify against the configured CA bundle."""


class BadAnswer(VeeamError):
    """An answer that is not what the API documents (not JSON, not the documented shape)."""


class ApiError(VeeamError):
    """An HTTP error status, with Veeam's ``errorCode`` and ``message`` when the body has them."""

    def __init__(self, method: str, path: str, status: int, error_code: str | None, message: str) -> None:
        self.method, self.path, self.status = method, path, status
        self.error_code, self.message = error_code, message
        code = f" {error_code}" if error_code else ""
        super().__init__(f"{method} {path}: HTTP {status}{code}: {message}")


class LoginRefused(ApiError):
    """The token request was refused (wrong password, unknown user, a role that may not log in);
    ``grant`` says which: ``password`` or ``refresh_token``."""

    def __init__(self, grant: str, status: int, error_code: str | None, message: str) -> None:
        self.grant = grant
        super().__init__("POST", TOKEN_PATH, status, error_code, message)


@dataclass(frozen=True)
class Tokens:
    access: str
    refresh: str | None
    expires_at: float  # epoch seconds, from the answer's expires_in and the client's clock


@dataclass(frozen=True)
class Login:
    username: str  # DOMAIN\user or user@domain, as Veeam's console shows it
    password: str


Sleep = Callable[[float], Awaitable[None]]


def retry_after_s(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds (a delay or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - now)


def _certificate_error(exc: BaseException) -> str | None:
    """The verification message when ``exc`` comes from a certificate the client refused."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or seen.reason or str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def _error_of(response: httpx.Response) -> tuple[str | None, str]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and ("errorCode" in body or "message" in body):
        return (str(body["errorCode"]) if body.get("errorCode") else None), str(body.get("message") or "")
    text = response.text.strip().replace("\n", " ")
    return None, (text[:200] or response.reason_phrase or "no message")


class VeeamApi:
    """One run's conversation with one backup server. ``tokens`` is read and replaced through
    ``keep``, so the caller keeps them for the next run."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        api_version: str,
        login: Login,
        tokens: Tokens | None,
        *,
        page_size: int,
        max_retry_wait_s: float,
        clock: Callable[[], float],
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.http = http
        self.api_version = api_version
        self.login = login
        self.tokens = tokens
        self.page_size = page_size
        self.max_retry_wait_s = max_retry_wait_s
        self.clock = clock
        self.sleep = sleep

    # -- tokens --------------------------------------------------------------------------------

    async def _token(self) -> str:
        tokens = self.tokens
        if tokens is not None and self.clock() < tokens.expires_at - EXPIRY_MARGIN_S:
            return tokens.access
        if tokens is not None and tokens.refresh:
            try:
                return await self._grant({"grant_type": "refresh_token", "refresh_token": tokens.refresh})
            except LoginRefused:
                pass  # spent or revoked: log in again with the password
        return await self._grant(
            {"grant_type": "password", "username": self.login.username, "password": self.login.password}
        )

    async def _grant(self, form: Mapping[str, str]) -> str:
        self.tokens = None
        response = await self._send("POST", TOKEN_PATH, data=dict(form))
        if response.status_code != 200:
            code, message = _error_of(response)
            who = f"user {self.login.username!r}" if form["grant_type"] == "password" else "refresh token"
            raise LoginRefused(form["grant_type"], response.status_code, code, f"{who} refused: {message}")
        body = self._json("POST", TOKEN_PATH, response)
        access, expires_in = (body.get("access_token"), body.get("expires_in")) if isinstance(body, dict) else (0, 0)
        if not isinstance(access, str) or not access or not isinstance(expires_in, int | float):
            raise BadAnswer(f"POST {TOKEN_PATH}: no access_token/expires_in in the answer")
        refresh = body.get("refresh_token")
        self.tokens = Tokens(access, refresh if isinstance(refresh, str) and refresh else None,
                             self.clock() + float(expires_in))
        return access

    # -- requests ------------------------------------------------------------------------------

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request, with the waits a busy server asks for; transport failures -> ApiUnreachable."""
        headers = {"x-api-version": self.api_version, "Accept": "application/json", **kwargs.pop("headers", {})}
        limited = 0
        retried_5xx = False
        while True:
            try:
                response = await self.http.request(method, path, headers=headers, **kwargs)
            except httpx.TimeoutException as exc:
                raise ApiUnreachable(f"{method} {path}: no answer in time ({type(exc).__name__})") from None
            except httpx.TransportError as exc:
                refused = _certificate_error(exc)
                if refused is not None:
                    raise TlsRefused(f"{method} {path}: certificate verify failed: {refused}") from None
                raise ApiUnreachable(f"{method} {path}: {exc or type(exc).__name__}") from None
            if response.status_code == 429 and limited < MAX_RATE_LIMITED:
                wait = retry_after_s(response.headers.get("Retry-After"), self.clock())
                if wait is not None and wait <= self.max_retry_wait_s:
                    limited += 1
                    await self.sleep(wait)
                    continue
            if response.status_code in RETRIED_STATUSES and not retried_5xx:
                retried_5xx = True
                await self.sleep(RETRY_5XX_AFTER_S)
                continue
            return response

    def _json(self, method: str, path: str, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            start = response.text[:60].replace("\n", " ")
            raise BadAnswer(f"{method} {path}: HTTP {response.status_code} answer is not JSON ({start!r})") from None

    async def get(self, path: str, params: Mapping[str, str | int] | None = None) -> Any:
        """The JSON of ``GET path``; an access token refused (ExpiredToken, InvalidToken: the
        server's clock or a restart decided) is renewed once."""
        response = await self._get(path, params, await self._token())
        if response.status_code == 401 and self.tokens is not None:
            self.tokens = Tokens("", self.tokens.refresh, 0.0)
            response = await self._get(path, params, await self._token())
        if response.status_code >= 400:
            code, message = _error_of(response)
            if response.status_code == 429:
                wait = response.headers.get("Retry-After")
                message = f"{message} (Retry-After {wait or 'not given'}; {MAX_RATE_LIMITED} waits at most, " \
                          f"each up to {self.max_retry_wait_s:g} s)"
            raise ApiError("GET", path, response.status_code, code, message)
        return self._json("GET", path, response)

    async def _get(self, path: str, params: Mapping[str, str | int] | None, token: str) -> httpx.Response:
        return await self._send("GET", path, params=dict(params or {}), headers={"Authorization": f"Bearer {token}"})

    async def get_all(self, path: str, params: Mapping[str, str | int] | None = None) -> list[dict[str, Any]]:
        """Every item of a paged collection (``skip``/``limit``), in the server's order."""
        items: list[dict[str, Any]] = []
        skip = 0
        for _ in range(MAX_PAGES):
            page = await self.get(path, {**(params or {}), "skip": skip, "limit": self.page_size})
            data = page.get("data") if isinstance(page, dict) else None
            pagination = page.get("pagination") if isinstance(page, dict) else None
            if not isinstance(data, list) or not isinstance(pagination, dict):
                raise BadAnswer(f"GET {path}: no data/pagination in the answer (skip={skip})")
            total = pagination.get("total")
            if not isinstance(total, int) or isinstance(total, bool):
                raise BadAnswer(f"GET {path}: pagination.total is {total!r} (skip={skip})")
            for n, item in enumerate(data):
                if not isinstance(item, dict):
                    raise BadAnswer(f"GET {path}: data[{skip + n}] is not an object")
                items.append(item)
            skip += len(data)
            if skip >= total:
                return items
            if not data:
                raise BadAnswer(f"GET {path}: an empty page at skip={skip}, total says {total}")
        raise BadAnswer(f"GET {path}: more than {MAX_PAGES} pages")
