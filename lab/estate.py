"""The estates the lab plays (lab/estates/*.yaml), read as the lab needs them.

The lab reads the estate's YAML itself rather than through agent.config: it needs what the file
*points at* (the ``${VAR:-default}`` each address reads, the walk that plays each device), not a
validated agent configuration, and it must start before the operator has written any secret.
Interpolation follows agent.config: an unset or empty variable takes its default.

Secrets (the communities of the devices, the GLPI tokens) come from the lab's secrets file through
agent.secrets, so ``VIGIE_SECRET_<NAME>`` overrides a value for the lab as it does for the agent.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.secrets import SecretStore, SecretValue
from lab.walks import LAB_DIR

ESTATES_DIR = LAB_DIR / "estates"
LAB_SECRETS = ESTATES_DIR / "secrets.yaml"
# `all`: every estate once (vsgp-demo is a subset of vsgp, with the same devices).
ALL_ESTATES = ("mlhg", "ofdt", "vsgp")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class EstateError(ValueError):
    pass


@dataclass(frozen=True)
class Variable:
    """One ``${NAME:-default}`` the estate reads."""

    name: str
    default: str | None

    def value(self, environ: Mapping[str, str]) -> str | None:
        return environ.get(self.name) or self.default


def expand(text: str, environ: Mapping[str, str]) -> str:
    """``text`` with every ``${NAME:-default}`` replaced as agent.config does."""

    def one(match: re.Match[str]) -> str:
        found = environ.get(match.group(1))
        if found:
            return found
        if match.group(2) is None:
            raise EstateError(f"{text!r}: environment variable {match.group(1)} is not set and has no default")
        return match.group(2)

    return _VARIABLE.sub(one, text).replace("$$", "$")


def variables_in(text: str) -> list[Variable]:
    return [Variable(m.group(1), m.group(2)) for m in _VARIABLE.finditer(text)]


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@dataclass(frozen=True)
class EstateDevice:
    client: str
    site: str
    name: str
    address: str | None
    port: str | None  # as written, e.g. "${VIGIE_LAB_SNMP_PORT:-1161}"
    credentials: str | None  # the SNMP one: `credentials: NAME`, or the `snmp` of `{snmp: NAME, veeam: NAME}`
    walk: str | None  # `x-lab.walk`: the recording that plays it
    collectors: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.client}/{self.name}"


@dataclass(frozen=True)
class EstateClient:
    name: str
    ticketing: Mapping[str, Any]  # as written
    sites: Mapping[str, tuple[EstateDevice, ...]]


@dataclass
class Estate:
    """One or more estate files played together."""

    paths: list[Path]
    clients: dict[str, EstateClient] = field(default_factory=dict)
    variables: dict[str, Variable] = field(default_factory=dict)
    secrets: SecretStore = field(default_factory=lambda: SecretStore({}, {}))

    @classmethod
    def load(cls, spec: str, environ: Mapping[str, str], secrets_path: Path | None = LAB_SECRETS) -> Estate:
        """``spec``: ``all``, an estate name of lab/estates, a YAML path, or several of those
        separated by commas."""
        estate = cls(paths=list(_paths(spec)))
        for path in estate.paths:
            estate._add(path)
        if secrets_path is not None:
            estate.secrets = SecretStore(_secret_values(secrets_path), environ, secrets_path)
        return estate

    @property
    def name(self) -> str:
        return ",".join(p.stem for p in self.paths)

    def devices(self) -> Iterator[EstateDevice]:
        for client in self.clients.values():
            for devices in client.sites.values():
                yield from devices

    def device(self, target: str) -> EstateDevice:
        client, _, name = target.partition("/")
        for device in self.devices_of(client):
            if device.name == name:
                return device
        raise EstateError(f"no device {target!r} in {self.name} (give CLIENT/DEVICE)")

    def site(self, target: str) -> tuple[EstateDevice, ...]:
        client, _, name = target.partition("/")
        sites = self._client(client).sites
        if name not in sites:
            raise EstateError(f"no site {target!r} in {self.name}; {client} has {', '.join(sorted(sites))}")
        return sites[name]

    def client(self, name: str) -> EstateClient:
        return self._client(name)

    def devices_of(self, client: str) -> Iterator[EstateDevice]:
        for devices in self._client(client).sites.values():
            yield from devices

    def secret(self, name: str) -> SecretValue | None:
        return self.secrets.get(name)

    def _client(self, name: str) -> EstateClient:
        if name not in self.clients:
            raise EstateError(f"no client {name!r} in {self.name}; it has {', '.join(sorted(self.clients))}")
        return self.clients[name]

    def _add(self, path: Path) -> None:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise EstateError(f"{path}: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("clients"), list):
            raise EstateError(f"{path}: not an estate (no `clients:` list)")
        for text in _strings(data):
            for variable in variables_in(text):
                self.variables.setdefault(variable.name, variable)
        for raw in data["clients"]:
            client = _client(raw)
            if client.name in self.clients:
                if self.clients[client.name] != client:
                    raise EstateError(f"{path}: client {client.name!r} differs from the one in another estate")
                continue
            self.clients[client.name] = client


def _paths(spec: str) -> Iterator[Path]:
    for item in spec.split(","):
        item = item.strip()
        if item == "all":
            yield from (ESTATES_DIR / f"{name}.yaml" for name in ALL_ESTATES)
            continue
        path = Path(item)
        if path.suffix not in (".yaml", ".yml"):
            path = ESTATES_DIR / f"{item}.yaml"
        if not path.is_file() or path.resolve() == LAB_SECRETS:
            known = ", ".join(p.stem for p in sorted(ESTATES_DIR.glob("*.yaml")) if p != LAB_SECRETS)
            raise EstateError(f"no estate {item!r}: give all, one of {known}, or a YAML file")
        yield path


def _secret_values(path: Path) -> dict[str, SecretValue]:
    # Read without agent.secrets' mode check: the lab's file is committed (git keeps no 0600) and
    # holds lab-only values; the agent still refuses it until `chmod 600`.
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise EstateError(f"{path}: {exc}") from None
    if not isinstance(raw, dict):
        raise EstateError(f"{path}: expected a mapping of secret name -> value")
    return {str(k): v if isinstance(v, dict) else str(v) for k, v in raw.items()}


def _snmp_credentials(written: Any) -> str | None:
    """A device's SNMP secret name: the one name it gives, or the one its mapping gives snmp."""
    return written.get("snmp") if isinstance(written, dict) else written


def _client(raw: Mapping[str, Any]) -> EstateClient:
    name = str(raw["name"])
    sites: dict[str, tuple[EstateDevice, ...]] = {}
    for site in raw.get("sites") or []:
        sites[str(site["name"])] = tuple(
            EstateDevice(
                client=name,
                site=str(site["name"]),
                name=str(device["name"]),
                address=None if device.get("address") is None else str(device["address"]),
                port=None if device.get("port") is None else str(device["port"]),
                credentials=_snmp_credentials(device.get("credentials")),
                walk=(device.get("x-lab") or {}).get("walk"),
                collectors=tuple(device.get("collectors") or ()),
            )
            for device in site.get("devices") or []
        )
    return EstateClient(name=name, ticketing=raw.get("ticketing") or {}, sites=sites)


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
