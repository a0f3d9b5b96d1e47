"""Acceptance, through the real agent (`vigie run` in a subprocess) against the lab's IOS-XE
device: the first backup is a baseline and opens nothing; a changed line of the running config
yields a stored new version, a masked diff and a low-priority ticket in the built-in ticket log,
solved at the next run; `vigie collect --config F --device NAME --collector cisco_cli --json`
prints the collector's samples."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from lab.ios_device import IosDevice
from tests.e2e.helpers import AgentProcess, eventually, query_sqlite, vigie

from .conftest import LOGIN


def _estate(tmp_path: Path, device: IosDevice) -> tuple[Path, Path]:
    assert device.address is not None
    config = {
        "agent": {"state_dir": str(tmp_path / "state"), "store": {"kind": "sqlite"}},
        "clients": [{
            "name": "acme",
            "display_name": "ACME",
            "sites": [{"name": "hq", "devices": [{
                "name": "sw-acme-01", "address": "127.0.0.1", "credentials": "sw-cli",
                "collectors": {"cisco_cli": {"port": device.address[1], "backup_interval_s": 1}},
                "interval_s": 3, "timeout_s": 3, "jitter_s": 0,
            }]}],
        }],
    }
    config_path, secrets_path = tmp_path / "config.yaml", tmp_path / "secrets.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    secrets_path.write_text(yaml.safe_dump({"sw-cli": LOGIN}))
    secrets_path.chmod(0o600)
    return config_path, secrets_path


def _tickets(state: Path) -> list[tuple[str, str, str, str, str]]:
    return query_sqlite(state / "tickets.sqlite", "SELECT alert, severity, status, title, content FROM tickets")


async def test_a_changed_line_is_a_new_version_a_masked_diff_and_a_low_priority_ticket(
    device: IosDevice, tmp_path: Path
) -> None:
    config, secrets = _estate(tmp_path, device)
    state = tmp_path / "state"
    archive = state / "plugins" / "cisco_cli" / "acme" / "configs"
    agent = AgentProcess(config, secrets, state)
    try:
        agent.start()
        await eventually(lambda: (archive / "sw-acme-01.cfg").exists(), "the baseline backup", agents=[agent])
        assert _tickets(state) == []  # the baseline opens nothing

        device.state.community = "vsgp-ro-2027"  # an operator rotates the read community
        device.state.changed_by = "jdupont"
        (ticket,) = await eventually(lambda: _tickets(state), "the change's ticket", agents=[agent])
        alert, severity, ticket_status, title, content = ticket
        assert (alert, severity) == ("cisco_cli_config_changed", "warning")
        assert "\n" not in title and "sw-acme-01: running configuration changed (+2 -2 lines)" in title
        assert "-snmp-server community <masked:" in content and "+snmp-server community <masked:" in content
        assert "changed by jdupont" in content
        assert "vsgp-ro-202" not in content and LOGIN["enable_secret"] not in content
        await eventually(lambda: _tickets(state)[0][2] == "solved", "the ticket solved at the next run",
                         agents=[agent])
        assert await agent.terminate() == 0
    finally:
        agent.ensure_stopped()
    log = subprocess.run(["git", "-C", str(archive), "log", "--format=%s"], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert log == ["sw-acme-01: running-config changed at 08:01:57 CET Mon Nov 30 2026 by jdupont",
                   "sw-acme-01: baseline"]
    stored = (archive / "sw-acme-01.cfg").read_text()
    assert "snmp-server community <masked:" in stored and "vsgp-ro-2027" not in stored


def test_vigie_collect_runs_the_collector_from_the_config(device: IosDevice, tmp_path: Path) -> None:
    config, secrets = _estate(tmp_path, device)
    done = vigie("collect", "--config", str(config), "--secrets", str(secrets), "--device", "sw-acme-01",
                 "--collector", "cisco_cli", "--json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    measurements = [line["measurement"] for line in lines]
    assert measurements[0] == "cisco_cli_device" and measurements[-1] == "collection"
    assert {"cisco_cli_psu", "cisco_cli_fan", "cisco_cli_temperature", "cisco_cli_port", "cisco_cli_config"} \
        <= set(measurements)
    assert lines[-1]["fields"]["status"] == "ok" and lines[0]["tags"]["device"] == "sw-acme-01"
    assert LOGIN["password"] not in done.stdout + done.stderr
