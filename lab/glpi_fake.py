"""A fake GLPI speaking the legacy REST API (``apirest.php``) on loopback, for tests and the lab.

Follows /work/shared/contracts/glpi.md: initSession (``Authorization: user_token`` or Basic when
allowed) / killSession, App-Token checks, session tokens that expire after ``session_lifetime_s``
of inactivity (PHP session GC) or on :meth:`FakeGlpi.expire_sessions`, ``[code, message]`` error
bodies with GLPI's HTTP codes, ``Ticket`` POST (single or bulk) / GET (item or ranged list) / PUT,
``search/Ticket`` (criteria with link AND/OR/AND NOT/OR NOT, nested ``criteria``, searchtypes
contains/equals/notequals/lessthan/morethan, status pseudo-values notold/old/notclosed/process/all,
``range`` with ``Content-Range`` and 206, no ``data`` key on zero hits), ``ITILFollowup`` and
``ITILSolution`` (ticket -> solved, or closed with ``auto_close``; 400 ``ERROR_GLPI_ADD`` when
already solved), both also as ``Ticket/<id>/<sub-item>``. Faults (503, 429, ...) can be injected,
and so can a hang (:meth:`FakeGlpi.hang`: the request is read and never answered, as from a
PHP-FPM pool stuck behind its web server), released when the fake stops.

State is in memory, optionally mirrored to a JSON file (``data_path``) so it survives a restart of
the fake; sessions are not persisted (a restarted GLPI invalidates them, as a real one may).

    python -m lab.glpi_fake --port 8089 --app-token app --user-token secret [--data glpi.json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

API = "/apirest.php"
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
NO_DOC = {"ERROR_GLPI_ADD", "ERROR_GLPI_UPDATE", "ERROR_GLPI_DELETE", "ERROR_ITEM_NOT_FOUND"}


@dataclass
class Fault:
    status: int
    times: int
    method: str | None = None
    path: str | None = None  # substring of the path after /apirest.php/
    retry_after: str | None = None
    after_processing: bool = False  # the request is carried out, then the error is returned
    hang: bool = False  # never answer (until the fake stops)


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
    ) -> None:
        self.app_token = app_token
        self.user_tokens = user_tokens if user_tokens is not None else {"user-token": 2}
        self.basic_users = basic_users or {}
        self.session_lifetime_s = session_lifetime_s
        self.auto_close = auto_close
        self.data_path = Path(data_path) if data_path else None
        self.clock = clock
        self.sessions: dict[str, float] = {}  # token -> last use
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
        self._load()
        self.app = web.Application(middlewares=[self._middleware])
        self.app.router.add_route("*", API + "/{tail:.*}", self._dispatch)

    # -- test controls ------------------------------------------------------------------------

    def expire_sessions(self) -> None:
        self.sessions.clear()

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

    def clear_faults(self) -> None:
        """GLPI is back: no more injected errors for new requests."""
        self.faults.clear()

    def count(self, method: str, path: str, status: int | None = None) -> int:
        return sum(1 for m, p, s in self.requests if m == method and p == path and (status is None or s == status))

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._release_hung.clear()
        self._runner = web.AppRunner(self.app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]
        real_port = sockets[0].getsockname()[1]
        self.url = f"http://{host}:{real_port}{API}"
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

    def _error(self, status: int, code: str, message: str) -> web.Response:
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
        return datetime.fromtimestamp(self.clock()).strftime("%Y-%m-%d %H:%M:%S")

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
        fault = self._take_fault(request, tail)
        if fault is not None and fault.hang:
            await request.read()
            self.hanging.append((request.method, tail))
            self.hung.set()
            await self._release_hung.wait()
            return web.Response(status=503, text="stopped")
        if fault is not None and not fault.after_processing:
            return self._fault_response(fault)
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
        if request.method == "GET" and request.can_read_body and (await request.read()):
            return self._error(
                400, "ERROR_JSON_PAYLOAD_FORBIDDEN", "GET Request should not have json payload (http body)"
            )
        if tail == "initSession":
            return self._init_session(request)
        if (bad := self._check_session(request)) is not None:
            return bad
        if tail == "killSession":
            token = request.headers.get("Session-Token") or request.query.get("session_token")
            self.sessions.pop(token or "", None)
            return web.json_response(True)
        parts = tail.split("/")
        body: Any = None
        if request.method in ("POST", "PUT"):
            try:
                body = json.loads(await request.text() or "null")
            except ValueError:
                return self._error(400, "ERROR_JSON_BAD", "JSON payload seems not valid")
            if not isinstance(body, dict) or not isinstance(body.get("input"), dict | list):
                return self._error(400, "ERROR_BAD_ARRAY", "input parameter must be an array of objects")
        if parts[0] == "search" and len(parts) == 2 and request.method == "GET":
            if parts[1] != "Ticket":
                return self._error(400, "ERROR_ITEMTYPE_NOT_FOUND_NOR_COMMONDBTM", "itemtype not found")
            return self._search(request)
        if parts[0] == "Ticket":
            if len(parts) == 1:
                if request.method == "POST":
                    return self._create_tickets(request, body["input"])
                if request.method == "GET":
                    return self._list_tickets(request)
            elif len(parts) == 2 and parts[1].isdigit():
                if request.method == "GET":
                    return self._get_ticket(int(parts[1]))
                if request.method == "PUT":
                    return self._update_ticket(int(parts[1]), body["input"])
            elif len(parts) == 3 and parts[1].isdigit() and parts[2] in ("ITILFollowup", "ITILSolution"):
                if request.method == "GET":
                    if int(parts[1]) not in self.tickets:
                        return self._error(404, "ERROR_ITEM_NOT_FOUND", "Item not found")
                    items = self.followups if parts[2] == "ITILFollowup" else self.solutions
                    return web.json_response([i for i in items if i["items_id"] == int(parts[1])])
                if request.method == "POST" and isinstance(body["input"], dict):
                    data = {**body["input"], "itemtype": "Ticket", "items_id": int(parts[1])}
                    return self._add_child(parts[2], data)
            return self._error(405, "ERROR_METHOD_NOT_ALLOWED", "Method Not Allowed")
        if parts[0] in ("ITILFollowup", "ITILSolution") and len(parts) == 1 and request.method == "POST":
            if not isinstance(body["input"], dict):
                return self._error(400, "ERROR_BAD_ARRAY", "input parameter must be an array of objects")
            return self._add_child(parts[0], body["input"])
        return self._error(400, "ERROR_ITEMTYPE_NOT_FOUND_NOR_COMMONDBTM", "itemtype not found")

    # -- endpoints ----------------------------------------------------------------------------

    def _init_session(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        user_token = request.query.get("user_token")
        if auth.startswith("user_token "):
            user_token = auth[len("user_token ") :].strip()
        if user_token is not None:
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

    def _new_ticket(self, data: dict[str, Any]) -> dict[str, Any]:
        now = self._now_str()
        tid = self.next_id["Ticket"]
        self.next_id["Ticket"] += 1
        urgency = int(data.get("urgency", 3))
        impact = int(data.get("impact", 3))
        ticket = {
            "id": tid,
            "entities_id": int(data.get("entities_id", 0)),
            "name": str(data.get("name", "")),
            "date": now,
            "date_mod": now,
            "closedate": None,
            "solvedate": None,
            "status": int(data.get("status", 1)),
            "content": str(data.get("content", "")),
            "urgency": urgency,
            "impact": impact,
            "priority": int(data.get("priority", max(1, min(5, round((urgency + impact) / 2))))),
            "type": int(data.get("type", 1)),
            "itilcategories_id": int(data.get("itilcategories_id", 0)),
            "requesttypes_id": int(data.get("requesttypes_id", 1)),
            "users_id_recipient": 2,
            "is_deleted": 0,
        }
        self.tickets[tid] = ticket
        return ticket

    def _create_tickets(self, request: web.Request, data: Any) -> web.Response:
        if isinstance(data, dict):
            ticket = self._new_ticket(data)
            self._save()
            return web.json_response(
                {"id": ticket["id"], "message": ""},
                status=201,
                headers={"Location": f"{self.url}/Ticket/{ticket['id']}"},
            )
        results = []
        for item in data:
            if isinstance(item, dict):
                results.append({"id": self._new_ticket(item)["id"], "message": ""})
            else:
                results.append({"id": False, "message": "bad input"})
        self._save()
        failed = any(r["id"] is False for r in results)
        if failed:
            return web.json_response(["ERROR_GLPI_PARTIAL_ADD", results], status=207)
        return web.json_response(results, status=201)

    def _view(self, ticket: dict[str, Any]) -> dict[str, Any]:
        return {**ticket, "links": [{"rel": "Entity", "href": f"{self.url}/Entity/{ticket['entities_id']}"}]}

    def _get_ticket(self, tid: int) -> web.Response:
        ticket = self.tickets.get(tid)
        if ticket is None:
            return self._error(404, "ERROR_ITEM_NOT_FOUND", "Item not found")
        return web.json_response(self._view(ticket))

    @staticmethod
    def _range(request: web.Request, default: str = "0-49") -> tuple[int, int] | None:
        m = re.fullmatch(r"(\d+)-(\d+)", request.query.get("range", default))
        if not m or int(m.group(1)) > int(m.group(2)):
            return None
        return int(m.group(1)), int(m.group(2))

    def _paged(
        self, request: web.Request, rows: list[Any], default: str
    ) -> tuple[web.Response | None, list[Any], dict[str, str], int]:
        rng = self._range(request, default)
        if rng is None:
            return self._error(400, "ERROR_RANGE_EXCEED_TOTAL", "Provided range exceed total count of data"), [], {}, 0
        start, end = rng
        total = len(rows)
        if start > total:
            return self._error(400, "ERROR_RANGE_EXCEED_TOTAL", "Provided range exceed total count of data"), [], {}, 0
        page = rows[start : end + 1]
        last = min(end, total - 1)
        headers = {"Content-Range": f"{start}-{last}/{total}", "Accept-Range": "Ticket 1000"}
        status = 206 if len(page) < total else 200
        return None, page, headers, status

    def _list_tickets(self, request: web.Request) -> web.Response:
        rows = [self._view(t) for _, t in sorted(self.tickets.items()) if not t["is_deleted"]]
        err, page, headers, status = self._paged(request, rows, "0-49")
        return err or web.json_response(page, status=status, headers=headers)

    def _update_ticket(self, tid: int, data: Any) -> web.Response:
        ticket = self.tickets.get(tid)
        if ticket is None:
            return self._error(404, "ERROR_ITEM_NOT_FOUND", "Item not found")
        if not isinstance(data, dict):
            return self._error(400, "ERROR_BAD_ARRAY", "input parameter must be an array of objects")
        for key, value in data.items():
            if key in ticket and key != "id":
                ticket[key] = value
        ticket["date_mod"] = self._now_str()
        if int(ticket["status"]) == 6 and not ticket["closedate"]:
            ticket["closedate"] = ticket["date_mod"]
        self._save()
        return web.json_response([{str(tid): True, "message": ""}])

    def _add_child(self, itemtype: str, data: dict[str, Any]) -> web.Response:
        if data.get("itemtype") != "Ticket":
            return self._error(400, "ERROR_GLPI_ADD", "Mandatory fields are not filled. Please correct: itemtype")
        try:
            ticket = self.tickets.get(int(data.get("items_id", 0)))
        except (TypeError, ValueError):
            ticket = None
        if ticket is None:
            return self._error(400, "ERROR_GLPI_ADD", "Item not found")
        now = self._now_str()
        cid = self.next_id[itemtype]
        self.next_id[itemtype] += 1
        record = {
            "id": cid,
            "itemtype": "Ticket",
            "items_id": ticket["id"],
            "content": str(data.get("content", "")),
            "date": now,
        }
        if itemtype == "ITILFollowup":
            record["is_private"] = int(data.get("is_private", 0))
            self.followups.append(record)
        else:
            if int(ticket["status"]) in (5, 6):
                self.next_id[itemtype] -= 1
                return self._error(
                    400, "ERROR_GLPI_ADD", "The item is already solved, did anyone pushed a solution before you?"
                )
            record["solutiontypes_id"] = int(data.get("solutiontypes_id", 0))
            record["status"] = 3 if self.auto_close else 2
            self.solutions.append(record)
            ticket["status"] = 6 if self.auto_close else 5
            ticket["solvedate"] = now
            if self.auto_close:
                ticket["closedate"] = now
        ticket["date_mod"] = now
        self._save()
        return web.json_response({"id": cid, "message": ""}, status=201)

    # -- search -------------------------------------------------------------------------------

    def _search(self, request: web.Request) -> web.Response:
        params = _nest(request.query.items())
        try:
            criteria = _as_list(params.get("criteria", {}))
            rows = [t for _, t in sorted(self.tickets.items()) if not t["is_deleted"] and _match_all(criteria, t)]
        except ValueError as exc:
            return self._error(400, "ERROR", str(exc))
        columns = {1, 2, 80}
        columns |= {int(v) for v in _as_list(params.get("forcedisplay", {}))}
        columns |= set(_criteria_fields(criteria))
        err, page, headers, status = self._paged(request, rows, "0-19")
        if err is not None:
            return err
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
        body["content-range"] = headers["Content-Range"]
        return web.json_response(body, status=status, headers=headers)


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
    )
    url = await fake.start(args.host, args.port)
    print(f"fake GLPI listening on {url}", flush=True)
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
    parser.add_argument("--data", help="JSON file to keep tickets across restarts")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
