"""Canary secrets planted in every kind of secret (SNMP community, SSH password, Meraki API key,
Veeam password, Microsoft 365 client secret, GLPI tokens, InfluxDB token) never appear in what vigie
writes or prints: `vigie run`'s log, its state directory (every file, byte for byte), `vigie collect
--json`, `vigie status|alerts|tickets`, `vigie check-config`. Every peer fails: ports nobody
listens on, and an HTTP server that answers 401 and echoes the whole request back (headers and
body, the token with them), as some API gateways do in their error pages."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme
import yaml

from tests.e2e.helpers import ROOT, AgentProcess, eventually, ticket_links

CANARIES = {
    "community": "CanaryCommunity-a41f",
    "ssh_password": "CanarySshPassword-77b2",
    "meraki_key": "CanaryMerakiKey-c9d3",
    "veeam_password": "CanaryVeeamPassword-1e5a",
    "m365_secret": "CanaryM365Secret-f0c8",
    "glpi_app": "CanaryGlpiApp-3b6d",
    "glpi_user": "CanaryGlpiUser-8a2e",
    "influx_token": "CanaryInfluxToken-5c7f",
}


class Echo(BaseHTTPRequestHandler):
    """401 with the request (line, headers, body) as the error page."""

    def _echo(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = f"{self.requestline}\n{self.headers}\n".encode() + self.rfile.read(length)
        self.send_response(401)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _echo

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo(tmp_path: Path):
    """(http URL, https URL, CA bundle) of the echoing peer, the HTTPS one with a trustme CA."""
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    plain = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    tls = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    tls.socket = context.wrap_socket(tls.socket, server_side=True)
    for server in (plain, tls):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{plain.server_address[1]}", f"https://127.0.0.1:{tls.server_address[1]}", ca_file
    for server in (plain, tls):
        server.shutdown()
        server.server_close()


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def estate(tmp: Path, echo: str, echo_tls: str, ca: Path) -> tuple[Path, Path]:
    dead = dead_port()
    secrets = {
        "sw": {"community": CANARIES["community"]},
        "srv-ssh": {"user": "vigie", "password": CANARIES["ssh_password"]},
        "meraki": {"api_key": CANARIES["meraki_key"]},
        "veeam": {"username": "svc", "password": CANARIES["veeam_password"]},
        "m365": {"client_secret": CANARIES["m365_secret"]},
        "glpi-app": CANARIES["glpi_app"], "glpi-user": CANARIES["glpi_user"], "influx": CANARIES["influx_token"],
    }
    fast = {"interval_s": 3, "timeout_s": 2, "jitter_s": 0}
    devices = [
        {"name": "sw", "address": "127.0.0.1", "port": dead, "credentials": "sw", "collectors": {"snmp": None}, **fast},
        {"name": "srv", "address": "127.0.0.1", "credentials": "srv-ssh", "collectors": {"linux": {"port": dead}},
         **fast},
        {"name": "meraki", "address": "127.0.0.1", "credentials": "meraki", **fast,
         "collectors": {"meraki": {"organization_id": "1", "base_url": f"{echo}/api/v1"}}},
        {"name": "veeam", "address": "127.0.0.1", "credentials": "veeam", **fast,
         "collectors": {"veeam": {"url": echo_tls, "ca_bundle": str(ca), "api_version": "1.2-rev1"}}},
        {"name": "m365", "address": "127.0.0.1", "credentials": "m365", **fast,
         "collectors": {"m365": {"tenant_id": "5b6c7d8e-9f0a-4b1c-8d2e-3f4a5b6c7d8e",
                                 "client_id": "0b7e4a52-6c1d-4f3e-8a29-5d6e7f801003",
                                 "authority_url": echo_tls, "graph_url": echo_tls, "ca_bundle": str(ca)}}},
    ]
    config = {
        "agent": {"state_dir": str(tmp / "state"),
                  "store": {"kind": "influxdb", "url": echo, "org": "noc", "bucket": "vigie",
                            "token": {"secret": "influx"}}},
        "rules": [{"name": "down", "measurement": "collection", "when": "status != 'ok'", "for_s": 0,
                   "severity": "critical", "summary": "{device} {collector}: {error}"}],
        "clients": [{"name": "c", "display_name": "C", "sites": [{"name": "hq", "devices": devices}],
                     "ticketing": {"kind": "glpi", "url": f"{echo}/apirest.php", "app_token": {"secret": "glpi-app"},
                                   "user_token": {"secret": "glpi-user"}, "entity_id": 0}}],
    }
    config_path, secrets_path = tmp / "vigie.yaml", tmp / "secrets.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    secrets_path.write_text(yaml.safe_dump(secrets))
    secrets_path.chmod(0o600)
    return config_path, secrets_path


def vigie(*args: str) -> str:
    run = subprocess.run([sys.executable, "-m", "agent.cli", *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    return run.stdout + run.stderr


def leaks(text: str, where: str) -> list[str]:
    return [f"{where}: {name}" for name, canary in CANARIES.items() if canary in text]


@pytest.mark.timeout(240)
async def test_no_canary_secret_in_anything_vigie_writes_or_prints(tmp_path: Path, echo) -> None:
    config, secrets = estate(tmp_path, *echo)
    state = tmp_path / "state"
    agent = AgentProcess(config, secrets, state)
    try:
        agent.start()
        # every collector failed at least once, and the GLPI receiver was tried (refused: 401)
        await eventually(lambda: ticket_links(state), "a ticket attempt", agents=[agent], deadline_s=90)
        await asyncio.sleep(3)
        await agent.terminate()
    finally:
        agent.ensure_stopped()
    found = leaks(agent.log_text(tail=10**9), "vigie run's log")
    for path in state.rglob("*"):
        if path.is_file():
            found += leaks(path.read_bytes().decode("utf-8", "replace"), str(path.relative_to(tmp_path)))
    common = ["--config", str(config), "--secrets", str(secrets)]
    for device in ("sw", "srv", "meraki", "veeam", "m365"):
        found += leaks(vigie("collect", *common, "--device", device, "--json", "--timeout", "20"), f"collect {device}")
    for command in ("status", "alerts", "tickets"):
        found += leaks(vigie(command, *common, "--state-dir", str(state)), f"vigie {command}")
    found += leaks(vigie("check-config", *common), "check-config")
    assert "401" in agent.log_text(tail=10**9)  # the echoing peer was reached
    assert found == [], "\n".join(found)
