"""A client's priority policy: its contract's matrix, the severities' placement in it, and the
overrides by rule, site, device or tags (``clients[].priority``; agent/api/priority.py)."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, model_validator

from agent.api.alerts import Alert
from agent.api.priority import SEED_001_MATRIX, SEED_001_PLACEMENT, Priority
from agent.api.rules import Matchers, Rule, Severity, Slug, TagMatcher


class PriorityOverride(BaseModel):
    """Alerts this entry selects (all given keys must hold) get its impact and/or urgency."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: Slug | None = None
    site: Slug | None = None
    devices: list[str] = []
    match: Matchers = {}
    impact: str | None = None
    urgency: str | None = None

    @model_validator(mode="after")
    def _sets_something(self) -> PriorityOverride:
        if self.impact is None and self.urgency is None:
            raise ValueError("an override sets impact, urgency or both")
        return self

    def selects(self, alert: Alert) -> bool:
        labels = alert.labels
        return (
            (self.rule is None or alert.rule == self.rule)
            and (self.site is None or labels.get("site") == self.site)
            and (not self.devices or labels.get("device") in self.devices)
            and all(TagMatcher.parse(tag, raw).matches(labels) for tag, raw in self.match.items())
        )


class PrioritySettings(BaseModel):
    """``clients[].priority``. ``matrix``: urgency -> impact -> level (P0 the highest);
    ``severities``: where each severity sits (impact, urgency); ``overrides``: first match wins,
    after the rule's own impact/urgency."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    matrix: dict[str, dict[str, str]] = SEED_001_MATRIX
    severities: dict[Severity, tuple[str, str]] = SEED_001_PLACEMENT
    overrides: list[PriorityOverride] = []

    @model_validator(mode="after")
    def _in_the_matrix(self) -> PrioritySettings:
        impacts = {impact for row in self.matrix.values() for impact in row}
        for urgency, row in self.matrix.items():
            if set(row) != impacts:
                raise ValueError(f"matrix: urgency {urgency!r} lacks impact(s) {', '.join(sorted(impacts - set(row)))}")
        problems = [f"severities.{sev}: {impact!r} x {urgency!r} is not in the matrix"
                    for sev, (impact, urgency) in self.severities.items()
                    if urgency not in self.matrix or impact not in impacts]
        for i, override in enumerate(self.overrides):
            if override.impact is not None and override.impact not in impacts:
                problems.append(f"overrides[{i}].impact: {override.impact!r} is none of {', '.join(sorted(impacts))}")
            if override.urgency is not None and override.urgency not in self.matrix:
                problems.append(f"overrides[{i}].urgency: {override.urgency!r} is none of {', '.join(self.matrix)}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def rule_problems(self, rule: Rule) -> list[str]:
        """What a rule's own impact/urgency names outside this client's matrix."""
        impacts = {impact for row in self.matrix.values() for impact in row}
        found = []
        if rule.impact is not None and rule.impact not in impacts:
            found.append(f"rule {rule.name}: impact {rule.impact!r} is none of {', '.join(sorted(impacts))}")
        if rule.urgency is not None and rule.urgency not in self.matrix:
            found.append(f"rule {rule.name}: urgency {rule.urgency!r} is none of {', '.join(self.matrix)}")
        return found

    def priority(self, alert: Alert, rule: Rule | None) -> Priority:
        impact, urgency = self.severities.get(alert.severity, self.severities.get("warning", _lowest(self.matrix)))
        if rule is not None:
            impact, urgency = rule.impact or impact, rule.urgency or urgency
        for override in self.overrides:
            if override.selects(alert):
                impact, urgency = override.impact or impact, override.urgency or urgency
                break
        return Priority(impact, urgency, self.matrix[urgency][impact])


def _lowest(matrix: Mapping[str, Mapping[str, str]]) -> tuple[str, str]:
    urgency = list(matrix)[-1]
    return list(matrix[urgency])[-1], urgency
