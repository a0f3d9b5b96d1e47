"""The `vigie` command line as an operator runs it: `collect` (like `telegraf --test`) against the
lab, compared with what LibreNMS recorded from the same walk, and `check-config`."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from lab.snmpsim import SnmpLab

from .helpers import WALK, device, vigie, write_estate

CLIENT, DEVICE = "e2e", "jet"
LAB_DEVICES = {f"{CLIENT}/{DEVICE}": WALK}
EXPECTED = Path(__file__).resolve().parents[2] / "lab" / "snmprec" / "expected" / f"{WALK}.json"


def librenms(module: str) -> list[dict[str, Any]]:
    """LibreNMS's rows of one module for the walk (its poller section when it has one)."""
    section = json.loads(EXPECTED.read_text(encoding="utf-8"))[module]
    data = section["poller"] if isinstance(section.get("poller"), dict) else section["discovery"]
    return data[module]


def samples(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def check_against_librenms(lines: list[dict[str, Any]]) -> None:
    interfaces = {s["tags"]["if_index"]: s for s in lines if s["measurement"] == "snmp_interface"}
    ports = librenms("ports")
    assert len(ports) > 20
    for port in ports:
        sample = interfaces.get(str(port["ifIndex"]))
        assert sample is not None, f"no snmp_interface for ifIndex {port['ifIndex']} ({port['ifName']})"
        assert sample["tags"]["if_name"] == port["ifName"]
        assert sample["fields"]["oper_status"] == port["ifOperStatus"], port["ifName"]
        assert sample["fields"]["admin_status"] == port["ifAdminStatus"], port["ifName"]
        if port["ifSpeed"] is not None:
            assert sample["fields"]["speed_bps"] == port["ifSpeed"], port["ifName"]

    cpus = [s for s in lines if s["measurement"] == "snmp_cpu"]
    processors = librenms("processors")
    assert len(cpus) == len(processors)
    assert sorted(s["fields"]["usage_percent"] for s in cpus) == pytest.approx(
        sorted(p["processor_usage"] for p in processors), abs=1
    )

    assert lines[-1]["measurement"] == "collection"
    assert lines[-1]["tags"]["collector"] == "snmp"
    assert lines[-1]["fields"]["status"] == "ok"


def test_collect_url_prints_what_librenms_saw(lab: SnmpLab) -> None:
    result = vigie("collect", f"snmp://{CLIENT}%2F{DEVICE}@127.0.0.1:{lab.port}", "--json")
    assert result.returncode == 0, result.stderr
    check_against_librenms(samples(result.stdout))


def test_collect_device_from_config(tmp_path: Path, lab: SnmpLab) -> None:
    config, secrets = write_estate(tmp_path, {CLIENT: [device(DEVICE, lab.port)]}, [])
    for name in (DEVICE, f"{CLIENT}/{DEVICE}"):
        result = vigie("collect", "--config", str(config), "--secrets", str(secrets), "--device", name, "--json")
        assert result.returncode == 0, result.stderr
        lines = samples(result.stdout)
        check_against_librenms(lines)
        where = {(s["tags"]["client"], s["tags"]["site"], s["tags"]["device"]) for s in lines}
        assert where == {(CLIENT, "hq", DEVICE)}


def test_collect_unreachable_exits_1() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = vigie("collect", f"snmp://public@127.0.0.1:{port}?timeout_s=1&retries=0", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    last = samples(result.stdout)[-1]
    assert last["measurement"] == "collection"
    assert last["fields"]["status"] in ("unreachable", "timeout")
    assert last["fields"]["error"]


BROKEN = """\
agent:
  state_dir: var
  shard: [nobody]
clients:
  - name: acme
    display_name: ACME
    timezone: Europe/Pariss
    sites:
      - name: hq
        devices:
          - name: sw1
            address: 127.0.0.1
            credentials: lab-acme-sw1
            parent: ghost
            collectors: {snmp: {}}
          - name: sw2
            address: 127.0.0.1
            credentials: lab-acme-sw2
            intreval_s: 30
            collectors: {snmp: {}}
rules:
  - name: bad_rule
    measurement: snmp_cpu
    when: "__import__('os').system('id')"
"""
# (line, field path) of every error BROKEN holds.
BROKEN_ERRORS = [
    (3, "agent.shard[0]"),
    (7, "clients[acme].timezone"),
    (14, "clients[acme].sites[hq].devices[sw1].parent"),
    (18, "clients[acme].sites[hq].devices[sw2].credentials"),
    (19, "clients[acme].sites[hq].devices[sw2].intreval_s"),
    (24, "rules[bad_rule].when"),
]


def test_check_config_reports_every_error_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text(BROKEN)
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text("lab-acme-sw1: {community: acme/sw1}\n")
    secrets.chmod(0o600)
    result = vigie("check-config", str(config), "--secrets", str(secrets))
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith(f"{config}:") and ": " in line]
    for line, field in BROKEN_ERRORS:
        assert any(e.startswith(f"{config}:{line}: {field}: ") for e in errors), (line, field, result.stderr)
    assert f"{len(BROKEN_ERRORS)} error(s)" in result.stderr


def test_check_config_accepts_a_good_estate(tmp_path: Path) -> None:
    config, secrets = write_estate(tmp_path, {CLIENT: [device(DEVICE, 1161)]}, [])
    result = vigie("check-config", str(config), "--secrets", str(secrets))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
