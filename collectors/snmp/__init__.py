"""The SNMP collector: detect the device's profile, fetch what it declares, emit typed samples.

Options (all optional): ``profile`` ("auto" or a profile name), ``version`` ("1" | "2c" | "3"),
``timeout_s``, ``retries``, ``max_repetitions``, ``interfaces: {include: [regex], exclude: [regex]}``
(matched against the interface name). Credentials come from ``target.credentials``: ``community``
for v1/v2c; ``user``, ``auth_protocol``, ``auth_key``, ``priv_protocol``, ``priv_key``, ``context``
for v3. Measurements are documented in docs/METRICS.md; the profile format in PROFILES.md.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from agent.api import CollectorContext, PluginSpec, Rule, Sink, Target, stable_fraction
from collectors.snmp.client import SnmpAuth, SnmpClient, SnmpValue
from collectors.snmp.engine import (
    REDISCOVER_AFTER_S,
    CounterStore,
    Row,
    StaticColumns,
    evaluate,
    evaluate_row,
    fetch,
    fetch_row,
    row_tables,
)
from collectors.snmp.profile import Profile, ProfileSet
from collectors.snmp.topology import EDGE_SOURCES

__all__ = ["PLUGIN", "SnmpCollector", "SnmpCredentials", "SnmpOptions", "target_from_url"]

SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
DEFAULT_PORT = 161
INTERFACE_MEASUREMENT = "snmp_interface"
SYSTEM_MEASUREMENT = "snmp_system"
RULES_DIR = Path(__file__).resolve().parent / "profiles" / "rules"
_STRICT = ConfigDict(extra="forbid", frozen=True)


def _not_bool(value: Any) -> Any:
    # pydantic reads `retries: true` as 1: a typo must be an error
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


def _regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"bad regex {pattern!r}: {exc}") from None
    return pattern


# one regex may be written without the list
Regexes = Annotated[
    list[Annotated[str, AfterValidator(_regex)]], BeforeValidator(lambda v: [v] if isinstance(v, str) else v)
]


class InterfaceFilter(BaseModel):
    """Which interfaces are reported, by name (regexes, ``re.search``); none given = all."""

    model_config = _STRICT
    include: Regexes = []
    exclude: Regexes = []


def _known_profile(name: str) -> str:
    if name != "auto":
        try:
            ProfileSet.load().get(name)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
    return name


class SnmpOptions(BaseModel):
    """The collector's options (docs/CONFIGURATION.md, collectors/snmp/README.md)."""

    model_config = _STRICT
    profile: Annotated[str, AfterValidator(_known_profile)] = "auto"
    # YAML reads `version: 1` as an int
    version: Annotated[Literal["1", "2c", "3"], BeforeValidator(lambda v: str(v) if isinstance(v, int) else v)] = "2c"
    timeout_s: Annotated[float, Field(gt=0, le=60), BeforeValidator(_not_bool)] = 2.0
    retries: Annotated[int, Field(ge=0, le=10), BeforeValidator(_not_bool)] = 1
    max_repetitions: Annotated[int, Field(ge=1, le=200), BeforeValidator(_not_bool)] = 25
    interfaces: InterfaceFilter = InterfaceFilter()


Secret = Annotated[str, StringConstraints(min_length=8)]


class SnmpCredentials(BaseModel):
    """A device's SNMP login: ``{community}`` (v1/v2c) or a USM user (v3). Checked when the config
    loads, so a bad secret fails there, not at the first poll."""

    model_config = _STRICT
    community: Annotated[str, StringConstraints(min_length=1)] | None = None
    user: Annotated[str, StringConstraints(min_length=1)] | None = None
    auth_protocol: Literal["md5", "sha", "sha224", "sha256", "sha384", "sha512"] | None = None
    auth_key: Secret | None = None
    priv_protocol: Literal["des", "3des", "aes", "aes128", "aes192", "aes256"] | None = None
    priv_key: Secret | None = None
    context: str = ""

    @model_validator(mode="after")
    def _one_login(self) -> SnmpCredentials:
        if (self.community is None) == (self.user is None):
            raise ValueError("give either community (v1/v2c) or user with its keys (v3)")
        if (self.auth_protocol is None) != (self.auth_key is None):
            raise ValueError("auth_protocol and auth_key go together")
        if (self.priv_protocol is None) != (self.priv_key is None):
            raise ValueError("priv_protocol and priv_key go together")
        if self.priv_protocol is not None and self.auth_protocol is None:
            raise ValueError("privacy (priv_*) requires authentication (auth_*)")
        return self


def default_rules() -> list[Rule]:
    """The alert rules shipped beside the profiles: generic ones (profiles/rules/generic.yaml) and
    each family's (profiles/rules/<family>.yaml). A rule of the config with the same name
    replaces or disables one."""
    rules: list[Rule] = []
    for path in sorted(RULES_DIR.glob("*.yaml")):
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        if not isinstance(loaded, list):
            raise ValueError(f"{path}: expected a list of rules")
        rules.extend(Rule.model_validate(rule) for rule in loaded)
    return rules


class SnmpCollector:
    def __init__(
        self,
        options: SnmpOptions | Mapping[str, Any] | None = None,
        profiles: ProfileSet | None = None,
        clock: Callable[[], float] = time.monotonic,
        rediscover_after_s: float = REDISCOVER_AFTER_S,
    ) -> None:
        """``options``: validated, or a mapping validated here (a bad one raises ValueError);
        ``rediscover_after_s``: how often the static columns are walked again (`StaticColumns`)."""
        if not isinstance(options, SnmpOptions):
            options = SnmpOptions.model_validate(dict(options or {}))
        self.profiles = profiles or ProfileSet.load()
        self.profile_name = options.profile
        if self.profile_name != "auto":
            try:
                self.profiles.get(self.profile_name)
            except KeyError as exc:
                raise ValueError(f"profile: {exc.args[0]}") from None
        self.version = options.version
        self.timeout_s = options.timeout_s
        self.retries = options.retries
        self.max_repetitions = options.max_repetitions
        self.include = [re.compile(r) for r in options.interfaces.include]
        self.exclude = [re.compile(r) for r in options.interfaces.exclude]
        self.clock = clock
        self.store = CounterStore()
        self._client: SnmpClient | None = None
        self._client_key: tuple[Any, ...] | None = None
        self.rediscover_after_s = rediscover_after_s
        self.statics = StaticColumns(self.clock, rediscover_after_s)  # a new one with each new client: another device
        self._detected: tuple[str | None, Profile] | None = None

    async def collect(self, target: Target, sink: Sink) -> None:
        rows, failed_tables, rejected = await self._read(target)
        for reason in failed_tables:  # the run is `partial`, the rows read are kept
            sink.error(reason)
        for row in rows:
            fields = gauges_as_floats(row.measurement, row.fields)
            if row.measurement == SYSTEM_MEASUREMENT:
                fields = {**fields, "malformed_replies": rejected.malformed,
                          "mismatched_replies": rejected.mismatched, "auth_failures": rejected.auth_failures}
            sink.emit(row.measurement, fields, row.tags)

    async def collect_focused(self, target: Target, sink: Sink, focus: Mapping[str, str]) -> bool:
        """Read only the row ``focus`` names (``{"measurement": "snmp_interface", "if_index": "3"}``,
        after a linkDown trap): one GET instead of the whole profile. False — nothing read — when
        the device's profile is not known yet (no poll since the start) or that measurement's rows
        cannot be read alone (see :func:`~collectors.snmp.engine.row_tables`): poll it whole."""
        measurement = focus.get("measurement")
        keys = [key for key in focus if key != "measurement"]
        if (self._detected is None and self.profile_name == "auto") or not measurement or len(keys) != 1:
            return False
        profile = self._detected[1] if self._detected is not None else self.profiles.get(self.profile_name)
        tables = row_tables(profile, measurement, keys[0])
        if tables is None:
            return False
        snapshot = await fetch_row(self._client_for(target), tables, focus[keys[0]])
        for row in evaluate_row(profile, tables, snapshot, self.store, self.clock()):
            if self._wanted(row):
                sink.emit(row.measurement, gauges_as_floats(row.measurement, row.fields), row.tags)
        return True

    async def poll(self, target: Target) -> list[Row]:
        """The rows of one poll (with the OIDs they were read from), before they become samples."""
        return (await self._read(target))[0]

    async def _read(self, target: Target) -> tuple[list[Row], list[str], Any]:
        """The wanted rows, the tables a failed read left incomplete, the client's counts of the
        replies it rejected. Unreachable propagates; fetch raises when nothing but the system GET
        answered."""
        client = self._client_for(target)
        system = await client.get([SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME])
        profile = await self._profile(client, system)
        snapshot = await fetch(client, profile, known=system, statics=self.statics)
        rows = [row for row in evaluate(profile, snapshot, self.store, self.clock()) if self._wanted(row)]
        return rows, list(snapshot.failed_tables(profile)), client.rejected

    async def _profile(self, client: SnmpClient, system: Mapping[str, SnmpValue]) -> Profile:
        if self.profile_name != "auto":
            return self.profiles.get(self.profile_name)
        object_id = _text(system.get(SYS_OBJECT_ID))
        if self._detected is None or self._detected[0] != object_id:
            # Detection is cached per device and redone only when sysObjectID changes.
            descr = _text(system.get(SYS_DESCR))
            probes = self.profiles.probes(object_id, descr)
            present = await client.get(probes) if probes else {}
            self._detected = (object_id, self.profiles.detect(object_id, descr, present=present))
        return self._detected[1]

    def _wanted(self, row: Row) -> bool:
        if row.measurement != INTERFACE_MEASUREMENT:
            return True
        name = row.tags.get("if_name", "")
        if self.include and not any(r.search(name) for r in self.include):
            return False
        return not any(r.search(name) for r in self.exclude)

    def _client_for(self, target: Target) -> SnmpClient:
        creds = target.credentials
        auth = SnmpAuth(
            version=self.version,  # type: ignore[arg-type]
            community=str(creds.get("community", "public")),
            user=creds.get("user"),
            auth_protocol=creds.get("auth_protocol"),
            auth_key=creds.get("auth_key"),
            priv_protocol=creds.get("priv_protocol"),
            priv_key=creds.get("priv_key"),
            context=str(creds.get("context", "")),
        )
        key = (target.address, target.port, auth)
        if self._client is None or self._client_key != key:
            self._client = SnmpClient(
                target.address,
                target.port or DEFAULT_PORT,
                auth,
                timeout_s=self.timeout_s,
                retries=self.retries,
                max_repetitions=self.max_repetitions,
            )
            self._client_key = key
            self.statics = StaticColumns(
                self.clock, self.rediscover_after_s, stable_fraction(f"{target.address}:{target.port}")
            )
        return self._client


def target_from_url(url: str, name: str | None = None) -> tuple[Target, dict[str, Any]]:
    """Parse the command-line form of an SNMP target.

    - ``snmp://COMMUNITY@HOST[:PORT][?version=1|2c&profile=NAME&timeout_s=..&retries=..]``
      (SNMPv2c unless ``version=1``).
    - ``snmpv3://USER[:AUTHKEY[:PRIVKEY]]@HOST[:PORT]?auth=SHA&priv=AES[&context=NAME]``
      (noAuthNoPriv with USER only; authNoPriv with AUTHKEY; authPriv with both keys).
      ``auth`` defaults to SHA, ``priv`` to AES. Percent-encode ``:`` ``@`` ``/`` inside keys.

    Other query parameters (``profile``, ``timeout_s``, ``retries``, ``max_repetitions``) become
    collector options. Returns ``(Target, options)``; the target is named ``name`` or HOST.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("snmp", "snmpv3"):
        raise ValueError(f"{url!r}: scheme must be snmp:// or snmpv3://")
    if not parts.hostname:
        raise ValueError(f"{url!r}: no host")
    query = {key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
    options: dict[str, Any] = {}
    for key in ("profile", "timeout_s", "retries", "max_repetitions"):
        if key in query:
            value = query.pop(key)
            options[key] = value if key == "profile" else float(value) if key == "timeout_s" else int(value)
    credentials: dict[str, Any]
    if parts.scheme == "snmp":
        options["version"] = query.pop("version", "2c")
        credentials = {"community": unquote(parts.username or "public")}
        if parts.password is not None:
            raise ValueError(f"{url!r}: snmp:// takes COMMUNITY@HOST (use snmpv3:// for users and keys)")
    else:
        options["version"] = "3"
        userinfo = parts.netloc.rsplit("@", 1)[0] if "@" in parts.netloc else ""
        fields = [unquote(piece) for piece in userinfo.split(":")] if userinfo else []
        if not fields or not fields[0] or len(fields) > 3:
            raise ValueError(f"{url!r}: snmpv3:// needs USER[:AUTHKEY[:PRIVKEY]]@HOST")
        credentials = {"user": fields[0]}
        if len(fields) > 1 and fields[1]:
            credentials["auth_key"] = fields[1]
            credentials["auth_protocol"] = query.pop("auth", "SHA").upper()
        if len(fields) > 2 and fields[2]:
            credentials["priv_key"] = fields[2]
            credentials["priv_protocol"] = query.pop("priv", "AES").upper()
        if "context" in query:
            credentials["context"] = query.pop("context")
        # Validates protocol names and key combinations now, not at the first poll.
        SnmpAuth(version="3", **credentials)
    if query:
        raise ValueError(f"{url!r}: unknown parameter(s) {', '.join(sorted(query))}")
    target = Target(
        name=name or parts.hostname,
        address=parts.hostname,
        port=parts.port or DEFAULT_PORT,
        credentials=credentials,
    )
    return target, options


# Gauges that some profiles compute as integers (a raw INTEGER reading) and others as floats (a
# scaled one): always floats, since a TSDB keeps one type per field (InfluxDB refuses a batch that
# mixes them, and the spool would quarantine the points of the other type).
FLOAT_GAUGES: Mapping[str, frozenset[str] | None] = {
    "snmp_sensor": frozenset({"value"}),
    "snmp_cpu": frozenset({"usage_percent"}),
    "snmp_memory": frozenset({"usage_percent"}),
    "snmp_poe": frozenset({"budget_w", "used_w"}),
    "snmp_ups": None,  # every numeric field
}


def gauges_as_floats(measurement: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    if measurement not in FLOAT_GAUGES:
        return dict(fields)
    names = FLOAT_GAUGES[measurement]
    return {
        name: float(value) if type(value) is int and (names is None or name in names) else value
        for name, value in fields.items()
    }


def _text(value: SnmpValue | None) -> str | None:
    return None if value is None else str(value.value)


def _collector(options: SnmpOptions, context: CollectorContext) -> SnmpCollector:
    # SNMP keeps nothing across restarts: the profiles are shared, the counters re-learnt
    return SnmpCollector(options)


PLUGIN = PluginSpec(
    name="snmp",
    kind="collector",
    factory=_collector,
    options=SnmpOptions,
    credentials=SnmpCredentials,
    default_rules=default_rules,
    state_fields=frozenset({("snmp_interface", "oper_status"), ("snmp_sensor", "state")}),
    # the raw octet counts beside their rates (in_bps, out_bps): rolled up as increases
    counter_fields=frozenset({("snmp_interface", "in_octets"), ("snmp_interface", "out_octets")}),
    # descriptive, editable by an operator: an alert keeps its identity when an alias changes
    descriptive_tags=frozenset({"if_alias", "if_descr", "description", "sys_descr", "location"}),
    url_schemes={"snmp": target_from_url, "snmpv3": target_from_url},
    edge_sources=EDGE_SOURCES,
    description="SNMP v1/v2c/v3 with vendor profiles as data",
)
