"""The Microsoft 365 collector: one tenant through Microsoft Graph, app-only (MSAL client credentials).

Per run: service health (``/admin/serviceAnnouncement/healthOverviews`` and ``/issues``), licences
(``/subscribedSkus``), Entra Connect's last sync (``/organization``) and, where the tenant has
them, Microsoft Defender alerts (``/security/alerts_v2``). A part Graph refuses (403: the missing
application permission is named) or garbles ends the run ``partial`` with the others read; no
token, or no answer, ends it ``error`` / ``unreachable``. Options, measurements and rules:
README.md beside this file, docs/CONFIGURATION.md and docs/METRICS.md.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

import httpx
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError

from agent.api import CollectError, CollectorContext, PluginSpec, Rule, Sink, Target, Unreachable
from agent.api.tls import client_tls
from collectors.m365 import parse
from collectors.m365.graph import Graph, GraphError, GraphUnreachable, Login, Retry, TokenRefused, TokenSource

__all__ = ["PLUGIN", "M365Collector", "M365Credentials", "M365Options", "default_rules"]

log = logging.getLogger(__name__)
_STRICT = ConfigDict(extra="forbid", frozen=True)

HEALTH_OVERVIEWS = "/admin/serviceAnnouncement/healthOverviews"
ISSUES = "/admin/serviceAnnouncement/issues"
SKUS = "/subscribedSkus"
ORGANIZATION = "/organization"
SECURITY_ALERTS = "/security/alerts_v2"
# The least-privileged application permission each call needs (Graph's permission tables).
PERMISSIONS = {
    HEALTH_OVERVIEWS: "ServiceHealth.Read.All",
    ISSUES: "ServiceHealth.Read.All",
    SKUS: "Organization.Read.All",
    ORGANIZATION: "Organization.Read.All",
    SECURITY_ALERTS: "SecurityAlert.Read.All",
}
# A 403 that says the application lacks the permission, as opposed to a tenant without the product.
PERMISSION_DENIED_CODES = frozenset({"Authorization_RequestDenied"})


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


def _https_url(url: str) -> str:
    # MSAL refuses an authority that is not https://, and a bearer token never travels in clear
    if not url.startswith("https://") or len(url) <= len("https://"):
        raise ValueError(f"{url!r}: expected https://HOST[:PORT]")
    return url.rstrip("/")


HttpsUrl = Annotated[str, AfterValidator(_https_url)]
Seconds = Annotated[float, Field(gt=0, le=300), BeforeValidator(_not_bool)]


class M365Options(BaseModel):
    model_config = _STRICT

    # the tenant's id (a GUID) or one of its verified domains
    tenant_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]*$", max_length=253)]
    client_id: Annotated[str, StringConstraints(pattern=r"^[0-9A-Fa-f-]{36}$")]  # the app registration's id
    authority_url: HttpsUrl = "https://login.microsoftonline.com"
    graph_url: HttpsUrl = "https://graph.microsoft.com"
    # None: MSAL asks no instance discovery (hosts MSAL knows need none; the lab's fake is trusted as given)
    instance_discovery_url: HttpsUrl | None = None
    ca_bundle: Path | None = None  # None: the system's trust store
    verify_tls: bool = True
    # Both fit in the poll's own timeout (10 s by default), so a run that gives up says why; a longer
    # throttling is better met by the next poll than by a run sleeping through its interval.
    timeout_s: Seconds = 8.0  # per HTTP call
    max_retries: Annotated[int, Field(ge=0, le=10), BeforeValidator(_not_bool)] = 3
    max_retry_wait_s: Annotated[float, Field(ge=0, le=600), BeforeValidator(_not_bool)] = 5.0
    security_alerts: bool = True  # ask Defender's alerts (a tenant without Defender: set false)
    security_alerts_days: Annotated[int, Field(ge=1, le=90), BeforeValidator(_not_bool)] = 7


class M365Credentials(BaseModel):
    """The device's credentials secret: the app registration's client secret. Other keys are left
    alone (one secret may serve other collectors)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    client_secret: Annotated[str, StringConstraints(min_length=1)]


class M365Collector:
    def __init__(
        self,
        options: M365Options,
        context: CollectorContext,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.options = options
        self.clock = context.clock
        self.sleep = sleep
        self.tls = client_tls(options.ca_bundle, options.verify_tls)
        if not options.verify_tls:
            log.warning("%s/%s: m365: TLS verification is disabled (verify_tls: false)", context.client, context.device)
        self._tokens: TokenSource | None = None

    def tokens(self, credentials: Mapping[str, Any]) -> TokenSource:
        """The MSAL client for these credentials, kept between runs (its cache holds the token)."""
        try:
            secret = M365Credentials.model_validate(dict(credentials)).client_secret
        except ValidationError:
            # never echo the input: it is a secret
            raise CollectError("m365 needs client_secret in the device's credentials") from None
        options = self.options
        if self._tokens is None or self._tokens.login.client_secret != secret:
            verify: bool | str = str(options.ca_bundle) if options.ca_bundle else True
            self._tokens = TokenSource(
                Login(
                    authority_url=f"{options.authority_url}/{options.tenant_id}",
                    client_id=options.client_id,
                    client_secret=secret,
                    instance_discovery_url=options.instance_discovery_url,
                    verify=verify if options.verify_tls else False,
                    timeout_s=options.timeout_s,
                )
            )
        return self._tokens

    async def collect(self, target: Target, sink: Sink) -> None:
        options = self.options
        graph = Graph(
            options.graph_url,
            self.tokens(target.credentials),
            options.timeout_s,
            Retry(options.max_retries, options.max_retry_wait_s),
            self.sleep,
        )
        parts: list[Callable[[httpx.AsyncClient], Awaitable[None]]] = [
            lambda c: self._health(graph, c, sink),
            lambda c: self._licences(graph, c, sink),
            lambda c: self._sync(graph, c, sink),
        ]
        if options.security_alerts:
            parts.append(lambda c: self._security(graph, c, sink))
        failures: list[str] = []
        try:
            async with httpx.AsyncClient(verify=self.tls, timeout=options.timeout_s) as client:
                await graph.sign_in()
                for part in parts:
                    try:
                        await part(client)
                    except GraphError as exc:
                        failures.append(_explain(exc))
        except GraphUnreachable as exc:
            raise Unreachable(str(exc)) from None
        except TokenRefused as exc:
            raise CollectError(
                f"Entra ID refused a token to client {options.client_id} of tenant {options.tenant_id}: {exc}"
            ) from None
        if len(failures) == len(parts):
            raise CollectError("; ".join(failures))
        for failure in failures:
            sink.error(failure)

    async def _health(self, graph: Graph, client: httpx.AsyncClient, sink: Sink) -> None:
        services = await graph.collection(client, HEALTH_OVERVIEWS)
        _emit(sink, "m365_service", HEALTH_OVERVIEWS, map(parse.service, services))
        _emit(sink, "m365_issue", ISSUES, map(parse.issue, await graph.collection(client, ISSUES)))

    async def _licences(self, graph: Graph, client: httpx.AsyncClient, sink: Sink) -> None:
        _emit(sink, "m365_license", SKUS, map(parse.license_, await graph.collection(client, SKUS)))

    async def _sync(self, graph: Graph, client: httpx.AsyncClient, sink: Sink) -> None:
        organizations = await graph.collection(client, ORGANIZATION)
        if len(organizations) != 1:
            raise GraphError(ORGANIZATION, f"{len(organizations)} organizations, expected the tenant's one", 200)
        (organization,) = organizations
        sink.emit("m365_sync", parse.sync(organization, self.clock()), {})

    async def _security(self, graph: Graph, client: httpx.AsyncClient, sink: Sink) -> None:
        since = dt.datetime.fromtimestamp(self.clock(), dt.UTC) - dt.timedelta(days=self.options.security_alerts_days)
        params = {"$filter": f"lastUpdateDateTime ge {since.strftime('%Y-%m-%dT%H:%M:%SZ')}"}
        alerts = await graph.collection(client, SECURITY_ALERTS, params)
        _emit(sink, "m365_security_alert", SECURITY_ALERTS, map(parse.security_alert, alerts))


def _emit(
    sink: Sink, measurement: str, path: str, parsed: Iterable[tuple[dict[str, str], dict[str, Any]] | None]
) -> None:
    """One sample per item; an item without what identifies it is left out, and said."""
    left_out = 0
    for item in parsed:
        if item is None:
            left_out += 1
            continue
        tags, fields = item
        sink.emit(measurement, fields, tags)
    if left_out:
        sink.error(f"{path}: {left_out} item(s) without an id or a name left out")


def _explain(exc: GraphError) -> str:
    """A refused part in the words an administrator acts on: a 403 names the permission to grant."""
    if exc.status != 403:
        return str(exc)
    permission = PERMISSIONS[exc.path]
    if exc.path == SECURITY_ALERTS and exc.code not in PERMISSION_DENIED_CODES:
        # Graph answers 403 both without the permission and for a tenant without Defender
        return (f"{exc}: the application lacks the application permission {permission}, or the tenant has no "
                "Microsoft Defender licence (set security_alerts: false for a tenant without it)")
    return f"{exc}: the application lacks the application permission {permission} (admin consent)"


INCIDENT_SERVICES = "~^(Exchange Online|Microsoft Teams)$"


def default_rules() -> list[Rule]:
    return [
        Rule(
            name="m365_incident",
            measurement="m365_issue",
            match={"classification": "incident", "service": INCIDENT_SERVICES},
            when="not is_resolved",
            severity="major",
            summary="{service}: Microsoft incident {issue_id}: {title}",
        ),
        Rule(
            name="m365_licenses_low",
            measurement="m365_license",
            when="prepaid > 0 and available < 2",
            severity="warning",
            summary="{sku}: {available} licence(s) left ({consumed} of {prepaid} assigned)",
        ),
        Rule(
            name="m365_sync_stale",
            measurement="m365_sync",
            when="enabled and last_sync_age_s > 3 * 3600",
            severity="major",
            summary="Entra Connect: no directory sync for {last_sync_age_s} s (over 3 h)",
        ),
        Rule(
            name="m365_security_alert",
            measurement="m365_security_alert",
            when="not is_resolved and severity in ('high', 'medium')",
            severity="major",
            summary="Microsoft Defender ({service_source}): {severity} alert {title}",
        ),
    ]


PLUGIN = PluginSpec(
    name="m365",
    kind="collector",
    factory=M365Collector,
    options=M365Options,
    credentials=M365Credentials,
    default_rules=default_rules,
    description="Microsoft 365 through Graph (MSAL client credentials): service health and incidents, licences, "
    "Entra Connect sync, Defender alerts",
)
