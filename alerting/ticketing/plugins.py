"""The declarations of the built-in ticket receivers: the embedded ticket log and GLPI.

A client's ``ticketing: {kind: NAME, ...}`` is checked by the options model declared here when
the config loads; the agent then builds one receiver per client with the client's timezone and
language (``ReceiverContext``).
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from agent.api import NoOptions, PluginSpec, ReceiverContext, SecretRef
from agent.api.ticket_text import TicketLocale
from alerting.ticketing.glpi import GlpiBase, GlpiConnector
from alerting.ticketing.glpi_v2 import GlpiV2Connector
from alerting.ticketing.log import TicketLog

TICKET_LOG_FILE = "tickets.sqlite"
log = logging.getLogger(__name__)


def build_log(options: NoOptions, context: ReceiverContext) -> TicketLog:
    locale = TicketLocale(context.timezone, context.language)
    return TicketLog(str(context.state_dir / TICKET_LOG_FILE), locale_for=lambda client: locale)


class GlpiOptions(BaseModel):
    """GLPI: where, the credentials by reference, and the ids tickets get. ``api``: ``legacy``
    (apirest.php with an API user's token; GLPI 9.5 to 11) or ``v2`` (GLPI 11's high-level API,
    api.php, with an OAuth client)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
    api: Literal["legacy", "v2"] = "legacy"
    app_token: SecretRef | None = None
    user_token: SecretRef | None = None  # legacy: the API user's token (Remote access keys)
    # v2: the OAuth client (Setup > OAuth clients) and, for the password grant, a GLPI user
    client_id: str | None = None
    client_secret: SecretRef | None = None
    grant: Literal["password", "client_credentials"] = "password"
    username: str | None = None
    password: SecretRef | None = None
    entity_id: Annotated[int, Field(ge=0)]
    category_id: Annotated[int, Field(ge=0)] | None = None
    requesttype_id: Annotated[int, Field(ge=0)] | None = None
    # GLPI's web root for ticket links (Setup > General "URL of the application"); default: url
    # without its API suffix (/apirest.php, /api, /api.php)
    web_url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")] | None = None
    # one HTTP call's bound: a GLPI that accepts and never answers must not hold the lane
    timeout_s: Annotated[float, Field(gt=0, le=120)] = 15.0
    ca_bundle: Path | None = None  # the CA that signed GLPI's certificate (PEM), if not a public one
    verify_tls: bool = True  # false: GLPI's certificate is not checked (logged at every start)
    # the zone of the dates GLPI answers (its PHP / user timezone), to read when a ticket was taken
    # in charge; default: the client's timezone
    glpi_timezone: str | None = None

    @field_validator("glpi_timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ValueError, ZoneInfoNotFoundError):
                raise ValueError(f"unknown timezone {value!r} (an IANA name such as Europe/Paris)") from None
        return value

    @model_validator(mode="after")
    def _credentials_of_the_api(self) -> GlpiOptions:
        if self.api == "legacy":
            if self.user_token is None:
                raise ValueError("user_token: required with api: legacy")
            extra = [k for k in ("client_id", "client_secret", "username", "password") if getattr(self, k)]
            if extra:
                raise ValueError(f"{', '.join(extra)}: only with api: v2")
        else:
            if not self.client_id or self.client_secret is None:
                raise ValueError("client_id, client_secret: required with api: v2")
            if self.grant == "password" and (not self.username or self.password is None):
                raise ValueError("username, password: required with api: v2 and grant: password")
            if self.user_token is not None or self.app_token is not None:
                raise ValueError("user_token, app_token: only with api: legacy")
        return self


def tls_context(options: GlpiOptions, client: str) -> ssl.SSLContext:
    try:
        tls = ssl.create_default_context(cafile=str(options.ca_bundle) if options.ca_bundle else None)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"ca_bundle: {exc}") from None
    if not options.verify_tls:
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
        log.warning("%s: glpi: TLS verification of %s disabled by verify_tls: false", client, options.url)
    return tls


def build_glpi(options: GlpiOptions, context: ReceiverContext) -> GlpiBase:
    optional = {
        "itilcategories_id": options.category_id,
        "requesttypes_id": options.requesttype_id,
        "web_url": options.web_url,
        "glpi_timezone": options.glpi_timezone,
    }
    common = {
        "entities_id": options.entity_id,
        "timeout_s": options.timeout_s,
        "timezone": context.timezone,
        "language": context.language,
        "ssl_context": tls_context(options, context.client),
        **{key: value for key, value in optional.items() if value is not None},
    }
    if options.api == "v2":
        return GlpiV2Connector(
            options.url,
            str(options.client_id),
            context.secret(options.client_secret),  # type: ignore[arg-type]
            grant=options.grant,
            username=options.username,
            password=context.secret(options.password) if options.password else None,
            **common,
        )
    return GlpiConnector(
        options.url,
        context.secret(options.app_token) if options.app_token else None,
        context.secret(options.user_token),  # type: ignore[arg-type]
        **common,
    )


LOG = PluginSpec(name="log", kind="ticketing", factory=build_log, description="vigie's embedded ticket log")
GLPI = PluginSpec(
    name="glpi",
    kind="ticketing",
    factory=build_glpi,
    options=GlpiOptions,
    description="GLPI 9.5/10/11 REST API (legacy), or GLPI 11's high-level API (api: v2)",
)
