"""The lab's Meraki Dashboard: lab.meraki_fake on loopback, holding the organizations the estate's
``meraki`` collectors name, filled from the estate itself.

- Each device with ``collectors: {meraki: {organization_id: ID, base_url: URL}}`` is a view of
  organization ID on the fake listening at URL's host:port (which must be loopback); its API key
  is the ``api_key`` of its credentials secret in the lab's secrets file.
- Each device of the same client carrying ``x-lab: {meraki: {serial: S, model: MR36}}`` is a
  Meraki device of that organization, named as in the inventory (so the collector's samples land
  on it), in one Meraki network per vigie site (named after the site, tagged ``site-<site>``),
  with its inventory parent as LLDP neighbour on ``wired0`` and a few wireless clients.

Faults (``vigie lab fault ...``):
``vsgp/ap-siege-01 meraki-ap-offline``: that AP stops reporting (status offline);
``vsgp/meraki meraki-rate-limit [RETRY_AFTER_S]``: the Dashboard answers every request of that
organization's key with 429 (another application spending the budget), Retry-After 30 s by default;
``vsgp/meraki meraki-down``: the Dashboard's port refuses connections.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from lab.estate import EstateError, expand, is_loopback, variables_in
from lab.meraki_fake import FakeDevice, FakeNetwork, FakeOrg, MerakiFake
from lab.services import Context, Fault, FaultError, FaultKind, LabService

DEFAULT_RETRY_AFTER_S = 30


@dataclass
class View:
    """One ``meraki`` collector of the estate: its device, organization and key."""

    key: str  # CLIENT/DEVICE
    organization_id: str
    api_key: str


@dataclass
class Instance:
    host: str
    port: int
    views: list[View] = field(default_factory=list)
    orgs: dict[str, FakeOrg] = field(default_factory=dict)
    aps: dict[str, tuple[str, str]] = field(default_factory=dict)  # CLIENT/DEVICE -> (org id, serial)
    variables: list[str] = field(default_factory=list)
    fake: MerakiFake | None = None

    def url(self) -> str:
        return f"http://{self.host}:{self.port}/api/v1"


def _devices(context: Context) -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(client, site, device) as written, for every device of the estate's files."""
    for path in context.estate.paths:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for client in data.get("clients") or []:
            for site in client.get("sites") or []:
                for device in site.get("devices") or []:
                    yield client, site, device


def _mac(serial: str) -> str:
    digest = zlib.crc32(serial.encode()).to_bytes(4, "big")
    return "00:18:0a:" + ":".join(f"{b:02x}" for b in digest[:3])


class MerakiService(LabService):
    name = "meraki"
    fault_kinds = (
        FaultKind("meraki-ap-offline", "device", "", "the Meraki AP stops reporting to the Dashboard (offline)"),
        FaultKind("meraki-rate-limit", "device", "[RETRY_AFTER_S]",
                  "the Dashboard answers the meraki device's every call 429 (Retry-After 30 s)"),
        FaultKind("meraki-down", "device", "", "the Dashboard of the meraki device refuses connections"),
    )

    def __init__(self, instances: list[Instance], estate_paths: str = "ESTATE") -> None:
        self.instances = instances
        self.estate_paths = estate_paths

    @classmethod
    def add_options(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--meraki-port", type=int, metavar="N",
            help="TCP port of the fake Meraki Dashboard (0: any free port); default: the port of the estate's "
            "meraki base_url, read from the environment first",
        )

    @classmethod
    def for_estate(cls, context: Context) -> MerakiService | None:
        override = getattr(context.options, "meraki_port", None)
        instances: dict[tuple[str, int], Instance] = {}
        by_org: dict[tuple[str, str], Instance] = {}  # (client, organization id) -> its instance
        rows = list(_devices(context))
        for client, _site, device in rows:
            options = (device.get("collectors") or {}).get("meraki")
            if options is None and "meraki" not in (device.get("collectors") or {}):
                continue
            key = f"{client['name']}/{device['name']}"
            options = options or {}
            url = str(options.get("base_url", ""))
            parts = urlsplit(expand(url, context.environ))
            if not is_loopback(parts.hostname or "") or parts.scheme != "http":
                raise EstateError(f"{key}: meraki base_url {url!r} must be http:// on loopback for the lab")
            if "organization_id" not in options:
                raise EstateError(f"{key}: meraki needs organization_id")
            port = override if override is not None else parts.port or 80
            instance = instances.setdefault((parts.hostname or "", port), Instance(parts.hostname or "", port))
            instance.variables.extend(v.name for v in variables_in(url) if v.name not in instance.variables)
            secret_name = device.get("credentials")
            if isinstance(secret_name, dict):
                secret_name = secret_name.get("meraki")
            secret = context.estate.secret(secret_name) if secret_name else None
            if not isinstance(secret, dict) or not secret.get("api_key"):
                raise EstateError(f"{key}: meraki credentials {secret_name!r} need an api_key in the lab's secrets")
            org_id = str(options["organization_id"])
            instance.views.append(View(key, org_id, secret["api_key"]))
            instance.orgs.setdefault(org_id, FakeOrg(org_id, client.get("display_name") or client["name"]))
            by_org[(client["name"], org_id)] = instance
        if not instances:
            return None
        for client, site, device in rows:
            lab = (device.get("x-lab") or {}).get("meraki")
            if not isinstance(lab, dict):
                continue
            owners = [(org_id, inst) for (name, org_id), inst in by_org.items() if name == client["name"]]
            if not owners:
                raise EstateError(f"{client['name']}/{device['name']}: x-lab.meraki but no meraki collector in "
                                  f"client {client['name']}")
            org_id, instance = owners[0]
            org = instance.orgs[org_id]
            network_id = f"L_{zlib.crc32(site['name'].encode()) % 10**9:09d}"
            if not any(n.id == network_id for n in org.networks):
                org.networks.append(FakeNetwork(network_id, site.get("display_name") or site["name"],
                                                [f"site-{site['name']}"]))
            serial = str(lab["serial"])
            number = len(org.devices)
            neighbors = {}
            if device.get("parent"):
                neighbors["wired0"] = {
                    "lldp": {"sourcePort": "wired0", "systemName": device["parent"],
                             "portId": f"GigabitEthernet1/0/{1 + number % 24}", "managementAddress": "127.0.0.1"},
                }
            org.devices.append(FakeDevice(
                serial, device["name"], str(lab.get("model", "MR36")), network_id, _mac(serial),
                lan_ip=f"10.{number // 250 % 250}.{number % 250}.10", tags=["vsgp-wifi"], clients=number * 7 % 23,
                neighbors=neighbors,
            ))
            instance.aps[f"{client['name']}/{device['name']}"] = (org_id, serial)
        return cls(list(instances.values()), ",".join(str(p) for p in context.estate.paths))

    async def start(self) -> None:
        for instance in self.instances:
            keys: dict[str, set[str]] = {}
            for view in instance.views:
                keys.setdefault(view.api_key, set()).add(view.organization_id)
            instance.fake = MerakiFake(instance.orgs.values(), keys)
            try:
                await instance.fake.start(instance.host, instance.port)
                instance.port = instance.fake.port  # --meraki-port 0: the one the system gave
            except OSError as exc:
                raise EstateError(f"tcp {instance.host}:{instance.port}: {exc.strerror} (another lab? set "
                                  f"{', '.join(instance.variables) or 'the base_url'})") from None

    async def stop(self) -> None:
        for instance in self.instances:
            if instance.fake is not None:
                await instance.fake.stop()
                instance.fake = None

    def endpoints(self) -> list[str]:
        return [
            f"http {i.url()}  Meraki Dashboard ({sum(len(o.devices) for o in i.orgs.values())} devices in "
            f"{len(i.orgs)} organization(s))" for i in self.instances
        ]

    def devices(self) -> list[tuple[str, str]]:
        views = [(view.key, f"{i.url()} organization {view.organization_id}") for i in self.instances
                 for view in i.views]
        aps = [(key, f"Meraki {serial} in organization {org_id}") for i in self.instances
               for key, (org_id, serial) in i.aps.items()]
        return views + aps

    def examples(self) -> list[str]:
        return [f"vigie collect --config {self.estate_paths} --secrets lab/estates/secrets.yaml --device {view.key}"
                " --json" for i in self.instances for view in i.views][:1]

    def environment(self) -> dict[str, str]:
        return {name: i.url() for i in self.instances for name in i.variables}

    def status(self) -> list[str]:
        lines = []
        for i in self.instances:
            for org in i.orgs.values():
                offline = [d.name for d in org.devices if d.status != "online"]
                lines.append(f"Meraki organization {org.id}: {len(org.devices)} devices, "
                             f"{len(offline)} not online{': ' + ', '.join(offline) if offline else ''}")
        return lines

    def _view(self, target: str) -> tuple[Instance, View]:
        for instance in self.instances:
            for view in instance.views:
                if view.key == target:
                    return instance, view
        raise FaultError(f"{target}: not a device with a meraki collector pointed at the lab's Dashboard")

    def check_fault(self, fault: Fault) -> str:
        if fault.kind == "meraki-ap-offline":
            if fault.args:
                raise FaultError("meraki-ap-offline takes no argument")
            for instance in self.instances:
                if fault.target in instance.aps:
                    return f"{fault.target} ({instance.aps[fault.target][1]}) reports offline to {instance.url()}"
            raise FaultError(f"{fault.target}: not a Meraki device of the lab (x-lab.meraki)")
        instance, view = self._view(fault.target)
        if fault.kind == "meraki-down":
            if fault.args:
                raise FaultError("meraki-down takes no argument")
            return f"{instance.url()} refuses connections"
        return f"{instance.url()} answers 429 to every call, Retry-After {_retry_after(fault)} s"

    async def apply_faults(self, faults: Sequence[Fault]) -> None:
        for instance in self.instances:
            fake = instance.fake
            if fake is None:
                continue
            offline = {instance.aps[f.target][1]: f for f in faults
                       if f.kind == "meraki-ap-offline" and f.target in instance.aps}
            for org in instance.orgs.values():
                for device in org.devices:
                    fault = offline.get(device.serial)
                    device.status = "offline" if fault else "online"
                    device.last_reported_at = dt.datetime.fromtimestamp(fault.since, dt.UTC) if fault else None
            views = {view.key for view in instance.views}
            mine = [f for f in faults if f.target in views]
            storms = [f for f in mine if f.kind == "meraki-rate-limit"]
            fake.rate_limit_storm(math.inf if storms else 0, _retry_after(storms[-1]) if storms else 1)
            await fake.set_down(any(f.kind == "meraki-down" for f in mine))


def _retry_after(fault: Fault) -> int:
    if not fault.args:
        return DEFAULT_RETRY_AFTER_S
    if len(fault.args) != 1 or not fault.args[0].isdigit():
        raise FaultError("meraki-rate-limit: give RETRY_AFTER_S in whole seconds, or none for 30")
    return int(fault.args[0])
