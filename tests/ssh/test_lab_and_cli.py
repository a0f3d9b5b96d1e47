"""The SSH collectors end to end: the lab's ssh_hosts service for an estate (lab/ssh_service.py),
`vigie collect --config F --device NAME --json` as a subprocess for each of the three collectors,
and the acceptance of issue 10: a Docker container stopped on a real sshd raises an alert through
the real agent, to a ticket in the built-in ticket log."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from agent.config import load_config
from agent.plugins import Plugins
from agent.runner import Agent
from agent.statedir import StateDir
from agent.views import ticket_rows
from alerting.ticketing.log import TicketLog
from collectors.ssh.hyperv import PLUGIN as HYPERV
from collectors.ssh.linux import PLUGIN as LINUX
from lab.estate import Estate
from lab.services import Context, Fault, ServiceRegistry
from lab.ssh_hosts import lab_login_key_pem
from lab.ssh_service import SshHostsService

from .helpers import build, of, run, target
from .sshd import FIXTURES, Sshd, free_port

ROOT = Path(__file__).resolve().parents[2]
VIGIE = [sys.executable, "-m", "agent.cli"]
OFDT = ROOT / "lab" / "estates" / "ofdt.yaml"


def write_estate(directory: Path, ports: dict[str, int]) -> tuple[Path, Path]:
    """A one-site estate with the three kinds of SSH hosts on loopback, and its secrets."""
    config = {
        "agent": {"state_dir": str(directory / "state"), "store": {"kind": "sqlite"}},
        "clients": [{"name": "ofdt", "display_name": "OFDT", "ticketing": {"kind": "log"}, "sites": [{
            "name": "siege", "devices": [
                {"name": "hv1", "address": "127.0.0.1", "credentials": {"hyperv": "hv1-ssh"},
                 "collectors": {"hyperv": {"port": ports["hv1"]}}, "x-lab": {"ssh": "hyperv-hv1"}},
                {"name": "vm-dc", "address": "127.0.0.1", "credentials": {"windows": "dc-ssh"},
                 "collectors": {"windows": {"port": ports["vm-dc"], "ad_replication": True}},
                 "x-lab": {"ssh": "windows-dc"}},
                {"name": "vm-apps-docker", "address": "127.0.0.1", "credentials": {"linux": "docker-ssh"},
                 "collectors": {"linux": {"port": ports["vm-apps-docker"], "docker": True}}, "x-lab": {"ssh": "linux"}},
            ]}]}],
    }
    secrets = {
        "hv1-ssh": {"user": "vigie", "password": "lab-fake-hv1"},
        "dc-ssh": {"user": "vigie", "password": "lab-fake-dc"},
        "docker-ssh": {"user": "vigie", "private_key": lab_login_key_pem()},
    }
    config_path, secrets_path = directory / "estate.yaml", directory / "secrets.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    secrets_path.write_text(yaml.safe_dump(secrets))
    secrets_path.chmod(0o600)
    return config_path, secrets_path


def collect(config: Path, secrets: Path, device: str) -> tuple[int, list[dict], str]:
    done = subprocess.run([*VIGIE, "collect", "--config", str(config), "--secrets", str(secrets), "--device", device,
                           "--json"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")], done.stderr


async def test_the_lab_plays_the_estates_ssh_hosts_and_vigie_collect_reads_each(tmp_path: Path) -> None:
    assert ServiceRegistry.installed().services["ssh_hosts"] is SshHostsService
    ports = {name: free_port() for name in ("hv1", "vm-dc", "vm-apps-docker")}
    config, secrets = write_estate(tmp_path, ports)
    estate = Estate.load(str(config), environ={}, secrets_path=secrets)
    service = SshHostsService.for_estate(Context(estate, argparse.Namespace(), {}, tmp_path))
    assert service is not None and len(service.entries) == 3
    await service.start()
    try:
        devices = ("hv1", "vm-dc", "vm-apps-docker")
        answers = await asyncio.gather(*(asyncio.to_thread(collect, config, secrets, device) for device in devices))
        results = dict(zip(devices, answers, strict=True))
        fault = Fault("linux-container-stopped", "ofdt/vm-apps-docker", ("crawler-worker-1",), 0.0)
        assert service.check_fault(fault) == "ofdt/vm-apps-docker: Docker container crawler-worker-1 has exited (137)"
        await service.apply_faults([fault, Fault("hyperv-vm-saved", "ofdt/hv1", ("vm-gfi",), 0.0)])
        hv1, docker = (e for e in service.entries if e.key in ("ofdt/hv1", "ofdt/vm-apps-docker"))
        saved = await run(HYPERV, build(HYPERV, {}, tmp_path / "hv"),
                          target(hv1.port, {"user": "vigie", "password": "lab-fake-hv1"}))
        stopped = await run(LINUX, build(LINUX, {"docker": True}, tmp_path / "docker"),
                            target(docker.port, {"user": "vigie", "private_key": lab_login_key_pem()}))
    finally:
        await service.stop()
    for device, (code, lines, stderr) in results.items():
        (collection,) = [line for line in lines if line["measurement"] == "collection"]
        assert code == 0 and collection["fields"]["status"] == "ok", (device, collection, stderr)
    measurements = {d: {line["measurement"] for line in lines} for d, (_, lines, _) in results.items()}
    assert {"hyperv_host", "hyperv_vm", "hyperv_replication", "hyperv_disk", "ssh_host_key"} <= measurements["hv1"]
    assert {"windows_service", "windows_ad_replication", "windows_time", "windows_event"} - measurements["vm-dc"] == {
        "windows_event"}  # no watched event configured
    assert "linux_docker_container" in measurements["vm-apps-docker"]
    # known_hosts kept in the config's state directory, one file per plugin and client
    assert (tmp_path / "state" / "plugins" / "linux" / "ofdt" / "known_hosts").exists()

    (gfi,) = [s.fields for s in of(saved, "hyperv_vm") if s.tags["vm"] == "vm-gfi"]
    assert gfi["state"] == "Saved"
    (crawler,) = [s.fields for s in of(stopped, "linux_docker_container") if s.tags["container"] == "crawler-worker-1"]
    assert crawler["state"] == "exited" and crawler["exit_code"] == 137


def test_the_ofdt_estate_points_its_ssh_collectors_at_the_lab(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.yaml"
    shutil.copy(ROOT / "lab" / "estates" / "secrets.yaml", secrets)
    secrets.chmod(0o600)
    estate = Estate.load(str(OFDT), environ={}, secrets_path=secrets)
    service = SshHostsService.for_estate(Context(estate, argparse.Namespace(), {}, tmp_path))
    assert service is not None
    by_device = {e.key: (e.collector, e.recording, e.port) for e in service.entries}
    assert by_device["ofdt/hv1"] == ("hyperv", "hyperv-hv1", 2201)
    assert by_device["ofdt/vm-dc"][:2] == ("windows", "windows-dc")
    assert by_device["ofdt/vm-apps-docker"][:2] == ("linux", "linux")
    assert len(by_device) == 9
    load_config(OFDT, secrets, environ={}, plugins=Plugins.discover())  # the estate's options are valid


async def test_a_stopped_container_on_a_real_sshd_opens_a_ticket_through_the_agent(sshd: Sshd, tmp_path: Path) -> None:
    config_path = tmp_path / "vigie.yaml"
    config_path.write_text(textwrap.dedent(f"""
        agent: {{state_dir: {tmp_path / "state"}, store: {{kind: sqlite}}}}
        clients:
          - name: ofdt
            display_name: OFDT
            ticketing: {{kind: log}}
            rules:
              - {{name: linux_docker_container_down, for_s: 0}}   # the shipped rule, at once for the test
            sites:
              - name: siege
                devices:
                  - name: vm-apps-docker
                    address: 127.0.0.1
                    credentials: {{linux: docker-login}}
                    collectors: {{linux: {{port: {sshd.port}, docker: true, updates: false}}}}
                    interval_s: 3
                    timeout_s: 3
                    jitter_s: 0
    """))
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(yaml.safe_dump({"docker-login": {"user": sshd.user, "private_key_file": str(sshd.client_key)}}))
    secrets.chmod(0o600)
    plugins = Plugins.discover()
    config = load_config(config_path, secrets, environ={}, plugins=plugins)
    agent = Agent(config, state_dir=tmp_path / "state", plugins=plugins, health_interval_s=60)
    await agent.start()
    try:
        web = {"container": "sintes-lab-web-1"}
        async with asyncio.timeout(30):  # a first round with every container up: no ticket
            while not {r.field: r.value for r in agent.state.latest("linux_docker_container", web)}.get("running"):
                await asyncio.sleep(0.1)
        assert ticket_rows(StateDir(tmp_path / "state")) == []
        shutil.copy(FIXTURES / "data" / "docker-ps-stopped.jsonl", sshd.data / "docker-ps.jsonl")
        async with asyncio.timeout(30):
            while not (tickets := [t for t in ticket_rows(StateDir(tmp_path / "state")) if t.status == "open"]):
                await asyncio.sleep(0.1)
    finally:
        await agent.stop()
    # two containers of one host: two alerts on one ticket (ticket_grouping's defaults: client,
    # site, alertname), whose text names both
    assert len(tickets) == 2 and all(t.rule == "linux_docker_container_down" for t in tickets)
    assert all(t.receiver == "log" and t.severity == "major" for t in tickets)
    assert len({t.ticket_id for t in tickets}) == 1
    (record,) = TicketLog(str(tmp_path / "state" / "tickets.sqlite")).list()
    assert "sintes-lab-web-1" in record.content and "crawler-worker-1" in record.content
