"""A device named by a host name that does not resolve: `vigie collect` gives each collector's run a
clear status naming the name and the resolver's answer, never a traceback, and no secret.

The collectors run inside a network namespace of their own (`unshare -n`: only a loopback
interface), so the resolver's query cannot leave the machine: it fails at once as a resolver with
no route does."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.helpers import ROOT

CANARY = "CanaryCommunity-9d1f"
CONFIG = """\
agent: {{state_dir: {state}}}
clients:
  - name: c
    display_name: C
    sites:
      - name: hq
        devices:
          - {{name: sw, address: core-sw.example.invalid, credentials: sw, collectors: {{snmp: {{profile: if_mib}}}}}}
          - {{name: web, address: portal.example.invalid,
             collectors: {{http: {{url: "https://portal.example.invalid/login"}}, tcp: {{ports: [443]}}}}}}
"""


def isolated(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["unshare", "-n", sys.executable, "-m", "agent.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def no_network() -> None:
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) absent: no way to keep the resolver's query on this machine")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"unshare -n refused here ({probe.stderr.strip()}): needs CAP_SYS_ADMIN")


@pytest.mark.parametrize(("device", "collectors"), [("sw", {"snmp"}), ("web", {"http", "tcp"})])
def test_an_unresolvable_device_is_a_clear_status(
    tmp_path: Path, no_network, device: str, collectors: set[str]
) -> None:
    config, secrets = tmp_path / "vigie.yaml", tmp_path / "secrets.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state"))
    secrets.write_text(f"sw: {{community: {CANARY}}}\n")
    secrets.chmod(0o600)
    run = isolated("collect", "--config", str(config), "--secrets", str(secrets), "--device", device, "--json",
                   "--timeout", "30")
    assert "Traceback" not in run.stderr and CANARY not in run.stdout + run.stderr
    runs = [s for s in map(json.loads, run.stdout.splitlines()) if s["measurement"] == "collection"]
    assert {s["tags"]["collector"] for s in runs} == collectors
    for sample in runs:
        fields = sample["fields"]
        assert fields["status"] in ("unreachable", "error"), fields
        assert ".example.invalid" in fields["error"] and "resol" in fields["error"], fields["error"]
    assert run.returncode == 1  # a run that failed, not a usage or config error
