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
from agent.api.outbound import SmtpRelay
from agent.api.rules import Rule, Severity, Slug, Tags
from agent.config.calendar import (
    HOLIDAY_CALENDARS,
    WEEKDAYS,
    Weekday,
    service_deadline,
    service_seconds,
    service_windows,
)
from agent.config.errors import ConfigError
from agent.duty import EscalationSettings, OnCallSettings, PerimeterSettings, Responsibility
from agent.maintenance import MaintenanceWindow
from agent.priority import PrioritySettings
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
    # The agent's own mailing of a client's report (agent/report): every retry failed. Resolved by
    # the next report delivered.
    Rule(
        name="report_delivery_failed",
        measurement="report_delivery",
        when="status == 'failed'",
        severity="major",
        summary="the {report} report of {client} ({label}) was not delivered after {attempts} attempts: {error}",
    ),
    # VMs vCenter or Hyper-V report that no Veeam backup protects (agent/views/coverage.py; only
    # once both are supervised for the client): a new VM has a day to get into a backup job.
    Rule(
        name="backup_coverage_gap",
        measurement="backup_coverage",
        when="unprotected > 0",
        for_s=86400,
        severity="major",
        summary="{unprotected} VM(s) of {client} in no backup: {unprotected_vms}",
    ),
    # Who watches the watcher (agent/heartbeat.py): a peer agent silent past agent.heartbeat_timeout_s
    # (its clients are not supervised), and this agent unable to reach the shared heartbeat place.
    Rule(
        name="agent_silent",
        measurement="vigie_peer",
        when="up == False",
        severity="critical",
        summary="vigie agent {agent} (clients {clients}) silent for {silent_s} s: its clients are not supervised",
    ),
    # the disk of the agent's state: a full one loses the rollups, the alerts and the ticket outbox
    Rule(
        name="agent_disk_low",
        measurement="vigie_disk",
        when="free_percent < 5 or free_bytes < 500000000",
        for_s=120,
        severity="critical",
        summary="vigie agent {agent}: the disk of its state ({path}) has {free_percent} % free, {free_bytes} bytes",
    ),
    Rule(
        name="supervision_down",
        measurement="vigie_heartbeat",
        when="ok == False",
        # one beat lost to a busy shared disk is not an outage of the supervision
        for_s=30,
        severity="critical",
        summary="vigie agent {agent} cannot reach the shared heartbeat place, its peers are not watched: {error}",
    ),
    # A contact (escalation, on-call, the client's perimeter) the agent could not reach: retried
    # with backoff all the same; the next delivery to that contact by that channel resolves it
    # (alerting/contacts.py).
    Rule(
        name="contact_notification_failed",
        measurement="contact_notification",
        when="status == 'failed'",
        severity="major",
        summary="{client}: {contact} not reached by {channel} ({purpose}) after {attempts} attempt(s): {error}",
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


Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]


class SmtpSettings(_Model):
    """Where the reports are mailed from (``agent.smtp``): STARTTLS and authentication by default;
    the password only by secret reference. ``verify: false`` (logged) is for a relay whose
    certificate cannot be checked; ``ca_bundle`` for a private CA."""

    host: Annotated[str, StringConstraints(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535), BeforeValidator(_no_bool)] = 587
    starttls: bool = True
    username: str | None = None
    password: SecretRef | None = None
    sender: Email
    ca_bundle: Path | None = None
    verify: bool = True
    timeout_s: PositiveSeconds = 30.0
    # a failed send is retried this many times, this far apart, then alerted (report_delivery)
    retries: Annotated[int, Field(ge=0, le=100), BeforeValidator(_no_bool)] = 3
    retry_interval_s: PositiveSeconds = 300.0

    @model_validator(mode="after")
    def _auth_pair(self) -> SmtpSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password (as {secret: NAME}), or neither")
        return self

    def relay(self, password: str | None) -> SmtpRelay:
        """The SMTP conversation (agent/api/outbound.py) the reports and the mails to contacts use;
        ``password``: the secret's value."""
        return SmtpRelay(self.host, self.port, self.starttls, self.verify, self.ca_bundle, self.username, password,
                         self.timeout_s)


class TeamsSettings(_Model):
    """How the agent posts to the contacts' Teams workflows (``agent.teams``): ``ca_bundle`` for a
    private CA (a TLS-inspecting proxy), ``verify: false`` (logged) if it cannot be checked."""

    ca_bundle: Path | None = None
    verify: bool = True
    timeout_s: PositiveSeconds = 15.0


class WebUser(_Model):
    """A login of the web app (``agent.web.users``): the NOC sees every client, a DSI only its own
    ``client``. It signs in with a password (``password_hash``: an argon2 hash made by `vigie web
    hash-password`; the password itself is never in the config) or calls the API with a bearer
    token (``token: {secret: NAME}``), or both."""

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$", max_length=120)]
    role: Literal["noc", "dsi"]
    client: Slug | None = None
    password_hash: Annotated[str, StringConstraints(pattern=r"^\$argon2(id|i|d)\$")] | None = None
    token: SecretRef | None = None

    @model_validator(mode="after")
    def _scope(self) -> WebUser:
        if self.role == "dsi" and self.client is None:
            raise ValueError("a dsi user needs its client")
        if self.role == "noc" and self.client is not None:
            raise ValueError("a noc user sees every client: give no client")
        if self.password_hash is None and self.token is None:
            raise ValueError("give password_hash (vigie web hash-password) or token ({secret: NAME}), or both")
        return self


class WebSettings(_Model):
    """The web app served at ``agent.web_listen`` (agent/web): the NOC wall, each client's pages,
    exports and API."""

    users: list[WebUser] = []
    # signs the session cookies; without it a random key per start (sessions end with the agent)
    session_secret: SecretRef | None = None
    session_max_age_s: Annotated[float, Field(gt=0, le=30 * 86400), BeforeValidator(_no_bool)] = 12 * 3600.0
    # HTTPS: both or neither; the cookies are then sent over TLS only (Secure)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # the wall reloads its tiles this often
    refresh_s: PositiveSeconds = 30.0
    # failed logins allowed per user name and per address within the window, then refused (429)
    login_attempts: Annotated[int, Field(ge=1, le=1000), BeforeValidator(_no_bool)] = 5
    login_window_s: PositiveSeconds = 300.0

    @model_validator(mode="after")
    def _tls_pair(self) -> WebSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give both tls_cert and tls_key, or neither")
        names = [u.name for u in self.users]
        if len(names) != len(set(names)):
            raise ValueError(f"user names must be unique: {sorted({n for n in names if names.count(n) > 1})}")
        return self


class AgentSettings(_Model):
    state_dir: Path = Path("var")
    shard: list[Slug] = []
    threads: Annotated[int, Field(ge=1, le=256), BeforeValidator(_no_bool)] = 8
    store: PluginChoice = PluginChoice(kind="compact")
    # agent.services.<name>: options of a service plugin (trap receiver, web app, reports)
    services: Annotated[dict[CollectorName, dict[str, Any]], BeforeValidator(_none_is_empty)] = {}
    web_listen: Annotated[str, StringConstraints(pattern=r"^\S+:\d{1,5}$")] | None = None
    web: WebSettings = WebSettings()
    # the mail relay of the daily and monthly reports (clients[].report) and of the mails to contacts
    smtp: SmtpSettings | None = None
    teams: TeamsSettings = TeamsSettings()
    # who watches the watcher (agent/heartbeat.py): agents sharding a NOC beat in one shared place and
    # ticket a silent peer to the NOC's client (noc_client if this agent serves it, else its first client)
    name: Slug | None = None
    heartbeat_dir: Path | None = None
    heartbeat_interval_s: PositiveSeconds = 15.0
    heartbeat_timeout_s: PositiveSeconds = 60.0
    noc_client: Slug | None = None


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


# A time of day written "HH:MM" (a bare number is refused); named so a field may be called `time`.
ClockTime = Annotated[time, BeforeValidator(_clock_time)]


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
    """Someone of the client or of the provider the agent may notify (agent/duty.py): by mail
    (through ``agent.smtp``), by a Teams workflow (its URL by secret reference), or both. The
    phone is written down for the NOC, never dialled."""

    name: Annotated[str, StringConstraints(min_length=1)]
    email: Email | None = None
    teams: SecretRef | None = None
    role: Annotated[str, StringConstraints(min_length=1)] | None = None
    phone: str | None = None

    @model_validator(mode="after")
    def _reachable(self) -> Contact:
        if self.email is None and self.teams is None:
            raise ValueError(f"contact {self.name!r}: give email, teams ({{secret: NAME}}) or both")
        return self


class ReportSettings(_Model):
    """A client's daily SI health report (``clients[].report``): mailed at ``time`` in the client's
    timezone to ``recipients``, and on the first day of each month the monthly report too."""

    enabled: bool = False
    recipients: list[Email] = []
    time: ClockTime = time(7, 30)
    monthly: bool = True
    # the availability target the report holds each service to, in percent
    target_pct: Annotated[float, Field(gt=0, le=100), BeforeValidator(_no_bool)] = 99.0

    @model_validator(mode="after")
    def _someone_to_mail(self) -> ReportSettings:
        if self.enabled and not self.recipients:
            raise ValueError("an enabled report needs recipients")
        return self


class Device(_Model):
    name: Slug
    address: Annotated[str, StringConstraints(pattern=r"^\S+$")]
    port: Annotated[int, Field(ge=1, le=65535), BeforeValidator(_no_bool)] | None = None
    collectors: Annotated[dict[CollectorName, dict[str, Any]], BeforeValidator(_none_is_empty)] = {}
    credentials: Credentials | None = None
    parent: Slug | None = None
    tags: Tags = {}
    # who runs it: the provider (tickets) or the client (its alerts passed on to clients[].perimeter)
    responsibility: Responsibility | None = None
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
    responsibility: Responsibility | None = None
    defaults: Defaults = Defaults()
    devices: list[Device] = []


# "...": group by every label, i.e. no grouping (Alertmanager's spelling)
NO_GROUPING = "..."


class TicketGrouping(_Model):
    """How alerts share tickets (alerting/README.md, "Grouping"): top-level ``ticket_grouping``,
    and a client's ``ticket_grouping`` overriding the keys it sets. Alerts of one client with
    equal values of the ``group_by`` labels are one ticket."""

    group_by: list[Annotated[str, StringConstraints(pattern=r"^([A-Za-z_][A-Za-z0-9_]*|\.\.\.)$")]] = [
        "client", "site", "alertname"]
    # the first ticket of a new group waits this long for the alerts firing with it; kept well
    # under the 5-minute contract (onset -> ticket) that also counts the rules' for_s
    group_wait_s: Annotated[float, Field(ge=0, le=300), BeforeValidator(_no_bool)] = 0.0
    # at most one follow-up per interval naming the alerts that joined or resolved
    group_interval_s: PositiveSeconds = 300.0
    # a reminder follow-up on a group still firing with nothing new
    repeat_interval_s: Annotated[float, Field(gt=0, le=30 * 86400), BeforeValidator(_no_bool)] = 4 * 3600.0

    @model_validator(mode="after")
    def _no_grouping_alone(self) -> TicketGrouping:
        if NO_GROUPING in self.group_by and len(self.group_by) > 1:
            raise ValueError(f"group_by: {NO_GROUPING!r} (no grouping: one ticket per alert) stands alone")
        if not self.group_by:
            raise ValueError(f"group_by: name labels, or [{NO_GROUPING!r}] for one ticket per alert")
        return self

    @property
    def grouped(self) -> bool:
        return self.group_by != [NO_GROUPING]

    def overridden_by(self, other: TicketGrouping | None) -> TicketGrouping:
        """These settings with the keys ``other`` sets (a client's) taking over."""
        if other is None:
            return self
        return self.model_copy(update={name: getattr(other, name) for name in other.model_fields_set})


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
    # alerts inside one open no ticket until it ends (agent/maintenance.py); `vigie maintenance
    # add` adds more at run time
    maintenance: list[MaintenanceWindow] = []
    # the contract's impact x urgency -> P0..P3 matrix and overrides (agent/priority.py)
    priority: PrioritySettings = PrioritySettings()
    # an alert firing again within this many seconds of its ticket's solution reopens that ticket
    # (receivers that can: log, glpi) instead of opening another; 0: never
    reopen_within_s: Annotated[float, Field(ge=0, le=30 * 86400)] = 0.0
    # overrides the keys it sets of the top-level ticket_grouping
    ticket_grouping: TicketGrouping | None = None
    # contractual restore times (GTR) by severity, counted in the service hours (vigie sla); the
    # agency's: Critique 4 h, Bloquant 8 h, Mineure 12 h
    gtr_hours: dict[Severity, Annotated[float, Field(gt=0, le=24 * 365)]] = {
        "critical": 4.0, "major": 8.0, "minor": 12.0, "warning": 24.0,
    }
    report: ReportSettings = ReportSettings()
    # who is told beside the ticket (agent/duty.py): the escalation list, the on-call rota (the
    # client subscribed on-call duty when present), the client's own perimeter
    escalation: EscalationSettings = EscalationSettings()
    on_call: OnCallSettings | None = None
    perimeter: PerimeterSettings = PerimeterSettings()
    defaults: Defaults = Defaults()
    rules: list[RuleOverride] = []
    sites: list[Site] = []

    @model_validator(mode="after")
    def _known_contacts(self) -> Client:
        known = {c.name for c in self.contacts}
        if len(known) != len(self.contacts):
            names = [c.name for c in self.contacts]
            raise ValueError(f"contacts: names must be unique: {sorted({n for n in names if names.count(n) > 1})}")
        named = [("escalation.contacts", n) for n in self.escalation.contacts]
        named += [("on_call", n) for n in (self.on_call.contacts if self.on_call else [])]
        named += [("perimeter.contacts", n) for n in self.perimeter.contacts]
        unknown = [f"{where}: unknown contact {name!r}" for where, name in named if name not in known]
        if unknown:
            raise ValueError(f"{'; '.join(unknown)} (contacts: {', '.join(sorted(known)) or 'none'})")
        if not self.perimeter.contacts and self._client_equipment():
            raise ValueError(f"{self._client_equipment()} is the client's (responsibility: client): "
                             "name who receives its alerts in perimeter.contacts")
        return self

    def _client_equipment(self) -> str | None:
        """Something the config makes the client's, for the error that asks whom to tell."""
        for site in self.sites:
            if site.responsibility == "client":
                return f"site {site.name}"
            for device in site.devices:
                if self.responsibility(site, device) == "client":
                    return f"device {device.name}"
        return None

    def responsibility(self, site: Site | None, device: Device | None) -> Responsibility:
        """Who runs the equipment, in the inventory's lookup order: the device, its site, the
        first ``perimeter.match`` its tags match, else the provider."""
        for level in (device, site):
            if level is not None and level.responsibility is not None:
                return level.responsibility
        if device is not None:
            found = self.perimeter.by_tags({**device.tags, "client": self.name, "site": site.name if site else "",
                                            "device": device.name})
            if found is not None:
                return found
        return "provider"

    def notified_contacts(self) -> list[str]:
        """The contacts escalation, on-call or the perimeter may notify, each once."""
        names = [*self.escalation.contacts, *(self.on_call.contacts if self.on_call else []), *self.perimeter.contacts]
        return list(dict.fromkeys(names))

    def contact(self, name: str) -> Contact:
        return next(c for c in self.contacts if c.name == name)

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

    def _windows(self, start: datetime) -> Iterator[tuple[datetime, datetime]]:
        hours = self.service_hours
        return service_windows(start.astimezone(self.zone), hours.days, hours.start, hours.end, self.is_holiday)

    def service_deadline(self, start: datetime, seconds: float) -> datetime:
        """When a clock of ``seconds`` in the service window, started at ``start``, runs out (a
        GTR: 4 h from Friday 16:30 is Monday 11:30 for a Mon-Fri 08:00-17:00 window)."""
        return service_deadline(start, seconds, self._windows(start))

    def service_seconds(self, start: datetime, end: datetime) -> float:
        """The service time between two instants (a restore time as the contract counts it)."""
        return service_seconds(end, self._windows(start))

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
    # how alerts share tickets; a client's ticket_grouping overrides keys of it
    ticket_grouping: TicketGrouping = TicketGrouping()

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

    @model_validator(mode="after")
    def _mail_relay_for_contacts(self) -> Config:
        mailed = [f"{c.name}/{name}" for c in self.clients for name in c.notified_contacts() if c.contact(name).email]
        if mailed and self.agent.smtp is None:
            raise ValueError(f"contacts notified by e-mail ({', '.join(mailed[:5])}) need agent.smtp, the relay "
                             "their mails go through")
        return self

    @model_validator(mode="after")
    def _web_users_clients(self) -> Config:
        known = {c.name for c in self.clients}
        unknown = sorted({u.client for u in self.agent.web.users if u.client is not None and u.client not in known})
        if unknown:
            raise ValueError(f"agent.web.users: unknown client(s) {', '.join(unknown)}")
        return self

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

    def ticket_grouping_for(self, client: str) -> TicketGrouping:
        """A client's effective ticket grouping: the top-level one, with its own keys over it."""
        return self.ticket_grouping.overridden_by(self.client(client).ticket_grouping)

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

