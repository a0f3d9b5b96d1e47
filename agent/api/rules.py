"""The one alert rule model: what the configuration's ``rules:``, a plugin's default rules and the
alert engine all use (see docs/CONFIGURATION.md "Rules").

A rule is validated once, here: its ``when`` is compiled by the rule language
(:mod:`agent.api.expressions`), its tag matchers are parsed, its severity and labels checked. The
engine then reads the compiled forms (``rule.condition``, ``rule.matchers``) without checking
again.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    model_validator,
)

from agent.api.expressions import Expression, compile_expression

SEVERITIES = ("critical", "major", "minor", "warning")
Severity = Literal["critical", "major", "minor", "warning"]

# Labels the alert engine sets itself from the rule and the sample; a rule may not set them.
RESERVED_LABELS = frozenset({"alertname", "client", "site", "device"})


@dataclass(frozen=True)
class TagMatcher:
    """``value`` exact, ``~regex`` (unanchored ``re.search``; anchor with ^$), ``!`` negates either.

    A missing tag is treated as the empty string (as in Alertmanager), so ``role: "!core"`` matches
    a sample without a ``role`` tag and ``role: core`` does not."""

    tag: str
    raw: str
    negate: bool
    regex: re.Pattern[str] | None
    value: str

    @classmethod
    def parse(cls, tag: str, raw: str) -> TagMatcher:
        negate = raw.startswith("!")
        body = raw[1:] if negate else raw
        regex = None
        if body.startswith("~"):
            try:
                regex = re.compile(body[1:])
            except re.error as exc:
                raise ValueError(f"match.{tag}: invalid regular expression: {exc}") from None
        return cls(tag, raw, negate, regex, body)

    def matches(self, tags: Mapping[str, str]) -> bool:
        value = str(tags.get(self.tag, "") or "")
        hit = bool(self.regex.search(value)) if self.regex is not None else value == self.value
        return hit != self.negate


def _check_when(expression: str) -> str:
    compile_expression(expression)
    return expression


def _check_matchers(matchers: dict[str, str]) -> dict[str, str]:
    for tag, pattern in matchers.items():
        TagMatcher.parse(tag, pattern)
    return matchers


def _check_template(template: str) -> str:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ValueError(f"invalid format string: {exc}") from None
    for name in fields:
        if not name.isidentifier():
            # `{0}`, `{x.y}` or `{x[0]}` would reach into Python objects; tags and fields are flat.
            raise ValueError(f"placeholder {{{name}}} must be a plain tag or field name")
    return template


def stringify(value: Any) -> Any:
    """Tag and label values are strings on the wire; accept `vlan: 10` or `core: true` in YAML."""
    if isinstance(value, dict):
        return {
            k: str(v).lower() if isinstance(v, bool) else str(v) if isinstance(v, int | float) else v
            for k, v in value.items()
        }
    return value


Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=63)]
Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
TagKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
Tags = Annotated[dict[TagKey, str], BeforeValidator(stringify)]
WhenExpr = Annotated[str, StringConstraints(min_length=1, max_length=1000), AfterValidator(_check_when)]
Matchers = Annotated[dict[str, str], BeforeValidator(stringify), AfterValidator(_check_matchers)]
Template = Annotated[str, AfterValidator(_check_template)]
LabelName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]


class Inhibition(BaseModel):
    """One entry of a rule's ``inhibits``: Alertmanager's inhibit rule with the declaring rule as
    its source.

    While an alert of the declaring rule is pending or firing, an alert of ``rule`` (the target)
    whose labels match ``match`` and carry the same values as the source alert for every label in
    ``equal`` is held pending, and fires at its next bad sample once no source holds it. A label
    missing on either side is a non-match, so an inhibition never reaches across objects it cannot
    name. ``match`` reads the target's labels with the rule matchers' syntax (``~regex``, ``!``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: Slug
    # At least one label: an empty list would hold every alert of the target, on every device.
    equal: Annotated[tuple[LabelName, ...], Field(min_length=1)]
    match: Matchers = {}
    # False for a plugin's rule holding a rule it does not ship (the kernel's device_unreachable),
    # which a configuration may have replaced: an absent target then holds nothing. True (a typo
    # in a configured inhibition is an error) everywhere else.
    required: bool = True

    _matchers: tuple[TagMatcher, ...] = PrivateAttr()

    @model_validator(mode="after")
    def _compile(self) -> Inhibition:
        if "alertname" in self.equal:
            raise ValueError("equal may not name alertname: a source and its target never share it")
        self._matchers = tuple(TagMatcher.parse(label, raw) for label, raw in self.match.items())
        return self

    def selects(self, target: Mapping[str, str]) -> bool:
        """Whether a target alert with these labels is one this inhibition may hold: ``match``
        holds and every ``equal`` label is present (the engine then looks for a source alert
        with the same values)."""
        return all(label in target for label in self.equal) and all(m.matches(target) for m in self._matchers)


class Flapping(BaseModel):
    """Nagios-style flap detection on a rule: an object whose alert fired ``threshold`` times or
    more within ``window_s`` is *flapping*: its firing alert no longer resolves at each good
    sample (one ticket, marked flapping, instead of one per flap) and resolves only once the
    object has stayed good for ``window_s``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_s: Annotated[float, Field(gt=0, le=7 * 86400)] = 1800.0
    threshold: Annotated[int, Field(ge=2, le=1000)] = 4


class Rule(BaseModel):
    """One alert rule.

    ``when`` is evaluated over the sample's fields, then its tags; ``match`` filters on tags first.
    A sample matching ``measurement`` and ``match`` whose ``when`` holds for ``for_s`` fires.
    ``clear_when`` (hysteresis: fire above 90 %, clear below 80 %): a firing alert resolves only
    on a sample where it holds, not as soon as ``when`` stops holding. ``flapping``: see
    :class:`Flapping`. ``inhibits`` names the rules whose alerts on the same object this rule's
    alerts hold back (a family's own rule over a generic one, see :class:`Inhibition`).
    """

    # extra="forbid": a typo (`for: 60`) must be an error, not a silently ignored key.
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Slug
    measurement: Identifier
    # None only for a silence rule (``absent_for_s``): it fires on no sample at all
    when: WhenExpr | None = None
    match: Matchers = {}
    for_s: Annotated[float, Field(ge=0, le=7 * 86400, strict=True)] = 0.0  # strict: `for_s: true` is not 1 s
    severity: Severity = "warning"
    summary: Template = ""
    labels: Tags = {}
    inhibits: tuple[Inhibition, ...] = ()
    clear_when: WhenExpr | None = None
    flapping: Flapping | None = None
    # a silence rule: a series of ``measurement`` (and ``match``) that reported and has sent
    # nothing for this long fires, never counts as OK; its next sample resolves it
    absent_for_s: Annotated[float, Field(gt=0, le=30 * 86400)] | None = None
    # the contract's impact / urgency of this rule's alerts, in the client's priority vocabulary
    # (agent.api.priority); default: the severity's placement
    impact: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = None
    urgency: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = None
    enabled: bool = True

    _condition: Expression = PrivateAttr()
    _clear: Expression | None = PrivateAttr(default=None)
    _matchers: tuple[TagMatcher, ...] = PrivateAttr()

    @model_validator(mode="after")
    def _compile(self) -> Rule:
        hidden = RESERVED_LABELS & set(self.labels)
        if hidden:
            raise ValueError(f"labels may not set {', '.join(sorted(hidden))} (set by the alert engine)")
        if any(inhibition.rule == self.name for inhibition in self.inhibits):
            raise ValueError(f"rule {self.name} may not inhibit itself")
        if (self.when is None) == (self.absent_for_s is None):
            raise ValueError("give when (a condition on the samples), or absent_for_s (a silence rule) alone")
        if self.absent_for_s is not None and (self.clear_when is not None or self.flapping is not None):
            raise ValueError("a silence rule (absent_for_s) takes no clear_when nor flapping")
        if self.when is not None:
            self._condition = compile_expression(self.when)
        self._clear = compile_expression(self.clear_when) if self.clear_when is not None else None
        self._matchers = tuple(TagMatcher.parse(tag, raw) for tag, raw in self.match.items())
        return self

    @property
    def condition(self) -> Expression:
        """The compiled ``when`` (a silence rule has none: the engine never asks it)."""
        return self._condition

    @property
    def clear_condition(self) -> Expression | None:
        return self._clear

    @property
    def matchers(self) -> tuple[TagMatcher, ...]:
        return self._matchers

    def with_changes(self, **changes: Any) -> Rule:
        """A validated copy with ``changes`` (``model_copy`` would keep the old compiled forms)."""
        return Rule.model_validate({**self.model_dump(), **changes})

    def applies_to(self, measurement: str, tags: Mapping[str, str]) -> bool:
        return measurement == self.measurement and all(m.matches(tags) for m in self._matchers)


def inhibition_problems(rules: Sequence[Rule]) -> list[str]:
    """What is wrong with the inhibitions of ``rules``, one line per problem naming the rules
    (empty when nothing is): a target must name one of ``rules`` (a disabled one counts), and the
    enabled rules' inhibitions may not form a cycle, in which rules would hold each other back and
    none would fire. The engine refuses such rules; a configuration check can report the same
    lines where the rules are written."""
    known = {rule.name for rule in rules}
    problems: list[str] = []
    edges: dict[str, set[str]] = {}
    for rule in rules:
        if not rule.enabled:
            continue
        for inhibition in rule.inhibits:
            problem = f"rule {rule.name} inhibits {inhibition.rule}, which is not a rule"
            if inhibition.required and inhibition.rule not in known and problem not in problems:
                problems.append(problem)
            edges.setdefault(rule.name, set()).add(inhibition.rule)
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            problems.append("inhibition cycle: " + " -> ".join([*path[path.index(name) :], name]))
            return
        if name in done:
            return
        for target in sorted(edges.get(name, ())):
            visit(target, [*path, name])
        done.add(name)

    for name in sorted(edges):
        visit(name, [])
    return problems
