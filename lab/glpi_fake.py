"""A fake GLPI on loopback, for tests and the lab: the legacy REST API (``apirest.php``) and GLPI 11's
high-level API (``api.php/v2``, OAuth2), over one ticket store with GLPI's rights and configuration.

Legacy API, after /work/shared/contracts/glpi.md and GLPI 10's ``src/Api/API.php`` /
``APIRest.php``: initSession (``Authorization: user_token``, the ``user_token`` query parameter, or
Basic when allowed) / killSession, App-Token checks, session tokens that expire after
``session_lifetime_s`` of inactivity or on :meth:`FakeGlpi.expire_sessions`, ``[code, message]``
error bodies with GLPI's HTTP codes (``ERROR_JSON_PAYLOAD_INVALID``,
``ERROR_RESOURCE_NOT_FOUND_NOR_COMMONDBTM``, ...), ``input`` as an object or a list for every
itemtype (a list all refused: 400, some refused: 207), ``Ticket`` POST / GET (item or list,
default range 0-14) / PUT, ``search/Ticket`` (criteria with link AND/OR/AND NOT/OR NOT, nested
``criteria``, searchtypes contains/equals/notequals/lessthan/morethan, status pseudo-values,
``range`` (default 0-14) with ``Content-Range`` only when something matched, no ``data`` key on
zero hits), ``ITILFollowup`` and ``ITILSolution`` (also as ``Ticket/<id>/<sub-item>``, where the
input must still name ``itemtype`` / ``items_id`` as GLPI does not add them), getFullSession,
getGlpiConfig, getMyEntities, ``Entity/<id>``, ``TicketTemplate/<id>/TicketTemplateMandatoryField``.

What GLPI does to a ticket (``CommonITILObject::prepareInputForAdd``), modelled here: urgency /
impact whose level is off in ``urgency_mask`` / ``impact_mask`` (or outside 1..5) become 3; the
priority sent is kept only with the Ticket "Change priority" right, else it comes from
``priority_matrix[urgency][impact]``; priority outside 1..6, status outside 1..6, type outside 1..2
are refused. Rights (``ticket_rights`` / ``followup_rights`` bit masks, GLPI's constants) and the
profile's ``entities``: creating in an entity the profile cannot see or without "Create",
following up without "Add", solving without Ticket "Update" give ``ERROR_GLPI_ADD`` "You don't have
permission to perform this action."; a ticket template's mandatory field left empty gives
"Mandatory fields are not filled. Please correct: ...". ``strip_authorization`` plays a web server
that drops the ``Authorization`` header (Apache without CGIPassAuth, some PHP-FPM set-ups).

High-level API (GLPI 11, ``src/Api/HL``): ``POST /api.php/token`` (OAuth2 password and
client_credentials grants, form-encoded; tokens live ``token_lifetime_s``), then Bearer tokens on
``/api.php/v2/session``, ``/api.php/v2/Assistance/Ticket`` (GET with an RSQL ``filter``, ``start``, ``limit``; POST),
``/Assistance/Ticket/<id>`` (GET), ``/Assistance/Ticket/<id>/Timeline/Followup|Solution`` (POST);
errors as ``{"status", "title", "detail", "additional_messages"}``. A client_credentials token
acts as ``client_credentials_user`` (which GLPI user such a token acts as is not documented).

Taking a ticket in charge, as GLPI 10/11 record it (``Ticket::pre_updateInDB``,
``Ticket::updateDateMod``, ``CommonITILActor::post_addItem``): :meth:`FakeGlpi.take_into_account`
plays a technician assigned to the ticket (or acting on it): status "new" -> 2 "processing
(assigned)", ``takeintoaccountdate`` set to that moment and ``takeintoaccount_delay_stat`` to the
seconds since ``date`` (at least 1), both once (a second technician changes neither).
``technician_after_s`` plays a NOC where every new ticket is taken that many seconds after it was
opened. vigie's API user never takes a ticket in charge: GLPI makes the creating user the ticket's
requester (``CommonITILObject::prepareInputForAdd``), and ``canTakeIntoAccount`` refuses a requester
who is not assigned, so its follow-ups and updates leave both fields alone. Dates are GLPI's
``Y-m-d H:i:s`` in its ``timezone``.

Faults (503, 429, ...) can be injected, and so can a hang (:meth:`FakeGlpi.hang`). State is in
memory, optionally mirrored to a JSON file (``data_path``) so it survives a restart of the fake;
sessions and tokens are not persisted.

    python -m lab.glpi_fake --port 8089 --app-token app --user-token secret [--data glpi.json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import secrets
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

API = "/apirest.php"
HL_API = "/api.php"
SEARCH_FIELDS = {
    1: "name",
    2: "id",
    3: "priority",
    7: "itilcategories_id",
    10: "urgency",
    11: "impact",
    12: "status",
    14: "type",
    15: "date",
    16: "closedate",
    17: "solvedate",
    19: "date_mod",
    21: "content",
    80: "entities_id",
}
STATUS_PSEUDO = {
    "notold": lambda s: s not in (5, 6),
    "old": lambda s: s in (5, 6),
    "notclosed": lambda s: s != 6,
    "process": lambda s: s in (2, 3),
    "all": lambda s: True,
}
NO_DOC = {"ERROR_GLPI_ADD", "ERROR_GLPI_UPDATE", "ERROR_GLPI_DELETE", "ERROR_ITEM_NOT_FOUND", "ERROR_RIGHT_MISSING",
          "ERROR_JSON_PAYLOAD_INVALID", "ERROR_GLPI_PARTIAL_ADD", "ERROR_GLPI_PARTIAL_UPDATE"}
LIST_LIMIT = 15  # the user's "results per page" preference: default ranges are 0-14
# Ticket rights (READMY, UPDATE, CREATE, DELETE, PURGE, READALL, READGROUP, READASSIGN, ASSIGN, STEAL,
# OWN, CHANGEPRIORITY, SURVEY, READNEWTICKET) and follow-up rights (SEEPUBLIC, UPDATEMY, ADDMYTICKET,
# UPDATEALL, ADDGROUPTICKET, ADDALLTICKET, SEEPRIVATE): a Super-Admin has them all
TICKET_READMY, TICKET_UPDATE, TICKET_CREATE, TICKET_READALL, TICKET_CHANGEPRIORITY = 1, 2, 4, 1024, 65536
ALL_TICKET_RIGHTS = 1 | 2 | 4 | 8 | 16 | 1024 | 2048 | 4096 | 8192 | 16384 | 32768 | 65536 | 131072 | 262144
FOLLOWUP_ADDMYTICKET, FOLLOWUP_ADDALLTICKET = 4, 4096
ALL_FOLLOWUP_RIGHTS = 1 | 2 | 4 | 1024 | 2048 | 4096 | 8192
DEFAULT_MATRIX = {
    1: {1: 1, 2: 1, 3: 2, 4: 2, 5: 2},
    2: {1: 1, 2: 2, 3: 2, 4: 3, 5: 3},
    3: {1: 2, 2: 2, 3: 3, 4: 4, 5: 4},
    4: {1: 2, 2: 3, 3: 4, 4: 4, 5: 5},
    5: {1: 2, 2: 3, 3: 4, 4: 5, 5: 5},
}
NO_PERMISSION = "You don't have permission to perform this action."
# ticket template search options GLPI may make mandatory, and the ticket field each fills
TEMPLATE_FIELDS = {1: ("name", "Title"), 21: ("content", "Description"), 7: ("itilcategories_id", "Category"),
                   9: ("requesttypes_id", "Request source"), 5: ("_users_id_assign", "Technician")}
STATUS_NAMES = {1: "New", 2: "Processing (assigned)", 3: "Processing (planned)", 4: "Pending", 5: "Solved",
                6: "Closed"}


@dataclass
class Fault:
    status: int
    times: int
    method: str | None = None
    path: str | None = None  # substring of the path after /apirest.php/ (or /api.php/)
    retry_after: str | None = None
    after_processing: bool = False  # the request is carried out, then the error is returned
    hang: bool = False  # never answer (until the fake stops)


class Refused(Exception):
    """GLPI's core refused an item: ``message`` is what GLPI says (its last message after redirect)."""

    def __init__(self, message: str, *, right: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.right = right  # a missing right, not a refused value


class FakeGlpi:
    def __init__(
        self,
        *,
        app_token: str | None = "app-token",
        user_tokens: dict[str, int] | None = None,
        basic_users: dict[str, str] | None = None,
        session_lifetime_s: float = 1440.0,
        auto_close: bool = False,
        data_path: str | None = None,
        clock: Callable[[], float] = time.time,
        strip_authorization: bool = False,
        ticket_rights: int = ALL_TICKET_RIGHTS,
        followup_rights: int = ALL_FOLLOWUP_RIGHTS,
        entities: Iterable[int] | None = None,
        priority_matrix: dict[int, dict[int, int]] | None = None,
        urgency_mask: int = 62,
        impact_mask: int = 62,
        url_base: str | None = None,
        oauth_clients: dict[str, str] | None = None,
        oauth_users: dict[str, tuple[str, int]] | None = None,
        client_credentials_user: int = 2,
        token_lifetime_s: float = 3600.0,
        timezone: str = "Europe/Paris",
        technician_after_s: float | None = None,
    ) -> None:
        """``user_tokens``: token -> GLPI user id. ``entities``: the entities the API profile sees
        (None: every one). ``url_base``: GLPI's "URL of the application" (default: this fake's
        root). ``oauth_clients``: client id -> secret; ``oauth_users``: login -> (password, user id)."""
        self.app_token = app_token
        self.user_tokens = user_tokens if user_tokens is not None else {"user-token": 2}
        self.basic_users = basic_users or {}
        self.session_lifetime_s = session_lifetime_s
        self.auto_close = auto_close
        self.data_path = Path(data_path) if data_path else None
        self.clock = clock
        self.strip_authorization = strip_authorization
        self.ticket_rights = ticket_rights
        self.followup_rights = followup_rights
        self.entities = None if entities is None else set(entities)
        self.priority_matrix = priority_matrix or DEFAULT_MATRIX
        self.urgency_mask = urgency_mask
        self.impact_mask = impact_mask
        self.url_base = url_base
        self.oauth_clients = oauth_clients if oauth_clients is not None else {"vigie-client": "vigie-secret"}
        self.oauth_users = oauth_users if oauth_users is not None else {"vigie": ("vigie-password", 2)}
        self.client_credentials_user = client_credentials_user
        self.token_lifetime_s = token_lifetime_s
        self.zone = ZoneInfo(timezone)  # GLPI's: the zone of the dates it stores and answers
        self.technician_after_s = technician_after_s
        # entity id -> (parent, ticket template id; -2: the parent's); template id -> mandatory search options
        self.entity_tree: dict[int, tuple[int, int]] = {0: (-1, 1)}
        self.templates: dict[int, set[int]] = {1: {1, 21}}  # GLPI's default template: title, description
        self.sessions: dict[str, float] = {}  # token -> last use
        self.tokens: dict[str, tuple[float, int]] = {}  # OAuth2 access token -> (expiry, user id)
        self.tickets: dict[int, dict[str, Any]] = {}
        self.followups: list[dict[str, Any]] = []
        self.solutions: list[dict[str, Any]] = []
        self.next_id = {"Ticket": 1, "ITILFollowup": 1, "ITILSolution": 1}
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self.hanging: list[tuple[str, str]] = []  # (method, path) of the requests held unanswered
        self.hung = asyncio.Event()  # set once a request is held
        self._release_hung = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.hl_url = ""
        self._load()
        self.app = web.Application(middlewares=[self._middleware])
        self.app.router.add_route("*", API + "/{tail:.*}", self._dispatch)
        self.app.router.add_route("*", HL_API + "/{tail:.*}", self._dispatch)

    # -- test controls ------------------------------------------------------------------------

    def expire_sessions(self) -> None:
        self.sessions.clear()
        self.tokens.clear()

    def require(self, entity_id: int, *search_options: int) -> None:
        """Give ``entity_id`` a ticket template of its own making these fields mandatory
        (search option ids: 7 Category, 9 Request source, 5 Technician, ...)."""
        template_id = max(self.templates) + 1
        self.templates[template_id] = {1, 21, *search_options}
        parent = self.entity_tree.get(entity_id, (0 if entity_id else -1, -2))[0]
        self.entity_tree[entity_id] = (parent, template_id)

    def inject(
        self,
        status: int,
        times: int = 1,
        *,
        method: str | None = None,
        path: str | None = None,
        retry_after: str | None = None,
        after_processing: bool = False,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` (5xx as an HTML page, like a
        proxy; others as ``["ERROR", ...]``). ``after_processing``: do the work first (a create
        that succeeded but whose answer was lost)."""
        self.faults.append(Fault(status, times, method, path, retry_after, after_processing))

    def hang(self, times: int = 1_000_000, *, method: str | None = None, path: str | None = None) -> None:
        """Read the next ``times`` matching requests and never answer them (until :meth:`stop`)."""
        self.faults.append(Fault(0, times, method, path, hang=True))

    def take_into_account(self, ticket_id: int, technician: int = 4, at: float | None = None) -> dict[str, Any]:
        """A technician (user ``technician``, GLPI's "tech" is 4) is assigned to the ticket at
        ``at`` (default: now): GLPI records the take into account once, moves a new ticket to
        "processing (assigned)" and keeps the assignment."""
        ticket = self.tickets[ticket_id]
        at = self.clock() if at is None else at
        if not int(ticket["takeintoaccount_delay_stat"] or 0):  # isAlreadyTakenIntoAccount
            ticket["takeintoaccountdate"] = self._date_str(at)
            ticket["takeintoaccount_delay_stat"] = max(1, int(at - self._epoch(ticket["date"])))
        if ticket["status"] == 1:
            ticket["status"] = 2
        if technician not in ticket["_users_id_assign"]:
            ticket["_users_id_assign"].append(technician)
        ticket["date_mod"] = self._date_str(at)
        self._save()
        return ticket

    def _technician_round(self) -> None:
        """``technician_after_s``: every open ticket not yet taken is taken that long after it opened."""
        if self.technician_after_s is None:
            return
        for tid, ticket in self.tickets.items():
            due = self._epoch(ticket["date"]) + self.technician_after_s
            if ticket["status"] not in (5, 6) and not ticket["takeintoaccount_delay_stat"] and due <= self.clock():
                self.take_into_account(tid, at=due)

    def clear_faults(self) -> None:
        """GLPI is back: no more injected errors for new requests."""
        self.faults.clear()

    def count(self, method: str, path: str, status: int | None = None) -> int:
        return sum(1 for m, p, s in self.requests if m == method and p == path and (status is None or s == status))

    async def start(self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None) -> str:
        """Serve (over HTTPS with ``ssl_context``); return the legacy API's URL (the high-level
        API's is ``hl_url``)."""
        self._release_hung.clear()
        self._runner = web.AppRunner(self.app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]
        real_port = sockets[0].getsockname()[1]
        scheme = "https" if ssl_context is not None else "http"
        self.url = f"{scheme}://{host}:{real_port}{API}"
        self.hl_url = f"{scheme}://{host}:{real_port}{HL_API}"
        return self.url

    async def stop(self) -> None:
        self._release_hung.set()  # the server waits for its handlers: let the hung ones end
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- persistence --------------------------------------------------------------------------

    def _load(self) -> None:
        if not self.data_path or not self.data_path.exists():
            return
        data = json.loads(self.data_path.read_text())
        self.tickets = {int(k): v for k, v in data.get("tickets", {}).items()}
        for ticket in self.tickets.values():  # files written before the take-into-account fields
            for key, default in (("takeintoaccountdate", None), ("takeintoaccount_delay_stat", 0),
                                 ("_users_id_requester", [2]), ("_users_id_assign", [])):
                ticket.setdefault(key, default)
        self.followups = data.get("followups", [])
        self.solutions = data.get("solutions", [])
        self.next_id.update(data.get("next_id", {}))

    def _save(self) -> None:
        if not self.data_path:
            return
        tmp = self.data_path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "tickets": self.tickets,
                    "followups": self.followups,
                    "solutions": self.solutions,
                    "next_id": self.next_id,
                },
                ensure_ascii=False,
                indent=1,
            )
        )
        tmp.replace(self.data_path)

    # -- plumbing -----------------------------------------------------------------------------

    def _error(self, status: int, code: str, message: Any) -> web.Response:
        if code not in NO_DOC and self.url:
            message = f"{message}; view documentation in your browser at {self.url}/#{code}"
        return web.json_response([code, message], status=status)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        path = request.match_info.get("tail", "")
        resp = await handler(request)
        self.requests.append((request.method, path, resp.status))
        return resp

    def _now_str(self) -> str:
        return self._date_str(self.clock())

    def _date_str(self, at: float) -> str:
        return datetime.fromtimestamp(at, self.zone).strftime("%Y-%m-%d %H:%M:%S")

    def _epoch(self, date: str) -> float:
        return datetime.strptime(date, "%Y-%m-%d %H:%M:%S").replace(tzinfo=self.zone).timestamp()

    def _check_app_token(self, request: web.Request) -> web.Response | None:
        if self.app_token is None:
            return None
        given = request.headers.get("App-Token") or request.query.get("app_token")
        if not given:
            return self._error(400, "ERROR_APP_TOKEN_PARAMETERS_MISSING", "missing parameter app_token")
        if given != self.app_token:
            return self._error(400, "ERROR_WRONG_APP_TOKEN_PARAMETER", "parameter app_token seems wrong")
        return None

    def _check_session(self, request: web.Request) -> web.Response | None:
        token = request.headers.get("Session-Token") or request.query.get("session_token")
        if not token:
            return self._error(400, "ERROR_SESSION_TOKEN_MISSING", "parameter session_token is missing or empty")
        last = self.sessions.get(token)
        now = self.clock()
        if last is None or now - last > self.session_lifetime_s:
            self.sessions.pop(token, None)
            return self._error(401, "ERROR_SESSION_TOKEN_INVALID", "session_token seems invalid")
        self.sessions[token] = now
        return None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"].strip("/")
        self._technician_round()
        fault = self._take_fault(request, tail)
        if fault is not None and fault.hang:
            await request.read()
            self.hanging.append((request.method, tail))
            self.hung.set()
            await self._release_hung.wait()
            return web.Response(status=503, text="stopped")
        if fault is not None and not fault.after_processing:
            return self._fault_response(fault)
        if request.path.startswith(HL_API + "/"):
            response = await self._handle_hl(request, tail)
        else:
            response = await self._handle(request, tail)
        return self._fault_response(fault) if fault is not None else response

    def _take_fault(self, request: web.Request, tail: str) -> Fault | None:
        for fault in self.faults:
            if (
                fault.times > 0
                and (fault.method in (None, request.method))
                and (fault.path is None or fault.path in tail)
            ):
                fault.times -= 1
                return fault
        return None

    def _fault_response(self, fault: Fault) -> web.Response:
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
        if fault.status >= 500:  # as a reverse proxy / PHP-FPM would answer: not JSON
            return web.Response(
                status=fault.status,
                text="<html><body><h1>Service Unavailable</h1></body></html>",
                content_type="text/html",
                headers=headers,
            )
        return web.json_response(["ERROR", "injected fault"], status=fault.status, headers=headers)

    async def _handle(self, request: web.Request, tail: str) -> web.StreamResponse:
        if (bad := self._check_app_token(request)) is not None:
            return bad
        if request.method == "GET" and request.can_read_body and (await request.read()).strip():
            return self._error(
                400, "ERROR_JSON_PAYLOAD_FORBIDDEN", "GET Request should not have json payload (http body)"
            )
        if tail == "initSession":
            return self._init_session(request)
        if (bad := self._check_session(request)) is not None:
            return bad
        parts = tail.split("/")
        body: Any = None
        if request.method in ("POST", "PUT", "PATCH"):
            text = (await request.text()).strip()
            try:
                body = json.loads(text) if text else {}
            except ValueError:
                return self._error(400, "ERROR_JSON_PAYLOAD_INVALID", "JSON payload seems not valid")
            if not isinstance(body, dict):
                return self._error(400, "ERROR_JSON_PAYLOAD_INVALID", "JSON payload seems not valid")
            if not isinstance(body.get("input"), dict | list):
                return self._error(400, "ERROR_BAD_ARRAY", "input parameter must be an array of objects")
        if request.method == "GET" and len(parts) == 1 and parts[0] in SESSION_ENDPOINTS:
            return SESSION_ENDPOINTS[parts[0]](self, request)
        if parts[0] == "search" and len(parts) == 2 and request.method == "GET":
            if parts[1] != "Ticket":
                return self._error(400, "ERROR_RESOURCE_NOT_FOUND_NOR_COMMONDBTM",
                                   "resource not found or not an instance of CommonDBTM")
            return self._search(request)
        if parts[0] == "Entity" and len(parts) == 2 and parts[1].isdigit() and request.method == "GET":
            return self._get_entity(int(parts[1]))
        if parts[0] == "TicketTemplate" and len(parts) == 3 and parts[1].isdigit() and request.method == "GET":
            return self._template_fields(int(parts[1]), parts[2])
        if parts[0] == "Ticket":
            return self._ticket_resource(request, parts, body)
        if parts[0] in ("ITILFollowup", "ITILSolution") and len(parts) == 1 and request.method == "POST":
            return self._add_children(parts[0], body["input"])
        return self._error(400, "ERROR_RESOURCE_NOT_FOUND_NOR_COMMONDBTM",
                           "resource not found or not an instance of CommonDBTM")

    def _ticket_resource(self, request: web.Request, parts: list[str], body: Any) -> web.Response:
        if len(parts) == 1:
            if request.method == "POST":
                return self._create_tickets(body["input"])
            if request.method == "GET":
                return self._list_tickets(request)
            if request.method in ("PUT", "PATCH"):
                return self._update_tickets(body["input"])
        elif len(parts) == 2 and parts[1].isdigit():
            if request.method == "GET":
                return self._get_ticket(int(parts[1]))
            if request.method in ("PUT", "PATCH"):
                data = body["input"]
                if isinstance(data, dict) and "id" not in data:
                    data = {**data, "id": int(parts[1])}
                return self._update_tickets(data)
        elif len(parts) == 3 and parts[1].isdigit() and parts[2] in ("ITILFollowup", "ITILSolution"):
            if request.method == "GET":
                if int(parts[1]) not in self.tickets:
                    return self._error(404, "ERROR_ITEM_NOT_FOUND", "Item not found")
                items = self.followups if parts[2] == "ITILFollowup" else self.solutions
                return web.json_response([i for i in items if i["items_id"] == int(parts[1])])
            if request.method == "POST":
                # as GLPI's createItems: the parent in the path is not added to the input
                return self._add_children(parts[2], body["input"])
        return self._error(405, "ERROR_METHOD_NOT_ALLOWED", "Method Not Allowed")

    # -- sessions, profile, configuration ----------------------------------------------------

    def _init_session(self, request: web.Request) -> web.Response:
        auth = "" if self.strip_authorization else request.headers.get("Authorization", "")
        user_token = request.query.get("user_token")
        if "user_token" in auth:
            user_token = auth.split(" ", 1)[1].strip() if " " in auth else ""
        if user_token:
            if user_token not in self.user_tokens:
                return self._error(401, "ERROR_GLPI_LOGIN_USER_TOKEN", "parameter user_token seems invalid")
        elif auth.startswith("Basic "):
            if not self.basic_users:
                return self._error(
                    400, "ERROR_LOGIN_WITH_CREDENTIALS_DISABLED", "cannot use credentials without user_token"
                )
            try:
                login, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                login, password = "", ""
            if self.basic_users.get(login) != password:
                return self._error(401, "ERROR_GLPI_LOGIN", "Incorrect username or password")
        else:
            return self._error(
                400, "ERROR_LOGIN_PARAMETERS_MISSING", "parameter(s) login, password or user_token are missing"
            )
        token = secrets.token_hex(20)
        self.sessions[token] = self.clock()
        return web.json_response({"session_token": token})

    def _kill_session(self, request: web.Request) -> web.Response:
        token = request.headers.get("Session-Token") or request.query.get("session_token")
        self.sessions.pop(token or "", None)
        return web.json_response(True)

    def _visible_entities(self) -> list[int]:
        return sorted(self.entity_tree if self.entities is None else self.entities)

    def _full_session(self, request: web.Request) -> web.Response:
        return web.json_response({"session": {
            "glpiID": 2,
            "glpiname": "vigie-api",
            "glpiactive_entity": self._visible_entities()[0] if self._visible_entities() else 0,
            "glpiactiveentities": {str(e): e for e in self._visible_entities()},
            "glpiactiveprofile": {"id": 4, "name": "vigie-api", "interface": "central",
                                  "ticket": self.ticket_rights, "followup": self.followup_rights},
        }})

    def _my_entities(self, request: web.Request) -> web.Response:
        return web.json_response({"myentities": [{"id": e, "name": f"Entity {e}"} for e in self._visible_entities()]})

    def _glpi_config(self, request: web.Request) -> web.Response:
        root = self.url_base if self.url_base is not None else self.url[: -len(API)]
        return web.json_response({"cfg_glpi": {
            "url_base": root,
            "priority_matrix": json.dumps({str(u): {str(i): p for i, p in row.items()}
                                           for u, row in self.priority_matrix.items()}),
            "urgency_mask": str(self.urgency_mask),
            "impact_mask": str(self.impact_mask),
            "list_limit": LIST_LIMIT,
        }})

    def _get_entity(self, entity_id: int) -> web.Response:
        if self.entities is not None and entity_id not in self.entities:
            return self._error(401, "ERROR_RIGHT_MISSING", NO_PERMISSION)
        parent, template = self.entity_tree.get(entity_id, (0, -2))
        return web.json_response({"id": entity_id, "name": "Root entity" if entity_id == 0 else f"Entity {entity_id}",
                                  "entities_id": parent, "tickettemplates_id": template})

    def _template_fields(self, template_id: int, sub: str) -> web.Response:
        if sub != "TicketTemplateMandatoryField":
            return self._error(400, "ERROR_RESOURCE_NOT_FOUND_NOR_COMMONDBTM",
                               "resource not found or not an instance of CommonDBTM")
        if template_id not in self.templates:
            return self._error(404, "ERROR_ITEM_NOT_FOUND", "Item not found")
        return web.json_response([{"id": i, "tickettemplates_id": template_id, "num": num}
                                  for i, num in enumerate(sorted(self.templates[template_id]), 1)])

    def _mandatory(self, entity_id: int) -> set[int]:
        while entity_id >= 0:
            parent, template = self.entity_tree.get(entity_id, (0 if entity_id else -1, -2))
            if template != -2:
                return self.templates.get(template, set())
            entity_id = parent
        return set()

    # -- the ticket model (both APIs) ---------------------------------------------------------

    def _can_see(self, entity_id: int) -> bool:
        return self.entities is None or entity_id in self.entities

    def add_ticket(self, data: dict[str, Any]) -> dict[str, Any]:
        """Create a ticket as GLPI would (rights, template, ranges, masks, matrix); raise Refused."""
        entity_id = _int(data.get("entities_id", min(self._visible_entities() or [0])))
        if not self.ticket_rights & TICKET_CREATE or not self._can_see(entity_id):
            raise Refused(NO_PERMISSION, right=True)
        for field, low, high in (("type", 1, 2), ("status", 1, 6), ("priority", 1, 6)):
            if field in data and not low <= _int(data[field]) <= high:
                raise Refused(f"Invalid value for {field}: {data[field]!r}")
        missing = [label for num, (field, label) in sorted(TEMPLATE_FIELDS.items())
                   if num in self._mandatory(entity_id) and not data.get(field)]
        if missing:
            raise Refused(f"Mandatory fields are not filled. Please correct: {', '.join(missing)}")
        urgency = _int(data.get("urgency", 3))
        impact = _int(data.get("impact", 3))
        urgency = urgency if 1 <= urgency <= 5 and self.urgency_mask & (1 << urgency) else 3
        impact = impact if 1 <= impact <= 5 and self.impact_mask & (1 << impact) else 3
        if self.ticket_rights & TICKET_CHANGEPRIORITY and "priority" in data:
            priority = _int(data["priority"])
        else:
            priority = self.priority_matrix.get(urgency, {}).get(impact, 3)
        now = self._now_str()
        tid = self.next_id["Ticket"]
        self.next_id["Ticket"] += 1
        ticket = {
            "id": tid,
            "entities_id": entity_id,
            "name": str(data.get("name", "")),
            "date": now,
            "date_mod": now,
            "closedate": None,
            "solvedate": None,
            "status": _int(data.get("status", 1)),
            "content": str(data.get("content", "")),
            "urgency": urgency,
            "impact": impact,
            "priority": priority,
            "type": _int(data.get("type", 1)),
            "itilcategories_id": _int(data.get("itilcategories_id", 0)),
            "requesttypes_id": _int(data.get("requesttypes_id", 1)),
            "users_id_recipient": 2,
            "is_deleted": 0,
            "takeintoaccountdate": None,
            "takeintoaccount_delay_stat": 0,
            # the actors (Ticket_User): the API user as requester, as GLPI defaults it
            "_users_id_requester": [2],
            "_users_id_assign": [],
        }
        self.tickets[tid] = ticket
        return ticket

    def add_child(self, itemtype: str, data: dict[str, Any]) -> dict[str, Any]:
        """A follow-up or a solution on a ticket, as GLPI checks them; raise Refused."""
        if data.get("itemtype") != "Ticket" or "items_id" not in data:
            raise Refused("Mandatory fields are not filled. Please correct: itemtype, items_id")
        ticket = self.tickets.get(_int(data.get("items_id")))
        if ticket is None:
            raise Refused("Item not found")
        if itemtype == "ITILFollowup" and not self.followup_rights & (FOLLOWUP_ADDALLTICKET | FOLLOWUP_ADDMYTICKET):
            raise Refused(NO_PERMISSION, right=True)
        if itemtype == "ITILSolution":
            if int(ticket["status"]) in (5, 6):
                raise Refused("The item is already solved, did anyone pushed a solution before you?")
            if not self.ticket_rights & TICKET_UPDATE:  # canSolve: Update, or assigned (the API user never is)
                raise Refused(NO_PERMISSION, right=True)
        now = self._now_str()
        cid = self.next_id[itemtype]
        self.next_id[itemtype] += 1
        record = {"id": cid, "itemtype": "Ticket", "items_id": ticket["id"], "content": str(data.get("content", "")),
                  "date": now}
        if itemtype == "ITILFollowup":
            record["is_private"] = _int(data.get("is_private", 0))
            self.followups.append(record)
        else:
            record["solutiontypes_id"] = _int(data.get("solutiontypes_id", 0))
            record["status"] = 3 if self.auto_close else 2
            self.solutions.append(record)
            ticket["status"] = 6 if self.auto_close else 5
            ticket["solvedate"] = now
            if self.auto_close:
                ticket["closedate"] = now
        ticket["date_mod"] = now
        return record

    def update_ticket(self, data: dict[str, Any]) -> None:
        ticket = self.tickets.get(_int(data.get("id")))
        if ticket is None:
            raise Refused("Item not found")
        if not self.ticket_rights & TICKET_UPDATE:
            raise Refused(NO_PERMISSION, right=True)
        for field, low, high in (("type", 1, 2), ("status", 1, 6), ("priority", 1, 6), ("urgency", 1, 5),
                                 ("impact", 1, 5)):
            if field in data and not low <= _int(data[field]) <= high:
                raise Refused(f"Invalid value for {field}: {data[field]!r}")
        for key, value in data.items():
            if key in ticket and key != "id" and not key.startswith("_"):
                ticket[key] = value
        ticket["date_mod"] = self._now_str()
        if int(ticket["status"]) == 6 and not ticket["closedate"]:
            ticket["closedate"] = ticket["date_mod"]

    # -- legacy endpoints ---------------------------------------------------------------------

    def _bulk(self, code: str, data: Any, one: Callable[[dict[str, Any]], dict[str, Any]]) -> web.Response:
        """GLPI's createItems / updateItems: an object -> its result or 400 with GLPI's message; a
        list -> every result, 400 when all were refused, 207 when some were."""
        single = isinstance(data, dict)
        results = []
        for item in [data] if single else data:
            try:
                results.append(one(item) if isinstance(item, dict) else {"id": False, "message": "bad input"})
            except Refused as refused:
                results.append({"id": False, "message": refused.message})
        self._save()
        failed = [r for r in results if r.get("id") is False]
        if single:
            if failed:
                return self._error(400, code, failed[0]["message"])
            return web.json_response(results[0], status=201 if code == "ERROR_GLPI_ADD" else 200)
        if results and len(failed) == len(results):
            return self._error(400, code, results)
        if failed:
            return self._error(207, code.replace("ERROR_GLPI_", "ERROR_GLPI_PARTIAL_"), results)
        return web.json_response(results, status=201 if code == "ERROR_GLPI_ADD" else 200)

    def _create_tickets(self, data: Any) -> web.Response:
        response = self._bulk("ERROR_GLPI_ADD", data, lambda item: {"id": self.add_ticket(item)["id"], "message": ""})
        if isinstance(data, dict) and response.status == 201:
            response.headers["Location"] = f"{self.url}/Ticket/{json.loads(response.text or '{}')['id']}"
        return response

    def _add_children(self, itemtype: str, data: Any) -> web.Response:
        return self._bulk("ERROR_GLPI_ADD", data, lambda item: {"id": self.add_child(itemtype, item)["id"],
                                                                "message": ""})

    def _update_tickets(self, data: Any) -> web.Response:
        def one(item: dict[str, Any]) -> dict[str, Any]:
            self.update_ticket(item)
            return {str(item.get("id")): True, "message": ""}

        response = self._bulk("ERROR_GLPI_UPDATE", data, one)
        if isinstance(data, dict) and response.status == 200:  # GLPI answers a list even for one item
            return web.json_response([json.loads(response.text or "{}")])
        return response

    def _view(self, ticket: dict[str, Any]) -> dict[str, Any]:
        fields = {k: v for k, v in ticket.items() if not k.startswith("_")}  # the actors are Ticket_User rows
        return {**fields, "links": [{"rel": "Entity", "href": f"{self.url}/Entity/{ticket['entities_id']}"}]}

    def _can_read(self) -> bool:
        return bool(self.ticket_rights & (TICKET_READALL | TICKET_READMY))

    def _get_ticket(self, tid: int) -> web.Response:
        ticket = self.tickets.get(tid)
        if ticket is None:
            return self._error(404, "ERROR_ITEM_NOT_FOUND", "Item not found")
        if not self._can_read() or not self._can_see(ticket["entities_id"]):
            return self._error(401, "ERROR_RIGHT_MISSING", NO_PERMISSION)
        return web.json_response(self._view(ticket))

    @staticmethod
    def _range(request: web.Request) -> tuple[int, int] | None:
        m = re.fullmatch(r"(\d+)-(\d+)", request.query.get("range", f"0-{LIST_LIMIT - 1}"))
        if not m or int(m.group(1)) > int(m.group(2)):
            return None
        return int(m.group(1)), int(m.group(2))

    def _paged(
        self, request: web.Request, rows: list[Any]
    ) -> tuple[web.Response | None, list[Any], dict[str, str], int]:
        rng = self._range(request)
        if rng is None:
            return self._error(400, "ERROR", "range must be in format : [start-end] with integers"), [], {}, 0
        start, end = rng
        total = len(rows)
        if start > total:
            return self._error(400, "ERROR_RANGE_EXCEED_TOTAL",
                               f"Provided range exceed total count of data: {total}"), [], {}, 0
        page = rows[start : end + 1]
        last = min(end, total - 1)
        headers = {"Accept-Range": "Ticket 1000"}
        if total > 0:  # GLPI sends no Content-Range when nothing matched
            headers["Content-Range"] = f"{start}-{last}/{total}"
        status = 206 if len(page) < total else 200
        return None, page, headers, status

    def _list_tickets(self, request: web.Request) -> web.Response:
        if not self._can_read():
            return self._error(401, "ERROR_RIGHT_MISSING", NO_PERMISSION)
        rows = [self._view(t) for _, t in sorted(self.tickets.items())
                if not t["is_deleted"] and self._can_see(t["entities_id"])]
        err, page, headers, status = self._paged(request, rows)
        return err or web.json_response(page, status=status, headers=headers)

    # -- search -------------------------------------------------------------------------------

    def _search(self, request: web.Request) -> web.Response:
        if not self._can_read():
            return self._error(401, "ERROR_RIGHT_MISSING", NO_PERMISSION)
        params = _nest(request.query.items())
        try:
            criteria = _as_list(params.get("criteria", {}))
            rows = [t for _, t in sorted(self.tickets.items())
                    if not t["is_deleted"] and self._can_see(t["entities_id"]) and _match_all(criteria, t)]
        except ValueError as exc:
            return self._error(400, "ERROR", str(exc))
        columns = {1, 2, 80}
        columns |= {int(v) for v in _as_list(params.get("forcedisplay", {}))}
        columns |= set(_criteria_fields(criteria))
        err, page, headers, status = self._paged(request, rows)
        if err is not None:
            return err
        start, end = self._range(request) or (0, 0)
        body: dict[str, Any] = {
            "totalcount": len(rows),
            "count": len(page),
            "sort": [1],
            "order": ["ASC"],
        }
        if page:
            body["data"] = [
                {str(c): (_entity_name(t) if c == 80 else t.get(SEARCH_FIELDS.get(c, ""))) for c in sorted(columns)}
                for t in page
            ]
        body["content-range"] = f"{start}-{min(end, len(rows) - 1)}/{len(rows)}"
        return web.json_response(body, status=status, headers=headers)

    # -- high-level API (GLPI 11) -------------------------------------------------------------

    def _hl_error(self, status: int, code: str, title: str, *messages: str) -> web.Response:
        body: dict[str, Any] = {"status": code, "title": title, "detail": None}
        if messages:
            body["additional_messages"] = [{"priority": "error", "message": m} for m in messages]
        return web.json_response(body, status=status)

    async def _handle_hl(self, request: web.Request, tail: str) -> web.StreamResponse:
        if tail == "token" and request.method == "POST":
            return self._token(await request.post())
        if not tail.startswith("v2/"):
            return self._hl_error(404, "ERROR", "Not found")
        auth = "" if self.strip_authorization else request.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
        expiry, _user = self.tokens.get(token, (0.0, 0))
        if expiry <= self.clock():
            self.tokens.pop(token, None)
            return web.json_response({"error": "access_denied", "error_description": "The resource owner or "
                                      "authorization server denied the request.", "hint": "Access token is invalid"},
                                     status=401)
        parts = tail.split("/")[1:]
        if parts == ["session"] and request.method == "GET":  # CoreController::getSession
            entities = self._visible_entities()
            return web.json_response({"user_id": _user, "name": "vigie-api", "default_entity": min(entities or [0]),
                                      "active_entities": entities,
                                      "active_profile": {"id": 4, "name": "vigie-api", "interface": "central"}})
        if parts[:2] != ["Assistance", "Ticket"]:
            return self._hl_error(404, "ERROR", "Not found")
        body: Any = None
        if request.method in ("POST", "PATCH"):
            try:
                body = json.loads(await request.text() or "{}")
            except ValueError:
                return self._hl_error(400, "ERROR_INVALID_PARAMETER", "One or more parameters are invalid")
            if not isinstance(body, dict):
                return self._hl_error(400, "ERROR_INVALID_PARAMETER", "One or more parameters are invalid")
        rest = parts[2:]
        if not rest and request.method == "GET":
            return self._hl_search(request)
        if not rest and request.method == "POST":
            return self._hl_create(body)
        if len(rest) == 1 and rest[0].isdigit() and request.method == "GET":
            ticket = self.tickets.get(int(rest[0]))
            if ticket is None or not self._can_see(ticket["entities_id"]):
                return self._hl_error(404, "ERROR_ITEM_NOT_FOUND", "Not found")
            if not self._can_read():
                return self._hl_error(403, "ERROR_RIGHT_MISSING", NO_PERMISSION)
            return web.json_response(self._hl_view(ticket))
        if (len(rest) == 3 and rest[0].isdigit() and rest[1] == "Timeline" and rest[2] in ("Followup", "Solution")
                and request.method == "POST"):
            return self._hl_child(int(rest[0]), rest[2], body)
        return self._hl_error(405, "ERROR_METHOD_NOT_ALLOWED", "Method not allowed")

    def _token(self, form: Any) -> web.Response:
        def oauth_error(status: int, error: str, text: str) -> web.Response:
            return web.json_response({"error": error, "error_description": text, "message": text}, status=status)

        grant = form.get("grant_type", "")
        if grant not in ("password", "client_credentials"):
            return oauth_error(400, "unsupported_grant_type",
                               "The authorization grant type is not supported by the authorization server.")
        if self.oauth_clients.get(form.get("client_id", "")) != form.get("client_secret") or not form.get("client_id"):
            return oauth_error(401, "invalid_client", "Client authentication failed")
        if "api" not in str(form.get("scope", "")).split():
            return oauth_error(400, "invalid_scope", "The requested scope is invalid, unknown, or malformed")
        user = self.client_credentials_user
        if grant == "password":
            password, user = self.oauth_users.get(form.get("username", ""), ("", 0))
            if not password or password != form.get("password"):
                return oauth_error(400, "invalid_grant", "The user credentials were incorrect.")
        token = secrets.token_hex(24)
        self.tokens[token] = (self.clock() + self.token_lifetime_s, user)
        return web.json_response({"token_type": "Bearer", "expires_in": int(self.token_lifetime_s),
                                  "access_token": token})

    def _hl_view(self, ticket: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": ticket["id"],
            "name": ticket["name"],
            "content": ticket["content"],
            "is_deleted": bool(ticket["is_deleted"]),
            "type": ticket["type"],
            "status": {"id": ticket["status"], "name": STATUS_NAMES.get(ticket["status"], "")},
            "urgency": ticket["urgency"],
            "impact": ticket["impact"],
            "priority": ticket["priority"],
            "entity": {"id": ticket["entities_id"], "name": _entity_name(ticket)},
            "category": {"id": ticket["itilcategories_id"]},
            "request_type": {"id": ticket["requesttypes_id"]},
            "date": ticket["date"],
            "date_creation": ticket["date"],
            "date_mod": ticket["date_mod"],
            # ITILController's team: no take-into-account date in the HL schema
            "team": [{"role": role, "name": f"user {user}", "href": f"/front/user.form.php?id={user}"}
                     for role, key in (("requester", "_users_id_requester"), ("assigned", "_users_id_assign"))
                     for user in ticket[key]],
        }

    def _hl_search(self, request: web.Request) -> web.Response:
        if not self._can_read():
            return self._hl_error(403, "ERROR_RIGHT_MISSING", NO_PERMISSION)
        try:
            start = int(request.query.get("start", "0"))
            limit = int(request.query.get("limit", "100"))
            match = rsql(request.query.get("filter", ""), HL_TICKET_PROPERTIES)
        except ValueError as exc:
            return self._hl_error(400, "ERROR_INVALID_PARAMETER", "One or more parameters are invalid", str(exc))
        except KeyError as exc:
            return self._hl_error(400, "ERROR_INVALID_PARAMETER", "One or more parameters are invalid",
                                  f"Invalid RSQL property: {exc.args[0]}")
        rows = [self._hl_view(t) for _, t in sorted(self.tickets.items())
                if not t["is_deleted"] and self._can_see(t["entities_id"]) and match(self._hl_view(t))]
        page = rows[start : start + limit]
        headers = {"Content-Range": f"{start}-{start + len(page) - 1 if page else start}/{len(rows)}"}
        return web.json_response(page, status=206 if len(page) < len(rows) else 200, headers=headers)

    def _hl_create(self, body: dict[str, Any]) -> web.Response:
        fields = {"name": "name", "content": "content", "type": "type", "urgency": "urgency", "impact": "impact",
                  "priority": "priority", "status": "status", "entity": "entities_id",
                  "category": "itilcategories_id", "request_type": "requesttypes_id"}
        data = {}
        for key, value in body.items():
            if key not in fields:
                return self._hl_error(400, "ERROR_INVALID_PARAMETER", "One or more parameters are invalid",
                                      f"Invalid parameter: {key}")
            data[fields[key]] = value["id"] if isinstance(value, dict) else value
        try:
            ticket = self.add_ticket(data)
        except Refused as refused:
            if refused.right:
                return self._hl_error(403, "ERROR_RIGHT_MISSING", NO_PERMISSION)
            return self._hl_error(500, "ERROR", "Failed to create item(s)", refused.message)
        self._save()
        href = f"/Assistance/Ticket/{ticket['id']}"
        return web.json_response({"id": ticket["id"], "href": href}, status=201, headers={"Location": href})

    def _hl_child(self, ticket_id: int, kind: str, body: dict[str, Any]) -> web.Response:
        if ticket_id not in self.tickets:
            return self._hl_error(404, "ERROR_ITEM_NOT_FOUND", "Not found")
        itemtype = "ITILFollowup" if kind == "Followup" else "ITILSolution"
        data = {**body, "itemtype": "Ticket", "items_id": ticket_id}  # the HL API links the parent itself
        try:
            record = self.add_child(itemtype, data)
        except Refused as refused:
            if refused.right:
                return self._hl_error(403, "ERROR_RIGHT_MISSING", NO_PERMISSION)
            return self._hl_error(500, "ERROR", "Failed to create item(s)", refused.message)
        self._save()
        href = f"/Assistance/Ticket/{ticket_id}/Timeline/{kind}/{record['id']}"
        return web.json_response({"id": record["id"], "href": href}, status=201, headers={"Location": href})


SESSION_ENDPOINTS: dict[str, Callable[[FakeGlpi, web.Request], web.Response]] = {
    "killSession": FakeGlpi._kill_session,
    "getFullSession": FakeGlpi._full_session,
    "getMyEntities": FakeGlpi._my_entities,
    "getGlpiConfig": FakeGlpi._glpi_config,
}


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1  # refused by the range checks


# -- RSQL (the HL API's filter), after GLPI 11's src/Api/HL/RSQL ---------------------------------

RSQL_TOKEN = re.compile(
    r"\s*(?:(?P<open>\()|(?P<close>\))|(?P<and>;)|(?P<or>,)"
    r"|(?P<prop>[A-Za-z_][A-Za-z0-9_.]*)(?P<op>==|!=|=[a-z]+=)"
    r"(?P<value>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|\([^)]*\)|[^;,()]+))"
)


HL_TICKET_PROPERTIES = frozenset({
    "id", "name", "content", "is_deleted", "type", "status.id", "status.name", "urgency", "impact", "priority",
    "entity.id", "entity.name", "category.id", "request_type.id", "date", "date_creation", "date_mod",
})


def rsql(text: str, properties: frozenset[str] | None = None) -> Callable[[dict[str, Any]], bool]:
    """A predicate over a ticket view from an RSQL filter (``;`` AND, ``,`` OR, parentheses; the
    operators ==, !=, =in=, =out=, =lt=, =le=, =gt=, =ge=, =like=, =ilike=, =isnull=, =notnull=).
    A property outside ``properties`` (the schema's) raises KeyError, as GLPI refuses it."""
    tokens: list[tuple[str, Any]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = RSQL_TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"Invalid RSQL near {text[pos:pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup if m.group("prop") is None else "cmp"
        tokens.append((kind, (m.group("prop"), m.group("op"), m.group("value")) if kind == "cmp" else None))
    if not tokens:
        return lambda row: True
    at = 0

    def expr() -> Callable[[dict[str, Any]], bool]:
        nonlocal at
        terms = [conj()]
        while at < len(tokens) and tokens[at][0] == "or":
            at += 1
            terms.append(conj())
        return lambda row: any(t(row) for t in terms)

    def conj() -> Callable[[dict[str, Any]], bool]:
        nonlocal at
        terms = [primary()]
        while at < len(tokens) and tokens[at][0] == "and":
            at += 1
            terms.append(primary())
        return lambda row: all(t(row) for t in terms)

    def primary() -> Callable[[dict[str, Any]], bool]:
        nonlocal at
        if at >= len(tokens):
            raise ValueError("Invalid RSQL: unexpected end")
        kind, value = tokens[at]
        at += 1
        if kind == "open":
            inner = expr()
            if at >= len(tokens) or tokens[at][0] != "close":
                raise ValueError("Invalid RSQL: missing ')'")
            at += 1
            return inner
        if kind != "cmp":
            raise ValueError(f"Invalid RSQL: unexpected {kind}")
        if properties is not None and value[0] not in properties:
            raise KeyError(value[0])
        return _comparison(*value)

    predicate = expr()
    if at != len(tokens):
        raise ValueError("Invalid RSQL: trailing tokens")
    return predicate


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _comparison(prop: str, op: str, raw: str) -> Callable[[dict[str, Any]], bool]:
    def actual(row: dict[str, Any]) -> Any:
        node: Any = row
        for part in prop.split("."):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(prop)
            node = node[part]
        return node

    value = _unquote(raw)
    group = [_unquote(v) for v in value[1:-1].split(",")] if value.startswith("(") else []

    def like(pattern: str, text: str, flags: int) -> bool:
        regex = "".join(".*" if c == "*" else "." if c == "%" else re.escape(c) for c in pattern)
        return re.fullmatch(regex, text, flags | re.DOTALL) is not None

    def number(v: Any) -> float:
        return float(v)

    ops: dict[str, Callable[[Any], bool]] = {
        "==": lambda a: str(a) == value,
        "!=": lambda a: str(a) != value,
        "=in=": lambda a: str(a) in group,
        "=out=": lambda a: str(a) not in group,
        "=lt=": lambda a: number(a) < number(value),
        "=le=": lambda a: number(a) <= number(value),
        "=gt=": lambda a: number(a) > number(value),
        "=ge=": lambda a: number(a) >= number(value),
        "=like=": lambda a: like(value, str(a or ""), 0),
        "=ilike=": lambda a: like(value, str(a or ""), re.IGNORECASE),
        "=isnull=": lambda a: a is None,
        "=notnull=": lambda a: a is not None,
    }
    if op not in ops:
        raise ValueError(f"Invalid RSQL operator: {op}")
    test = ops[op]
    return lambda row: test(actual(row))


def _entity_name(ticket: dict[str, Any]) -> str:
    return "Root entity" if ticket["entities_id"] == 0 else f"Entity {ticket['entities_id']}"


def _nest(items: Any) -> dict[str, Any]:
    """``criteria[1][criteria][0][field]=1`` -> nested dicts."""
    root: dict[str, Any] = {}
    for key, value in items:
        m = re.fullmatch(r"([^\[\]]+)((?:\[[^\[\]]*\])*)", key)
        if not m:
            continue
        path = [m.group(1)] + re.findall(r"\[([^\[\]]*)\]", m.group(2))
        node = root
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[path[-1]] = value
    return root


def _as_list(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [node[k] for k in sorted(node, key=lambda k: int(k) if k.isdigit() else 0)]
    return list(node) if isinstance(node, list) else [node]


def _criteria_fields(criteria: list[Any]) -> list[int]:
    out: list[int] = []
    for c in criteria:
        if isinstance(c, dict):
            if "criteria" in c:
                out += _criteria_fields(_as_list(c["criteria"]))
            elif str(c.get("field", "")).isdigit():
                out.append(int(c["field"]))
    return out


def _match_all(criteria: list[Any], ticket: dict[str, Any]) -> bool:
    """SQL semantics: AND binds tighter than OR (GLPI builds a WHERE clause)."""
    groups: list[list[bool]] = []
    for i, c in enumerate(criteria):
        if not isinstance(c, dict):
            raise ValueError("bad criteria")
        link = str(c.get("link", "AND")).upper() if i else "AND"
        value = _match_all(_as_list(c["criteria"]), ticket) if "criteria" in c else _match_one(c, ticket)
        if link.endswith("NOT"):
            value = not value
        if link.startswith("OR") or not groups:
            groups.append([value])
        else:
            groups[-1].append(value)
    return any(all(g) for g in groups) if groups else True


def _match_one(c: dict[str, Any], ticket: dict[str, Any]) -> bool:
    try:
        field = int(c.get("field", ""))
    except ValueError:
        raise ValueError(f"bad search option {c.get('field')!r}") from None
    if field not in SEARCH_FIELDS:
        raise ValueError(f"unknown search option {field}")
    searchtype = c.get("searchtype", "contains")
    value = str(c.get("value", ""))
    actual = ticket.get(SEARCH_FIELDS[field])
    if field == 12 and value in STATUS_PSEUDO:
        return STATUS_PSEUDO[value](int(actual))
    text = "" if actual is None else str(actual)
    if field == 80 and searchtype == "contains":
        text = _entity_name(ticket)
    if searchtype == "contains":
        if value in ("", "NULL"):
            return not text if value == "NULL" else True
        pattern = re.escape(value.strip("^$")).replace(r"\*", ".*")
        pattern = ("^" if value.startswith("^") else "") + pattern + ("$" if value.endswith("$") else "")
        return re.search(pattern, text, re.IGNORECASE) is not None
    if searchtype == "equals":
        return text == value
    if searchtype == "notequals":
        return text != value
    if searchtype in ("lessthan", "morethan"):
        try:
            a, b = float(text), float(value)
        except ValueError:
            return False
        return a < b if searchtype == "lessthan" else a > b
    raise ValueError(f"unsupported searchtype {searchtype!r}")



async def _serve(args: argparse.Namespace) -> None:
    fake = FakeGlpi(
        app_token=args.app_token or None,
        user_tokens={args.user_token: 2},
        session_lifetime_s=args.session_lifetime,
        auto_close=args.auto_close,
        data_path=args.data,
        strip_authorization=args.strip_authorization,
        ticket_rights=ALL_TICKET_RIGHTS & ~(0 if args.change_priority else TICKET_CHANGEPRIORITY),
    )
    url = await fake.start(args.host, args.port)
    print(f"fake GLPI listening on {url} (high-level API: {fake.hl_url})", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lab.glpi_fake", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--app-token", default="app-token")
    parser.add_argument("--user-token", default="user-token")
    parser.add_argument("--session-lifetime", type=float, default=1440.0)
    parser.add_argument("--auto-close", action="store_true")
    parser.add_argument("--strip-authorization", action="store_true",
                        help="drop the Authorization header, as some Apache / PHP-FPM set-ups do")
    parser.add_argument("--change-priority", action=argparse.BooleanOptionalAction, default=True,
                        help="the API profile has the Ticket 'Change priority' right (default: yes)")
    parser.add_argument("--data", help="JSON file to keep tickets across restarts")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
