"""Microsoft Graph app-only: a token from Entra ID through MSAL (client credentials), then GETs on
Graph v1.0 with ``@odata.nextLink`` paging and Retry-After honoured. Imports nothing of vigie.

MSAL is synchronous (requests): its calls run in a worker thread, each bounded by ``timeout_s``.
Building a :class:`TokenSource` does no I/O; MSAL's application (which fetches the authority's
OpenID configuration) is made on the first token asked.
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import msal
import msal.exceptions
import requests

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
# Graph's throttling guidance: 429, and 503/504 with or without Retry-After, are worth a retry.
RETRIED_STATUSES = frozenset({429, 503, 504})
# A collection of this collector's is a few pages; a server sending nextLinks forever is broken.
MAX_PAGES = 500


class GraphUnreachable(Exception):
    """Entra ID or Graph did not answer (refused, timed out, TLS failed)."""


class TokenRefused(Exception):
    """Entra ID answered the token request with an error (AADSTS...)."""

    def __init__(self, error: str, description: str) -> None:
        # Entra ID ends its descriptions with trace and correlation ids, new on every try: the
        # error's text stays the same from run to run without them
        description = description.split(" Trace ID:")[0]
        super().__init__(f"{error}: {description}" if description else error)


class GraphError(Exception):
    """Graph answered, but not with a usable collection."""

    def __init__(self, path: str, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Login:
    authority_url: str  # https://HOST/TENANT
    client_id: str
    client_secret: str
    instance_discovery_url: str | None  # None: no instance discovery (well-known hosts need none)
    verify: bool | str  # True, False or a CA bundle path, as requests takes it
    timeout_s: float


class TokenSource:
    """One MSAL confidential client and its in-memory token cache: a token is reused until MSAL
    judges it near expiry, then a new one is asked."""

    def __init__(self, login: Login) -> None:
        self.login = login
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = threading.Lock()

    def _application(self) -> msal.ConfidentialClientApplication:
        if self._app is None:
            login = self.login
            self._app = msal.ConfidentialClientApplication(
                login.client_id,
                client_credential=login.client_secret,
                authority=login.authority_url,
                instance_discovery=login.instance_discovery_url or False,
                http_client=_http_client(login),
                token_cache=msal.TokenCache(),
            )
        return self._app

    def _token(self) -> str:
        with self._lock:
            try:
                app = self._application()
                result = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
            except requests.exceptions.SSLError as exc:
                raise GraphUnreachable(f"{_host(self.login.authority_url)}: TLS: {_reason(exc)}") from None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                raise GraphUnreachable(f"{_host(self.login.authority_url)}: {_reason(exc)}") from None
            except (requests.exceptions.HTTPError, msal.exceptions.MsalServiceError) as exc:
                # a 5xx of the discovery or the token endpoint (MSAL holds it for its Retry-After)
                raise TokenRefused("token endpoint", str(exc.args[0]) if exc.args else str(exc)) from None
            except ValueError as exc:  # MSAL: unknown tenant, unreadable OpenID configuration
                raise _authority_refused(exc) from None
            if "access_token" not in result:
                raise TokenRefused(str(result.get("error", "no token")), str(result.get("error_description", "")))
            return str(result["access_token"])

    async def token(self) -> str:
        return await asyncio.to_thread(self._token)

    def _forget(self) -> None:
        with self._lock:
            if self._app is not None:
                self._app.remove_tokens_for_client()

    async def forget(self) -> None:
        """Drop the cached token: Graph said it is no longer valid (expired early, revoked)."""
        await asyncio.to_thread(self._forget)


def _authority_refused(exc: ValueError) -> TokenRefused:
    """MSAL's ValueError about the authority, with Entra ID's own error when MSAL's wraps one: its
    OpenID discovery raised ``OIDC Discovery failed on URL. HTTP status: 400, Error: {json}``."""
    cause = str(exc.__context__ or exc)
    body = cause[cause.find("{"):] if "{" in cause else ""
    try:
        said = json.loads(body)
        return TokenRefused(str(said.get("error", "authority")), str(said.get("error_description", "")))
    except (ValueError, AttributeError):
        return TokenRefused("authority", cause)


def _http_client(login: Login) -> requests.Session:
    """MSAL's HTTP client: requests, with the verification and timeout on every call. (Given to MSAL
    as ``verify=``, a CA bundle would lose to REQUESTS_CA_BUNDLE: requests lets the environment
    override a session's ``verify``, not a request's.)"""
    session = requests.Session()
    session.request = functools.partial(session.request, verify=login.verify, timeout=login.timeout_s)  # type: ignore[method-assign]
    return session


def _host(url: str) -> str:
    return urlsplit(url).netloc


def _reason(exc: BaseException) -> str:
    """What requests' error says happened, without its wrapping (MaxRetryError, pool names)."""
    reason: BaseException | None = getattr(exc.args[0], "reason", None) if exc.args else None
    while isinstance(reason, BaseException) and reason.args and isinstance(reason.args[0], BaseException):
        reason = reason.args[0]  # urllib3's SSLError wraps ssl's own
    if reason is None:
        return str(exc)
    text = str(reason.args[1] if isinstance(reason, OSError) and len(reason.args) > 1 else reason)
    return text.rsplit(": ", 1)[-1] if "Failed to establish a new connection" in text else text


@dataclass(frozen=True)
class Retry:
    max_retries: int  # extra tries after a 429/503/504
    max_wait_s: float  # the longest total wait for Retry-After within one run


class Graph:
    """GETs on Graph v1.0 with a bearer token from ``tokens``; ``sleep`` is passed in so tests can
    see the waits Retry-After asked for without waiting them."""

    def __init__(
        self,
        base_url: str,
        tokens: TokenSource,
        timeout_s: float,
        retry: Retry,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/v1.0"
        self.tokens = tokens
        self.timeout_s = timeout_s
        self.retry = retry
        self.sleep = sleep
        self.waited_s = 0.0  # Retry-After waits of the current run
        self._bearer: str | None = None  # one token per run (MSAL's cache keeps it between runs)

    async def sign_in(self) -> None:
        """The run's token (TokenRefused, GraphUnreachable before any Graph call is made)."""
        self._bearer = await self.tokens.token()

    async def collection(
        self, client: httpx.AsyncClient, path: str, params: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Every item of a collection, following ``@odata.nextLink`` verbatim until it is absent."""
        url: str | None = self.base_url + path
        items: list[dict[str, Any]] = []
        pages = 0
        while url is not None:
            body = await self._get(client, path, url, params if pages == 0 else None)
            value = body.get("value")
            if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
                raise GraphError(path, f"page {pages + 1} has no list of objects in 'value'", 200)
            items.extend(value)
            pages += 1
            link = body.get("@odata.nextLink")
            if link is not None and (not isinstance(link, str) or _host(link) != _host(self.base_url)):
                # the bearer token goes with the next page: never to another host
                shown = str(link)[:100]
                raise GraphError(path, f"@odata.nextLink {shown!r} is not a URL of {_host(self.base_url)}", 200)
            url = link
            if url is not None and pages >= MAX_PAGES:
                raise GraphError(path, f"still an @odata.nextLink after {MAX_PAGES} pages", 200)
        return items

    async def _get(
        self, client: httpx.AsyncClient, path: str, url: str, params: Mapping[str, str] | None
    ) -> dict[str, Any]:
        renewed = False
        retries = 0
        while True:
            if self._bearer is None:
                self._bearer = await self.tokens.token()
            try:
                headers = {"Authorization": f"Bearer {self._bearer}", "Accept": "application/json"}
                answer = await client.get(url, params=params, headers=headers)
            except httpx.TimeoutException:
                raise GraphUnreachable(f"{path}: no answer within {self.timeout_s:g} s") from None
            except httpx.TransportError as exc:
                raise GraphUnreachable(f"{path}: {str(exc) or type(exc).__name__}") from None
            if answer.status_code == 401 and not renewed:
                # a token MSAL still holds valid may be refused (revoked, expired early): one new token
                renewed = True
                self._bearer = None
                await self.tokens.forget()
                continue
            if answer.status_code in RETRIED_STATUSES and retries < self.retry.max_retries:
                wait = _retry_after(answer, default=2.0**retries)
                if self.waited_s + wait <= self.retry.max_wait_s:
                    retries += 1
                    self.waited_s += wait
                    await self.sleep(wait)
                    continue
            if answer.status_code != 200:
                raise _error(path, answer, retries)
            try:
                body = json.loads(answer.content)
            except ValueError as exc:
                raise GraphError(path, f"malformed JSON ({exc})", 200) from None
            if not isinstance(body, dict):
                raise GraphError(path, "the answer is not a JSON object", 200)
            return body


def _retry_after(answer: httpx.Response, default: float) -> float:
    raw = answer.headers.get("Retry-After", "")
    try:
        return max(0.0, float(raw))
    except ValueError:  # absent, or an HTTP date Graph does not send
        return default


def _error(path: str, answer: httpx.Response, retries: int) -> GraphError:
    code, message = None, ""
    try:
        error = json.loads(answer.content).get("error") or {}
        code, message = error.get("code"), str(error.get("message") or "")
    except (ValueError, AttributeError):  # not Graph's error body: the status line says it
        pass
    said = f"{code}: {message}" if code else answer.reason_phrase
    text = f"HTTP {answer.status_code} {said}".rstrip(": ")
    if answer.status_code in RETRIED_STATUSES:
        after = answer.headers.get("Retry-After")
        text += f" ({retries} retries" + (f", Retry-After {after} s)" if after else ")")
    return GraphError(path, text, answer.status_code, code)
