"""A fake of Entra ID's token endpoint and of Microsoft Graph v1.0, over HTTPS on loopback, for the
m365 collector's tests and the lab (written from /work/shared/contracts/graph.md, Graph's API
reference and MSAL Python's msal/authority.py).

What MSAL asks, answered as Entra ID does:
- ``GET /common/discovery/instance?authorization_endpoint=...`` (instance discovery, when MSAL is
  given this host's discovery URL) -> ``tenant_discovery_endpoint``; an unknown host is
  ``invalid_instance``;
- ``GET /{tenant}/v2.0/.well-known/openid-configuration`` -> ``token_endpoint`` and the others;
  an unknown tenant is a 400 with AADSTS90002;
- ``POST /{tenant}/oauth2/v2.0/token`` (client credentials) -> ``{token_type, expires_in,
  ext_expires_in, access_token}``; an unknown client is AADSTS700016, a bad secret AADSTS7000215
  (401 ``invalid_client``), a scope other than Graph's ``.default`` AADSTS1002012.

Graph (``/v1.0``, bearer token): serviceAnnouncement ``healthOverviews`` and ``issues``,
``subscribedSkus``, ``organization``, ``security/alerts_v2`` (``$filter=lastUpdateDateTime ge T``),
collections cut in pages of ``page_size`` with an absolute ``@odata.nextLink`` carrying an opaque
``$skiptoken``. A missing application permission is a 403 (``Authorization_RequestDenied`` on the
directory, ``Forbidden`` elsewhere: Graph's exact codes vary by workload); a tenant without
Defender answers alerts_v2 with a 403 too, as Graph does. An unknown or expired token is a 401
``InvalidAuthenticationToken``.

Faults for tests and `vigie lab fault`: :meth:`GraphFake.answer_next` (the next N Graph requests
answer 429/503 with Retry-After, a 500, or malformed JSON), ``delay_s`` (slow answers), ``down``
(every Graph request a 503), :meth:`GraphFake.expire_tokens`; per tenant, permissions, licences,
the directory sync and incidents (:class:`Tenant`). :class:`GraphService` plays the estates'
tenants in `vigie lab up`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import secrets
import ssl
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import yaml
from aiohttp import web

from lab.estate import EstateError, expand, is_loopback, variables_in
from lab.services import Context, Fault, FaultError, FaultKind, LabService
from lab.walks import LAB_DIR

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
ALL_PERMISSIONS = frozenset({"ServiceHealth.Read.All", "Organization.Read.All", "SecurityAlert.Read.All"})
# The lab's TLS: a CA and a certificate for 127.0.0.1/localhost made once with trustme (valid to
# 3000), committed so the estates name the CA by path. Lab-only, the key protects nothing.
LAB_TLS = LAB_DIR / "graph_tls"
SYNC_PERIOD_S = 30 * 60  # Entra Connect's default sync cycle

# (healthOverviews id, service name, prefix of its issue ids), as Graph names them.
SERVICES = (
    ("Exchange", "Exchange Online", "EX"),
    ("microsoftteams", "Microsoft Teams", "TM"),
    ("SharePoint", "SharePoint Online", "SP"),
    ("OneDriveForBusiness", "OneDrive for Business", "OD"),
    ("OrgLiveID", "Identity Service", "ID"),
    ("OSDPPlatform", "Microsoft 365 suite", "MO"),
)


def iso(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _guid(seed: str) -> str:
    """A stable GUID from ``seed`` (ids that stay the same across the lab's restarts)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, seed))


@dataclass
class Sku:
    part_number: str  # e.g. SPE_E3 (Microsoft 365 E3), ENTERPRISEPACK (Office 365 E3)
    consumed: int
    prepaid: int


@dataclass
class Tenant:
    """One tenant's directory and service health, as the fake serves it."""

    tenant_id: str
    display_name: str
    client_id: str
    client_secret: str
    skus: list[Sku] = field(default_factory=list)
    sync_enabled: bool | None = None  # None: never synced (cloud-only), as Graph says
    last_sync: float | None = None  # None with sync on: follows SYNC_PERIOD_S
    defender: bool = False  # licensed for Microsoft Defender (alerts_v2 answers)
    graph_down: bool = False  # Graph answers this tenant's every request 503
    permissions: set[str] = field(default_factory=lambda: set(ALL_PERMISSIONS))
    service_status: dict[str, str] = field(default_factory=dict)  # service id -> status when not operational
    issues: list[dict[str, Any]] = field(default_factory=list)
    security_alerts: list[dict[str, Any]] = field(default_factory=list)
    # Graph path -> items served as given instead of the ones above (recorded or documented answers)
    recorded: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    token_requests: int = 0

    def open_incident(self, service_name: str, now: float, title: str | None = None) -> str:
        service_id, prefix = _service(service_name)
        issue_id = f"{prefix}{800000 + len(self.issues):06d}"
        self.issues.append({
            "id": issue_id,
            "title": title or f"Users may be unable to access {service_name}",
            "impactDescription": f"Users may be unable to access {service_name} or may see delays.",
            "classification": "incident",
            "origin": "microsoft",
            "status": "serviceDegradation",
            "service": service_name,
            "feature": "Service access",
            "featureGroup": "Access",
            "isResolved": False,
            "startDateTime": iso(now),
            "endDateTime": None,
            "lastModifiedDateTime": iso(now),
            "details": [],
            "posts": [],
        })
        self.service_status[service_id] = "serviceDegradation"
        return issue_id

    def resolve(self, issue_id: str, now: float) -> None:
        for issue in self.issues:
            if issue["id"] == issue_id and not issue["isResolved"]:
                issue.update(isResolved=True, status="serviceRestored", endDateTime=iso(now),
                             lastModifiedDateTime=iso(now))
                service_id, _ = _service(issue["service"])
                if not any(i["service"] == issue["service"] and not i["isResolved"] for i in self.issues):
                    self.service_status.pop(service_id, None)

    def raise_alert(self, severity: str, now: float) -> str:
        alert_id = f"da{int(now * 1000)}_{len(self.security_alerts)}"
        self.security_alerts.append({
            "id": alert_id, "title": "'EICAR_Test_File' malware was detected", "severity": severity,
            "status": "new", "category": "Malware", "serviceSource": "microsoftDefenderForEndpoint",
            "detectionSource": "antivirus", "createdDateTime": iso(now), "lastUpdateDateTime": iso(now),
            "resolvedDateTime": None,
        })
        return alert_id

    def resolve_alert(self, alert_id: str, now: float) -> None:
        for alert in self.security_alerts:
            if alert["id"] == alert_id:
                alert.update(status="resolved", lastUpdateDateTime=iso(now), resolvedDateTime=iso(now))

    def organization(self, now: float) -> dict[str, Any]:
        last = self.last_sync
        if self.sync_enabled and last is None:
            last = now - now % SYNC_PERIOD_S
        return {
            "id": self.tenant_id,
            "displayName": self.display_name,
            "onPremisesSyncEnabled": self.sync_enabled,
            "onPremisesLastSyncDateTime": None if last is None else iso(last),
            "verifiedDomains": [{"name": f"{self.display_name.lower()}.onmicrosoft.com", "isDefault": True}],
        }


def _service(name: str) -> tuple[str, str]:
    for service_id, service_name, prefix in SERVICES:
        if name.lower() in (service_id.lower(), service_name.lower()):
            return service_id, prefix
    raise KeyError(name)


@dataclass
class _Scripted:
    status: int
    retry_after: str | None  # the header's value, None: no header
    malformed: bool = False


class GraphFake:
    """Entra ID + Graph for ``tenants``, on one HTTPS port."""

    def __init__(
        self,
        tenants: Sequence[Tenant],
        tls: ssl.SSLContext,
        *,
        page_size: int = 100,
        token_lifetime_s: int = 3599,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tenants = {t.tenant_id: t for t in tenants}
        self.tls = tls
        self.page_size = page_size
        self.token_lifetime_s = token_lifetime_s
        self.clock = clock
        self.delay_s = 0.0
        self.down = False
        self.link_host: str | None = None  # HOST:PORT of the nextLinks, when not the request's own
        self.requests: list[str] = []  # "METHOD /path" of every request, in order
        self.url = ""
        self._tokens: dict[str, tuple[str, float]] = {}  # access token -> (tenant id, expires at)
        self._scripted: list[_Scripted] = []
        self._scripted_tokens: list[_Scripted] = []
        app = web.Application()
        app.router.add_get("/common/discovery/instance", self._instance_discovery)
        app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self._openid_configuration)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_get("/v1.0/{path:.+}", self._graph)
        self._runner = web.AppRunner(app, access_log=None)

    # -- control ------------------------------------------------------------------------------

    def answer_next(self, requests: int, status: int, retry_after: str | None = None, malformed: bool = False) -> None:
        """The next ``requests`` Graph requests answer ``status`` (with ``Retry-After``), or a 200
        with a cut JSON body when ``malformed``."""
        self._scripted.extend(_Scripted(status, retry_after, malformed) for _ in range(requests))

    def refuse_tokens(self, requests: int, status: int, retry_after: str | None = None) -> None:
        """The next ``requests`` token requests answer ``status`` with OAuth2's ``temporarily_unavailable``."""
        self._scripted_tokens.extend(_Scripted(status, retry_after) for _ in range(requests))

    def expire_tokens(self) -> None:
        """Every token issued so far expires now (Graph refuses it; MSAL still holds it valid)."""
        now = self.clock()
        self._tokens = {token: (tenant, min(expires, now)) for token, (tenant, expires) in self._tokens.items()}

    def graph_requests(self, path: str) -> int:
        return sum(1 for r in self.requests if r == f"GET /v1.0{path}")

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=self.tls)
        await site.start()
        real_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"https://{host}:{real_port}"
        return self.url

    async def stop(self) -> None:
        await self._runner.cleanup()

    # -- Entra ID -----------------------------------------------------------------------------

    def _base(self, request: web.Request) -> str:
        return f"https://{request.host}"

    async def _instance_discovery(self, request: web.Request) -> web.Response:
        self.requests.append(f"GET {request.path}")
        endpoint = urlsplit(request.query.get("authorization_endpoint", ""))
        # MSAL names the host without its port (msal/authority.py keeps only the hostname)
        if endpoint.hostname != urlsplit(f"https://{request.host}").hostname:
            return _aad_error(400, "invalid_instance", 50049, "Unknown or invalid instance.")
        tenant = endpoint.path.strip("/").split("/")[0]
        return web.json_response({
            "tenant_discovery_endpoint": f"{self._base(request)}/{tenant}/v2.0/.well-known/openid-configuration",
            "api-version": "1.1",
            "metadata": [
                {"preferred_network": request.host, "preferred_cache": request.host, "aliases": [request.host]}
            ],
        })

    async def _openid_configuration(self, request: web.Request) -> web.Response:
        self.requests.append(f"GET {request.path}")
        tenant = self.tenants.get(request.match_info["tenant"])
        if tenant is None:
            return _aad_error(400, "invalid_tenant", 90002, f"Tenant '{request.match_info['tenant']}' not found. Check "
                              "to make sure you have the correct tenant ID and are signing into the correct cloud.")
        base = f"{self._base(request)}/{tenant.tenant_id}"
        return web.json_response({
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "tenant_region_scope": "EU",
        })

    async def _token(self, request: web.Request) -> web.Response:
        self.requests.append(f"POST {request.path}")
        tenant = self.tenants.get(request.match_info["tenant"])
        form = await request.post()
        if tenant is None:
            return _aad_error(400, "invalid_request", 90002, f"Tenant '{request.match_info['tenant']}' not found.")
        tenant.token_requests += 1
        if self._scripted_tokens:
            scripted = self._scripted_tokens.pop(0)
            refused = _aad_error(scripted.status, "temporarily_unavailable", 50089,
                                 "The service is temporarily unavailable. Retry the request later.")
            if scripted.retry_after is not None:
                refused.headers["Retry-After"] = scripted.retry_after
            return refused
        if form.get("grant_type") != "client_credentials":
            return _aad_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        if form.get("client_id") != tenant.client_id:
            return _aad_error(400, "unauthorized_client", 700016, f"Application with identifier "
                              f"'{form.get('client_id')}' was not found in the directory '{tenant.display_name}'.")
        if form.get("client_secret") != tenant.client_secret:
            return _aad_error(401, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret "
                              f"being sent in the request is the client secret value, not the client secret ID, "
                              f"for a secret added to app '{tenant.client_id}'.")
        if form.get("scope") != GRAPH_SCOPE:
            return _aad_error(400, "invalid_scope", 1002012, f"The provided value for scope {form.get('scope')} "
                              "is not valid. Client credential flows must have a scope value with /.default.")
        token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + secrets.token_urlsafe(32)
        self._tokens[token] = (tenant.tenant_id, self.clock() + self.token_lifetime_s)
        return web.json_response({"token_type": "Bearer", "expires_in": self.token_lifetime_s,
                                  "ext_expires_in": self.token_lifetime_s, "access_token": token})

    # -- Graph --------------------------------------------------------------------------------

    async def _graph(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(f"GET {request.path}")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.down:
            return _graph_error(503, "ServiceUnavailable", "The service is currently unavailable.")
        scripted = self._scripted.pop(0) if self._scripted else None
        if scripted is not None and not scripted.malformed:
            codes = {429: "TooManyRequests", 503: "ServiceUnavailable", 504: "GatewayTimeout"}
            headers = {"Retry-After": scripted.retry_after} if scripted.retry_after is not None else None
            return _graph_error(scripted.status, codes.get(scripted.status, "InternalServerError"),
                                "Scripted failure of the fake.", headers)
        tenant = self._tenant_of(request)
        if isinstance(tenant, web.Response):
            return tenant
        if tenant.graph_down:
            return _graph_error(503, "ServiceUnavailable", "The service is currently unavailable.")
        path = "/" + request.match_info["path"]
        served = self._collections(tenant).get(path)
        if served is None:
            return _graph_error(400, "BadRequest", f"Resource not found for the segment '{path.split('/')[-1]}'.")
        permission, items = served
        if permission not in tenant.permissions:
            code = "Authorization_RequestDenied" if permission == "Organization.Read.All" else "Forbidden"
            return _graph_error(403, code, "Insufficient privileges to complete the operation.")
        if path == "/security/alerts_v2" and not tenant.defender:
            return _graph_error(403, "Forbidden", "The tenant is not provisioned for Microsoft Defender XDR.")
        if path == "/security/alerts_v2" and "$filter" in request.query:
            filtered = _since_filter(request.query["$filter"], items)
            if filtered is None:
                return _graph_error(400, "BadRequest", f"Invalid filter clause: {request.query['$filter']}")
            items = filtered
        offset = _offset(request.query.get("$skiptoken"))
        if offset is None:
            return _graph_error(400, "BadRequest", "The $skiptoken is not valid.")
        body: dict[str, Any] = {"@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#{path.strip('/')}",
                                "value": items[offset:offset + self.page_size]}
        if offset + self.page_size < len(items):
            query = {k: v for k, v in request.query.items() if k != "$skiptoken"}
            query["$skiptoken"] = base64.urlsafe_b64encode(f"offset={offset + self.page_size}".encode()).decode()
            base = f"https://{self.link_host}" if self.link_host else self._base(request)
            body["@odata.nextLink"] = f"{base}{request.path}?{urlencode(query)}"
        text = json.dumps(body)
        if scripted is not None:  # malformed: the body cut in the middle
            text = text[: len(text) // 2]
        return web.Response(text=text, content_type="application/json")

    def _tenant_of(self, request: web.Request) -> Tenant | web.Response:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else None
        if token is None:
            return _graph_error(401, "InvalidAuthenticationToken", "Access token is empty.")
        issued = self._tokens.get(token)
        if issued is None:
            return _graph_error(401, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed.")
        tenant_id, expires = issued
        if self.clock() >= expires:
            return _graph_error(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
        return self.tenants[tenant_id]

    def _collections(self, tenant: Tenant) -> dict[str, tuple[str, list[dict[str, Any]]]]:
        now = self.clock()
        health = [{"id": sid, "service": name, "status": tenant.service_status.get(sid, "serviceOperational")}
                  for sid, name, _ in SERVICES]
        skus = [{
            "id": f"{tenant.tenant_id}_{_guid(sku.part_number)}",
            "skuId": _guid(sku.part_number),
            "skuPartNumber": sku.part_number,
            "appliesTo": "User",
            "capabilityStatus": "Enabled",
            "consumedUnits": sku.consumed,
            "prepaidUnits": {"enabled": sku.prepaid, "suspended": 0, "warning": 0, "lockedOut": 0},
            "servicePlans": [],
        } for sku in tenant.skus]
        served = {
            "/admin/serviceAnnouncement/healthOverviews": ("ServiceHealth.Read.All", health),
            "/admin/serviceAnnouncement/issues": ("ServiceHealth.Read.All", tenant.issues),
            "/subscribedSkus": ("Organization.Read.All", skus),
            "/organization": ("Organization.Read.All", [tenant.organization(now)]),
            "/security/alerts_v2": ("SecurityAlert.Read.All", tenant.security_alerts),
        }
        return {path: (permission, tenant.recorded.get(path, items)) for path, (permission, items) in served.items()}


def _since_filter(expression: str, items: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """``lastUpdateDateTime ge 2024-05-01T00:00:00Z``, the one filter the fake understands."""
    parts = expression.split()
    if len(parts) != 3 or parts[:2] != ["lastUpdateDateTime", "ge"]:
        return None
    return [item for item in items if str(item.get("lastUpdateDateTime", "")) >= parts[2]]


def _offset(token: str | None) -> int | None:
    if token is None:
        return 0
    try:
        key, _, value = base64.urlsafe_b64decode(token.encode()).decode().partition("=")
        return int(value) if key == "offset" else None
    except ValueError:
        return None


def _aad_error(status: int, error: str, code: int, description: str) -> web.Response:
    now = dt.datetime.now(dt.UTC)
    trace = str(uuid.uuid4())
    return web.json_response({
        "error": error,
        "error_description": f"AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {trace} "
                             f"Timestamp: {now.strftime('%Y-%m-%d %H:%M:%SZ')}",
        "error_codes": [code],
        "timestamp": now.strftime("%Y-%m-%d %H:%M:%SZ"),
        "trace_id": trace,
        "correlation_id": trace,
    }, status=status)


def _graph_error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    inner = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"), "request-id": str(uuid.uuid4()),
             "client-request-id": str(uuid.uuid4())}
    body = {"error": {"code": code, "message": message, "innerError": inner}}
    return web.json_response(body, status=status, headers=headers)


# -- TLS -----------------------------------------------------------------------------------------


def server_tls(cert_chain: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert_chain), str(key))
    return context


def write_lab_tls(directory: Path = LAB_TLS) -> None:
    """Make the lab's CA and server certificate (``python -m lab.graph_fake``); run once, committed."""
    import trustme

    ca = trustme.CA(organization_name="vigie lab (not a real CA)")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    directory.mkdir(parents=True, exist_ok=True)
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    cert.private_key_pem.write_to_path(str(directory / "server-key.pem"))
    with (directory / "server.pem").open("wb") as out:
        for blob in cert.cert_chain_pems:
            out.write(blob.bytes())


# -- the lab service -----------------------------------------------------------------------------


@dataclass
class LabTenant:
    key: str  # CLIENT/DEVICE of the estate's m365 device
    tenant: Tenant
    seed: dict[str, Any]  # the device's x-lab, as written
    incidents: dict[tuple[str, ...], str] = field(default_factory=dict)  # the fault's args -> issue id
    alerts: dict[tuple[str, ...], str] = field(default_factory=dict)  # the fault's args -> Defender alert id


def _m365_devices(context: Context) -> Iterator[tuple[str, str, dict[str, Any], str | None, dict[str, Any]]]:
    """(CLIENT/DEVICE, display name, the m365 options, credentials name, x-lab) of every m365 device."""
    for path in context.estate.paths:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for client in data.get("clients") or []:
            for site in client.get("sites") or []:
                for device in site.get("devices") or []:
                    collectors = device.get("collectors") or {}
                    if "m365" in collectors:
                        credentials = device.get("credentials")
                        name = credentials.get("m365") if isinstance(credentials, dict) else credentials
                        yield (f"{client['name']}/{device['name']}", str(client.get("display_name") or client["name"]),
                               collectors["m365"] or {}, name, device.get("x-lab") or {})


def _seeded(key: str, display_name: str, options: dict[str, Any], secret: str, seed: dict[str, Any],
            now: float) -> Tenant:
    licences = seed.get("licences") or {"ENTERPRISEPACK": [40, 50]}
    tenant = Tenant(
        tenant_id=str(options["tenant_id"]),
        display_name=display_name,
        client_id=str(options["client_id"]),
        client_secret=secret,
        skus=[Sku(part, int(used), int(bought)) for part, (used, bought) in licences.items()],
        sync_enabled=True if seed.get("sync") else None,
        defender=bool(seed.get("defender")),
    )
    # a resolved advisory of last week: the issues list is never empty in a real tenant
    tenant.issues.append({
        "id": "MO712345", "title": "Some users may see delays in the Microsoft 365 admin center",
        "impactDescription": "Admins may see delays loading usage reports.", "classification": "advisory",
        "origin": "microsoft", "status": "serviceRestored", "service": "Microsoft 365 suite",
        "feature": "Admin center", "featureGroup": "Portal", "isResolved": True,
        "startDateTime": iso(now - 6 * 86400), "endDateTime": iso(now - 5 * 86400),
        "lastModifiedDateTime": iso(now - 5 * 86400), "details": [], "posts": [],
    })
    if tenant.defender:
        tenant.security_alerts.append({
            "id": f"da{_guid(key).replace('-', '')[:20]}", "title": "Suspicious PowerShell command line",
            "severity": "low", "status": "resolved", "category": "Execution",
            "serviceSource": "microsoftDefenderForEndpoint", "detectionSource": "antivirus",
            "createdDateTime": iso(now - 2 * 86400), "lastUpdateDateTime": iso(now - 86400),
            "resolvedDateTime": iso(now - 86400),
        })
    return tenant


class GraphService(LabService):
    name = "m365"
    fault_kinds = (
        FaultKind("m365-incident", "device", "[SERVICE]",
                  "Microsoft opens an incident on SERVICE (Exchange Online); clear: it is resolved"),
        FaultKind("m365-licences-exhausted", "device", "[SKU]", "every licence of SKU (the first) is assigned"),
        FaultKind("m365-sync-stale", "device", "[HOURS]", "Entra Connect's last sync HOURS (5) hours ago"),
        FaultKind("m365-defender-alert", "device", "[SEVERITY]",
                  "Microsoft Defender raises an alert (high); clear: it is resolved"),
        FaultKind("m365-graph-down", "device", "", "Graph answers the tenant's every request 503"),
    )

    def __init__(self, host: str, port: int, tenants: list[LabTenant], variables: list[str]) -> None:
        self.host, self.port = host, port
        self.tenants = tenants
        self.variables = variables
        self.fake: GraphFake | None = None

    @classmethod
    def add_options(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--m365-port", type=int, metavar="N",
            help="TCP port of the fake Entra ID + Graph (0: any free port); default: the port of the estate's "
            "m365 authority_url, read from the environment first",
        )

    @classmethod
    def for_estate(cls, context: Context) -> GraphService | None:
        endpoint: tuple[str, int] | None = None
        tenants: list[LabTenant] = []
        variables: list[str] = []
        now = time.time()
        for key, display_name, options, credentials, seed in _m365_devices(context):
            for option in ("authority_url", "graph_url"):
                url = str(options.get(option, ""))
                parts = urlsplit(expand(url, context.environ))
                if parts.scheme != "https" or not is_loopback(parts.hostname or ""):
                    raise EstateError(f"{key}: m365 {option} {url!r}: the lab's Graph fake is https:// on loopback")
                here = (parts.hostname or "", parts.port or 443)
                if endpoint not in (None, here):
                    raise EstateError(f"{key}: m365 {option} {url!r}: the lab plays one Graph fake, at {endpoint}")
                endpoint = here
                variables.extend(v.name for v in variables_in(url) if v.name not in variables)
            secret = context.estate.secret(str(credentials)) if credentials else None
            if not isinstance(secret, Mapping) or not isinstance(secret.get("client_secret"), str):
                raise EstateError(f"{key}: m365 needs credentials naming a secret with a client_secret")
            if "tenant_id" not in options or "client_id" not in options:
                raise EstateError(f"{key}: m365 needs tenant_id and client_id")
            tenant = _seeded(key, display_name, options, secret["client_secret"], seed, now)
            tenants.append(LabTenant(key, tenant, seed))
        if endpoint is None:
            return None
        override = getattr(context.options, "m365_port", None)
        return cls(endpoint[0], endpoint[1] if override is None else override, tenants, variables)

    async def start(self) -> None:
        tls = server_tls(LAB_TLS / "server.pem", LAB_TLS / "server-key.pem")
        self.fake = GraphFake([t.tenant for t in self.tenants], tls)
        try:
            url = await self.fake.start(self.host, self.port)
            self.port = int(url.rsplit(":", 1)[1])
        except OSError as exc:
            raise EstateError(f"tcp {self.host}:{self.port}: {exc.strerror} (another lab? set "
                              f"{', '.join(self.variables) or 'the authority_url'})") from None

    async def stop(self) -> None:
        if self.fake is not None:
            await self.fake.stop()
            self.fake = None

    def endpoints(self) -> list[str]:
        return [f"https https://{self.host}:{self.port}/  Entra ID token endpoint + Microsoft Graph "
                f"({len(self.tenants)} tenants, CA {LAB_TLS / 'ca.pem'})"]

    def devices(self) -> list[tuple[str, str]]:
        return [(t.key, f"https://{self.host}:{self.port}/{t.tenant.tenant_id}") for t in self.tenants]

    def examples(self) -> list[str]:
        return [f"vigie lab fault {t.key} m365-incident 'Exchange Online'" for t in self.tenants[:1]]

    def environment(self) -> dict[str, str]:
        return {name: f"https://{self.host}:{self.port}" for name in self.variables}

    def _find(self, target: str) -> LabTenant:
        for tenant in self.tenants:
            if tenant.key == target:
                return tenant
        raise FaultError(f"{target}: no m365 device of the estate points at the lab's Graph fake")

    def check_fault(self, fault: Fault) -> str:
        tenant = self._find(fault.target).tenant
        if fault.kind == "m365-incident":
            service = _incident_service(fault)
            return f"an incident on {service} for {tenant.display_name}'s tenant, resolved when cleared"
        if fault.kind == "m365-licences-exhausted":
            return f"every {_sku(fault, tenant).part_number} licence assigned"
        if fault.kind == "m365-sync-stale":
            if not tenant.sync_enabled:
                raise FaultError(f"{fault.target}: the tenant does not sync from an on-premises AD (x-lab sync: true)")
            return f"last directory sync {_hours(fault):g} h ago"
        if fault.kind == "m365-defender-alert":
            if not tenant.defender:
                raise FaultError(f"{fault.target}: the tenant has no Microsoft Defender (x-lab defender: true)")
            return f"a {_severity(fault)} Defender alert, resolved when cleared"
        return "Graph answers 503 to every request of the tenant"

    async def apply_faults(self, faults: Sequence[Fault]) -> None:
        if self.fake is None:
            return
        now = time.time()
        for lab in self.tenants:
            mine = [f for f in faults if f.target == lab.key]
            tenant = lab.tenant
            tenant.graph_down = any(f.kind == "m365-graph-down" for f in mine)
            seed = lab.seed.get("licences") or {"ENTERPRISEPACK": [40, 50]}
            for sku in tenant.skus:
                sku.consumed = int(seed[sku.part_number][0])
            for fault in mine:
                if fault.kind == "m365-licences-exhausted":
                    sku = _sku(fault, tenant)
                    sku.consumed = sku.prepaid
            stale = [f for f in mine if f.kind == "m365-sync-stale"]
            tenant.last_sync = now - _hours(stale[-1]) * 3600 if stale else None
            wanted = {f.args for f in mine if f.kind == "m365-incident"}
            for args in wanted - set(lab.incidents):
                service = _incident_service(Fault("m365-incident", lab.key, args, now))
                lab.incidents[args] = tenant.open_incident(service, now)
            for args in set(lab.incidents) - wanted:
                tenant.resolve(lab.incidents.pop(args), now)
            wanted = {f.args for f in mine if f.kind == "m365-defender-alert"}
            for args in wanted - set(lab.alerts):
                lab.alerts[args] = tenant.raise_alert(_severity(Fault("m365-defender-alert", lab.key, args, now)), now)
            for args in set(lab.alerts) - wanted:
                tenant.resolve_alert(lab.alerts.pop(args), now)

    def status(self) -> list[str]:
        return [f"{t.key}: open incident {issue_id}" for t in self.tenants for issue_id in t.incidents.values()] + [
            f"{t.key}: open Defender alert {alert_id}" for t in self.tenants for alert_id in t.alerts.values()]


def _incident_service(fault: Fault) -> str:
    service = " ".join(fault.args) or "Exchange Online"
    try:
        _service(service)
    except KeyError:
        raise FaultError(f"m365-incident: no service {service!r}; give one of "
                         f"{', '.join(name for _, name, _ in SERVICES)}") from None
    return service


def _severity(fault: Fault) -> str:
    severity = fault.args[0] if fault.args else "high"
    if len(fault.args) > 1 or severity not in ("informational", "low", "medium", "high"):
        raise FaultError("m365-defender-alert: give SEVERITY: informational, low, medium or high")
    return severity


def _sku(fault: Fault, tenant: Tenant) -> Sku:
    if not fault.args:
        return tenant.skus[0]
    for sku in tenant.skus:
        if sku.part_number == fault.args[0]:
            return sku
    raise FaultError(f"m365-licences-exhausted: no SKU {fault.args[0]!r}; the tenant has "
                     f"{', '.join(s.part_number for s in tenant.skus)}")


def _hours(fault: Fault) -> float:
    if not fault.args:
        return 5.0
    try:
        return float(fault.args[0])
    except ValueError:
        raise FaultError("m365-sync-stale: give HOURS since the last sync, e.g. 5") from None


if __name__ == "__main__":
    write_lab_tls()
