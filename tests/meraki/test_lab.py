"""The lab's Dashboard (lab/meraki_service.py) on the vsgp estate: its 115 APs, the faults `vigie lab
fault` injects (an AP offline, 429s, the Dashboard down) as the collector sees them, and `vigie
collect --config F --device meraki --json` as a subprocess against the fake."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import yaml

from collectors.meraki import PLUGIN
from lab.estate import Estate
from lab.meraki_fake import MerakiFake
from lab.meraki_service import MerakiService
from lab.services import Context, Fault, ServiceRegistry
from tests.e2e.helpers import ROOT
from tests.probes.helpers import free_tcp_port

from .helpers import API_KEY, ORG_ID, of, organization, poll, scheduler, status

VARIABLE = "VIGIE_LAB_MERAKI_URL"


def test_the_lab_knows_the_dashboard_and_its_faults() -> None:
    registry = ServiceRegistry.installed()
    assert registry.services["meraki"] is MerakiService
    assert {"meraki-ap-offline", "meraki-rate-limit", "meraki-down"} <= set(registry.kinds)


async def test_the_vsgp_dashboard_and_its_faults_as_the_collector_sees_them(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_tcp_port()}/api/v1"
    estate = Estate.load("vsgp", environ={VARIABLE: url})
    service = MerakiService.for_estate(Context(estate, argparse.Namespace(), {VARIABLE: url}, tmp_path))
    assert service is not None and service.environment() == {VARIABLE: url}
    (instance,) = service.instances
    org = instance.orgs["549236"]
    assert len(org.devices) == 115 and {d.model for d in org.devices} == {"MR33", "MR36", "MR44"}
    assert len(org.networks) == 49 and all(n.tags[0].startswith("site-") for n in org.networks)
    ap = next(d for d in org.devices if d.name == "ap-siege-01")
    assert ap.neighbors["wired0"]["lldp"]["systemName"] == "sw-siege-01"
    (view,) = instance.views
    await service.start()
    try:
        one = poll(PLUGIN, {"organization_id": "549236", "base_url": url, "neighbors_per_poll": 0}, key=view.api_key)
        agent = scheduler(PLUGIN, [one])
        samples = await agent.run_poll(one)
        assert status(samples)["status"] == "ok", status(samples)
        devices = {s.tags["name"]: s for s in of(samples, "meraki_device")}
        assert len(devices) == 115 and devices["ap-siege-01"].tags["device"] == "ap-siege-01"
        assert devices["ap-malakoff-clic-01"].tags["vigie_site"] == "malakoff-clic"

        offline = Fault("meraki-ap-offline", "vsgp/ap-siege-01", (), time.time() - 600)
        assert service.check_fault(offline) == f"vsgp/ap-siege-01 ({ap.serial}) reports offline to {url}"
        await service.apply_faults([offline])
        samples = await agent.run_poll(one)
        ap_sample = next(s for s in of(samples, "meraki_device") if s.tags["name"] == "ap-siege-01")
        assert ap_sample.fields["status"] == "offline" and ap_sample.fields["last_reported_age_s"] >= 600

        storm = Fault("meraki-rate-limit", "vsgp/meraki", ("30",), time.time())
        await service.apply_faults([offline, storm])
        result = status(await agent.run_poll(one))
        assert result["status"] == "error" and "HTTP 429" in result["error"], result

        await service.apply_faults([Fault("meraki-down", "vsgp/meraki", (), time.time())])
        agent = scheduler(PLUGIN, [one])  # a new agent: the first one's budget holds the 30 s
        result = status(await agent.run_poll(one))
        assert result["status"] == "unreachable" and "ConnectError" in result["error"], result

        await service.apply_faults([])
        samples = await agent.run_poll(one)
        assert status(samples)["status"] == "ok" and of(samples, "meraki_organization")[0].fields["offline"] == 0
        assert service.status() == ["Meraki organization 549236: 115 devices, 0 not online"]
    finally:
        await service.stop()


async def test_vigie_collect_prints_the_samples_of_the_config_device(tmp_path: Path) -> None:
    fake = MerakiFake([organization()], {API_KEY: [ORG_ID]}, max_per_page=4)
    await fake.start()
    try:
        config = {
            "clients": [{
                "name": "vsgp", "display_name": "VSGP",
                "sites": [
                    {"name": "cloud", "devices": [{
                        "name": "meraki", "address": "127.0.0.1", "credentials": "meraki-key",
                        "collectors": {"meraki": {"organization_id": ORG_ID, "base_url": fake.url,
                                                  "neighbors_per_poll": 1}},
                    }]},
                    {"name": "siege", "devices": [
                        {"name": "ap-siege-01", "address": "127.0.0.1", "collectors": {}},
                    ]},
                ],
            }],
        }
        config_path, secrets_path = tmp_path / "vigie.yaml", tmp_path / "secrets.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        secrets_path.write_text(yaml.safe_dump({"meraki-key": {"api_key": API_KEY}}))
        secrets_path.chmod(0o600)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent.cli", "collect", "--config", str(config_path), "--secrets",
            str(secrets_path), "--device", "meraki", "--json",
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        lines = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
        by_measurement: dict[str, list[dict]] = {}
        for line in lines:
            by_measurement.setdefault(line["measurement"], []).append(line)
        (collection,) = by_measurement["collection"]
        assert collection["fields"]["status"] == "ok", collection
        assert len(by_measurement["meraki_device"]) == 9
        ap1 = next(s for s in by_measurement["meraki_device"] if s["tags"]["serial"] == "Q2MD-0001-AP00")
        assert ap1["tags"]["device"] == "ap-siege-01" and ap1["tags"]["site"] == "siege"
        assert fake.count("/devices/statuses") == 3  # 9 devices, 4 a page
        assert API_KEY not in out.decode() + err.decode()
    finally:
        await fake.stop()
