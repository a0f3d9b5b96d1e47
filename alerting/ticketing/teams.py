"""Tickets as Microsoft Teams channel messages, through a Workflows (Power Automate) webhook.

The client's channel runs the "Post to a channel when a webhook request is received" workflow
(Teams > channel > Workflows; it replaced the retired Office 365 connectors). Its trigger takes a
message with one Adaptive Card attachment, as Microsoft documents it::

    {"type": "message",
     "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": null,
                      "content": {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                                  "type": "AdaptiveCard", "version": "1.4", "body": [...]}}]}

and answers 202 Accepted (the flow runs afterwards). One card per event: the opening (title
``[vigie #<ref>] <summary>``, the ticket's lines in the client's language, the idempotency key),
each follow-up and the solution as further cards titled ``Re: [vigie #<ref>] ...`` naming the
opening's delivery: a workflow cannot reply in the first card's thread, so the reference is what
ties them. The workflow URL carries its credential (the ``sig`` query parameter): it is a secret,
and only its host and path appear in logs and errors.

Errors as the signed webhook's (alerting/ticketing/webhook.py): 429/408/5xx and network failures
retried with ``Retry-After``, other 4xx not. Exactly-once: the card is recorded before it is
posted; killed between the 202 and the record's commit, the agent posts the same card again.
Teams keeps no delivery id, so that copy shows in the channel (marked with the same delivery id);
that window is the only way a card is doubled, and none is ever lost.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from agent.api import OnlineCheck, PluginSpec, ReceiverContext, SecretRef
from agent.api.alerts import Alert
from agent.api.outbound import HttpTarget, card
from agent.api.ticket_text import TicketLocale, headline, ticket_body
from alerting.ticketing.delivery import Delivery, DeliveryRecord, RecordedReceiver, record_path, ticket_ref

# Adaptive Card text colours by severity; a solution is "Good"
COLOURS = {"critical": "Attention", "major": "Attention", "minor": "Warning", "warning": "Warning"}


class TeamsOptions(BaseModel):
    """``clients[].ticketing: {kind: teams, url: {secret: NAME}}``: the workflow's URL, by secret."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: SecretRef
    verify: bool = True
    ca_bundle: Path | None = None
    timeout_s: Annotated[float, Field(gt=0, le=120)] = 15.0


class TeamsReceiver(RecordedReceiver):
    name = "teams"

    def __init__(self, target: HttpTarget, record: DeliveryRecord, locale: TicketLocale, **kwargs):
        super().__init__(record, locale, **kwargs)
        self.target = target

    @staticmethod
    def _title(opening: Delivery) -> str:
        return json.loads(opening.payload)["attachments"][0]["content"]["body"][0]["text"]

    def render_open(self, alert: Alert, delivery: str) -> bytes:
        lines = ticket_body(alert, self.locale).split("\n")[:-1]  # the key goes in the footer
        facts = len(lines) - len(alert.summary.split("\n"))  # after the summary: severity, rule, labels, times
        title = f"[vigie #{ticket_ref(alert.idempotency_key)}] {headline(alert)}"
        colour = COLOURS.get(alert.severity, "Default")
        return card(title, lines, colour, f"[{alert.idempotency_key}] {delivery}", keep_last=facts)

    def render_followup(self, opening: Delivery, delivery: str, text: str) -> bytes:
        return card(f"Re: {self._title(opening)}", text.split("\n"), "Default", f"{delivery} ↩ {opening.delivery_id}")

    def render_solve(self, opening: Delivery, delivery: str, alert: Alert, text: str) -> bytes:
        return card(f"Re: {self._title(opening)}", [text], "Good", f"{delivery} ↩ {opening.delivery_id}")

    async def transmit(self, delivery: Delivery) -> None:
        await self.target.post(delivery.payload, {})

    async def check_online(self) -> list[OnlineCheck]:
        return [await self.target.check()]

    async def close(self) -> None:
        await self.target.close()
        await super().close()


def build_teams(options: TeamsOptions, context: ReceiverContext) -> TeamsReceiver:
    url = context.secret(options.url)
    if not url.startswith("https://"):
        raise ValueError(f"teams: url (secret {options.url.secret!r}) must be an https:// workflow URL")
    return TeamsReceiver(
        HttpTarget(url, verify=options.verify, ca_bundle=options.ca_bundle, timeout_s=options.timeout_s),
        DeliveryRecord(record_path(context.state_dir, "teams", context.client)),
        TicketLocale(context.timezone, context.language),
    )


TEAMS = PluginSpec(
    name="teams",
    kind="ticketing",
    factory=build_teams,
    options=TeamsOptions,
    description="Microsoft Teams channel cards through a Workflows webhook (Adaptive Card)",
)
