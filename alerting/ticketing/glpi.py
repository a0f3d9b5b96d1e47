"""GLPI connector over the legacy REST API (``apirest.php``, GLPI 9.5 / 10.x / 11.x).

See /work/shared/contracts/glpi.md. Behaviour, checked against GLPI 10's ``src/Api/API.php``,
``src/Api/APIRest.php`` and ``CommonITILObject::prepareInputForAdd``:

- Session: ``GET initSession`` with ``App-Token`` and ``Authorization: user_token <token>``, opened
  lazily and reused; on ``401 ERROR_SESSION_TOKEN_INVALID`` (PHP session expired) the session is
  re-initialised **once** and the call replayed. :meth:`GlpiConnector.close` calls ``killSession``.
  Many Apache / PHP-FPM set-ups drop the ``Authorization`` header before PHP sees it: GLPI then
  answers ``400 ERROR_LOGIN_PARAMETERS_MISSING`` although the header was sent. The connector then
  sends the token as the ``user_token`` query parameter (``APIRest::parseIncomingParams`` reads the
  query string first), says so once in the log, and keeps doing so.
- Errors: GLPI's ``[code, message]`` bodies become :class:`GlpiError` naming the HTTP status, the
  code, the message and the URL, and saying whether a later attempt may succeed (``retryable``):
  429, 5xx, connection errors and timeouts are; 400/401/403/404... are not. Retryable errors are
  retried here a few times with exponential backoff (``Retry-After`` honoured, in seconds or as an
  HTTP date); a ``Retry-After`` longer than ``max_backoff_s`` is handed up as ``retry_after_s``.
- Configuration errors: a refusal GLPI's rights or templates cause (``ERROR_GLPI_ADD`` "You don't
  have permission to perform this action." for an entity the profile cannot see or a missing
  right, "Mandatory fields are not filled" for a ticket template's mandatory field, a solution the
  profile may not add, ``ERROR_RIGHT_MISSING``, a refused token...) is a :class:`GlpiConfigError`:
  not retryable, its message says what to fix, and it is logged at ERROR once per connector (the
  outbox marks the row failed; ``vigie check-config --online`` names the same problems up front).
- Idempotency: the ticket's name and content carry ``[<alert.idempotency_key>]``;
  :meth:`find_open` searches open tickets (status ``notold``) whose name *or* content contains
  the key (always with ``range``). A ticket POST is never blindly retried: after a failure that
  may have reached GLPI (5xx, timeout) it searches first and reuses what it finds.
- Priority: severity -> urgency / impact / priority per :mod:`alerting.ticketing.priority`. GLPI
  keeps a sent priority only when the API profile has the Ticket "Change priority" right, else it
  computes it from its own urgency x impact matrix; it forces urgency / impact to 3 when that
  level is switched off (``urgency_mask`` / ``impact_mask``). The created ticket is read back and
  a difference is logged at ERROR (once per severity and outcome): a critical alert landing at
  priority 3 is a configuration problem to fix, not a detail for an audit.
- Ticket link: ``web_url`` (GLPI's web root, as in Setup > General "URL of the application") when
  configured, else the API URL with its API suffix (``/apirest.php``, or ``/api`` when rewritten)
  taken off the end of its path.
- Text: title, body and solution in the client's language and timezone (``timezone``,
  ``language`` options; default Europe/Paris, French), see :mod:`agent.api.ticket_text`.
- Taken in charge (:meth:`GlpiConnector.taken_in_charge`, ``agent.api.TakeoverReadable``): GLPI's
  own record, ``takeintoaccountdate`` of ``GET Ticket/<id>`` (GLPI 10.0+), set once by
  ``Ticket::pre_updateInDB`` / ``updateDateMod`` when a user who may take it
  (``canTakeIntoAccount``: assigned, or with the right to add tasks or follow-ups, and not its
  requester) acts on it: a technician assigned to it, or one who adds a follow-up or a task. Not the
  status: a ticket assigned at creation by a business rule is "processing (assigned)" while nobody
  has looked at it. vigie's API user is the requester of the tickets it opens (GLPI's default), so
  its own follow-ups and updates never count. GLPI 9.5 has no ``takeintoaccountdate``:
  ``date`` + ``takeintoaccount_delay_stat`` (seconds; business seconds when an SLA calendar
  applies). Dates are GLPI's local ``Y-m-d H:i:s``, read in ``glpi_timezone`` (default
  ``timezone``).
- :meth:`GlpiConnector.close` is bounded (``close_timeout_s``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import json
import logging
import ssl
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import aiohttp

from agent.api.alerts import Alert
from agent.api.ticket_text import DEFAULT_LOCALE, TicketLocale, solution_text, ticket_body, ticket_title
from agent.api.tickets import OnlineCheck, TicketError, TicketRef
from alerting.ticketing.priority import DEFAULT_GLPI_MAPPING, glpi_levels

log = logging.getLogger(__name__)

TICKET_STATUS_ASSIGNED = 2  # "processing (assigned)"
TICKET_STATUS_SOLVED = 5
TICKET_STATUS_CLOSED = 6
FIELD_NAME, FIELD_ID, FIELD_STATUS, FIELD_CONTENT = 1, 2, 12, 21
SESSION_INVALID = "ERROR_SESSION_TOKEN_INVALID"
LOGIN_PARAMETERS_MISSING = "ERROR_LOGIN_PARAMETERS_MISSING"

# Profile rights (GLPI's Ticket / ITILFollowup constants; CREATE, UPDATE are CommonDBTM's).
TICKET_READMY, TICKET_UPDATE, TICKET_CREATE, TICKET_READALL = 1, 2, 4, 1024
TICKET_CHANGEPRIORITY = 65536
FOLLOWUP_ADDMYTICKET, FOLLOWUP_ADDGROUPTICKET, FOLLOWUP_ADDALLTICKET = 4, 2048, 4096
# GLPI's defaults (install/empty_data.php): matrix[urgency][impact], levels 1..5 switched on
DEFAULT_PRIORITY_MATRIX = {
    1: {1: 1, 2: 1, 3: 2, 4: 2, 5: 2},
    2: {1: 1, 2: 2, 3: 2, 4: 3, 5: 3},
    3: {1: 2, 2: 2, 3: 3, 4: 4, 5: 4},
    4: {1: 2, 2: 3, 3: 4, 4: 4, 5: 5},
    5: {1: 2, 2: 3, 3: 4, 4: 5, 5: 5},
}
DEFAULT_LEVEL_MASK = 62

# Codes that name a credential or access problem: waiting does not fix them.
CONFIGURATION_CODES = {
    "ERROR_RIGHT_MISSING",
    "ERROR_GLPI_LOGIN",
    "ERROR_GLPI_LOGIN_USER_TOKEN",
    "ERROR_WRONG_APP_TOKEN_PARAMETER",
    "ERROR_APP_TOKEN_PARAMETERS_MISSING",
    "ERROR_NOT_ALLOWED_IP",
    "ERROR_LOGIN_WITH_CREDENTIALS_DISABLED",
    LOGIN_PARAMETERS_MISSING,
    "TLS_CERTIFICATE",
}
NO_PERMISSION = "You don't have permission"
MANDATORY = "Mandatory fields are not filled"
# the path suffixes an API URL may end with, longest first: what is left is GLPI's web root
API_SUFFIXES = ("/api.php/v2", "/api.php/v1", "/api.php", "/apirest.php", "/api")


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

    @property
    def refused_by_configuration(self) -> bool:
        """GLPI's rights, templates or API client settings refused it (see the module doc)."""
        if self.code in CONFIGURATION_CODES or (self.code.startswith("OAUTH_") and self.status in (400, 401)):
            return True
        refused = self.code.startswith("ERROR_GLPI_") or self.code == "ERROR"  # legacy / high-level API
        return refused and (NO_PERMISSION in self.message or MANDATORY in self.message)


class GlpiConfigError(GlpiError):
    """A refusal only a change in GLPI's configuration (or vigie's options) can fix."""

    def __init__(self, cause: GlpiError, fix: str) -> None:
        super().__init__(cause.status, cause.code, f"{cause.message} — {fix}", cause.url, cause.method)
        self.retryable = False
        self.fix = fix


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


def web_root(api_url: str) -> str:
    """GLPI's web root from an API URL: the API suffix taken off the end of the path only (a
    host or a directory that happens to contain ``api`` is kept)."""
    parts = urlsplit(api_url.rstrip("/"))
    path = parts.path
    for suffix in API_SUFFIXES:
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return urlunsplit((parts.scheme, parts.netloc, path, "", "")).rstrip("/")


def expected_levels(
    sent: Mapping[str, int],
    *,
    can_change_priority: bool,
    matrix: Mapping[int, Mapping[int, int]],
    urgency_mask: int,
    impact_mask: int,
) -> dict[str, int]:
    """What GLPI stores for a ticket created with ``sent`` urgency / impact / priority
    (``CommonITILObject::prepareInputForAdd``): a masked level becomes 3; without the Ticket
    "Change priority" right the priority is the matrix's."""
    urgency = sent["urgency"] if urgency_mask & (1 << sent["urgency"]) else 3
    impact = sent["impact"] if impact_mask & (1 << sent["impact"]) else 3
    priority = sent["priority"] if can_change_priority else int(matrix.get(urgency, {}).get(impact, 3))
    return {"urgency": urgency, "impact": impact, "priority": priority}


def landing_problem(severity: str, sent: Mapping[str, int], landed: Mapping[str, Any]) -> str | None:
    """A sentence naming what GLPI changed, or None when the ticket carries what was sent."""
    changed = []
    for field in ("urgency", "impact", "priority"):
        try:
            value = int(landed.get(field))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if value != sent[field]:
            changed.append(f"{field} {value} (sent {sent[field]})")
    if not changed:
        return None
    why = []
    if any(c.startswith(("urgency", "impact")) for c in changed):
        why.append("that urgency/impact level is switched off in Setup > General > Assistance (urgency_mask / "
                   "impact_mask: GLPI forces it to 3)")
    if any(c.startswith("priority") for c in changed):
        why.append("the API user's profile lacks the Ticket 'Change priority' right (GLPI then takes its own "
                   "urgency x impact matrix)")
    return f"{severity} alerts land in GLPI with {', '.join(changed)}: {'; '.join(why)}"


class GlpiBase(ABC):
    """What the legacy and the high-level (v2) connectors share: transport with retries, ticket
    fields, the lookup before a retried create, the read-back of the created ticket, the link,
    and configuration errors reported once. Subclasses say how to authenticate and call."""

    name = "glpi"
    # Attributes holding credentials. A server or proxy that echoes the request in its error page
    # (headers included) must not put them in our errors, which are logged and kept in the outbox.
    SECRET_ATTRS: tuple[str, ...] = ()

    def __init__(
        self,
        url: str,
        *,
        entities_id: int = 0,
        itilcategories_id: int = 0,
        requesttypes_id: int = 1,
        mapping: Mapping[str, Mapping[str, int]] | None = None,
        web_url: str | None = None,
        retries: int = 3,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        timeout_s: float = 15.0,
        close_timeout_s: float = 2.0,
        timezone: str = DEFAULT_LOCALE.timezone,
        language: str = DEFAULT_LOCALE.language,
        glpi_timezone: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        http: aiohttp.ClientSession | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``ssl_context``: how GLPI's certificate is checked (default: the system's CAs).
        ``glpi_timezone``: the zone of the dates GLPI answers (default ``timezone``)."""
        self.url = url.rstrip("/")
        self.ssl_context = ssl_context
        self.entities_id = entities_id
        self.itilcategories_id = itilcategories_id
        self.requesttypes_id = requesttypes_id
        self.mapping = {**DEFAULT_GLPI_MAPPING, **(mapping or {})}
        self.web_url = (web_url or web_root(self.url)).rstrip("/")
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.close_timeout_s = close_timeout_s
        self.locale = TicketLocale(timezone, language)
        self.glpi_zone = ZoneInfo(glpi_timezone or timezone)
        self._http = http
        self._own_http = http is None
        self._sleep = sleep
        self._clock = clock
        self._reported: set[str] = set()  # configuration problems and landings already logged

    # -- transport ----------------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            connector = aiohttp.TCPConnector(ssl=self.ssl_context) if self.ssl_context is not None else None
            self._http = aiohttp.ClientSession(timeout=self.timeout, connector=connector)
            self._own_http = True
        return self._http

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

    @abstractmethod
    async def _auth(self, headers: dict[str, str], params: list[tuple[str, str]]) -> None:
        """Add this API's credentials to a request (opening a session / getting a token first)."""
        raise NotImplementedError

    @abstractmethod
    def _auth_expired(self, err: GlpiError) -> bool:
        """The credentials were refused as expired: forget them, so that the replay gets new ones."""
        raise NotImplementedError

    def _parse_error(self, status: int, text: str, url: str, method: str) -> GlpiError:
        return parse_error(status, text, url, method)

    def _redacted(self, text: str) -> str:
        for name in self.SECRET_ATTRS:
            secret = getattr(self, name, None)
            if secret:
                text = text.replace(secret, "<redacted>")
        return text

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str]] | None = None,
        body: Any = None,
        form: Mapping[str, str] | None = None,
        auth: bool = True,
        retry: bool = True,
        extra_headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Any, Mapping[str, str]]:
        url = f"{self.url}/{path.lstrip('/')}"
        attempt = 0
        reauth = False
        while True:
            headers = {"Accept": "application/json", **(extra_headers or {})}
            query = list(params or [])
            if form is None:
                headers["Content-Type"] = "application/json"
            if auth:
                await self._auth(headers, query)
            data: Any = dict(form) if form is not None else None if body is None else json.dumps(body)
            try:
                async with self._client().request(method, url, params=query, headers=headers, data=data) as resp:
                    status, text, resp_headers = resp.status, await resp.text(), resp.headers
            except aiohttp.ClientConnectorCertificateError as exc:  # waiting does not change a certificate
                err = GlpiError(None, "TLS_CERTIFICATE", str(exc.certificate_error), url, method)
                err.retryable = False
                raise err from exc
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
                    raise GlpiError(status, "BAD_JSON", self._redacted(text[:200]), url, method) from None
            err = self._parse_error(status, self._redacted(text), url, method)
            err.retry_after_s = self._retry_after_s(resp_headers.get("Retry-After"))
            if auth and self._auth_expired(err):
                if not reauth:
                    log.info("GLPI credentials expired (%s), renewing them", err.code)
                    reauth = True
                    continue
                err.retryable = True  # refused again at once: a later attempt starts afresh
                raise err
            delay = self._delay(attempt + 1) if err.retry_after_s is None else err.retry_after_s
            if err.retryable and retry and attempt < self.retries and delay <= self.max_backoff_s:
                attempt += 1
                log.warning("%s; retry %d/%d in %.1f s", err, attempt, self.retries, delay)
                await self._sleep(delay)
                continue
            raise err

    async def _close_http(self) -> None:
        if self._own_http and self._http is not None:
            await self._http.close()
        self._http = None

    # -- what a ticket carries ----------------------------------------------------------------

    def _ref(self, ticket_id: Any) -> TicketRef:
        return TicketRef(self.name, str(ticket_id), f"{self.web_url}/front/ticket.form.php?id={ticket_id}")

    def levels(self, severity: str) -> dict[str, int]:
        levels = self.mapping.get(severity) or self.mapping["warning"]
        return {"urgency": levels["urgency"], "impact": levels["impact"], "priority": levels["priority"]}

    def alert_levels(self, alert: Alert) -> dict[str, int]:
        """The alert's contract priority (its client's matrix) in GLPI's values, else its severity's."""
        by_severity = self.levels(alert.severity)
        return by_severity if alert.priority is None else glpi_levels(alert.priority, by_severity)

    @staticmethod
    def _kind(alert: Alert) -> str:
        return alert.severity if alert.priority is None else f"{alert.priority.level} {alert.severity}"

    def ticket_texts(self, alert: Alert) -> tuple[str, str]:
        title = ticket_title(alert)
        content = "".join(f"<p>{html.escape(line)}</p>" for line in ticket_body(alert, self.locale).splitlines())
        return title[:250], content

    def glpi_time(self, value: Any, what: str, url: str) -> float | None:
        """A date GLPI answered (``Y-m-d H:i:s`` in its zone, or ISO 8601 with an offset) as epoch
        seconds; None for none (null, empty, MySQL's zero date). Anything else is GLPI's answer
        being wrong: an error naming the field and the value."""
        if value in (None, "", "0000-00-00 00:00:00"):
            return None
        try:
            parsed = dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise GlpiError(200, "BAD_DATE", f"{what} is not a date: {value!r}", url, "GET") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=self.glpi_zone)
        return parsed.timestamp()

    # -- configuration problems ---------------------------------------------------------------

    def _once(self, level: int, text: str) -> None:
        if text not in self._reported:
            self._reported.add(text)
            log.log(level, "GLPI %s: %s", self.url, text)

    def _configuration(self, err: GlpiError, action: str) -> GlpiError:
        """``err`` as a :class:`GlpiConfigError` naming what to fix when the configuration caused it."""
        if not err.refused_by_configuration:
            return err
        if err.code == "TLS_CERTIFICATE":
            fix = "GLPI's certificate is not trusted: give ca_bundle (the PEM of the CA that signed it)"
        elif MANDATORY in err.message:
            fix = (f"a ticket template of entity {self.entities_id} makes these fields mandatory: give them in "
                   "vigie's GLPI options (category_id for Category) or make them optional in the template")
        elif err.code.startswith("ERROR_GLPI_") or err.code == "ERROR_RIGHT_MISSING":
            fix = {
                "open": f"the API user's profile may not create tickets in entity {self.entities_id} (Ticket "
                        "'Create' right, and the entity among the profile's entities)",
                "followup": "the API user's profile may not add follow-ups (Follow-ups 'Add to all tickets')",
                "solve": "the API user's profile may not solve tickets (Ticket 'Update' right, or the API user "
                         "assigned to them)",
                "read": "the API user's profile may not read tickets (Ticket 'See all tickets')",
            }.get(action, "the API user's profile lacks a right vigie needs")
        else:
            fix = "GLPI refused vigie's credentials (the API user's token, the API client of Setup > General > API, "
            fix += "or the OAuth client and its user)"
        fix += "; vigie check-config --online lists what the API user may do"
        self._once(logging.ERROR, f"configuration problem: {err.code} {err.message} — {fix}")
        return GlpiConfigError(err, fix)

    def _check_landing(self, severity: str, sent: Mapping[str, int], landed: Mapping[str, Any]) -> None:
        problem = landing_problem(severity, sent, landed)
        if problem is not None:
            self._once(logging.ERROR, problem)

    # -- connector API ------------------------------------------------------------------------

    @abstractmethod
    async def _create(self, alert: Alert) -> Any:
        """POST the ticket once; return its id."""
        raise NotImplementedError

    @abstractmethod
    async def _read_levels(self, ticket_id: Any) -> Mapping[str, Any]:
        raise NotImplementedError

    @abstractmethod
    async def find_open(self, idempotency_key: str) -> TicketRef | None:
        raise NotImplementedError

    async def open(self, alert: Alert) -> TicketRef:
        attempt = 0
        while True:
            try:
                ticket_id = await self._create(alert)
            except GlpiError as exc:
                if not exc.retryable or attempt >= self.retries:
                    raise self._configuration(exc, "open") from None
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
            try:
                self._check_landing(self._kind(alert), self.alert_levels(alert), await self._read_levels(ticket_id))
            except GlpiError as exc:  # the ticket exists: its link is what matters now
                self._once(logging.WARNING, f"created tickets cannot be read back to check their priority: {exc}")
            return self._ref(ticket_id)


class GlpiConnector(GlpiBase):
    """GLPI's legacy REST API (``apirest.php``), the default (GLPI 11 keeps it, api_version 1)."""

    SECRET_ATTRS = ("app_token", "user_token", "_session_token")

    def __init__(self, url: str, app_token: str | None, user_token: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.app_token = app_token
        self.user_token = user_token
        self.token_in_query = False  # the Authorization header does not reach GLPI: see _open_session
        self._session_token: str | None = None
        self._session_lock = asyncio.Lock()

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> GlpiConnector:
        known = {
            "entities_id",
            "itilcategories_id",
            "requesttypes_id",
            "mapping",
            "web_url",
            "retries",
            "backoff_s",
            "max_backoff_s",
            "timeout_s",
            "close_timeout_s",
            "timezone",
            "language",
            "glpi_timezone",
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

    # -- session ------------------------------------------------------------------------------

    async def _auth(self, headers: dict[str, str], params: list[tuple[str, str]]) -> None:
        await self._ensure_session()
        if self.app_token:
            headers["App-Token"] = self.app_token
        if self._session_token:
            headers["Session-Token"] = self._session_token

    def _auth_expired(self, err: GlpiError) -> bool:
        if err.code != SESSION_INVALID:
            return False
        self._session_token = None
        return True

    async def _ensure_session(self) -> None:
        if self._session_token:
            return
        async with self._session_lock:
            if self._session_token:
                return
            try:
                data = await self._open_session()
            except GlpiError as exc:
                if exc.code != LOGIN_PARAMETERS_MISSING or self.token_in_query:
                    raise self._configuration(exc, "login") from None
                self.token_in_query = True
                log.warning(
                    "GLPI %s: initSession answered %s although the Authorization header was sent: the web server in "
                    "front of GLPI drops it (Apache without CGIPassAuth / SetEnvIf Authorization, PHP-FPM). The user "
                    "token now goes as the user_token query parameter, which access logs may record: fix the web "
                    "server to keep it out of them", self.url, exc.code)
                try:
                    data = await self._open_session()
                except GlpiError as again:
                    raise self._configuration(again, "login") from None
            token = data.get("session_token") if isinstance(data, dict) else None
            if not token:
                raise GlpiError(200, "BAD_SESSION", f"no session_token in {data!r}", f"{self.url}/initSession")
            self._session_token = str(token)

    async def _open_session(self) -> Any:
        headers = {"App-Token": self.app_token} if self.app_token else {}
        params = []
        if self.token_in_query:
            params.append(("user_token", self.user_token))
        else:
            headers["Authorization"] = f"user_token {self.user_token}"
        _, data, _ = await self._request("GET", "initSession", params=params, auth=False, extra_headers=headers)
        return data

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
            await self._close_http()

    # -- connector API ------------------------------------------------------------------------

    def ticket_input(self, alert: Alert) -> dict[str, Any]:
        title, content = self.ticket_texts(alert)
        return {
            "name": title,
            "content": content,
            "type": 1,
            **self.alert_levels(alert),
            "entities_id": self.entities_id,
            "itilcategories_id": self.itilcategories_id,
            "requesttypes_id": self.requesttypes_id,
        }

    async def _create(self, alert: Alert) -> Any:
        _, data, _ = await self._request("POST", "Ticket", body={"input": self.ticket_input(alert)}, retry=False)
        ticket_id = data.get("id") if isinstance(data, dict) else None
        if not ticket_id:
            raise GlpiError(201, "ERROR_GLPI_ADD", f"no ticket id in {data!r}", f"{self.url}/Ticket", "POST")
        return ticket_id

    async def _read_levels(self, ticket_id: Any) -> Mapping[str, Any]:
        return await self.get_ticket(ticket_id)

    async def add_followup(self, ref: TicketRef, text: str) -> None:
        body = {"input": {"itemtype": "Ticket", "items_id": int(ref.id), "content": text, "is_private": 0}}
        try:
            await self._request("POST", "ITILFollowup", body=body)
        except GlpiError as exc:
            raise self._configuration(exc, "followup") from None

    async def solve(self, ref: TicketRef, alert: Alert) -> None:
        text = solution_text(alert, self.locale)
        body = {"input": {"itemtype": "Ticket", "items_id": int(ref.id), "content": text, "solutiontypes_id": 0}}
        try:
            await self._request("POST", "ITILSolution", body=body)
        except GlpiError as exc:
            if exc.code != "ERROR_GLPI_ADD":
                raise self._configuration(exc, "solve") from None
            # Already solved (by a technician, or by our own earlier attempt whose answer was lost)?
            ticket = await self.get_ticket(ref.id)
            if int(ticket.get("status", 0)) not in (TICKET_STATUS_SOLVED, TICKET_STATUS_CLOSED):
                raise self._configuration(exc, "solve") from None

    async def reopen(self, ref: TicketRef, text: str) -> None:
        """Back to "processing (assigned)", then the follow-up saying why: a solved ticket whose
        alert fired again soon after (GLPI keeps its history; a status set twice is one change)."""
        body = {"input": {"id": int(ref.id), "status": TICKET_STATUS_ASSIGNED}}
        try:
            await self._request("PUT", f"Ticket/{int(ref.id)}", body=body)
        except GlpiError as exc:
            raise self._configuration(exc, "update") from None
        await self.add_followup(ref, text)

    async def get_ticket(self, ticket_id: str | int) -> dict[str, Any]:
        _, data, _ = await self._request("GET", f"Ticket/{ticket_id}")
        return data if isinstance(data, dict) else {}

    async def taken_in_charge(self, ref: TicketRef) -> float | None:
        """When GLPI recorded the ticket as taken into account (see the module doc), or None."""
        try:
            ticket = await self.get_ticket(ref.id)
        except GlpiError as exc:
            raise self._configuration(exc, "read") from None
        url = f"{self.url}/Ticket/{ref.id}"
        taken = self.glpi_time(ticket.get("takeintoaccountdate"), "takeintoaccountdate", url)  # GLPI 10.0+
        if taken is not None:
            return taken
        try:
            delay = int(ticket.get("takeintoaccount_delay_stat") or 0)
        except (TypeError, ValueError):
            raise GlpiError(200, "BAD_VALUE", f"takeintoaccount_delay_stat is not a number: "
                            f"{ticket.get('takeintoaccount_delay_stat')!r}", url, "GET") from None
        opened = self.glpi_time(ticket.get("date"), "date", url)
        return None if delay <= 0 or opened is None else opened + delay

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
        try:
            _, data, _ = await self._request("GET", "search/Ticket", params=params)
        except GlpiError as exc:
            raise self._configuration(exc, "read") from None
        rows = (data or {}).get("data") or [] if isinstance(data, dict) else []
        ids = []
        for row in rows:
            try:
                ids.append(int(row.get(str(FIELD_ID))))
            except (TypeError, ValueError):
                continue
        return self._ref(min(ids)) if ids else None

    # -- vigie check-config --online ----------------------------------------------------------

    async def check_online(self) -> list[OnlineCheck]:
        """Log in and say what the API user may do, as vigie needs it: create tickets in the
        entity (and no mandatory template field left empty), read them back, add follow-ups,
        solve them, keep the priority sent (or what GLPI's matrix and masks make of it), and
        whether the ticket link points at GLPI's own URL. Makes no change in GLPI."""
        checks: list[OnlineCheck] = []
        try:
            await self._ensure_session()
        except GlpiError as exc:
            return [OnlineCheck("log in", False, str(exc))]
        how = "user_token query parameter (the Authorization header is dropped on the way)" if self.token_in_query \
            else "Authorization header"
        checks.append(OnlineCheck("log in", True, f"session opened with the user token in the {how}"))
        _, session, _ = await self._request("GET", "getFullSession")
        session = (session or {}).get("session", {}) if isinstance(session, dict) else {}
        profile = session.get("glpiactiveprofile") or {}
        ticket = int(profile.get("ticket") or 0)
        followup = int(profile.get("followup") or 0)
        entities = _entity_ids(session.get("glpiactiveentities"))
        who = f"profile {profile.get('name', '?')!r} of {session.get('glpiname', '?')!r}"
        checks.append(OnlineCheck(
            f"create tickets in entity {self.entities_id}",
            bool(ticket & TICKET_CREATE) and self.entities_id in entities,
            f"{who}: Ticket 'Create' {'yes' if ticket & TICKET_CREATE else 'NO'}; "
            f"entity {self.entities_id} {'among' if self.entities_id in entities else 'NOT among'} its entities "
            f"{sorted(entities)}"))
        checks.append(OnlineCheck("read tickets back", bool(ticket & (TICKET_READALL | TICKET_READMY)),
                                  f"{who}: Ticket 'See all tickets' or 'See my tickets'"))
        checks.append(OnlineCheck(
            "add follow-ups", bool(followup & (FOLLOWUP_ADDALLTICKET | FOLLOWUP_ADDMYTICKET)),
            f"{who}: Follow-ups 'Add to all tickets' or 'Add to my tickets'"))
        checks.append(OnlineCheck("solve tickets", bool(ticket & TICKET_UPDATE),
                                  f"{who}: Ticket 'Update' (else only tickets the API user is assigned to)"))
        checks += await self._check_template()
        _, config, _ = await self._request("GET", "getGlpiConfig")
        config = (config or {}).get("cfg_glpi", {}) if isinstance(config, dict) else {}
        checks += self._check_priorities(bool(ticket & TICKET_CHANGEPRIORITY), config)
        url_base = str(config.get("url_base") or "").rstrip("/")
        if url_base:
            checks.append(OnlineCheck("ticket links", url_base == self.web_url,
                                      f"vigie links to {self.web_url}, GLPI's URL of the application is {url_base}"
                                      + ("" if url_base == self.web_url else ": set the web_url option")))
        return checks

    async def _check_template(self) -> list[OnlineCheck]:
        """The entity's ticket template (inherited up the entity tree): mandatory fields vigie leaves empty."""
        entity_id, template_id = self.entities_id, -2
        while template_id == -2 and entity_id >= 0:  # -2: inherited from the parent entity
            try:
                _, entity, _ = await self._request("GET", f"Entity/{entity_id}")
            except GlpiError as exc:
                return [OnlineCheck("ticket template", False, f"entity {entity_id} cannot be read: {exc}")]
            template_id = int((entity or {}).get("tickettemplates_id", 0))
            parent = int((entity or {}).get("entities_id", -1))
            entity_id = parent if entity_id != 0 else -1
        if template_id <= 0:
            return [OnlineCheck("ticket template", True, f"entity {self.entities_id}: GLPI's default template")]
        _, rows, _ = await self._request("GET", f"TicketTemplate/{template_id}/TicketTemplateMandatoryField",
                                         params=[("range", "0-99")])
        filled = {FIELD_NAME, FIELD_CONTENT, 10, 11, 3, 14, 12}  # title, description, urgency, impact, priority...
        if self.itilcategories_id:
            filled.add(7)
        if self.requesttypes_id:
            filled.add(9)
        names = {7: "Category (category_id)", 9: "Request source (requesttype_id)"}
        missing = [names.get(n, f"search option {n}") for n in sorted({int(r.get("num", 0)) for r in rows or []})
                   if n not in filled]
        return [OnlineCheck("ticket template", not missing,
                            f"template {template_id} of entity {self.entities_id}: mandatory fields vigie leaves "
                            f"empty: {', '.join(missing)}" if missing else f"template {template_id}: vigie fills "
                            "every mandatory field")]

    def _check_priorities(self, can_change_priority: bool, config: Mapping[str, Any]) -> list[OnlineCheck]:
        matrix = _matrix(config.get("priority_matrix")) or DEFAULT_PRIORITY_MATRIX
        urgency_mask = int(config.get("urgency_mask", DEFAULT_LEVEL_MASK))
        impact_mask = int(config.get("impact_mask", DEFAULT_LEVEL_MASK))
        checks = []
        for severity in self.mapping:
            sent = self.levels(severity)
            landed = expected_levels(sent, can_change_priority=can_change_priority, matrix=matrix,
                                     urgency_mask=urgency_mask, impact_mask=impact_mask)
            problem = landing_problem(severity, sent, landed)
            checks.append(OnlineCheck(f"priority of {severity} tickets", problem is None,
                                      problem or f"kept as sent: urgency {sent['urgency']}, impact {sent['impact']}, "
                                                 f"priority {sent['priority']}"))
        return checks


def _entity_ids(raw: Any) -> set[int]:
    """``glpiactiveentities``: PHP's id => id array, a JSON list or object."""
    values = raw.values() if isinstance(raw, dict) else raw if isinstance(raw, list) else []
    out = set()
    for value in values:
        try:
            out.add(int(value))
        except (TypeError, ValueError):
            continue
    return out


def _matrix(raw: Any) -> dict[int, dict[int, int]] | None:
    """GLPI's ``priority_matrix`` config value: JSON ``{urgency: {impact: priority}}``."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    if not isinstance(raw, dict):
        return None
    try:
        return {int(u): {int(i): int(p) for i, p in row.items()} for u, row in raw.items()}
    except (AttributeError, TypeError, ValueError):
        return None

