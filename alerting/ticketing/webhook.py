"""Tickets as signed webhooks: one JSON POST per event (open, follow-up, solve) to the client's URL.

The body (schema ``vigie.ticket/1``, documented in docs/CONFIGURATION.md) carries the event, the
ticket's reference, the alert (rule, severity, summary, labels, times in epoch seconds) and the
text in the client's language. Headers:

- ``X-Vigie-Delivery`` and ``Idempotency-Key``: the delivery id, the same on every attempt of one
  event (``<ref>-open``, ``<ref>-followup-<hash>``, ``<ref>-solve``): the receiver drops one it
  has already processed;
- ``X-Vigie-Timestamp``: the attempt's Unix time; ``X-Vigie-Signature: sha256=<hex>``, the
  HMAC-SHA256 with the shared secret of ``<timestamp>.<body>``: the receiver recomputes it, and
  refuses a timestamp older than its tolerance (a replay), the signature being fresh per attempt.

A 2xx is delivered; 429, 408 and 5xx are retried by the outbox (``Retry-After`` honoured, in
seconds or as an HTTP date), as are refused connections and timeouts; any other 4xx is not
retried (the receiver refuses the request: a wrong secret, a body it does not accept).

Exactly-once: the body is recorded before the first attempt (alerting/ticketing/delivery.py) and
sent again byte for byte, same delivery id, after a crash between the receiver's 2xx and the
record's commit: a receiver that deduplicates by delivery id processes each event once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from agent.api import OnlineCheck, PluginSpec, ReceiverContext, SecretRef
from agent.api.alerts import Alert
from agent.api.outbound import HttpTarget
from agent.api.ticket_text import TicketLocale, ticket_body, ticket_title
from alerting.ticketing.delivery import (
    OPEN,
    SOLVE,
    Delivery,
    DeliveryRecord,
    RecordedReceiver,
    record_path,
    ticket_ref,
)

log = logging.getLogger(__name__)

SCHEMA = "vigie.ticket/1"


class WebhookOptions(BaseModel):
    """``clients[].ticketing: {kind: webhook, ...}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
    secret: SecretRef  # the HMAC-SHA256 key shared with the receiver
    verify: bool = True
    ca_bundle: Path | None = None
    timeout_s: Annotated[float, Field(gt=0, le=120)] = 15.0


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of ``<timestamp>.<body>`` keyed by the shared secret."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def alert_json(alert: Alert) -> dict[str, Any]:
    return {
        "fingerprint": alert.fingerprint,
        "rule": alert.rule,
        "severity": alert.severity,
        "summary": alert.summary,
        "labels": dict(alert.labels),
        "started_at": alert.started_at,
        "fired_at": alert.fired_at,
        "resolved_at": alert.resolved_at,
    }


class WebhookReceiver(RecordedReceiver):
    name = "webhook"

    def __init__(self, target: HttpTarget, secret: str, record: DeliveryRecord, locale: TicketLocale, **kwargs):
        super().__init__(record, locale, **kwargs)
        self.target = target
        self.secret = secret

    def _body(self, event: str, delivery: str, key: str, **fields: Any) -> bytes:
        body = {
            "schema": SCHEMA,
            "event": event,
            "delivery_id": delivery,
            "ticket": ticket_ref(key),
            "idempotency_key": key,
            "language": self.locale.language,
            "timezone": self.locale.timezone,
            **fields,
        }
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

    def render_open(self, alert: Alert, delivery: str) -> bytes:
        return self._body(
            OPEN, delivery, alert.idempotency_key, client=alert.client, title=ticket_title(alert),
            text=ticket_body(alert, self.locale), alert=alert_json(alert),
        )

    def render_followup(self, opening: Delivery, delivery: str, text: str) -> bytes:
        return self._body("followup", delivery, opening.idempotency_key, in_reply_to=opening.delivery_id, text=text)

    def render_solve(self, opening: Delivery, delivery: str, alert: Alert, text: str) -> bytes:
        return self._body(
            SOLVE, delivery, opening.idempotency_key, client=alert.client, in_reply_to=opening.delivery_id,
            text=text, alert=alert_json(alert),
        )

    async def transmit(self, delivery: Delivery) -> None:
        timestamp = str(int(self.record.clock()))
        await self.target.post(
            delivery.payload,
            {
                "X-Vigie-Event": delivery.event,
                "X-Vigie-Delivery": delivery.delivery_id,
                "Idempotency-Key": delivery.delivery_id,
                "X-Vigie-Timestamp": timestamp,
                "X-Vigie-Signature": signature(self.secret, timestamp, delivery.payload),
            },
        )

    async def check_online(self) -> list[OnlineCheck]:
        return [await self.target.check()]

    async def close(self) -> None:
        await self.target.close()
        await super().close()


def build_webhook(options: WebhookOptions, context: ReceiverContext) -> WebhookReceiver:
    return WebhookReceiver(
        HttpTarget(options.url, verify=options.verify, ca_bundle=options.ca_bundle, timeout_s=options.timeout_s),
        context.secret(options.secret),
        DeliveryRecord(record_path(context.state_dir, "webhook", context.client)),
        TicketLocale(context.timezone, context.language),
    )


WEBHOOK = PluginSpec(
    name="webhook",
    kind="ticketing",
    factory=build_webhook,
    options=WebhookOptions,
    description="signed JSON webhook (HMAC-SHA256), one POST per event, retried",
)
