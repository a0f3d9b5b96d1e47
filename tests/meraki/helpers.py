"""What the Meraki tests share: an organization on the fake Dashboard, and the collector run the
way the agent runs it (the scheduler's run_poll, with an inventory that knows some of the APs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent.api import PluginSpec, Sample
from agent.inventory import Poll
from agent.plugins import Plugins
from agent.runner import CollectorFactory
from agent.scheduler import Scheduler
from lab.meraki_fake import FakeDevice, FakeNetwork, FakeOrg

ORG_ID = "549236"
API_KEY = "0123456789abcdef0123456789abcdef01234567"
CLIENT = "vsgp"
# The APs the inventory has (as the lab estate: AP devices with a parent switch).
INVENTORY = {f"ap-siege-0{i}": "siege" for i in (1, 2, 3)}


def organization(aps: int = 8) -> FakeOrg:
    """Two networks: the siège's APs, and a médiathèque behind a Meraki MX with two uplinks."""
    siege = FakeNetwork("L_100", "Siège VSGP", ["site-siege"])
    media = FakeNetwork("N_200", "Médiathèque", [], ["wireless", "appliance"])
    devices = [
        FakeDevice(
            f"Q2MD-{i:04d}-AP00", f"ap-siege-{i:02d}", ("MR33", "MR36", "MR44")[i % 3], siege.id,
            f"00:18:0a:00:00:{i:02x}", lan_ip=f"10.0.0.{10 + i}", tags=["vsgp-wifi"], clients=i,
            neighbors={"wired0": {"lldp": {"sourcePort": "wired0", "systemName": "sw-siege-01",
                                           "portId": f"Gi1/0/{i}", "managementAddress": "10.0.0.2"}}},
        )
        for i in range(1, aps + 1)
    ]
    mx = FakeDevice(
        "Q2XX-MX00-0001", "mx-mediatheque", "MX68", media.id, "00:18:0a:00:01:01",
        uplinks=[{"interface": "wan1", "status": "active", "ip": "192.0.2.10", "gateway": "192.0.2.1",
                  "publicIp": "203.0.113.7", "ipAssignedBy": "dhcp"},
                 {"interface": "cellular", "status": "ready", "provider": "Orange F", "ip": "100.64.0.2"}],
        loss_latency={"wan1": [(0.0, 21.4), (12.5, 80.0), (None, None)]},
    )
    return FakeOrg(ORG_ID, "Vallée Sud - Grand Paris", [siege, media], [*devices, mx])


def options(url: str, **more: Any) -> dict[str, Any]:
    return {"organization_id": ORG_ID, "base_url": url, "per_page": 3, "wait_s": 5, "timeout_s": 2, "rate_per_s": 9,
            "burst": 3, **more}


def _device_tags(client: str, name: str) -> Mapping[str, str] | None:
    site = INVENTORY.get(name)
    return {"client": client, "site": site, "device": name} if site else None


def poll(spec: PluginSpec, opts: Mapping[str, Any], device: str = "meraki", key: str = API_KEY,
         timeout_s: float = 20) -> Poll:
    from agent.api import Target

    target = Target(name=device, address="127.0.0.1", credentials={"api_key": key},
                    tags={"client": CLIENT, "site": "cloud", "device": device})
    return Poll(target=target, collector=spec.name, options=spec.options.model_validate(dict(opts)), interval_s=60,
                timeout_s=timeout_s, jitter_s=0)


def scheduler(spec: PluginSpec, polls: Sequence[Poll]) -> Scheduler:
    """A scheduler that builds each poll's collector once (kept across runs, as the agent does),
    from a factory of its own: as a new agent process, it shares no organization budget with the
    test before."""
    fresh = replace(spec, factory=type(spec.factory)())
    make = CollectorFactory(Plugins([fresh]), Path("/nonexistent/vigie-test"), _no_secret)
    return Scheduler(list(polls), make, _discard, device_tags=_device_tags)


def _no_secret(ref: Any) -> str:
    raise KeyError(ref)


async def _discard(_samples: Sequence[Sample]) -> None:
    return None


def status(samples: Sequence[Sample]) -> dict[str, Any]:
    (collection,) = [s for s in samples if s.measurement == "collection"]
    return dict(collection.fields)


def of(samples: Sequence[Sample], measurement: str) -> list[Sample]:
    return [s for s in samples if s.measurement == measurement]
