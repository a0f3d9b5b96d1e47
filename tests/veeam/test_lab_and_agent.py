"""The Veeam fake as `vigie lab up` plays it for the vsgp estate (its faults), `vigie collect
--config F --device veeam --collector veeam --json` as a subprocess against the fake, and a failed
job through the real agent (`vigie run`) reaching a ticket in the built-in ticket log."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.estate import LAB_SECRETS, Estate, EstateError
from lab.services import Context, Fault, FaultError, ServiceRegistry
from lab.veeam_fake import VeeamFake, VeeamService
from tests.e2e.helpers import ROOT, AgentProcess, eventually, query_sqlite
from tests.probes.helpers import free_tcp_port

from .conftest import PASSWORD, USER, Runner, of, status


def test_the_lab_knows_the_veeam_service_and_its_fault_kinds() -> None:
    registry = ServiceRegistry.installed()
    assert registry.services["veeam"] is VeeamService
    assert {"veeam-job-failed", "veeam-job-stale", "veeam-repository-full", "veeam-down"} <= set(registry.kinds)


def test_the_lab_moves_the_fake_to_another_port_only_where_the_estate_reads_a_variable(tmp_path: Path) -> None:
    estate = Estate.load("vsgp", {})
    service = VeeamService.for_estate(Context(estate, argparse.Namespace(veeam_port=0), {}, tmp_path))
    assert service is not None and service.instances[0].port == 0  # any free port, said at start
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(yaml.safe_dump({"clients": [{"name": "acme", "sites": [{"name": "hq", "devices": [
        {"name": "vbr", "address": "127.0.0.1", "credentials": "vbr-login",
         "collectors": {"veeam": {"url": "https://127.0.0.1:9419", "ca_bundle": "ca.pem"}}}]}]}]}))
    estate = Estate.load(str(fixed), {}, secrets_path=None)
    with pytest.raises(EstateError, match="is fixed, --veeam-port cannot move it"):
        VeeamService.for_estate(Context(estate, argparse.Namespace(veeam_port=0), {}, tmp_path))


async def test_the_lab_plays_vsgps_veeam_and_its_faults(tmp_path: Path) -> None:
    port = free_tcp_port()
    environ = {"VIGIE_VSGP_VEEAM_URL": f"https://127.0.0.1:{port}"}
    estate = Estate.load("vsgp", environ)
    service = VeeamService.for_estate(Context(estate, argparse.Namespace(), environ, tmp_path))
    assert service is not None
    assert service.environment() == environ  # the lab answers for the url's variable
    assert service.devices() == [("vsgp/veeam", f"https://127.0.0.1:{port}")]
    raw = yaml.safe_load((LAB_SECRETS.parent / "vsgp.yaml").read_text(encoding="utf-8"))
    (device,) = [d for s in raw["clients"][0]["sites"] for d in s["devices"] if d["name"] == "veeam"]
    login = estate.secret(device["credentials"]["veeam"])
    assert isinstance(login, dict)
    options = {**device["collectors"]["veeam"], "url": environ["VIGIE_VSGP_VEEAM_URL"],
               "ca_bundle": str(ROOT / device["collectors"]["veeam"]["ca_bundle"])}  # the lab's CA, committed
    await service.start()
    try:
        run = Runner(options, dict(login))
        assert status(await run.run())["status"] == "ok"

        now = time.time()
        failed = Fault("veeam-job-failed", "vsgp/veeam", (), now)
        stale = Fault("veeam-job-stale", "vsgp/veeam", ("30", "Réplication PRA Clamart"), now)
        full = Fault("veeam-repository-full", "vsgp/veeam", ("97",), now)
        assert service.check_fault(failed) == "Veeam job 'Sauvegarde VM Siège': its last run failed"
        assert service.check_fault(stale) == "Veeam job 'Réplication PRA Clamart': no run for 30 h"
        assert service.check_fault(full) == "Veeam repository 'DDBoost Siège': 97 % used"
        for wrong, said in [(Fault("veeam-job-failed", "vsgp/veeam", ("Nope",), now), "no job 'Nope'"),
                            (Fault("veeam-job-stale", "vsgp/veeam", (), now), "give HOURS"),
                            (Fault("veeam-down", "vsgp/core-siege", (), now), "no veeam collector")]:
            try:
                service.check_fault(wrong)
            except FaultError as exc:
                assert said in str(exc)
            else:
                raise AssertionError(f"{wrong} was accepted")

        await service.apply_faults([failed, stale, full])
        samples = await run.run()
        jobs, repos = of(samples, "veeam_job"), of(samples, "veeam_repository")
        assert jobs["Sauvegarde VM Siège"].fields["last_result"] == "failed"
        assert jobs["Réplication PRA Clamart"].fields["last_success_age_h"] >= 30
        assert repos["DDBoost Siège"].fields["used_pct"] == 97.0
        assert any("its last run failed" in line for line in service.status())

        await service.apply_faults([Fault("veeam-down", "vsgp/veeam", (), now)])
        assert status(await run.run())["status"] == "unreachable"
        await service.apply_faults([])  # all cleared
        samples = await run.run()
        assert status(samples)["status"] == "ok"
        assert of(samples, "veeam_job")["Sauvegarde VM Siège"].fields["last_result"] == "success"
    finally:
        await service.stop()


def _estate(fake: VeeamFake, ca_file: Path, directory: Path, *, interval_s: float = 60,
            password: str = PASSWORD) -> tuple[Path, Path]:
    device = {
        "name": "veeam", "address": "127.0.0.1", "credentials": {"veeam": "veeam-api"},
        "collectors": {"veeam": {"url": fake.url, "ca_bundle": str(ca_file), "api_version": "1.2-rev1"}},
        "interval_s": interval_s, "timeout_s": min(interval_s, 10), "jitter_s": 0,
    }
    config = {
        "agent": {"state_dir": str(directory / "state"), "store": {"kind": "sqlite"}},
        "clients": [{"name": "vsgp", "display_name": "VSGP", "sites": [{"name": "siege", "devices": [device]}]}],
    }
    config_path, secrets_path = directory / "vigie.yaml", directory / "secrets.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    secrets_path.write_text(yaml.safe_dump({"veeam-api": {"username": USER, "password": password}}))
    secrets_path.chmod(0o600)
    return config_path, secrets_path


async def _vigie(*args: str) -> tuple[int, list[dict[str, Any]], str]:
    """`vigie ARGS` in a subprocess, the fake serving in this test's loop meanwhile."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.cli", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    lines = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    return process.returncode or 0, lines, err.decode()


async def test_vigie_collect_prints_the_jobs_and_repositories(fake: VeeamFake, ca_file: Path, tmp_path: Path) -> None:
    config, secrets = _estate(fake, ca_file, tmp_path)
    code, lines, stderr = await _vigie("collect", "--config", str(config), "--secrets", str(secrets),
                                       "--device", "veeam", "--collector", "veeam", "--json")
    assert code == 0, stderr
    measurements = [line["measurement"] for line in lines]
    assert measurements.count("veeam_job") == 5 and measurements.count("veeam_repository") == 3
    assert measurements[-2:] == ["veeam_server", "collection"] and lines[-1]["fields"]["status"] == "ok"
    job = next(line for line in lines if line["tags"].get("job") == "Sauvegarde VM Siège")
    assert job["tags"] == {"client": "vsgp", "site": "siege", "device": "veeam", "job": "Sauvegarde VM Siège",
                           "job_type": "Backup", "job_kind": "backup", "workload": "vm"}
    assert job["fields"]["last_result"] == "success" and isinstance(job["fields"]["last_run_end"], float)

    config, secrets = _estate(fake, ca_file, tmp_path, password="wrong-password-here")
    code, lines, _ = await _vigie("collect", "--config", str(config), "--secrets", str(secrets),
                                  "--device", "veeam", "--json")
    assert code == 1 and lines[-1]["fields"]["status"] == "error"
    assert "HTTP 401 AccessDenied: user" in lines[-1]["fields"]["error"]
    assert "wrong-password-here" not in json.dumps(lines)


async def test_a_failed_job_reaches_a_ticket_through_the_agent(fake: VeeamFake, ca_file: Path, tmp_path: Path) -> None:
    config, secrets = _estate(fake, ca_file, tmp_path, interval_s=2)
    code, _, stderr = await _vigie("check-config", str(config), "--secrets", str(secrets))
    assert code == 0, stderr
    fake.fail_job("Sauvegarde VM Siège")
    state = tmp_path / "state"
    agent = AgentProcess(config, secrets, state)
    try:
        agent.start()
        (ticket,) = await eventually(
            lambda: query_sqlite(state / "tickets.sqlite",
                                 "SELECT alert, severity, title, status FROM tickets WHERE client = 'vsgp'"),
            "the failed job's ticket in the built-in log", agents=[agent],
        )
        alert, severity, title, ticket_status = ticket
        assert (alert, severity, ticket_status) == ("veeam_job_failed", "major", "open")
        assert "Sauvegarde VM Siège" in title
        assert fake.logins == 1  # polls every 2 s on one login: the token is kept
        assert await agent.terminate() == 0
    finally:
        agent.ensure_stopped()
