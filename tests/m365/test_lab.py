"""The lab's Microsoft 365 (lab/graph_fake.py's GraphService): what `vigie lab up` plays for an
estate's m365 devices and the faults `vigie lab fault` injects, read by the real collector; then
`vigie collect --config F --device m365 --json` and `vigie run` against it as subprocesses: an
Exchange incident the lab opens reaches a ticket in the built-in log, solved when the lab resolves it."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from collectors.m365 import M365Options
from lab.estate import Estate
from lab.graph_fake import LAB_TLS, GraphService
from lab.services import Context, Fault, ServiceRegistry
from tests.e2e.helpers import ROOT, AgentProcess, eventually, query_sqlite
from tests.probes.helpers import free_tcp_port

from .helpers import collector, of, run, status

TENANT_ID = "3f2a6c1e-8d4b-4e7a-9b1c-2d5e6f708192"
CLIENT_ID = "0b7e4a52-6c1d-4f3e-8a29-5d6e7f801001"
DEVICE = "acme/m365"


def _estate(tmp_path: Path, port: int) -> tuple[Path, Path]:
    url = f"${{ACME_M365_URL:-https://127.0.0.1:{port}}}"
    options = {"tenant_id": TENANT_ID, "client_id": CLIENT_ID, "authority_url": url, "graph_url": url,
               "ca_bundle": str(LAB_TLS / "ca.pem")}
    config = {
        "agent": {"state_dir": str(tmp_path / "unused-state"), "store": {"kind": "sqlite"}},
        "clients": [{"name": "acme", "display_name": "Acme", "sites": [{"name": "cloud", "devices": [{
            "name": "m365", "address": "127.0.0.1", "credentials": "acme-m365", "interval_s": 2, "timeout_s": 2,
            "jitter_s": 0, "collectors": {"m365": options},
            "x-lab": {"licences": {"SPE_E3": [504, 505], "EXCHANGESTANDARD": [3, 10]}, "sync": True, "defender": True},
        }]}]}],
    }
    config_path, secrets_path = tmp_path / "acme.yaml", tmp_path / "secrets.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    secrets_path.write_text(yaml.safe_dump({"acme-m365": {"client_secret": "lab-fake-acme"}}))
    secrets_path.chmod(0o600)
    return config_path, secrets_path


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[tuple[GraphService, Path, Path]]:
    config, secrets = _estate(tmp_path, free_tcp_port())
    estate = Estate.load(str(config), environ={}, secrets_path=secrets)
    service = GraphService.for_estate(Context(estate, argparse.Namespace(), {}, tmp_path))
    assert service is not None
    await service.start()
    yield service, config, secrets
    await service.stop()


def _options(service: GraphService) -> M365Options:
    url = service.environment()["ACME_M365_URL"]
    return M365Options.model_validate({"tenant_id": TENANT_ID, "client_id": CLIENT_ID, "authority_url": url,
                                       "graph_url": url, "ca_bundle": str(LAB_TLS / "ca.pem")})


def test_the_lab_knows_the_m365_service_and_its_faults() -> None:
    registry = ServiceRegistry.installed()
    assert registry.services["m365"] is GraphService
    assert {"m365-incident", "m365-licences-exhausted", "m365-sync-stale", "m365-defender-alert",
            "m365-graph-down"} <= set(registry.kinds)


async def test_the_lab_tenant_and_its_faults(lab: tuple[GraphService, Path, Path]) -> None:
    service, _, _ = lab
    ((device, where),) = service.devices()
    assert device == DEVICE and where.endswith(f"/{TENANT_ID}")
    m365 = collector(_options(service))
    secret = "lab-fake-acme"
    samples = await run(m365, secret)
    assert status(samples) == ("ok", None)
    licences = {s.tags["sku"]: s.fields["available"] for s in of(samples, "m365_license")}
    assert licences == {"SPE_E3": 1, "EXCHANGESTANDARD": 7}

    now = time.time()
    incident = Fault("m365-incident", DEVICE, ("Exchange", "Online"), now)
    exhausted = Fault("m365-licences-exhausted", DEVICE, ("EXCHANGESTANDARD",), now)
    stale = Fault("m365-sync-stale", DEVICE, ("5",), now)
    malware = Fault("m365-defender-alert", DEVICE, (), now)
    assert service.check_fault(malware) == "a high Defender alert, resolved when cleared"
    assert service.check_fault(incident) == "an incident on Exchange Online for Acme's tenant, resolved when cleared"
    assert service.check_fault(exhausted) == "every EXCHANGESTANDARD licence assigned"
    assert service.check_fault(stale) == "last directory sync 5 h ago"
    await service.apply_faults([incident, exhausted, stale, malware])
    samples = await run(m365, secret)
    (alert,) = [s for s in of(samples, "m365_security_alert") if s.fields["status"] == "new"]
    assert alert.fields["severity"] == "high" and alert.fields["is_resolved"] is False
    (issue,) = [s for s in of(samples, "m365_issue") if s.tags["service"] == "Exchange Online"]
    assert issue.tags["classification"] == "incident" and issue.fields["is_resolved"] is False
    assert {s.tags["sku"]: s.fields["available"] for s in of(samples, "m365_license")}["EXCHANGESTANDARD"] == 0
    (sync,) = of(samples, "m365_sync")
    assert sync.fields["last_sync_age_s"] == pytest.approx(5 * 3600, abs=5)
    assert service.status() == [f"{DEVICE}: open incident {issue.tags['issue_id']}",
                                f"{DEVICE}: open Defender alert {alert.tags['alert_id']}"]

    await service.apply_faults([Fault("m365-graph-down", DEVICE, (), now)])  # the others cleared
    state, error = status(await run(m365, secret))
    assert state == "error" and "HTTP 503 ServiceUnavailable" in error
    await service.apply_faults([])
    samples = await run(m365, secret)
    (issue,) = [s for s in of(samples, "m365_issue") if s.tags["service"] == "Exchange Online"]
    assert issue.fields["is_resolved"] is True and issue.fields["status"] == "serviceRestored"
    assert {s.tags["sku"]: s.fields["available"] for s in of(samples, "m365_license")}["EXCHANGESTANDARD"] == 7
    assert of(samples, "m365_sync")[0].fields["last_sync_age_s"] <= 1800
    resolved = {s.tags["alert_id"]: s.fields["is_resolved"] for s in of(samples, "m365_security_alert")}
    assert resolved[alert.tags["alert_id"]] is True


async def test_vigie_collect_prints_the_tenants_samples(lab: tuple[GraphService, Path, Path]) -> None:
    service, config, secrets = lab
    await service.apply_faults([Fault("m365-incident", DEVICE, (), time.time())])
    # the fake lives in this event loop: the subprocess is awaited, not waited
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.cli", "collect", "--config", str(config), "--secrets", str(secrets),
        "--device", "m365", "--json", cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    by_measurement: dict[str, list[dict]] = {}
    for line in lines:
        by_measurement.setdefault(line["measurement"], []).append(line)
    (collection,) = by_measurement["collection"]
    assert collection["fields"]["status"] == "ok"
    assert len(by_measurement["m365_service"]) == 6
    exchange = [i for i in by_measurement["m365_issue"] if i["tags"]["service"] == "Exchange Online"]
    assert [i["fields"]["is_resolved"] for i in exchange] == [False]
    assert {i["tags"]["sku"]: i["fields"]["available"] for i in by_measurement["m365_license"]} == {
        "SPE_E3": 1, "EXCHANGESTANDARD": 7}
    assert by_measurement["m365_sync"][0]["fields"]["enabled"] is True
    assert "lab-fake-acme" not in out.decode() + err.decode()


async def test_an_exchange_incident_reaches_a_ticket_and_is_solved_with_it(
    lab: tuple[GraphService, Path, Path], tmp_path: Path
) -> None:
    service, config, secrets = lab
    state = tmp_path / "state"
    agent = AgentProcess(config, secrets, state)
    tickets = state / "tickets.sqlite"
    try:
        agent.start()
        await service.apply_faults([Fault("m365-incident", DEVICE, (), time.time())])
        (opened,) = await eventually(
            lambda: query_sqlite(tickets, "SELECT id, title FROM tickets WHERE alert = 'm365_incident'"),
            "the Exchange incident's ticket in the built-in log", agents=[agent])
        assert "Exchange Online" in opened[1]
        await service.apply_faults([])  # Microsoft closes the incident
        await eventually(
            lambda: query_sqlite(tickets, "SELECT id FROM tickets WHERE id = ? AND status = 'solved'", (opened[0],)),
            "the ticket solved once the incident is resolved", agents=[agent])
        assert await agent.terminate() == 0
    finally:
        agent.ensure_stopped()
