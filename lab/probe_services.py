"""The lab's peers of the probes: the web applications the estates' ``http`` probes ask, and the
RDAP server their ``rdap`` probes ask, played on loopback by lab.web_fake and lab.rdap_fake in the
lab's own process.

- ``web``: one fake per host:port the loopback ``http://`` URLs name (ofdt's applications on
  127.0.0.1:8480); every path answers 200 unless a fault says otherwise.
  ``vigie lab fault ofdt/app-bdoc app-down [STATUS]`` makes that device's URL answer STATUS (503).
- ``rdap``: one fake per ``base_url``, answering for every domain the estate's probes ask, with an
  expiry date 200 days after the lab started. ``vigie lab fault ofdt/app-bdoc domain-expiring DAYS``
  moves that device's domains to DAYS days from now (20: a warning ticket; 5: a critical one).

The estate's YAML is read again here: lab.estate keeps collector names, not their options.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from lab.estate import EstateError, expand, is_loopback, variables_in
from lab.rdap_fake import Domain, RdapFake
from lab.services import Context, Fault, FaultError, FaultKind, LabService
from lab.web_fake import WebFake

RDAP_DEFAULT_DAYS = 200


def _probe_options(context: Context, probe: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(CLIENT/DEVICE, the probe's options as written) of every device that names ``probe``."""
    for path in context.estate.paths:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for client in data.get("clients") or []:
            for site in client.get("sites") or []:
                for device in site.get("devices") or []:
                    collectors = device.get("collectors") or {}
                    if probe in collectors:
                        yield f"{client['name']}/{device['name']}", collectors[probe] or {}


def _loopback_endpoint(url: str, context: Context, where: str) -> tuple[str, int]:
    parts = urlsplit(expand(url, context.environ))
    host = parts.hostname or ""
    if not is_loopback(host):
        raise EstateError(f"{where}: {url!r} is not loopback; the lab serves loopback only")
    if parts.scheme != "http":
        raise EstateError(f"{where}: {url!r}: the lab's fakes answer http:// only")
    return host, parts.port or 80


@dataclass
class WebInstance:
    host: str
    port: int
    paths: dict[str, str] = field(default_factory=dict)  # CLIENT/DEVICE -> path
    fake: WebFake | None = None


class WebService(LabService):
    name = "web"
    fault_kinds = (
        FaultKind("app-down", "device", "[STATUS]", "the device's http URL answers STATUS (default 503)"),
    )

    def __init__(self, instances: list[WebInstance]) -> None:
        self.instances = instances

    @classmethod
    def for_estate(cls, context: Context) -> WebService | None:
        instances: dict[tuple[str, int], WebInstance] = {}
        for key, options in _probe_options(context, "http"):
            url = str(options.get("url", ""))
            host, port = _loopback_endpoint(url, context, f"{key}: http url")
            instance = instances.setdefault((host, port), WebInstance(host, port))
            instance.paths[key] = urlsplit(expand(url, context.environ)).path or "/"
        return cls(list(instances.values())) if instances else None

    async def start(self) -> None:
        for instance in self.instances:
            instance.fake = WebFake()
            try:
                await instance.fake.start(instance.host, instance.port)
            except OSError as exc:
                raise EstateError(f"tcp {instance.host}:{instance.port}: {exc.strerror} (another lab?)") from None

    async def stop(self) -> None:
        for instance in self.instances:
            if instance.fake is not None:
                await instance.fake.stop()
                instance.fake = None

    def endpoints(self) -> list[str]:
        return [f"http http://{i.host}:{i.port}/  web applications ({len(i.paths)})" for i in self.instances]

    def devices(self) -> list[tuple[str, str]]:
        return [(key, f"http://{i.host}:{i.port}{path}") for i in self.instances for key, path in i.paths.items()]

    def examples(self) -> list[str]:
        return [f"vigie collect {url}" for _, url in self.devices()[:1]]

    def _find(self, target: str) -> tuple[WebInstance, str]:
        for instance in self.instances:
            if target in instance.paths:
                return instance, instance.paths[target]
        raise FaultError(f"{target}: no http probe of the estate points at the lab's web fake")

    def check_fault(self, fault: Fault) -> str:
        instance, path = self._find(fault.target)
        return f"http://{instance.host}:{instance.port}{path} answers {_status(fault)}"

    async def apply_faults(self, faults: Sequence[Fault]) -> None:
        for instance in self.instances:
            if instance.fake is None:
                continue
            instance.fake.statuses.clear()
            for fault in faults:
                if fault.target in instance.paths:
                    instance.fake.set_status(instance.paths[fault.target], _status(fault))


def _status(fault: Fault) -> int:
    if not fault.args:
        return 503
    if len(fault.args) != 1 or not fault.args[0].isdigit() or not 400 <= int(fault.args[0]) <= 599:
        raise FaultError("app-down: give the HTTP STATUS to answer (400-599), or none for 503")
    return int(fault.args[0])


@dataclass
class RdapInstance:
    host: str
    port: int
    domains: dict[str, list[str]] = field(default_factory=dict)  # CLIENT/DEVICE -> its domains
    variables: list[str] = field(default_factory=list)
    fake: RdapFake | None = None


class RdapService(LabService):
    name = "rdap"
    fault_kinds = (
        FaultKind("domain-expiring", "device", "DAYS", "the device's rdap domains expire in DAYS days"),
    )

    def __init__(self, instances: list[RdapInstance]) -> None:
        self.instances = instances

    @classmethod
    def for_estate(cls, context: Context) -> RdapService | None:
        instances: dict[tuple[str, int], RdapInstance] = {}
        for key, options in _probe_options(context, "rdap"):
            url = str(options.get("base_url", ""))
            host, port = _loopback_endpoint(url, context, f"{key}: rdap base_url")
            instance = instances.setdefault((host, port), RdapInstance(host, port))
            instance.domains[key] = [str(d).lower() for d in options.get("domains") or []]
            instance.variables.extend(v.name for v in variables_in(url) if v.name not in instance.variables)
        return cls(list(instances.values())) if instances else None

    async def start(self) -> None:
        expires = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=RDAP_DEFAULT_DAYS)
        for instance in self.instances:
            names = {name for domains in instance.domains.values() for name in domains}
            instance.fake = RdapFake({name: Domain(expires) for name in names})
            try:
                await instance.fake.start(instance.host, instance.port)
            except OSError as exc:
                raise EstateError(f"tcp {instance.host}:{instance.port}: {exc.strerror} (another lab? set "
                                  f"{', '.join(instance.variables) or 'the base_url'})") from None

    async def stop(self) -> None:
        for instance in self.instances:
            if instance.fake is not None:
                await instance.fake.stop()
                instance.fake = None

    def endpoints(self) -> list[str]:
        return [f"http http://{i.host}:{i.port}/  RDAP server ({len({d for ds in i.domains.values() for d in ds})} "
                "domains)" for i in self.instances]

    def environment(self) -> dict[str, str]:
        return {name: f"http://{i.host}:{i.port}/" for i in self.instances for name in i.variables}

    def _find(self, target: str) -> tuple[RdapInstance, list[str]]:
        for instance in self.instances:
            if target in instance.domains:
                return instance, instance.domains[target]
        raise FaultError(f"{target}: no rdap probe of the estate points at the lab's RDAP fake")

    def check_fault(self, fault: Fault) -> str:
        _, domains = self._find(fault.target)
        return f"{', '.join(domains)} expire in {_days(fault)} days"

    async def apply_faults(self, faults: Sequence[Fault]) -> None:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        for instance in self.instances:
            if instance.fake is None:
                continue
            names = {name for domains in instance.domains.values() for name in domains}
            days = {name: RDAP_DEFAULT_DAYS for name in names}
            for fault in faults:
                for name in instance.domains.get(fault.target, []):
                    days[name] = _days(fault)
            instance.fake.domains = {name: Domain(now + dt.timedelta(days=d)) for name, d in days.items()}


def _days(fault: Fault) -> int:
    if len(fault.args) != 1 or not fault.args[0].lstrip("-").isdigit():
        raise FaultError("domain-expiring: give DAYS, e.g. 20 (a warning) or 5 (critical)")
    return int(fault.args[0])
