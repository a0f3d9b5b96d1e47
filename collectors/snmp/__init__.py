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
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from agent.api import Sink
from agent.api import Target
from collectors.snmp.client import SnmpAuth, SnmpClient, SnmpValue
from collectors.snmp.engine import CounterStore, Row, evaluate, fetch
from collectors.snmp.profile import Profile, ProfileSet

__all__ = ["SnmpCollector", "target_from_url"]

SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
DEFAULT_PORT = 161
INTERFACE_MEASUREMENT = "snmp_interface"
_OPTIONS = {"profile", "version", "timeout_s", "retries", "max_repetitions", "interfaces"}


RULES_DIR = Path(__file__).resolve().parent / "profiles" / "rules"


class SnmpCollector:
    name: ClassVar[str] = "snmp"

    @classmethod
    def default_rules(cls) -> list[dict[str, Any]]:
        """The per-family alert rules shipped beside the profiles (profiles/rules/<family>.yaml).

        Raw mappings: the agent validates them with the same model as the config's rules, and a
        rule of the config with the same name replaces the shipped one.
        """
        rules: list[dict[str, Any]] = []
        for path in sorted(RULES_DIR.glob("*.yaml")):
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or []
            if not isinstance(loaded, list):
                raise ValueError(f"{path}: expected a list of rules")
            rules.extend(loaded)
        return rules

    def __init__(
        self,
        options: Mapping[str, Any] | None = None,
        profiles: ProfileSet | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        options = dict(options or {})
        unknown = set(options) - _OPTIONS
        if unknown:
            raise ValueError(f"snmp: unknown option(s) {', '.join(sorted(unknown))}")
        self.profiles = profiles or ProfileSet.load()
        self.profile_name = str(options.get("profile", "auto"))
        if self.profile_name != "auto":
            try:
                self.profiles.get(self.profile_name)
            except KeyError as exc:
                raise ValueError(f"profile: {exc.args[0]}") from None
        self.version = str(options.get("version", "2c"))
        if self.version not in ("1", "2c", "3"):
            raise ValueError(f"version: {self.version!r} is not one of 1, 2c, 3")
        self.timeout_s = _positive(options, "timeout_s", 2.0)
        self.retries = int(_positive(options, "retries", 1, allow_zero=True))
        self.max_repetitions = int(_positive(options, "max_repetitions", 25))
        interfaces = options.get("interfaces") or {}
        if not isinstance(interfaces, Mapping) or set(interfaces) - {"include", "exclude"}:
            raise ValueError("interfaces: expected {include: [regex...], exclude: [regex...]}")
        self.include = _regexes(interfaces.get("include"), "interfaces.include")
        self.exclude = _regexes(interfaces.get("exclude"), "interfaces.exclude")
        self.clock = clock
        self.store = CounterStore()
        self._client: SnmpClient | None = None
        self._client_key: tuple[Any, ...] | None = None
        self._detected: tuple[str | None, Profile] | None = None

    async def collect(self, target: Target, sink: Sink) -> None:
        for row in await self.poll(target):
            sink.emit(row.measurement, row.fields, row.tags)

    async def poll(self, target: Target) -> list[Row]:
        """The rows of one poll (with the OIDs they were read from), before they become samples."""
        client = self._client_for(target)
        system = await client.get([SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME])  # Unreachable propagates
        profile = await self._profile(client, system)
        snapshot = await fetch(client, profile, known=system)
        return [row for row in evaluate(profile, snapshot, self.store, self.clock()) if self._wanted(row)]

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


def _text(value: SnmpValue | None) -> str | None:
    return None if value is None else str(value.value)


def _positive(options: Mapping[str, Any], key: str, default: float, allow_zero: bool = False) -> float:
    value = options.get(key, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key}: {value!r} is not a number") from None
    if number < 0 or (number == 0 and not allow_zero):
        raise ValueError(f"{key}: {value!r} must be {'>= 0' if allow_zero else '> 0'}")
    return number


def _regexes(values: Any, key: str) -> list[re.Pattern[str]]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    try:
        return [re.compile(v) for v in values]
    except re.error as exc:
        raise ValueError(f"{key}: bad regex: {exc}") from None
