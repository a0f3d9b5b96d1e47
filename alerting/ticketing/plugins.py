"""The declarations of the built-in ticket receivers: the embedded ticket log and GLPI.

A client's ``ticketing: {kind: NAME, ...}`` is checked by the options model declared here when
the config loads; the agent then builds one receiver per client with the client's timezone and
language (``ReceiverContext``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from agent.api import NoOptions, PluginSpec, ReceiverContext, SecretRef
from agent.api.ticket_text import TicketLocale
from alerting.ticketing.glpi import GlpiConnector
from alerting.ticketing.log import TicketLog

TICKET_LOG_FILE = "tickets.sqlite"


def build_log(options: NoOptions, context: ReceiverContext) -> TicketLog:
    locale = TicketLocale(context.timezone, context.language)
    return TicketLog(str(context.state_dir / TICKET_LOG_FILE), locale_for=lambda client: locale)


class GlpiOptions(BaseModel):
    """GLPI's REST API (apirest.php): where, the tokens by reference, and the ids tickets get."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
    app_token: SecretRef | None = None
    user_token: SecretRef
    entity_id: Annotated[int, Field(ge=0)]
    category_id: Annotated[int, Field(ge=0)] | None = None
    requesttype_id: Annotated[int, Field(ge=0)] | None = None
    # one HTTP call's bound: a GLPI that accepts and never answers must not hold the lane
    timeout_s: Annotated[float, Field(gt=0, le=120)] = 15.0


def build_glpi(options: GlpiOptions, context: ReceiverContext) -> GlpiConnector:
    optional = {
        "itilcategories_id": options.category_id,
        "requesttypes_id": options.requesttype_id,
    }
    return GlpiConnector(
        options.url,
        context.secret(options.app_token) if options.app_token else None,
        context.secret(options.user_token),
        entities_id=options.entity_id,
        timeout_s=options.timeout_s,
        timezone=context.timezone,
        language=context.language,
        **{key: value for key, value in optional.items() if value is not None},
    )


LOG = PluginSpec(name="log", kind="ticketing", factory=build_log, description="vigie's embedded ticket log")
GLPI = PluginSpec(
    name="glpi", kind="ticketing", factory=build_glpi, options=GlpiOptions, description="GLPI 9.5/10 REST API"
)
