"""Alerts and their transitions: what the engine produces and every receiver (ticketing,
notifications, reports) reads."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.api.priority import Priority

PENDING = "pending"
FIRING = "firing"
RESOLVED = "resolved"


def fingerprint(labels: Mapping[str, str]) -> str:
    """Stable identity of an alert: sha256 of its sorted labels, 16 hex digits."""
    blob = json.dumps(sorted((str(k), str(v)) for k, v in labels.items()), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class Alert:
    """One occurrence of an alert. ``fingerprint`` is the identity of the labels; a new occurrence
    after resolution has the same fingerprint and a new ``started_at``/``fired_at``."""

    fingerprint: str
    rule: str
    labels: dict[str, str]
    severity: str
    summary: str
    state: str
    started_at: float  # timestamp of the first bad sample (epoch seconds)
    fired_at: float | None = None
    resolved_at: float | None = None
    last_sample_at: float | None = None
    inhibited_by: str | None = None  # "client/device" or "rule/fingerprint" holding it back while pending
    # its rule watches for flapping and it flaps: it resolves only once good for the rule's window
    flapping: bool = False
    good_since: float | None = None  # a flapping alert's first good sample since its last bad one
    # a device down: the devices behind it (the topology's children, theirs...), unreachable with it
    impacted: list[str] = field(default_factory=list)
    # set when the alert is queued for a ticket: the client's contract priority, and what changed
    # on the device and its parents in the hour before (lines in the client's language)
    priority: Priority | None = None
    context: list[str] = field(default_factory=list)
    id: int | None = None

    @property
    def client(self) -> str:
        return self.labels.get("client", "")

    @property
    def device(self) -> str:
        return self.labels.get("device", "")

    @property
    def idempotency_key(self) -> str:
        """Carried by the ticket (name and content) so a ticket can be found again after a crash.

        One key per firing occurrence: ``vigie:<fingerprint>:<fired_at as integer epoch seconds>``.
        """
        if self.fired_at is None:
            raise ValueError(f"alert {self.fingerprint} has not fired")
        return f"vigie:{self.fingerprint}:{int(self.fired_at)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "rule": self.rule,
            "labels": dict(self.labels),
            "severity": self.severity,
            "summary": self.summary,
            "state": self.state,
            "started_at": self.started_at,
            "fired_at": self.fired_at,
            "resolved_at": self.resolved_at,
            "last_sample_at": self.last_sample_at,
            "inhibited_by": self.inhibited_by,
            "flapping": self.flapping,
            "good_since": self.good_since,
            "impacted": list(self.impacted),
            "priority": None if self.priority is None else self.priority.to_dict(),
            "context": list(self.context),
            "id": self.id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        # a key absent (an outbox row written before the field existed) takes the field's default
        values = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        if values.get("priority") is not None:
            values["priority"] = Priority(**values["priority"])
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class AlertTransition:
    """A state change: pending (new), firing (pending -> firing) or resolved (firing -> resolved).

    Dropped pending alerts (condition cleared before ``for_s``) produce no transition."""

    alert: Alert
    previous: str | None
    state: str
    at: float


Transition = AlertTransition
