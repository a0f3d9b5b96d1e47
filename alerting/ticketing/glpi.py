"""GLPI connector over the legacy REST API (``apirest.php``, GLPI 9.5 / 10.x).

See /work/shared/contracts/glpi.md. Behaviour:

- Session: ``GET initSession`` with ``App-Token`` and ``Authorization: user_token <token>``, opened
  lazily and reused; on ``401 ERROR_SESSION_TOKEN_INVALID`` (PHP session expired) the session is
  re-initialised **once** and the call replayed. :meth:`GlpiConnector.close` calls ``killSession``.
- Errors: GLPI's ``[code, message]`` bodies become :class:`GlpiError` naming the HTTP status, the
  code, the message and the URL, and saying whether a later attempt may succeed (``retryable``):
  429, 5xx, connection errors and timeouts are; 400/401/403/404... are not (a wrong token, a
  missing right, a refused input do not heal by themselves), except a session found invalid again
  right after its re-initialisation. Retryable errors are retried here a few times with
  exponential backoff (``Retry-After`` honoured, in seconds or as an HTTP date); a ``Retry-After``
  longer than ``max_backoff_s`` is not slept on here but handed up as ``retry_after_s``, for the
  dispatcher's outbox to wait that long. A 4xx is raised at once.
- Idempotency: the ticket's name and content carry ``[<alert.idempotency_key>]``;
  :meth:`find_open` searches open tickets (status ``notold``) whose name *or* content contains
  the key (always with ``range``). A ticket POST is never blindly retried: after a failure that
  may have reached GLPI (5xx, timeout) it searches first and reuses what it finds.
- Priority: severity -> urgency / impact / priority per :mod:`alerting.ticketing.priority`.
- Text: title, body and solution in the client's language and timezone (``timezone``,
  ``language`` options; default Europe/Paris, French), see :mod:`agent.api.ticket_text`.
- :meth:`GlpiConnector.close` is bounded (``close_timeout_s``): a GLPI that no longer answers does
  not hold the agent's shutdown; its session then expires on its own.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from agent.api.alerts import Alert
from agent.api.ticket_text import DEFAULT_LOCALE, TicketLocale, solution_text, ticket_body, ticket_title
from agent.api.tickets import TicketError, TicketRef
from alerting.ticketing.priority import DEFAULT_GLPI_MAPPING

log = logging.getLogger(__name__)

TICKET_STATUS_SOLVED = 5
TICKET_STATUS_CLOSED = 6
FIELD_NAME, FIELD_ID, FIELD_STATUS, FIELD_CONTENT = 1, 2, 12, 21
SESSION_INVALID = "ERROR_SESSION_TOKEN_INVALID"


class GlpiError(TicketError):
    def __init__(
        self,
        status: int | None,
        code: str,
        message: str,
        url: str,
        method: str = "",
        *,
        retry_after_s: float | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.url = url
        self.method = method
        # A session invalid again right after initSession is GLPI's trouble (PHP session storage,
        # a balancer without affinity), not our credentials: a later attempt re-initialises it.
        self.retryable = status is None or status == 429 or status >= 500 or code == SESSION_INVALID
        self.retry_after_s = retry_after_s  # the server asked us to wait that long
        http = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"GLPI {method} {url}: {http} {code}: {message}")


def parse_error(status: int, text: str, url: str, method: str = "") -> GlpiError:
    """GLPI errors are ``[code, message]``; anything else (proxy HTML page...) is kept short."""
    code, message = f"HTTP_{status}", text.strip()[:200]
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, list) and len(body) >= 1 and isinstance(body[0], str):
        code = body[0]
        message = str(body[1]) if len(body) > 1 else ""
    return GlpiError(status, code, message, url, method)


class GlpiConnector:
    name = "glpi"

    def __init__(
        self,
        url: str,
        app_token: str | None,
        user_token: str,
        *,
        entities_id: int = 0,
        itilcategories_id: int = 0,
        requesttypes_id: int = 1,
        mapping: Mapping[str, Mapping[str, int]] | None = None,
        retries: int = 3,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        timeout_s: float = 15.0,
        close_timeout_s: float = 2.0,
        timezone: str = DEFAULT_LOCALE.timezone,
        language: str = DEFAULT_LOCALE.language,
        http: aiohttp.ClientSession | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url.rstrip("/")
        self.app_token = app_token
        self.user_token = user_token
        self.entities_id = entities_id
        self.itilcategories_id = itilcategories_id
        self.requesttypes_id = requesttypes_id
        self.mapping = {**DEFAULT_GLPI_MAPPING, **(mapping or {})}
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.close_timeout_s = close_timeout_s
        self.locale = TicketLocale(timezone, language)
        self._http = http
        self._own_http = http is None
        self._sleep = sleep
        self._clock = clock
        self._session_token: str | None = None
        self._session_lock = asyncio.Lock()

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> GlpiConnector:
        known = {
            "entities_id",
            "itilcategories_id",
            "requesttypes_id",
            "mapping",
            "retries",
            "backoff_s",
            "max_backoff_s",
            "timeout_s",
            "close_timeout_s",
            "timezone",
            "language",
        }
        unknown = set(options) - known - {"url", "app_token", "user_token"}
        if unknown:
            raise ValueError(f"glpi: unknown options {sorted(unknown)}")
        if not options.get("url") or not options.get("user_token"):
            raise ValueError("glpi: url and user_token are required")
        return cls(
            str(options["url"]),
            options.get("app_token"),
            str(options["user_token"]),
            **{k: v for k, v in options.items() if k in known},
        )

    # -- transport ----------------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=self.timeout)
            self._own_http = True
        return self._http

    def _headers(self, auth: bool) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.app_token:
            headers["App-Token"] = self.app_token
        if auth and self._session_token:
            headers["Session-Token"] = self._session_token
        return headers

    def _delay(self, attempt: int) -> float:
        return min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)

    def _retry_after_s(self, header: str | None) -> float | None:
        """``Retry-After`` as seconds: a number of seconds or an HTTP date (RFC 9110 10.2.3)."""
        if not header:
            return None
        try:
            return max(0.0, float(header))
        except ValueError:
            pass
        try:
            return max(0.0, parsedate_to_datetime(header).timestamp() - self._clock())
        except (TypeError, ValueError):
            return None

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str]] | None = None,
        body: Any = None,
        auth: bool = True,
        retry: bool = True,
        extra_headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Any, Mapping[str, str]]:
        url = f"{self.url}/{path.lstrip('/')}"
        attempt = 0
        reinit = False
        while True:
            if auth:
                await self._ensure_session()
            headers = {**self._headers(auth), **(extra_headers or {})}
            try:
                async with self._client().request(
                    method, url, params=params, headers=headers, data=None if body is None else json.dumps(body)
                ) as resp:
                    status, text, resp_headers = resp.status, await resp.text(), resp.headers
            except (TimeoutError, aiohttp.ClientError) as exc:
                err = GlpiError(None, type(exc).__name__, str(exc) or type(exc).__name__, url, method)
                if retry and attempt < self.retries:
                    attempt += 1
                    log.warning("%s; retry %d/%d", err, attempt, self.retries)
                    await self._sleep(self._delay(attempt))
                    continue
                raise err from exc
            if 200 <= status < 300:
                try:
                    return status, (json.loads(text) if text.strip() else None), resp_headers
                except ValueError:
                    raise GlpiError(status, "BAD_JSON", text[:200], url, method) from None
            err = parse_error(status, text, url, method)
            err.retry_after_s = self._retry_after_s(resp_headers.get("Retry-After"))
            if err.code == SESSION_INVALID and auth:
                self._session_token = None
                if not reinit:
                    log.info("GLPI session expired, re-initialising")
                    reinit = True
                    continue
                raise err  # invalid again at once: a later attempt starts with a new session
            delay = self._delay(attempt + 1) if err.retry_after_s is None else err.retry_after_s
            if err.retryable and retry and attempt < self.retries and delay <= self.max_backoff_s:
                attempt += 1
                log.warning("%s; retry %d/%d in %.1f s", err, attempt, self.retries, delay)
                await self._sleep(delay)
                continue
            raise err

    async def _ensure_session(self) -> None:
        if self._session_token:
            return
        async with self._session_lock:
            if self._session_token:
                return
            _, data, _ = await self._request(
                "GET",
                "initSession",
                auth=False,
                extra_headers={"Authorization": f"user_token {self.user_token}"},
            )
            token = data.get("session_token") if isinstance(data, dict) else None
            if not token:
                raise GlpiError(200, "BAD_SESSION", f"no session_token in {data!r}", f"{self.url}/initSession")
            self._session_token = str(token)

    async def close(self) -> None:
        try:
            if self._session_token:
                try:
                    async with asyncio.timeout(self.close_timeout_s):
                        await self._request("GET", "killSession", retry=False)
                except GlpiError as exc:
                    log.info("killSession failed: %s", exc)
                except TimeoutError:
                    log.info("killSession: no answer from %s within %.1f s", self.url, self.close_timeout_s)
                self._session_token = None
        finally:
            if self._own_http and self._http is not None:
                await self._http.close()
            self._http = None

    # -- connector API ------------------------------------------------------------------------

    def _ref(self, ticket_id: Any) -> TicketRef:
        front = self.url.rsplit("/apirest.php", 1)[0]
        return TicketRef(self.name, str(ticket_id), f"{front}/front/ticket.form.php?id={ticket_id}")

    def ticket_input(self, alert: Alert) -> dict[str, Any]:
        levels = self.mapping.get(alert.severity) or self.mapping["warning"]
        title = ticket_title(alert)
        content = "".join(f"<p>{html.escape(line)}</p>" for line in ticket_body(alert, self.locale).splitlines())
        return {
            "name": title[:250],
            "content": content,
            "type": 1,
            "urgency": levels["urgency"],
            "impact": levels["impact"],
            "priority": levels["priority"],
            "entities_id": self.entities_id,
            "itilcategories_id": self.itilcategories_id,
            "requesttypes_id": self.requesttypes_id,
        }

    async def open(self, alert: Alert) -> TicketRef:
        payload = {"input": self.ticket_input(alert)}
        attempt = 0
        while True:
            try:
                _, data, _ = await self._request("POST", "Ticket", body=payload, retry=False)
            except GlpiError as exc:
                if not exc.retryable or attempt >= self.retries:
                    raise
                attempt += 1
                delay = self._delay(attempt) if exc.retry_after_s is None else exc.retry_after_s
                if delay > self.max_backoff_s:
                    raise
                log.warning("%s; ticket creation retry %d/%d in %.1f s", exc, attempt, self.retries, delay)
                await self._sleep(delay)
                # The failed POST may have reached GLPI: look before creating again.
                found = await self.find_open(alert.idempotency_key)
                if found is not None:
                    return found
                continue
            ticket_id = data.get("id") if isinstance(data, dict) else None
            if not ticket_id:
                raise GlpiError(201, "ERROR_GLPI_ADD", f"no ticket id in {data!r}", f"{self.url}/Ticket", "POST")
            return self._ref(ticket_id)

    async def add_followup(self, ref: TicketRef, text: str) -> None:
        body = {"input": {"itemtype": "Ticket", "items_id": int(ref.id), "content": text, "is_private": 0}}
        await self._request("POST", "ITILFollowup", body=body)

    async def solve(self, ref: TicketRef, alert: Alert) -> None:
        text = solution_text(alert, self.locale)
        body = {"input": {"itemtype": "Ticket", "items_id": int(ref.id), "content": text, "solutiontypes_id": 0}}
        try:
            await self._request("POST", "ITILSolution", body=body)
        except GlpiError as exc:
            if exc.code != "ERROR_GLPI_ADD":
                raise
            # Already solved (by a technician, or by our own earlier attempt whose answer was lost)?
            ticket = await self.get_ticket(ref.id)
            if int(ticket.get("status", 0)) not in (TICKET_STATUS_SOLVED, TICKET_STATUS_CLOSED):
                raise

    async def get_ticket(self, ticket_id: str | int) -> dict[str, Any]:
        _, data, _ = await self._request("GET", f"Ticket/{ticket_id}")
        return data if isinstance(data, dict) else {}

    async def find_open(self, idempotency_key: str) -> TicketRef | None:
        params = [
            ("criteria[0][field]", str(FIELD_STATUS)),
            ("criteria[0][searchtype]", "equals"),
            ("criteria[0][value]", "notold"),
            ("criteria[1][link]", "AND"),
            ("criteria[1][criteria][0][field]", str(FIELD_NAME)),
            ("criteria[1][criteria][0][searchtype]", "contains"),
            ("criteria[1][criteria][0][value]", idempotency_key),
            ("criteria[1][criteria][1][link]", "OR"),
            ("criteria[1][criteria][1][field]", str(FIELD_CONTENT)),
            ("criteria[1][criteria][1][searchtype]", "contains"),
            ("criteria[1][criteria][1][value]", idempotency_key),
            ("forcedisplay[0]", str(FIELD_ID)),
            ("forcedisplay[1]", str(FIELD_STATUS)),
            ("range", "0-49"),
        ]
        _, data, _ = await self._request("GET", "search/Ticket", params=params)
        rows = (data or {}).get("data") or [] if isinstance(data, dict) else []
        ids = []
        for row in rows:
            try:
                ids.append(int(row.get(str(FIELD_ID))))
            except (TypeError, ValueError):
                continue
        return self._ref(min(ids)) if ids else None
