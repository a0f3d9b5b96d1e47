"""The agent on an estate named after the neighbours of the ios_2960x recording: the alert engine
gets its parents from CDP as the polls arrive (a pin against them kept and logged), a child's
alert is held by its discovered parent's outage, and `vigie topology` shows the discovered edges
from the state directory it left (text, JSON, Graphviz dot and SVG). Then the lab's topology estate."""

from __future__ import annotations

import html
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.api import Sample
from agent.cli import main
from agent.config import load_config
from agent.runner import Agent
from lab.snmpsim import SnmpLab

from ..e2e.helpers import eventually, unreachable_rule, vigie
from .conftest import LAB_ESTATE

APS = [f"acme-fr-ap-0{n}" for n in range(11, 16)]


def estate(directory: Path, lab: SnmpLab) -> tuple[Path, Path]:
    def polled(name: str, **more: Any) -> dict[str, Any]:
        return {"name": name, "address": lab.host, "port": lab.port, "credentials": f"lab-acme-{name}",
                "collectors": {"snmp": {"retries": 1, "timeout_s": 5}}, "interval_s": 3600, "timeout_s": 60,
                "jitter_s": 0, **more}

    devices = [
        {"name": "acme-fr-s-001", "address": "127.0.0.1", "tags": {"role": "uplink"}},
        polled("sw-fr"),
        # not polled: the core switch and the APs the switch's CDP table names; the last AP pinned
        # elsewhere by hand
        *({"name": ap, "address": "127.0.0.1"} for ap in APS[:-1]),
        {"name": APS[-1], "address": "127.0.0.1", "parent": "acme-fr-s-001"},
    ]
    config = {
        "agent": {"state_dir": str(directory / "state"), "store": {"kind": "sqlite"}},
        "rules": [unreachable_rule(for_s=0)],
        "clients": [{"name": "acme", "display_name": "ACME", "sites": [{"name": "fr", "devices": devices}]}],
    }
    secrets = {"lab-acme-sw-fr": {"community": "acme/sw-fr"}}
    (directory / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (directory / "secrets.yaml").write_text(yaml.safe_dump(secrets))
    (directory / "secrets.yaml").chmod(0o600)
    return directory / "config.yaml", directory / "secrets.yaml"


def collection(device: str, status: str, collector: str = "snmp") -> Sample:
    tags = {"client": "acme", "site": "fr", "device": device, "collector": collector}
    return Sample("collection", tags, {"status": status, "duration_s": 0.1, "error": None}, time.time_ns())


async def test_discovered_parents_reach_the_engine_and_vigie_topology(tmp_path: Path, lab: SnmpLab, caplog,
                                                                     capsys) -> None:
    config, secrets = estate(tmp_path, lab)
    agent = Agent(load_config(config, secrets_path=secrets), state_dir=tmp_path / "state")
    caplog.set_level(logging.WARNING, logger="agent.runner")
    await agent.start()
    try:
        assert agent.engine.parents == {("acme", APS[-1]): "acme-fr-s-001"}  # the config's, at first
        await eventually(lambda: agent.engine.parents.get(("acme", "sw-fr")), "the CDP parents of sw-fr's poll")
        assert agent.engine.parents == {
            ("acme", "sw-fr"): "acme-fr-s-001",
            **{("acme", ap): "sw-fr" for ap in APS[:-1]},
            ("acme", APS[-1]): "acme-fr-s-001",  # pinned: kept against CDP
        }
        assert f"topology: acme/{APS[-1]}: pinned parent acme-fr-s-001 (config), cdp says sw-fr" in caplog.text
        # sw-fr goes down, then an AP behind it: the AP's alert is held by sw-fr, which nobody typed
        await agent.pipeline.submit([collection("sw-fr", "unreachable")])
        await eventually(lambda: agent.engine.firing(), "sw-fr's device_unreachable")
        await agent.pipeline.submit([collection(APS[0], "unreachable", collector="http")])
        held = await eventually(lambda: [a for a in agent.engine.alerts(["pending"]) if a.device == APS[0]],
                                "the AP's alert, held")
        assert held[0].inhibited_by == "acme/sw-fr"
        assert [a.device for a in agent.engine.firing()] == ["sw-fr"]
        assert agent.engine.firing()[0].impacted == sorted(APS[:-1])
    finally:
        await agent.stop()

    shown = vigie("topology", "--config", str(config), "--state-dir", str(tmp_path / "state"))
    assert shown.returncode == 0, shown.stderr
    assert "acme / fr  (roots: acme-fr-s-001)" in shown.stdout
    assert "├── acme-fr-ap-015  [config]" in shown.stdout
    assert "└── sw-fr  [cdp: Gi1/0/52 <-> GigabitEthernet1/0/3]" in shown.stdout
    assert "    ├── acme-fr-ap-011  [cdp: GigabitEthernet0 <-> Gi1/0/3]" in shown.stdout  # the AP's port first
    assert f"{APS[-1]}: pinned parent acme-fr-s-001 (config), cdp says sw-fr" in shown.stdout
    assert "sw-fr — acme-fr-s-001  cdp  (Gi1/0/52 <-> GigabitEthernet1/0/3)" in shown.stdout
    state = ["--config", str(config), "--state-dir", str(tmp_path / "state")]
    (client,) = [json.loads(line) for line in topology_command(capsys, *state, "--json").out.splitlines()]
    parents = {p["device"]: (p["parent"], p["origin"]) for p in client["parents"]}
    assert parents["sw-fr"] == ("acme-fr-s-001", "cdp") and parents[APS[0]] == ("sw-fr", "cdp")
    assert {(e["a"], e["b"]) for e in client["edges"] if e["origin"] == "cdp"} == {
        ("sw-fr", "acme-fr-s-001"), *(("sw-fr", ap) for ap in APS)}
    assert [c["device"] for c in client["not_applied"]] == [APS[-1]] and client["unmatched"] == []
    dot = topology_command(capsys, *state, "--format", "dot").out
    assert '"sw-fr" -> "acme-fr-ap-011" [label="cdp\\nGi1/0/3 <-> GigabitEthernet0"];' in dot
    svg = topology_command(capsys, *state, "--format", "svg", "--client", "acme").out
    assert "<svg" in svg and "acme-fr-ap-011" in html.unescape(svg)


def topology_command(capsys, *args: str, status: int = 0) -> Any:
    """`vigie topology` in this process (one subprocess above shows the command itself works):
    what it printed (``out``, ``err``)."""
    capsys.readouterr()
    assert main(["topology", *args]) == status
    return capsys.readouterr()


@pytest.mark.parametrize(("args", "message"), [
    ((), "give --config"),
    (("--client", "nobody"), "unknown client 'nobody'"),
    (("--json", "--format", "dot"), "--json or --format, not both"),
])
def test_usage_errors(tmp_path: Path, lab: SnmpLab, capsys, args: tuple[str, ...], message: str) -> None:
    config, _ = estate(tmp_path, lab)
    given = args if not args else ("--config", str(config), *args)
    assert message in topology_command(capsys, "--state-dir", str(tmp_path / "state"), *given, status=64).err


async def test_vigie_topology_shows_discovered_edges_on_the_lab(tmp_path: Path, lab: SnmpLab, capsys) -> None:
    """lab/estates/topology.yaml, served as `vigie lab up --estate topology` serves it, one poll round."""
    secrets = tmp_path / "secrets.yaml"
    shutil.copyfile(LAB_ESTATE.parent / "secrets.yaml", secrets)
    secrets.chmod(0o600)
    environ = {"VIGIE_LAB_SNMP_PORT": str(lab.port), "VIGIE_STATE_DIR": str(tmp_path / "state")}
    # its polls' 10 s are for a quiet machine; a loaded CI one must not wait a whole interval for
    # the next turn of a poll that timed out
    text = LAB_ESTATE.read_text(encoding="utf-8")
    assert "\n  timeout_s: 10\n" in text
    estate_copy = tmp_path / "topology.yaml"
    estate_copy.write_text(text.replace("\n  timeout_s: 10\n", "\n  timeout_s: 60\n"), encoding="utf-8")
    config = load_config(estate_copy, secrets_path=secrets, environ=environ)
    agent = Agent(config, state_dir=tmp_path / "state")
    await agent.start()
    try:
        await eventually(lambda: {("acme", "sw-fr"), ("acme", "sw-dc")} <= set(agent.engine.parents),
                         "the first round's neighbours")
    finally:
        await agent.stop()
    state = ["--config", str(LAB_ESTATE), "--state-dir", str(tmp_path / "state")]
    (shown,) = [json.loads(line) for line in topology_command(capsys, *state, "--json").out.splitlines()]
    parents = {p["device"]: (p["parent"], p["origin"]) for p in shown["parents"]}
    assert parents == {
        "sw-fr": ("acme-fr-s-001", "cdp"), **{f"acme-fr-ap-0{n}": ("sw-fr", "cdp") for n in range(11, 15)},
        "acme-fr-ap-015": ("acme-fr-s-001", "config"),
        "sw-dc": ("core-1", "lldp"), "1007-lan-2": ("core-1", "lldp"), "1007-mnt-1": ("1007-lan-2", "lldp"),
    }
    assert [c["device"] for c in shown["not_applied"]] == ["acme-fr-ap-015"]
    text = topology_command(capsys, *state).out
    assert "acme / dc  (roots: core-1)" in text and "└── sw-dc  [lldp: ethernet1/1/29 <-> ae3]" in text
