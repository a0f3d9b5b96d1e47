"""The web app: the NOC wall, each client's page and device pages, report archive, exports, the
JSON API, ``/metrics`` and ``/healthz`` (Starlette, Jinja2 pages, no build step).

Scope is enforced on the server for every request, in one place: every route but those in
``PUBLIC`` is wrapped by :meth:`WebApp.scoped`, which resolves the caller (session cookie or
bearer token) and gives the handler a :class:`~agent.web.auth.Principal`; a handler reaches a
client only through :meth:`WebApp.client_for`, which answers 404 — the same as for a client that
does not exist — for one the caller may not see. The app only reads the state directory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from agent.api import DeviceMessage
from agent.config import Client, Config
from agent.report.data import archive_dir, archived
from agent.statedir import StateDir
from agent.views.coverage import backup_coverage
from agent.views.inventory import inventory_rows
from agent.views.latest import agent_health, latest_series
from agent.web import exports
from agent.web.auth import LoginLimiter, Principal, Users, credential_digest, csrf_ok, csrf_token
from agent.web.pages import LEVELS, Pages, parse_period, ticket_for

PUBLIC = frozenset({"/healthz", "/metrics", "/login", "/static/wall.js"})
SESSION_COOKIE = "vigie_session"
MESSAGES_SHOWN = 200
REPORT_LABEL = re.compile(r"^\d{4}-\d{2}(-\d{2})?$")
WALL_JS = """// reload the wall's tiles in place every data-refresh seconds (no page flash, scroll kept)
(function () {
  var main = document.getElementById("tiles");
  var every = parseFloat(main.dataset.refresh) * 1000;
  function reload() {
    fetch("/wall/tiles" + window.location.search, {credentials: "same-origin"}).then(function (r) {
      // a session that ended is redirected to the login form: show it, not inside the tiles
      if (r.redirected || r.status === 401) { window.location = "/login"; throw new Error("signed out"); }
      if (r.status !== 200) { throw new Error("wall: " + r.status); }
      return r.text();
    }).then(function (html) {
      main.innerHTML = html; main.dataset.loaded = Date.now();
      document.getElementById("stale").hidden = true;
    })
      .catch(function (e) { document.getElementById("stale").hidden = false; console.log(e); })
      .finally(function () { setTimeout(reload, every); });
  }
  setTimeout(reload, every);
})();
"""
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
                               " frame-ancestors 'none'; form-action 'self'",
}

Handler = Callable[[Request, Principal], Awaitable[Response]]


@dataclass(frozen=True)
class WebContext:
    """What the app is given by the agent: nothing it could write with."""

    config: Config
    files: StateDir
    clients: Sequence[str]  # the clients this agent serves
    clock: Callable[[], float]
    secret: Callable[[Any], str]
    device_messages: Callable[[Path, str, str, int], list[DeviceMessage]]


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d}"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def _at(epoch: float | None, zone: dt.tzinfo) -> str:
    return "" if epoch is None else dt.datetime.fromtimestamp(epoch, zone).strftime("%Y-%m-%d %H:%M")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


class WebApp:
    def __init__(self, context: WebContext) -> None:
        self.context = context
        self.settings = context.config.agent.web
        self.pages = Pages(context.config, context.files, context.clients, context.clock)
        self.users = Users(self.settings, context.secret)
        self.limiter = LoginLimiter(self.settings.login_attempts, self.settings.login_window_s, context.clock)
        self.templates = Environment(loader=PackageLoader("agent.web", "templates"),
                                     autoescape=select_autoescape(["html"]))
        self.templates.filters["ago"] = _ago
        self.templates.filters["at"] = _at
        self.templates.globals["pct"] = _pct
        self.registry = CollectorRegistry()
        self.requests = Counter("vigie_web_requests", "HTTP requests served by the web app", ["route", "status"],
                                registry=self.registry)
        self.login_failures = Counter("vigie_web_login_failures", "failed or refused logins", registry=self.registry)
        self.registry.register(_HealthCollector(context.files, context.clock()))
        tls = self.settings.tls_cert is not None
        secret = (context.secret(self.settings.session_secret) if self.settings.session_secret
                  else secrets.token_urlsafe(32))
        routes = [
            Route("/healthz", self.healthz),
            Route("/metrics", self.metrics),
            Route("/static/wall.js", self.wall_js),
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.scoped(self.logout), methods=["POST"]),
            Route("/", self.scoped(self.home)),
            Route("/wall", self.scoped(self.wall)),
            Route("/wall/tiles", self.scoped(self.wall_tiles)),
            Route("/clients/{client}", self.scoped(self.client_page)),
            Route("/clients/{client}/devices/{device}", self.scoped(self.device_page)),
            Route("/clients/{client}/reports/{label}/{file}", self.scoped(self.report_file)),
            Route("/clients/{client}/export/{topic}.{fmt}", self.scoped(self.export)),
            Route("/api/v1/clients", self.scoped(self.api_clients)),
            Route("/api/v1/devices", self.scoped(self.api_devices)),
            Route("/api/v1/alerts", self.scoped(self.api_alerts)),
            Route("/api/v1/tickets", self.scoped(self.api_tickets)),
            Route("/api/v1/availability", self.scoped(self.api_availability)),
            Route("/api/v1/inventory", self.scoped(self.api_inventory)),
        ]
        self.app = Starlette(
            routes=routes,
            middleware=[Middleware(SessionMiddleware, secret_key=secret, session_cookie=SESSION_COOKIE,
                                   max_age=int(self.settings.session_max_age_s), same_site="strict",
                                   https_only=tls)],
            exception_handlers={HTTPException: self._http_error},
        )

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001 - the ASGI signature
        if scope["type"] == "http":
            async def send_with_headers(message):  # noqa: ANN001
                if message["type"] == "http.response.start":
                    headers = list(message.get("headers", []))
                    headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                    message = {**message, "headers": headers}
                    route = next((r.path for r in self.app.routes if r.matches(scope)[0].name == "FULL"), "other")
                    self.requests.labels(route, str(message["status"])).inc()
                return await send(message)

            return await self.app(scope, receive, send_with_headers)
        return await self.app(scope, receive, send)

    # -- scope ---------------------------------------------------------------------------------

    def principal(self, request: Request) -> Principal | None:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return self.users.from_token(header[7:].strip())
        return self.users.from_session(request.session.get("user"), request.session.get("cred"))

    def scoped(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            who = self.principal(request)
            if who is None:
                if request.url.path.startswith("/api/") or "authorization" in request.headers:
                    return JSONResponse({"error": "authentication required"}, status_code=401)
                return RedirectResponse("/login", status_code=303)
            return await handler(request, who)

        return endpoint

    def client_for(self, who: Principal, name: str | None) -> Client:
        """The client ``name`` if ``who`` may see it; else 404, as for a client that does not exist."""
        if name is None or name not in self.context.clients or not who.sees(name):
            raise HTTPException(404, "no such client")
        return self.pages.client(name)

    def visible(self, who: Principal, request: Request) -> list[str]:
        """The clients a list answers for: ``?client=`` (when visible), else every visible one."""
        wanted = request.query_params.get("client")
        if wanted is not None:
            return [self.client_for(who, wanted).name]
        return who.visible(self.context.clients)

    def now(self) -> float:
        return self.context.clock()

    # -- rendering -----------------------------------------------------------------------------

    def render(self, request: Request, name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        html = self.templates.get_template(name).render(
            csrf=csrf_token(request.session), levels=LEVELS, now=self.now(), **values)
        return HTMLResponse(html, status_code=status_code)

    async def _http_error(self, request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        return PlainTextResponse(str(exc.detail), status_code=exc.status_code)

    @staticmethod
    async def off_loop(function: Callable[..., Any], *args: Any) -> Any:
        # SQLite reads in a worker thread: the agent's loop (polls, traps) keeps running meanwhile
        return await asyncio.to_thread(function, *args)

    # -- public --------------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def metrics(self, request: Request) -> Response:
        body = await self.off_loop(generate_latest, self.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def wall_js(self, request: Request) -> Response:
        return Response(WALL_JS, media_type="text/javascript")

    async def login_form(self, request: Request) -> Response:
        return self.render(request, "login.html", error=None)

    async def login(self, request: Request) -> Response:
        form = await request.form()
        if not csrf_ok(request.session, form.get("csrf")):
            return self.render(request, "login.html", status_code=403, error="Session expirée : recommencez.")
        name = str(form.get("user", ""))[:120]
        keys = [f"user:{name}", f"addr:{request.client.host if request.client else '?'}"]
        if self.limiter.blocked(keys):
            self.login_failures.inc()
            return self.render(request, "login.html", status_code=429,
                               error="Trop d'essais : réessayez dans quelques minutes.")
        user = await self.off_loop(self.users.login, name, str(form.get("password", "")))
        if user is None:
            self.limiter.failed(keys)
            self.login_failures.inc()
            return self.render(request, "login.html", status_code=401, error="Identifiant ou mot de passe inconnu.")
        request.session.clear()  # a new session: nothing of the anonymous one is carried over
        request.session.update({"user": user.name, "cred": credential_digest(user)})
        return RedirectResponse("/", status_code=303)

    # -- pages ---------------------------------------------------------------------------------

    async def logout(self, request: Request, who: Principal) -> Response:
        form = await request.form()
        if not csrf_ok(request.session, form.get("csrf")):
            raise HTTPException(403, "CSRF token missing or wrong")
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    async def home(self, request: Request, who: Principal) -> Response:
        return RedirectResponse("/wall" if who.client is None else f"/clients/{who.client}", status_code=303)

    def _wall_values(self, who: Principal, clients: list[str]) -> dict[str, Any]:
        now = self.now()
        return {"walls": self.pages.wall(clients, now), "changes": self.pages.changes(clients, now), "who": who,
                "stamp": dt.datetime.fromtimestamp(now, self.pages.client(clients[0]).zone if clients else dt.UTC)}

    async def wall(self, request: Request, who: Principal) -> Response:
        # ?client=NAME: one client's wall (a screen per client in a NOC)
        values = await self.off_loop(self._wall_values, who, self.visible(who, request))
        return self.render(request, "wall.html", refresh_s=self.settings.refresh_s, **values)

    async def wall_tiles(self, request: Request, who: Principal) -> Response:
        values = await self.off_loop(self._wall_values, who, self.visible(who, request))
        return self.render(request, "wall_tiles.html", **values)

    def _client_values(self, client: Client, request: Request) -> dict[str, Any]:
        now = self.now()
        try:
            first, last = parse_period(client, now, request.query_params.get("from"), request.query_params.get("to"))
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        alerts = self.pages.alerts(client.name, include_resolved=True)
        tickets = self.pages.tickets(client.name)
        return {
            "client": client, "first": first, "last": last,
            "statuses": self.pages.statuses(client.name),
            "alerts": [(a, ticket_for(a, tickets)) for a in alerts],
            "tickets": tickets,
            "sla": self.pages.sla(client, first, last),
            "availability": self.pages.availability(client, first, last),
            "inventory": inventory_rows(self.context.files, self.pages.devices(client.name), client.name),
            "coverage": backup_coverage(self.context.files, client.name, now),
            "reports": [(label, record, sorted(p.name for p in (archive_dir(self.context.files, client.name)
                                                                 / label).iterdir()))
                        for label, record in archived(self.context.files, client.name)],
            "topics": list(exports.TOPICS), "zone": client.zone,
        }

    async def client_page(self, request: Request, who: Principal) -> Response:
        client = self.client_for(who, request.path_params["client"])
        values = await self.off_loop(self._client_values, client, request)
        return self.render(request, "client.html", who=who, **values)

    def _device_values(self, client: Client, device: str) -> dict[str, Any]:
        found = self.pages.device(client.name, device)
        if found is None:
            raise HTTPException(404, "no such device")
        tickets = self.pages.tickets(client.name)
        status = next((s for s in self.pages.statuses(client.name) if s.device == device), None)
        return {
            "client": client, "device": found, "status": status, "zone": client.zone,
            "alerts": [(a, ticket_for(a, tickets)) for a in self.pages.alerts(client.name, include_resolved=True)
                       if a.device == device],
            "messages": self.context.device_messages(self.context.files.path, client.name, device, MESSAGES_SHOWN),
            "series": latest_series(self.context.files, client.name, device),
            "inventory": next(iter(inventory_rows(self.context.files, [found], client.name)), None),
        }

    async def device_page(self, request: Request, who: Principal) -> Response:
        client = self.client_for(who, request.path_params["client"])
        values = await self.off_loop(self._device_values, client, request.path_params["device"])
        return self.render(request, "device.html", who=who, **values)

    async def report_file(self, request: Request, who: Principal) -> Response:
        client = self.client_for(who, request.path_params["client"])
        label, name = request.path_params["label"], request.path_params["file"]
        folder = archive_dir(self.context.files, client.name) / label
        # only a name listed in the report's own folder: no path is built from what the caller typed
        if not REPORT_LABEL.match(label) or not folder.is_dir() or name not in {p.name for p in folder.iterdir()}:
            raise HTTPException(404, "no such report file")
        return FileResponse(folder / name)

    async def export(self, request: Request, who: Principal) -> Response:
        client = self.client_for(who, request.path_params["client"])
        topic, fmt = request.path_params["topic"], request.path_params["fmt"]
        if topic not in exports.TOPICS or fmt not in exports.FORMATS:
            raise HTTPException(404, "no such export")
        try:
            first, last = parse_period(client, self.now(), request.query_params.get("from"),
                                       request.query_params.get("to"), default_days=30)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        body = await self.off_loop(exports.export, self.pages, client, topic, fmt, first, last)
        filename = f"{client.name}-{topic}-{first.isoformat()}-{last.isoformat()}.{fmt}"
        return Response(body, media_type=exports.FORMATS[fmt],
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    # -- API -----------------------------------------------------------------------------------

    def json(self, value: Any) -> JSONResponse:
        return JSONResponse(json.loads(json.dumps(_jsonable(value), default=str)))

    async def api_clients(self, request: Request, who: Principal) -> Response:
        return self.json([{"name": name, "display_name": self.pages.client(name).display_name}
                          for name in self.visible(who, request)])

    async def api_devices(self, request: Request, who: Principal) -> Response:
        clients = self.visible(who, request)
        return self.json(await self.off_loop(lambda: [s for c in clients for s in self.pages.statuses(c)]))

    async def api_alerts(self, request: Request, who: Principal) -> Response:
        clients = self.visible(who, request)
        history = request.query_params.get("history") in ("1", "true")
        return self.json(await self.off_loop(
            lambda: [a for c in clients for a in self.pages.alerts(c, include_resolved=history)]))

    async def api_tickets(self, request: Request, who: Principal) -> Response:
        clients = self.visible(who, request)
        return self.json(await self.off_loop(lambda: [t for c in clients for t in self.pages.tickets(c)]))

    async def api_inventory(self, request: Request, who: Principal) -> Response:
        clients = self.visible(who, request)
        return self.json(await self.off_loop(lambda: [
            r for c in clients for r in inventory_rows(self.context.files, self.pages.devices(c), c)]))

    async def api_availability(self, request: Request, who: Principal) -> Response:
        found = []
        for name in self.visible(who, request):
            client = self.pages.client(name)
            try:
                first, last = parse_period(client, self.now(), request.query_params.get("from"),
                                           request.query_params.get("to"))
            except ValueError as exc:
                raise HTTPException(400, str(exc)) from None
            rows = await self.off_loop(self.pages.availability, client, first, last)
            found.append({"client": name, "from": first, "to": last, "services": rows})
        return self.json(found)


class _HealthCollector:
    """The agent's own health on /metrics: the last `vigie_agent` sample's numeric fields as gauges
    (``vigie_agent_<field>``, label ``agent``). No client is named here: /metrics is unauthenticated."""

    def __init__(self, files: StateDir, started_at: float) -> None:
        self.files = files
        self.started_at = started_at

    def collect(self):  # noqa: ANN201 - prometheus_client's collector protocol
        gauges: dict[str, GaugeMetricFamily] = {}
        for series in agent_health(self.files):
            for name, value in sorted(series.fields.items()):
                if not isinstance(value, int | float) or isinstance(value, bool):
                    continue
                gauge = gauges.get(name)
                if gauge is None:
                    gauge = gauges[name] = GaugeMetricFamily(f"vigie_agent_{name}", f"vigie_agent.{name}",
                                                             labels=["agent"])
                gauge.add_metric([series.tags.get("agent", "")], float(value))
        started = GaugeMetricFamily("vigie_web_start_time_seconds", "when the web app started (epoch seconds)")
        started.add_metric([], self.started_at)
        yield started
        yield from gauges.values()
