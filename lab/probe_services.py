"""The lab's peers of the probes: the web applications the estates' ``http`` probes ask, and the
RDAP server their ``rdap`` probes ask, played on loopback by lab.web_fake and lab.rdap_fake in the
lab's own process.

- ``web``: one fake per host:port the loopback ``http://`` URLs name (ofdt's applications on
  127.0.0.1:8480); every path answers 200 unless a fault says otherwise.
  ``vigie lab fault ofdt/app-bdoc app-down [STATUS]`` makes that device's URL answer STATUS (503).
- ``postgresql``: a real PostgreSQL server (Debian's binaries, lab.postgres_cluster) per port the
  estate's ``postgresql`` probes name, with the probe's login (from the lab's secrets) and every
  database the probes expect. ``vigie lab fault ofdt/db-postgresql postgres-down`` stops it (the
  port refuses connections) and ``database-missing NAME`` drops one database; clearing restores both.
- ``icmp``: the targets of the estate's ``icmp`` probes whose ``address`` is a ``${VAR}``: the lab
  gives each an address of 198.18.0.0/15 (RFC 2544's benchmarking range, routed nowhere) in a
  network namespace of its own, reached from the machine through one veth pair, and answers VAR
  with it. ``vigie lab fault acme/rtr-agence-12 ping-down`` takes the address off the namespace: the
  echo requests still reach the namespace (a permanent neighbour entry, no ARP to fail into "host
  unreachable") and go unanswered, as a dead site's router. Needs root (``ip netns``); no packet
  leaves the namespace's link.
- ``rdap``: one fake per ``base_url``, answering for every domain the estate's probes ask, with an
  expiry date 200 days after the lab started. ``vigie lab fault ofdt/app-bdoc domain-expiring DAYS``
  moves that device's domains to DAYS days from now (20: a warning ticket; 5: a critical one).

The estate's YAML is read again here: lab.estate keeps collector names, not their options.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import random
import re
import secrets
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import yaml

from lab.estate import EstateError, expand, is_loopback, variables_in
from lab.postgres_cluster import PostgresCluster, binaries
from lab.processes import Child
from lab.rdap_fake import Domain, RdapFake
from lab.services import Context, Fault, FaultError, FaultKind, LabService
from lab.web_fake import WebFake

RDAP_DEFAULT_DAYS = 200


def _probe_devices(context: Context, probe: str) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(CLIENT/DEVICE, the device as written, the probe's options) of every device naming ``probe``."""
    for path in context.estate.paths:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for client in data.get("clients") or []:
            for site in client.get("sites") or []:
                for device in site.get("devices") or []:
                    collectors = device.get("collectors") or {}
                    if probe in collectors:
                        yield f"{client['name']}/{device['name']}", device, collectors[probe] or {}


def _probe_options(context: Context, probe: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(CLIENT/DEVICE, the probe's options as written) of every device that names ``probe``."""
    for key, _, options in _probe_devices(context, probe):
        yield key, options


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


@dataclass
class PostgresInstance:
    port: int
    devices: dict[str, list[str]] = field(default_factory=dict)  # CLIENT/DEVICE -> databases it expects
    logins: dict[str, str] = field(default_factory=dict)  # user -> password
    variables: list[str] = field(default_factory=list)
    cluster: PostgresCluster | None = None
    server: Child | None = None


class PostgresService(LabService):
    name = "postgresql"
    fault_kinds = (
        FaultKind("postgres-down", "device", "", "the device's PostgreSQL server stops: its port refuses connections"),
        FaultKind("database-missing", "device", "NAME", "the device's PostgreSQL server loses database NAME"),
    )

    def __init__(self, instances: list[PostgresInstance], runtime_dir: Path) -> None:
        self.instances = instances
        self.runtime_dir = runtime_dir

    @classmethod
    def for_estate(cls, context: Context) -> PostgresService | None:
        instances: dict[int, PostgresInstance] = {}
        for key, device, options in _probe_devices(context, "postgresql"):
            where = f"{key}: postgresql"
            if not is_loopback(expand(str(device.get("address", "")), context.environ)):
                raise EstateError(f"{where}: address {device.get('address')!r} is not loopback")
            raw_port = str(options.get("port", 5432))
            port = expand(raw_port, context.environ)
            if not port.isdigit():
                raise EstateError(f"{where}: port {raw_port!r} is not a number")
            secret = context.estate.secret(str(device.get("credentials", "")))
            if not isinstance(secret, dict) or not {"user", "password"} <= secret.keys():
                raise EstateError(f"{where}: credentials {device.get('credentials')!r}: the lab's secrets give no "
                                  "user and password")
            instance = instances.setdefault(int(port), PostgresInstance(int(port)))
            instance.devices[key] = [str(name) for name in options.get("databases") or []]
            instance.logins[secret["user"]] = secret["password"]
            instance.variables.extend(v.name for v in variables_in(raw_port) if v.name not in instance.variables)
        return cls(list(instances.values()), context.runtime_dir) if instances else None

    async def start(self) -> None:
        if binaries() is None:
            raise EstateError("postgresql: no PostgreSQL binaries here (Debian: apt-get install postgresql)")
        for instance in self.instances:
            instance.cluster = await asyncio.to_thread(
                PostgresCluster.create, instance.port, superuser_password=secrets.token_urlsafe(16)
            )
            self._start_server(instance)
            await asyncio.to_thread(self._provision, instance, ())

    def _start_server(self, instance: PostgresInstance) -> None:
        assert instance.cluster is not None
        # Started from the event loop's thread, which lives as long as the lab: the server's
        # death signal follows the thread that forked it (lab.processes).
        instance.server = Child(f"postgres:{instance.port}", instance.cluster.server_command(),
                                log=self.runtime_dir / f"postgres-{instance.port}.log")
        instance.server.start()

    @staticmethod
    def _provision(instance: PostgresInstance, missing: Sequence[str]) -> None:
        """Wait for the server, then make its logins and databases what the estate expects, less
        ``missing``."""
        assert instance.cluster is not None
        deadline = time.monotonic() + 30
        while True:
            try:
                present = {row[0] for row in instance.cluster.sql("SELECT datname FROM pg_database")}
                break
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline or (instance.server is not None and not instance.server.running()):
                    raise EstateError(f"postgresql on 127.0.0.1:{instance.port} did not start: {exc}") from None
                time.sleep(0.1)
        statements = []
        for user, password in instance.logins.items():
            quoted = password.replace("'", "''")
            statements.append(
                f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{user}') THEN "
                f"CREATE ROLE \"{user}\" LOGIN PASSWORD '{quoted}' IN ROLE pg_monitor; END IF; END $$"
            )
        wanted = {name for names in instance.devices.values() for name in names}
        statements += [f'CREATE DATABASE "{name}"' for name in sorted(wanted - present - set(missing))]
        statements += [f'DROP DATABASE "{name}" WITH (FORCE)' for name in sorted(set(missing) & present)]
        if statements:
            instance.cluster.sql(*statements)

    async def stop(self) -> None:
        for instance in self.instances:
            if instance.server is not None:
                instance.server.stop()
                instance.server = None
            if instance.cluster is not None:
                await asyncio.to_thread(instance.cluster.remove)
                instance.cluster = None

    def endpoints(self) -> list[str]:
        return [f"tcp 127.0.0.1:{i.port}  PostgreSQL ({', '.join(sorted(i.devices))})" for i in self.instances]

    def devices(self) -> list[tuple[str, str]]:
        return [(key, f"postgresql://127.0.0.1:{i.port}") for i in self.instances for key in i.devices]

    def environment(self) -> dict[str, str]:
        return {name: str(i.port) for i in self.instances for name in i.variables}

    def _find(self, target: str) -> PostgresInstance:
        for instance in self.instances:
            if target in instance.devices:
                return instance
        raise FaultError(f"{target}: no postgresql probe of the estate points at the lab's PostgreSQL")

    def check_fault(self, fault: Fault) -> str:
        instance = self._find(fault.target)
        if fault.kind == "postgres-down":
            if fault.args:
                raise FaultError("postgres-down takes no arguments")
            return f"PostgreSQL on 127.0.0.1:{instance.port} stops"
        if len(fault.args) != 1 or fault.args[0] not in instance.devices[fault.target]:
            expected = ", ".join(instance.devices[fault.target]) or "none"
            raise FaultError(f"database-missing: give one database {fault.target} expects ({expected})")
        return f"database {fault.args[0]} disappears from 127.0.0.1:{instance.port}"

    async def apply_faults(self, faults: Sequence[Fault]) -> None:
        for instance in self.instances:
            mine = [f for f in faults if f.target in instance.devices]
            down = any(f.kind == "postgres-down" for f in mine)
            if down and instance.server is not None:
                # its port closes; the lab does not watch this child (children() is empty), so a
                # server stopped on purpose does not stop the lab
                await asyncio.to_thread(instance.server.stop)
                instance.server = None
            elif not down:
                if instance.server is None:
                    self._start_server(instance)
                missing = [f.args[0] for f in mine if f.kind == "database-missing"]
                await asyncio.to_thread(self._provision, instance, missing)

    def status(self) -> list[str]:
        return [f"postgresql 127.0.0.1:{i.port}: {'running' if i.server is not None else 'stopped'}"
                for i in self.instances]


PING_RANGE = ipaddress.ip_network("198.18.0.0/15")
PING_NETNS_PREFIX = "vigie-lab-ping-"
_ADDRESS_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")


def _ip(*args: str) -> str:
    """One `ip` command; its output, or EstateError with what it said."""
    try:
        done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise EstateError("icmp: no `ip` command here (Debian: apt-get install iproute2)") from None
    if done.returncode != 0:
        raise EstateError(f"icmp: ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _remove_stale_namespaces() -> None:
    """The namespaces of labs that were killed (their pid is gone): deleting one removes its veth."""
    for line in _ip("netns", "list").splitlines():
        name = line.split()[0] if line.split() else ""
        if (found := re.fullmatch(re.escape(PING_NETNS_PREFIX) + r"(\d+)", name)) is None:
            continue
        try:
            os.kill(int(found.group(1)), 0)
        except ProcessLookupError:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        except PermissionError:
            pass  # alive, someone else's


def _free_subnet(rng: random.Random) -> ipaddress.IPv4Network:
    """A /24 of PING_RANGE that no route of the machine names (another lab's)."""
    used = [ipaddress.ip_network(line.split()[0], strict=False)
            for line in _ip("-4", "route", "show", "table", "all").splitlines()
            if line.split() and line.split()[0][0].isdigit()]
    free = [net for net in PING_RANGE.subnets(new_prefix=24) if not any(net.overlaps(u) for u in used)]
    if not free:
        raise EstateError(f"icmp: every /24 of {PING_RANGE} is routed already")
    return rng.choice(free)


@dataclass
class PingTarget:
    variable: str  # the ${VAR} its address reads
    address: str = ""  # the lab's, once started


class PingService(LabService):
    """The icmp probes' targets, each an address in the lab's network namespace (module docstring)."""

    name = "icmp"
    fault_kinds = (
        FaultKind("ping-down", "device", "", "the device's address stops answering ICMP echo (a dead site)"),
    )

    def __init__(self, targets: dict[str, PingTarget]) -> None:
        self.targets = targets  # CLIENT/DEVICE -> its target
        self.netns = f"{PING_NETNS_PREFIX}{os.getpid()}"
        self.link = f"vlp{os.getpid()}"  # the machine's end of the veth (IFNAMSIZ: 15)
        self.subnet: ipaddress.IPv4Network | None = None
        self.silent: set[str] = set()

    @classmethod
    def for_estate(cls, context: Context) -> PingService | None:
        targets: dict[str, PingTarget] = {}
        variables: dict[str, str] = {}
        for key, device, _ in _probe_devices(context, "icmp"):
            found = _ADDRESS_VARIABLE.fullmatch(str(device.get("address", "")).strip())
            if found is None:
                continue  # a literal address (127.0.0.1 answers by itself): not the lab's to play
            name = found.group(1)
            if name in variables:
                raise EstateError(f"{key}: icmp address ${{{name}}} is {variables[name]}'s too: one variable each")
            variables[name] = key
            targets[key] = PingTarget(name)
        return cls(targets) if targets else None

    async def start(self) -> None:
        if os.geteuid() != 0:
            raise EstateError("icmp: the lab plays ping targets in a network namespace, which needs root "
                              "(`ip netns add`); run `vigie lab up` as root or leave icmp devices out")
        await asyncio.to_thread(self._create)

    def _create(self) -> None:
        _remove_stale_namespaces()
        self.subnet = _free_subnet(random.Random())
        hosts = self.subnet.hosts()
        gateway = next(hosts)
        for target in self.targets.values():
            target.address = str(next(hosts))
        _ip("netns", "add", self.netns)
        _ip("-n", self.netns, "link", "set", "lo", "up")
        _ip("link", "add", self.link, "type", "veth", "peer", "name", "target0", "netns", self.netns)
        _ip("addr", "add", f"{gateway}/{self.subnet.prefixlen}", "dev", self.link)
        _ip("link", "set", self.link, "up")
        _ip("-n", self.netns, "link", "set", "target0", "up")
        # each target a /32 of its own (taking one off leaves the others), the link's route beside
        _ip("-n", self.netns, "route", "add", str(self.subnet), "dev", "target0")
        mac = _ip("-n", self.netns, "-o", "link", "show", "target0").split("link/ether")[1].split()[0]
        for target in self.targets.values():
            _ip("-n", self.netns, "addr", "add", f"{target.address}/32", "dev", "target0")
            _ip("neigh", "replace", target.address, "lladdr", mac, "dev", self.link, "nud", "permanent")

    async def stop(self) -> None:
        # the namespace takes its veth, and so the machine's end, its route and neighbours, with it
        await asyncio.to_thread(subprocess.run, ["ip", "netns", "del", self.netns], capture_output=True)

    def endpoints(self) -> list[str]:
        return [f"icmp {self.subnet} in network namespace {self.netns} ({len(self.targets)} ping targets)"]

    def devices(self) -> list[tuple[str, str]]:
        return [(key, f"icmp://{t.address}") for key, t in self.targets.items()]

    def environment(self) -> dict[str, str]:
        return {t.variable: t.address for t in self.targets.values()}

    def check_fault(self, fault: Fault) -> str:
        if fault.target not in self.targets:
            raise FaultError(f"{fault.target}: no icmp probe of the estate has an address the lab plays "
                             "(write it `address: ${VAR}` for the lab to give it one)")
        if fault.args:
            raise FaultError("ping-down takes no arguments")
        return f"{self.targets[fault.target].address} stops answering pings"

    async def apply_faults(self, faults: Sequence[Fault]) -> None:
        silent = {f.target for f in faults}
        for key in sorted(silent ^ self.silent):
            verb = "del" if key in silent else "add"
            await asyncio.to_thread(_ip, "-n", self.netns, "addr", verb, f"{self.targets[key].address}/32",
                                    "dev", "target0")
        self.silent = silent

    def status(self) -> list[str]:
        return [f"icmp {t.address} ({key}): {'silent' if key in self.silent else 'answers'}"
                for key, t in self.targets.items()]
