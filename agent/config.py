"""The agent's one configuration file: agent settings, poll defaults, alert rules and clients.

``load_config`` reads the YAML with a loader that remembers the line of every key and list item,
validates it with pydantic, then runs the checks pydantic cannot do alone (cross references,
secrets, cycles). Every problem is reported at once as "FILE:LINE: field.path: message", because
an operator fixing a 40-site estate wants the whole list, not one error per run.

The file format and the lookup order of every setting are documented in docs/CONFIGURATION.md.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, available_timezones

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    model_validator,
)

from agent.secrets import SecretsFileError, SecretStore, SecretValue
from alerting.expressions import compile_expression

# ----------------------------------------------------------------------------------------------
# Errors


class ConfigError(Exception):
    """The configuration cannot be used. ``errors`` holds every problem, "FILE:LINE: path: message"."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


# ----------------------------------------------------------------------------------------------
# French public holidays


def easter_sunday(year: int) -> date:
    """Gregorian Easter (anonymous Gregorian algorithm, Meeus/Jones/Butcher)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    leap = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * leap) // 451
    month, day = divmod(h + leap - 7 * m + 114, 31)
    return date(year, month, day + 1)


def french_holidays(year: int) -> dict[date, str]:
    """The eleven public holidays of metropolitan France (Code du travail L3133-1).

    Alsace-Moselle's Good Friday and 26 December are not included: none of the clients is there; a
    client that needs them lists the dates explicitly.
    """
    easter = easter_sunday(year)
    return {
        date(year, 1, 1): "Jour de l'an",
        easter + timedelta(days=1): "Lundi de Pâques",
        date(year, 5, 1): "Fête du Travail",
        date(year, 5, 8): "Victoire 1945",
        easter + timedelta(days=39): "Ascension",
        easter + timedelta(days=50): "Lundi de Pentecôte",
        date(year, 7, 14): "Fête nationale",
        date(year, 8, 15): "Assomption",
        date(year, 11, 1): "Toussaint",
        date(year, 11, 11): "Armistice 1918",
        date(year, 12, 25): "Noël",
    }


HOLIDAY_CALENDARS = {"fr": french_holidays}

# ----------------------------------------------------------------------------------------------
# Rule expressions

def _check_when(expression: str) -> str:
    # One language, one parser: the alert engine's, so what loads here is what evaluates there.
    compile_expression(expression)
    return expression


def _check_matchers(matchers: dict[str, str]) -> dict[str, str]:
    """Tag matchers: "value" (exact), "~regex" (re.search, anchor with ^$), "!" in front negates."""
    for tag, pattern in matchers.items():
        body = pattern[1:] if pattern.startswith("!") else pattern
        if body.startswith("~"):
            try:
                re.compile(body[1:])
            except re.error as exc:
                raise ValueError(f"match.{tag}: invalid regular expression: {exc}") from None
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


def _stringify(value: Any) -> Any:
    """Tag and label values are strings on the wire; accept `vlan: 10` or `core: true` in YAML."""
    if isinstance(value, dict):
        return {
            k: str(v).lower() if isinstance(v, bool) else str(v) if isinstance(v, int | float) else v
            for k, v in value.items()
        }
    return value


Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=63)]
CollectorName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
SecretName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
TagKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
Tags = Annotated[dict[TagKey, str], BeforeValidator(_stringify)]
WhenExpr = Annotated[str, StringConstraints(min_length=1, max_length=1000), AfterValidator(_check_when)]
Matchers = Annotated[dict[str, str], BeforeValidator(_stringify), AfterValidator(_check_matchers)]
Template = Annotated[str, AfterValidator(_check_template)]
Severity = Literal["critical", "major", "minor", "warning"]
PositiveSeconds = Annotated[float, Field(gt=0, le=86400)]

# Tags the inventory stamps itself; a device tag may not hide them.
RESERVED_TAGS = frozenset({"client", "site", "device", "collector"})
RESERVED_LABELS = frozenset({"alertname", "client", "site", "device"})


class _Model(BaseModel):
    # extra="forbid": a typo (`intreval_s`) must be an error, not a silently ignored key.
    model_config = ConfigDict(extra="forbid", frozen=True)


# ----------------------------------------------------------------------------------------------
# Rules


class RuleSpec(_Model):
    """One alert rule, the shape shared with alerting/ (see docs/CONFIGURATION.md "Rules").

    ``when`` is evaluated over the sample's fields, then its tags; ``match`` filters on tags first.
    """

    name: Slug
    measurement: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
    when: WhenExpr
    match: Matchers = {}
    for_s: Annotated[float, Field(ge=0, le=7 * 86400)] = 0.0
    severity: Severity = "warning"
    summary: Template = ""
    labels: Tags = {}
    enabled: bool = True

    @model_validator(mode="after")
    def _own_labels(self) -> RuleSpec:
        hidden = RESERVED_LABELS & set(self.labels)
        if hidden:
            raise ValueError(f"labels may not set {', '.join(sorted(hidden))} (set by the alert engine)")
        return self


class RulePatch(_Model):
    """A client's entry under ``rules:``: same name as a global rule = override those keys (or
    ``enabled: false`` to drop it for this client); a new name = a complete new rule."""

    name: Slug
    measurement: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")] | None = None
    when: WhenExpr | None = None
    match: Matchers | None = None
    for_s: Annotated[float, Field(ge=0, le=7 * 86400)] | None = None
    severity: Severity | None = None
    summary: Template | None = None
    labels: Tags | None = None
    enabled: bool | None = None


_UPLINK_ALIAS = "~(?i)uplink|wan|trunk|fibre|fiber|backbone"

# Used when the config has no `rules:` key. Field names are those of docs/METRICS.md.
BUILTIN_RULES: tuple[RuleSpec, ...] = (
    RuleSpec(
        name="device_unreachable",
        measurement="collection",
        # a hard timeout is the same symptom seen from the scheduler: no answer at all
        when="status in ('unreachable', 'timeout')",
        # three polls in a row at the default 60 s: one lost UDP answer must not page anyone
        for_s=120,
        severity="critical",
        summary="{device} ({site}) does not answer {collector}",
    ),
    RuleSpec(
        name="interface_down",
        measurement="snmp_interface",
        when="admin_status == 'up' and oper_status == 'down'",
        match={"if_alias": _UPLINK_ALIAS},
        for_s=60,
        severity="major",
        summary="{device} ({site}) uplink {if_name} down",
    ),
    RuleSpec(
        name="core_interface_down",
        measurement="snmp_interface",
        # Only ports seen up since the agent started (LibreNMS: ifOperStatus_prev = up): an
        # unconnected port is never up, so was_up stays unknown and the rule never fires for it;
        # after a restart a still-down port is unknown too: its firing alert neither resolves
        # nor opens again.
        when="admin_status == 'up' and oper_status == 'down' and was_up == True",
        # the uplink-alias interfaces of core devices are already covered by interface_down
        match={"role": "~^(core|uplink)$", "if_alias": "!" + _UPLINK_ALIAS},
        for_s=60,
        severity="major",
        summary="{device} ({site}) core interface {if_name} down",
    ),
    RuleSpec(
        name="cpu_high",
        measurement="snmp_cpu",
        when="usage_percent > 90",
        for_s=300,
        severity="minor",
        summary="{device} CPU at {usage_percent}% for 5 minutes",
    ),
    RuleSpec(
        name="sensor_critical",
        measurement="snmp_sensor",
        when="state == 'crit'",
        for_s=60,
        severity="major",
        summary="{device} sensor {sensor} critical",
    ),
)

# ----------------------------------------------------------------------------------------------
# Agent settings


class SecretRef(_Model):
    """``{secret: NAME}``: a value kept in the secrets file or ``VIGIE_SECRET_NAME``."""

    secret: SecretName


class SqliteStoreSpec(_Model):
    kind: Literal["sqlite"] = "sqlite"
    retention_days: Annotated[int, Field(ge=1, le=3660)] = 400


class InfluxStoreSpec(_Model):
    kind: Literal["influxdb"]
    url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
    org: Annotated[str, StringConstraints(min_length=1)]
    bucket: Annotated[str, StringConstraints(min_length=1)]
    token: SecretRef
    spool_dir: Path | None = None
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 5000


StoreSpec = Annotated[SqliteStoreSpec | InfluxStoreSpec, Field(discriminator="kind")]


class AgentSettings(_Model):
    state_dir: Path = Path("var")
    shard: list[Slug] = []
    threads: Annotated[int, Field(ge=1, le=256)] = 8
    store: StoreSpec = SqliteStoreSpec()
    web_listen: Annotated[str, StringConstraints(pattern=r"^\S+:\d{1,5}$")] | None = None


class Defaults(_Model):
    """Poll settings that a client, a site or a device may override (lookup order in the docs)."""

    interval_s: PositiveSeconds | None = None
    timeout_s: PositiveSeconds | None = None
    jitter_s: Annotated[float, Field(ge=0, le=3600)] | None = None
    credentials: SecretName | None = None
    collectors: dict[CollectorName, dict[str, Any]] = {}


# Last step of the lookup order.
BUILTIN_INTERVAL_S = 60.0
BUILTIN_TIMEOUT_S = 10.0
BUILTIN_JITTER_S = 5.0

# ----------------------------------------------------------------------------------------------
# Clients, sites, devices

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _check_zone(name: str) -> str:
    if name not in _zones():
        raise ValueError(f"unknown IANA time zone {name!r} (e.g. 'Europe/Paris')")
    return name


def _end_of_day(value: Any) -> Any:
    return time.max if value == "24:00" else value


class ServiceHours(_Model):
    """The contractual service window (PSG, GTR clocks run inside it), in the client's timezone."""

    days: list[Weekday] = ["mon", "tue", "wed", "thu", "fri"]
    start: time = time(8, 0)
    end: Annotated[time, BeforeValidator(_end_of_day)] = time(18, 0)

    @model_validator(mode="after")
    def _ordered(self) -> ServiceHours:
        if self.end <= self.start:
            raise ValueError("end must be after start (use '24:00' for midnight)")
        return self


class Contact(_Model):
    name: Annotated[str, StringConstraints(min_length=1)]
    email: Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
    role: Annotated[str, StringConstraints(min_length=1)]
    phone: str | None = None


class LogTicketing(_Model):
    kind: Literal["log"] = "log"


class GlpiTicketing(_Model):
    kind: Literal["glpi"]
    url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
    app_token: SecretRef
    user_token: SecretRef
    entity_id: Annotated[int, Field(ge=0)]
    category_id: Annotated[int, Field(ge=0)] | None = None
    requesttype_id: Annotated[int, Field(ge=0)] | None = None


Ticketing = Annotated[LogTicketing | GlpiTicketing, Field(discriminator="kind")]


class LabSpec(_Model):
    """Lab only: the snmpsim recording that plays this device (lab/snmpsim.py reads it)."""

    walk: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


def _none_is_empty(value: Any) -> Any:
    # `collectors: {snmp: }` reads as "snmp with default options"
    if isinstance(value, dict):
        return {k: {} if v is None else v for k, v in value.items()}
    return value


class Device(_Model):
    name: Slug
    address: Annotated[str, StringConstraints(pattern=r"^\S+$")]
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    collectors: Annotated[dict[CollectorName, dict[str, Any]], BeforeValidator(_none_is_empty)] = {}
    credentials: SecretName | None = None
    parent: Slug | None = None
    tags: Tags = {}
    interval_s: PositiveSeconds | None = None
    timeout_s: PositiveSeconds | None = None
    jitter_s: Annotated[float, Field(ge=0, le=3600)] | None = None
    lab: LabSpec | None = None

    @model_validator(mode="after")
    def _own_tags(self) -> Device:
        hidden = RESERVED_TAGS & set(self.tags)
        if hidden:
            raise ValueError(f"tags may not set {', '.join(sorted(hidden))} (set by the inventory)")
        return self


class Site(_Model):
    name: Slug
    display_name: str | None = None
    address: str | None = None
    city: str | None = None
    defaults: Defaults = Defaults()
    devices: list[Device] = []


class Client(_Model):
    name: Slug
    display_name: Annotated[str, StringConstraints(min_length=1)]
    timezone: Annotated[str, AfterValidator(_check_zone)] = "Europe/Paris"
    service_hours: ServiceHours = ServiceHours()
    holidays: list[Literal["fr"] | date] = []
    contacts: list[Contact] = []
    ticketing: Ticketing = LogTicketing()
    defaults: Defaults = Defaults()
    rules: list[RulePatch] = []
    sites: list[Site] = []

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def holiday_dates(self, year: int) -> dict[date, str]:
        """The client's holidays in ``year``: computed calendars plus explicit dates."""
        found: dict[date, str] = {}
        for entry in self.holidays:
            if isinstance(entry, date):
                if entry.year == year:
                    found[entry] = "holiday"
            else:
                found.update(HOLIDAY_CALENDARS[entry](year))
        return found

    def is_holiday(self, day: date) -> bool:
        return day in self.holiday_dates(day.year)

    def in_service(self, at: datetime) -> bool:
        """Whether ``at`` (timezone-aware) falls in the service hours, holidays excluded."""
        local = at.astimezone(self.zone)
        hours = self.service_hours
        if WEEKDAYS[local.weekday()] not in hours.days or self.is_holiday(local.date()):
            return False
        if hours.end == time.max:  # "24:00": until midnight included
            return local.time() >= hours.start
        return hours.start <= local.time() < hours.end

    def devices(self) -> Iterator[tuple[Site, Device]]:
        for site in self.sites:
            for device in site.devices:
                yield site, device


# ----------------------------------------------------------------------------------------------
# The whole file


@dataclass(frozen=True)
class PollSettings:
    """A device's effective poll settings once the lookup order is applied."""

    interval_s: float
    timeout_s: float
    jitter_s: float
    credentials: str | None


class Config(_Model):
    agent: AgentSettings = AgentSettings()
    defaults: Defaults = Defaults()
    # None (key absent) = BUILTIN_RULES; an explicit empty list = no global rules.
    rules: list[RuleSpec] | None = None
    clients: list[Client] = []

    _source: Path = PrivateAttr(default=Path("<memory>"))
    _secrets: SecretStore = PrivateAttr(default_factory=lambda: SecretStore({}, {}))
    _client_rules: dict[str, list[RuleSpec]] = PrivateAttr(default_factory=dict)
    _warnings: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _drop_extension_keys(cls, data: Any) -> Any:
        # Top-level `x-...` keys only hold YAML anchors (`x-lab: &lab {...}`), like docker compose.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
        return data

    @property
    def source(self) -> Path:
        return self._source

    @property
    def warnings(self) -> list[str]:
        """Problems that do not stop the agent (a collector that is not installed), same format."""
        return list(self._warnings)

    @property
    def global_rules(self) -> list[RuleSpec]:
        return list(BUILTIN_RULES) if self.rules is None else list(self.rules)

    def rules_for(self, client: str) -> list[RuleSpec]:
        """The enabled rules of one client: global rules with the client's overrides and additions.

        The alert engine applies them to the samples whose ``client`` tag is ``client``.
        """
        self.client(client)
        return [rule for rule in self._client_rules[client] if rule.enabled]

    def client(self, name: str) -> Client:
        for client in self.clients:
            if client.name == name:
                return client
        raise KeyError(f"unknown client {name!r}")

    def device(self, client: str, name: str) -> Device:
        for _, device in self.client(client).devices():
            if device.name == name:
                return device
        raise KeyError(f"unknown device {name!r} in client {client!r}")

    def parents(self) -> dict[tuple[str, str], str]:
        """(client, device) -> parent device name (same client) for every device that has one.

        Used for dependency inhibition: an unreachable parent holds back its children's alerts.
        """
        return {
            (client.name, device.name): device.parent
            for client in self.clients
            for _, device in client.devices()
            if device.parent is not None
        }

    def select_clients(self, names: Collection[str] | None = None) -> list[Client]:
        """The clients this agent serves: ``names`` (``vigie run --clients``), else ``agent.shard``,
        else all of them. Raises ConfigError naming every unknown client."""
        wanted = list(names) if names is not None else list(self.agent.shard)
        if not wanted:
            return list(self.clients)
        known = {c.name for c in self.clients}
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise ConfigError(
                [f"{self._source}: unknown client {n!r} (known: {', '.join(sorted(known))})" for n in unknown]
            )
        return [c for c in self.clients if c.name in set(wanted)]

    def settings_for(self, client: Client, site: Site, device: Device) -> PollSettings:
        """Lookup order: device -> site defaults -> client defaults -> global defaults -> built-in."""
        chain = (device, site.defaults, client.defaults, self.defaults)

        def first(attr: str, builtin: Any) -> Any:
            for level in chain:
                value = getattr(level, attr)
                if value is not None:
                    return value
            return builtin

        return PollSettings(
            interval_s=first("interval_s", BUILTIN_INTERVAL_S),
            timeout_s=first("timeout_s", BUILTIN_TIMEOUT_S),
            jitter_s=first("jitter_s", BUILTIN_JITTER_S),
            credentials=first("credentials", None),
        )

    def collector_options(self, client: Client, site: Site, device: Device, collector: str) -> dict[str, Any]:
        """Global, then client, then site defaults for ``collector``, then the device's own options;
        merged key by key, the most specific level winning."""
        options: dict[str, Any] = {}
        for level in (self.defaults, client.defaults, site.defaults):
            options.update(level.collectors.get(collector, {}))
        options.update(device.collectors[collector])
        return options

    def secret_text(self, ref: SecretRef) -> str:
        """A string secret (a token). load_config has checked it exists and is a string."""
        value = self._secrets.get(ref.secret)
        if not isinstance(value, str):
            raise KeyError(f"secret {ref.secret!r} is not a string")
        return value

    def credentials(self, name: str) -> dict[str, str]:
        """A mapping secret (device credentials). load_config has checked it exists and is a mapping."""
        value = self._secrets.get(name)
        if not isinstance(value, dict):
            raise KeyError(f"secret {name!r} is not a mapping")
        return dict(value)


# ----------------------------------------------------------------------------------------------
# SNMP credential shapes (checked here so a bad secret fails at load, not at the first poll)


class SnmpCommunity(_Model):
    community: Annotated[str, StringConstraints(min_length=1)]


class SnmpUsm(_Model):
    user: Annotated[str, StringConstraints(min_length=1)]
    auth_protocol: Literal["md5", "sha", "sha224", "sha256", "sha384", "sha512"] | None = None
    auth_key: Annotated[str, StringConstraints(min_length=8)] | None = None
    priv_protocol: Literal["des", "3des", "aes", "aes128", "aes192", "aes256"] | None = None
    priv_key: Annotated[str, StringConstraints(min_length=8)] | None = None

    @model_validator(mode="after")
    def _pairs(self) -> SnmpUsm:
        if (self.auth_protocol is None) != (self.auth_key is None):
            raise ValueError("auth_protocol and auth_key go together")
        if (self.priv_protocol is None) != (self.priv_key is None):
            raise ValueError("priv_protocol and priv_key go together")
        if self.priv_protocol is not None and self.auth_protocol is None:
            raise ValueError("privacy (priv_*) requires authentication (auth_*)")
        return self


def _snmp_credentials_problem(value: SecretValue) -> str | None:
    if not isinstance(value, dict):
        return "must be a mapping: {community} or {user, auth_protocol, auth_key, priv_protocol, priv_key}"
    model: type[_Model] = SnmpCommunity if "community" in value else SnmpUsm
    try:
        model.model_validate(value)
    except ValidationError as exc:
        # never echo the input: it is a secret
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())
    return None


# ----------------------------------------------------------------------------------------------
# YAML with line numbers and ${VAR} interpolation


class _Map(dict[Any, Any]):
    """A YAML mapping that remembers its own line and the line of each key."""

    line: int
    key_lines: dict[Any, int]


class _Seq(list[Any]):
    line: int
    item_lines: list[int]


_INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_STR_TAG = "tag:yaml.org,2002:str"


class _LineLoader(yaml.SafeLoader):
    def __init__(self, stream: str, environ: Mapping[str, str]) -> None:
        super().__init__(stream)
        self.environ = environ
        self.problems: list[tuple[int, str]] = []
        self._in_key = False


def _construct_map(loader: _LineLoader, node: yaml.MappingNode) -> Iterator[_Map]:
    data = _Map()
    data.line = node.start_mark.line + 1
    data.key_lines = {}
    yield data
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
            continue
        line = key_node.start_mark.line + 1
        if key_node.value in seen:
            loader.problems.append((line, f"duplicate key {key_node.value!r} (first at line {seen[key_node.value]})"))
        seen[key_node.value] = line
    loader.flatten_mapping(node)  # `<<: *anchor` merges; the mapping's own keys come last and win
    for key_node, value_node in node.value:
        loader._in_key = True
        key = loader.construct_object(key_node, deep=True)
        loader._in_key = False
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_lines[key] = key_node.start_mark.line + 1


def _construct_seq(loader: _LineLoader, node: yaml.SequenceNode) -> Iterator[_Seq]:
    data = _Seq()
    data.line = node.start_mark.line + 1
    data.item_lines = [item.start_mark.line + 1 for item in node.value]
    yield data
    data.extend(loader.construct_object(item, deep=True) for item in node.value)


def _construct_str(loader: _LineLoader, node: yaml.ScalarNode) -> Any:
    value = loader.construct_scalar(node)
    if loader._in_key or "$" not in value:
        return value
    line = node.start_mark.line + 1

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        found = loader.environ.get(name)
        if found is not None and found != "":
            return found
        if default is not None:
            return default
        loader.problems.append((line, f"environment variable {name} is not set (use ${{{name}:-default}})"))
        return ""

    result = _INTERPOLATION.sub(substitute, value)
    if result == value:
        return value
    # `port: ${PORT:-1161}` must give the int 1161, as if it had been written unquoted.
    tag = loader.resolve(yaml.ScalarNode, result, (True, False))
    if tag == _STR_TAG:
        return result
    return loader.yaml_constructors[tag](loader, yaml.ScalarNode(tag, result))


def _construct_int(loader: _LineLoader, node: yaml.ScalarNode) -> Any:
    # YAML 1.1 reads `18:00` as the base-60 integer 1080; service hours must stay times.
    if ":" in node.value:
        return str(node.value)
    return yaml.SafeLoader.construct_yaml_int(loader, node)


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
_LineLoader.add_constructor(_STR_TAG, _construct_str)
_LineLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _read_yaml(path: Path, environ: Mapping[str, str]) -> tuple[Any, list[tuple[int, str]]]:
    loader = _LineLoader(path.read_text(encoding="utf-8"), environ)
    try:
        data = loader.get_single_data()
    finally:
        loader.dispose()
    return data, loader.problems


# ----------------------------------------------------------------------------------------------
# Error location


def _locate(raw: Any, loc: Sequence[Any]) -> tuple[int, str]:
    """Line and readable path of a pydantic ``loc``: list items are named by their ``name``."""
    node = raw
    line = getattr(raw, "line", 1)
    path = ""
    for part in loc:
        if isinstance(node, _Map) and part in node:
            line = node.key_lines.get(part, line)
            path += f".{part}" if path else str(part)
            node = node[part]
        elif isinstance(node, _Seq) and isinstance(part, int) and 0 <= part < len(node):
            line = node.item_lines[part]
            item = node[part]
            label = item.get("name") if isinstance(item, dict) else None
            path += f"[{label}]" if isinstance(label, str) else f"[{part}]"
            node = item
        elif isinstance(node, _Map) and part == node.get("kind"):
            continue  # the discriminator pydantic inserts for `kind:` unions
        else:
            path += f".{part}" if path else str(part)
            node = None
    return line, path


def _pydantic_messages(exc: ValidationError, raw: Any, prefix: Sequence[Any] = ()) -> list[tuple[int, str, str]]:
    found = []
    for error in exc.errors():
        line, path = _locate(raw, (*prefix, *error["loc"]))
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see docs/CONFIGURATION.md)"
        elif error["type"] == "missing":
            message = "required key missing"
        found.append((line, path, message))
    return found


# ----------------------------------------------------------------------------------------------
# Checks on the raw tree (they run even when pydantic rejected part of the file)

# Keys that hold a secret value: writing one inline would put a password in a reviewed file.
SECRET_KEYS = frozenset(
    {
        "community",
        "password",
        "passphrase",
        "token",
        "app_token",
        "user_token",
        "api_key",
        "auth_key",
        "priv_key",
        "private_key",
        "secret_key",
        "client_secret",
    }
)


def _walk(node: Any, loc: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield loc, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*loc, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, (*loc, index))


def _mappings(node: Any, key: str) -> list[tuple[int, _Map]]:
    value = node.get(key) if isinstance(node, dict) else None
    if not isinstance(value, list):
        return []
    return [(i, item) for i, item in enumerate(value) if isinstance(item, _Map)]


def _raw_checks(raw: _Map, secrets: SecretStore | None) -> list[tuple[tuple[Any, ...], str]]:
    """``secrets`` is None when the secrets file was refused: then every lookup would fail and bury
    the one real problem under "not found" noise."""
    problems: list[tuple[tuple[Any, ...], str]] = []

    for loc, node in _walk(raw):
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            if key in SECRET_KEYS and not isinstance(value, dict):
                problems.append(
                    (
                        (*loc, key),
                        f"inline secret refused: write `{key}: {{secret: NAME}}` and put the value in the secrets file",
                    )
                )
        if secrets is None:
            continue
        # `{secret: NAME}` holds a token (a string); `credentials: NAME` a login (a mapping).
        for key, kind, label in (("secret", str, "a string"), ("credentials", dict, "a mapping")):
            name = node.get(key)
            if not isinstance(name, str) or (key == "secret" and set(node) != {"secret"}):
                continue
            value = secrets.get(name)
            if value is None:
                problems.append(((*loc, key), f"secret {name!r} not found (looked in {secrets.where(name)})"))
            elif not isinstance(value, kind):
                problems.append(((*loc, key), f"secret {name!r} must be {label}"))

    agent = raw.get("agent")
    client_names = [c.get("name") for _, c in _mappings(raw, "clients")]
    if isinstance(agent, dict) and isinstance(agent.get("shard"), list):
        for i, name in enumerate(agent["shard"]):
            if isinstance(name, str) and name not in client_names:
                problems.append((("agent", "shard", i), f"unknown client {name!r}"))

    seen_clients: set[str] = set()
    for ci, client in _mappings(raw, "clients"):
        name = client.get("name")
        if isinstance(name, str):
            if name in seen_clients:
                problems.append((("clients", ci, "name"), f"duplicate client name {name!r}"))
            seen_clients.add(name)
        problems.extend(_client_graph_checks(client, ("clients", ci)))

    seen_rules: set[str] = set()
    for ri, rule in _mappings(raw, "rules"):
        name = rule.get("name")
        if isinstance(name, str):
            if name in seen_rules:
                problems.append((("rules", ri, "name"), f"duplicate rule name {name!r}"))
            seen_rules.add(name)
    return problems


def _client_graph_checks(client: _Map, loc: tuple[Any, ...]) -> list[tuple[tuple[Any, ...], str]]:
    """Unique site and device names, parents that exist, no dependency cycle."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    sites: set[str] = set()
    devices: dict[str, tuple[Any, ...]] = {}
    parents: dict[str, str] = {}
    for si, site in _mappings(client, "sites"):
        site_name = site.get("name")
        if isinstance(site_name, str):
            if site_name in sites:
                problems.append(((*loc, "sites", si, "name"), f"duplicate site name {site_name!r}"))
            sites.add(site_name)
        for di, device in _mappings(site, "devices"):
            name = device.get("name")
            if not isinstance(name, str):
                continue
            device_loc = (*loc, "sites", si, "devices", di)
            if name in devices:
                problems.append(((*device_loc, "name"), f"duplicate device name {name!r} in this client"))
                continue
            devices[name] = device_loc
            if isinstance(device.get("parent"), str):
                parents[name] = device["parent"]
    for name, parent in parents.items():
        if parent == name:
            problems.append(((*devices[name], "parent"), "a device cannot be its own parent"))
        elif parent not in devices:
            problems.append(((*devices[name], "parent"), f"unknown parent {parent!r} (not a device of this client)"))
    reported: set[str] = set()
    for start in parents:
        chain = [start]
        while chain[-1] in parents and parents[chain[-1]] in devices and parents[chain[-1]] != chain[-1]:
            nxt = parents[chain[-1]]
            if nxt in chain:
                cycle = chain[chain.index(nxt) :]
                if not reported & set(cycle):
                    reported.update(cycle)
                    text = " -> ".join([*cycle, nxt])
                    problems.append(((*devices[nxt], "parent"), f"dependency cycle: {text}"))
                break
            chain.append(nxt)
    return problems


# ----------------------------------------------------------------------------------------------
# Checks on the validated model


def _valid_part(raw: _Map) -> tuple[Config, list[int]] | None:
    """The valid part of a file pydantic rejected: everything but the clients, plus each client
    that validates alone, with its index in the file. Lets the model checks below run on the
    healthy clients, so one typo does not hide the other clients' problems until the next run."""
    try:
        base = Config.model_validate({k: v for k, v in raw.items() if k != "clients"})
    except ValidationError:
        return None
    items = raw.get("clients")
    kept: list[Client] = []
    indices: list[int] = []
    for index, item in enumerate(items if isinstance(items, list) else []):
        try:
            kept.append(Client.model_validate(item))
        except ValidationError:
            continue
        indices.append(index)
    return base.model_copy(update={"clients": kept}), indices


def _model_checks(
    config: Config,
    secrets: SecretStore,
    known_collectors: Collection[str] | None,
    shipped: Sequence[RuleSpec] = (),
    client_indices: Sequence[int] | None = None,
) -> tuple[list[tuple[tuple[Any, ...], str]], list[tuple[tuple[Any, ...], str]], dict[str, list[RuleSpec]]]:
    errors: list[tuple[tuple[Any, ...], str]] = []
    warnings: list[tuple[tuple[Any, ...], str]] = []
    client_rules: dict[str, list[RuleSpec]] = {}
    global_rules = {rule.name: rule for rule in shipped}
    global_rules.update({rule.name: rule for rule in config.global_rules})

    for position, client in enumerate(config.clients):
        ci = position if client_indices is None else client_indices[position]
        rules = dict(global_rules)
        for ri, patch in enumerate(client.rules):
            changes = patch.model_dump(exclude_unset=True)
            base = rules.get(patch.name)
            merged = {**base.model_dump(), **changes} if base is not None else changes
            try:
                rules[patch.name] = RuleSpec.model_validate(merged)
            except ValidationError as exc:
                for error in exc.errors():
                    message = error["msg"].removeprefix("Value error, ")
                    if error["type"] == "missing":
                        message = "required key missing (a new rule needs every key; an override names a global rule)"
                    errors.append((("clients", ci, "rules", ri, *error["loc"]), message))
        client_rules[client.name] = list(rules.values())

        for si, site in enumerate(client.sites):
            for di, device in enumerate(site.devices):
                loc = ("clients", ci, "sites", si, "devices", di)
                settings = config.settings_for(client, site, device)
                if settings.timeout_s > settings.interval_s:
                    errors.append(
                        (
                            (*loc, "timeout_s"),
                            f"timeout_s ({settings.timeout_s:g}) is longer than interval_s ({settings.interval_s:g})",
                        )
                    )
                if settings.jitter_s >= settings.interval_s:
                    errors.append(
                        (
                            (*loc, "jitter_s"),
                            f"jitter_s ({settings.jitter_s:g}) must be shorter than "
                            f"interval_s ({settings.interval_s:g})",
                        )
                    )
                if "snmp" in device.collectors:
                    if settings.credentials is None:
                        errors.append(
                            (
                                (*loc, "credentials"),
                                "the snmp collector needs credentials (on the device or in a defaults section)",
                            )
                        )
                    else:
                        value = secrets.get(settings.credentials)
                        problem = _snmp_credentials_problem(value) if value is not None else None
                        if problem:
                            errors.append(
                                (
                                    (*loc, "credentials"),
                                    f"secret {settings.credentials!r} is not SNMP credentials: {problem}",
                                )
                            )
                if known_collectors is not None:
                    for name in device.collectors:
                        if name not in known_collectors:
                            warnings.append(
                                (
                                    (*loc, "collectors", name),
                                    f"collector {name!r} is not installed; its polls will be skipped",
                                )
                            )
    return errors, warnings, client_rules


# ----------------------------------------------------------------------------------------------
# Entry point


def load_config(
    path: Path | str,
    secrets_path: Path | str | None = None,
    environ: Mapping[str, str] = os.environ,
    *,
    known_collectors: Collection[str] | None = None,
    shipped_rules: Sequence[Mapping[str, Any]] = (),
) -> Config:
    """Read, validate and cross-check a configuration file; raise ConfigError listing every problem.

    ``known_collectors``: names of the installed collector plugins; a device using another name
    gets a warning (``Config.warnings``), not an error, because collectors are plugins.
    ``shipped_rules``: the rules collectors ship for what they discover (per device family). They
    sit under the global rules: a global or client rule of the same name overrides or disables one.
    """
    path = Path(path)
    shipped: list[RuleSpec] = []
    for raw_rule in shipped_rules:
        try:
            shipped.append(RuleSpec.model_validate(raw_rule))
        except ValidationError as exc:
            raise ConfigError([f"shipped rule {raw_rule.get('name', '?')!r}: {exc}"]) from None
    try:
        raw, yaml_problems = _read_yaml(path, environ)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError([f"{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}"]) from None
    if raw is None:
        raw = _Map()
        raw.line, raw.key_lines = 1, {}
    if not isinstance(raw, _Map):
        raise ConfigError([f"{path}:1: the file must be a mapping (agent, defaults, rules, clients)"])

    try:
        secrets = SecretStore.load(secrets_path, environ)
    except SecretsFileError as exc:
        secrets, secret_errors = SecretStore({}, environ), exc.errors
    else:
        secret_errors = []

    found: list[tuple[int, str, str]] = [(line, "", message) for line, message in yaml_problems]
    config: Config | None = None
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        found.extend(_pydantic_messages(exc, raw))
    for loc, message in _raw_checks(raw, None if secret_errors else secrets):
        found.append((*_locate(raw, loc), message))

    warnings: list[tuple[int, str, str]] = []
    client_rules: dict[str, list[RuleSpec]] = {}
    if config is not None:
        model_errors, model_warnings, client_rules = _model_checks(config, secrets, known_collectors, shipped)
    else:
        part = _valid_part(raw)
        model_errors, model_warnings = [], []
        if part is not None:
            model_errors, model_warnings, _ = _model_checks(part[0], secrets, known_collectors, shipped, part[1])
    found.extend((*_locate(raw, loc), message) for loc, message in model_errors)
    warnings.extend((*_locate(raw, loc), message) for loc, message in model_warnings)

    if found or secret_errors or config is None:
        raise ConfigError(secret_errors + [_format(path, *item) for item in sorted(set(found))])
    config._source = path
    config._secrets = secrets
    config._client_rules = client_rules
    config._warnings = [_format(path, *item) for item in sorted(set(warnings))]
    return config


def _format(path: Path, line: int, field_path: str, message: str) -> str:
    return f"{path}:{line}: {field_path}: {message}" if field_path else f"{path}:{line}: {message}"
