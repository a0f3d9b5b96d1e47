"""The configuration file's schema: agent settings, poll defaults, rules, clients, sites, devices.

The shapes are the kernel's own. What belongs to a plugin (a collector's options, a device's
credentials for it, a ticket receiver's or a store's options) is kept here as a raw mapping and
checked by the plugin's own models in checks.py, so the schema never names a plugin.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, available_timezones

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

from agent.api import SecretRef
from agent.api.rules import Rule, Severity, Slug, Tags
from agent.config.calendar import HOLIDAY_CALENDARS, WEEKDAYS, Weekday
from agent.config.errors import ConfigError
from agent.secrets import SecretStore


def _no_bool(value: Any) -> Any:
    # pydantic reads `interval_s: true` as 1 s: a typo for a duration must be an error.
    if isinstance(value, bool):
        raise ValueError("expected a number of seconds, not a boolean")
    return value


def _none_is_empty(value: Any) -> Any:
    # `collectors: {snmp: }` reads as "snmp with default options"
    if isinstance(value, dict):
        return {k: {} if v is None else v for k, v in value.items()}
    return value


CollectorName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
SecretName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
PositiveSeconds = Annotated[float, Field(gt=0, le=86400), BeforeValidator(_no_bool)]
# One secret for every collector of a device, or one per collector (SNMP community and SSH key).
Credentials = SecretName | dict[CollectorName, SecretName]

# Tags the inventory stamps itself; a device tag may not hide them.
RESERVED_TAGS = frozenset({"client", "site", "device", "collector"})


class _Model(BaseModel):
    # extra="forbid": a typo (`intreval_s`) must be an error, not a silently ignored key.
    model_config = ConfigDict(extra="forbid", frozen=True)


# ----------------------------------------------------------------------------------------------
# Rules


class RuleOverride(_Model):
    """A client's entry under ``rules:``: same name as a global rule = override those keys (or
    ``enabled: false`` to drop it for this client); a new name = a complete new rule. The keys are
    checked once merged, by the one rule model (agent.api.Rule)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: Slug


# The kernel's own rules, used when the config has no `rules:` key (an explicit list replaces
# them). Plugins ship theirs (SNMP: interface_down, cpu_high, ...) under these.
BUILTIN_RULES: tuple[Rule, ...] = (
    Rule(
        name="device_unreachable",
        measurement="collection",
        # a hard timeout is the same symptom seen from the scheduler: no answer at all
        when="status in ('unreachable', 'timeout')",
        # three polls in a row at the default 60 s: one lost UDP answer must not page anyone
        for_s=120,
        severity="critical",
        summary="{device} ({site}) does not answer {collector}",
    ),
)

# ----------------------------------------------------------------------------------------------
# Agent settings


class PluginChoice(_Model):
    """``{kind: NAME, ...options}``: a plugin (a store, a ticket receiver) and its options, which
    the plugin's own options model checks (see checks.py)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: CollectorName

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class AgentSettings(_Model):
    state_dir: Path = Path("var")
    shard: list[Slug] = []
    threads: Annotated[int, Field(ge=1, le=256), BeforeValidator(_no_bool)] = 8
    store: PluginChoice = PluginChoice(kind="sqlite")
    # agent.services.<name>: options of a service plugin (trap receiver, web app, reports)
    services: Annotated[dict[CollectorName, dict[str, Any]], BeforeValidator(_none_is_empty)] = {}
    web_listen: Annotated[str, StringConstraints(pattern=r"^\S+:\d{1,5}$")] | None = None


class Defaults(_Model):
    """Poll settings that a client, a site or a device may override (lookup order in the docs)."""

    interval_s: PositiveSeconds | None = None
    timeout_s: PositiveSeconds | None = None
    jitter_s: Annotated[float, Field(ge=0, le=3600), BeforeValidator(_no_bool)] | None = None
    credentials: Credentials | None = None
    collectors: dict[CollectorName, dict[str, Any]] = {}


# Last step of the lookup order.
BUILTIN_INTERVAL_S = 60.0
BUILTIN_TIMEOUT_S = 10.0
BUILTIN_JITTER_S = 5.0

# ----------------------------------------------------------------------------------------------
# Clients, sites, devices



@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _check_zone(name: str) -> str:
    if name not in _zones():
        raise ValueError(f"unknown IANA time zone {name!r} (e.g. 'Europe/Paris')")
    return name


def _clock_time(value: Any) -> Any:
    # pydantic reads `start: 8` as 8 seconds past midnight UTC: a service hour is written "08:00"
    if isinstance(value, bool | int | float):
        raise ValueError("write a time of day as \"HH:MM\" (e.g. \"08:00\"), not a number")
    return value


def _end_of_day(value: Any) -> Any:
    return time.max if value == "24:00" else _clock_time(value)


class ServiceHours(_Model):
    """The contractual service window (PSG, GTR clocks run inside it), in the client's timezone."""

    days: list[Weekday] = ["mon", "tue", "wed", "thu", "fri"]
    start: Annotated[time, BeforeValidator(_clock_time)] = time(8, 0)
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


class Device(_Model):
    name: Slug
    address: Annotated[str, StringConstraints(pattern=r"^\S+$")]
    port: Annotated[int, Field(ge=1, le=65535), BeforeValidator(_no_bool)] | None = None
    collectors: Annotated[dict[CollectorName, dict[str, Any]], BeforeValidator(_none_is_empty)] = {}
    credentials: Credentials | None = None
    parent: Slug | None = None
    tags: Tags = {}
    interval_s: PositiveSeconds | None = None
    timeout_s: PositiveSeconds | None = None
    jitter_s: Annotated[float, Field(ge=0, le=3600), BeforeValidator(_no_bool)] | None = None
    # `x-...` keys: data for other tools, kept as written and never read by the agent (the lab's
    # `x-lab: {walk: ...}` names the recording that plays the device), like docker compose's.
    extensions: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _extension_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if "extensions" in data:
                raise ValueError("write extension data as `x-NAME:` keys, not `extensions:`")
            extensions = {k: v for k, v in data.items() if isinstance(k, str) and k.startswith("x-")}
            if extensions:
                return {**{k: v for k, v in data.items() if k not in extensions}, "extensions": extensions}
        return data

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
    ticketing: PluginChoice = PluginChoice(kind="log")
    # the language of tickets and reports
    language: Literal["fr", "en"] = "fr"
    # Alerts of these severities that fired and resolved while the ITSM was unreachable are
    # ticketed once it is back (opened, then solved), so the client's ticket statistics and SLA
    # count them.
    ticket_after_outage: list[Severity] = ["critical"]
    defaults: Defaults = Defaults()
    rules: list[RuleOverride] = []
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


class Config(_Model):
    agent: AgentSettings = AgentSettings()
    defaults: Defaults = Defaults()
    # None (key absent) = BUILTIN_RULES; an explicit empty list = no global rules.
    rules: list[Rule] | None = None
    clients: list[Client] = []

    _source: Path = PrivateAttr(default=Path("<memory>"))
    _secrets: SecretStore = PrivateAttr(default_factory=lambda: SecretStore({}, {}))
    _client_rules: dict[str, list[Rule]] = PrivateAttr(default_factory=dict)
    _warnings: list[str] = PrivateAttr(default_factory=list)
    _plugin_options: dict[tuple[str, ...], BaseModel] = PrivateAttr(default_factory=dict)

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
    def global_rules(self) -> list[Rule]:
        return list(BUILTIN_RULES) if self.rules is None else list(self.rules)

    def rules_for(self, client: str) -> list[Rule]:
        """The enabled rules of one client: global rules with the client's overrides and additions.

        The alert engine applies them to the samples whose ``client`` tag is ``client``.
        """
        self.client(client)
        return [rule for rule in self._client_rules[client] if rule.enabled]

    def all_rules_for(self, client: str) -> list[Rule]:
        """Every rule of one client, the disabled ones too: an enabled rule may name a disabled
        one as the target of its inhibition (disabling a target is not a typo)."""
        self.client(client)
        return list(self._client_rules[client])

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
        )

    def credentials_name(self, client: Client, site: Site, device: Device, collector: str) -> str | None:
        """The secret holding ``collector``'s credentials, same lookup order: at each level, a name
        serves every collector, a mapping only the collectors it lists."""
        for level in (device, site.defaults, client.defaults, self.defaults):
            value = level.credentials
            if isinstance(value, str):
                return value
            if isinstance(value, Mapping) and collector in value:
                return value[collector]
        return None

    def plugin_options(self, *key: str) -> BaseModel:
        """A plugin's options, validated by its model when the config loaded. Keys:
        ``("collector", client, device, name)``, ``("ticketing", client)``, ``("store",)``,
        ``("service", name)``."""
        return self._plugin_options[key]

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

