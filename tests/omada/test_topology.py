"""The Omada controller as a topology source, against the fake controller on loopback: each
switch's and AP's uplink (``omada_uplink``) is a directed edge (uplink = parent), so the APs
behind a switch that goes down are held back as unreachable; and `vigie topology` on the lab's
association estate (lab/estates/mlhg.yaml) shows the controller's edges."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from agent.api import DeviceInfo, Sample, Sink
from agent.cli import main
from agent.config import load_config
from agent.plugins import Plugins
from agent.runner import Agent
from agent.topology import Topology
from alerting.engine import AlertEngine
from collectors.omada import PLUGIN, OmadaCollector, OmadaOptions
from lab.omada_fake import OmadaFake, build_sites
from tests.e2e.helpers import eventually
from tests.probes.helpers import context

from .test_omada import BASE, INVENTORY, options, target

ESTATES = Path(__file__).resolve().parents[2] / "lab" / "estates"
T0 = 1_800_000_000.0


def inventory() -> list[DeviceInfo]:
    """The inventory of test_omada.py's sites, with no parent typed: the controller gives them."""
    return [DeviceInfo("mlhg", site, name, "127.0.0.1", {"role": "uplink"} if name.startswith("gw-") else {},
                       (), None) for name, site in INVENTORY.items()]


async def poll(fake: OmadaFake, at: float, **extra: Any) -> list[Sample]:
    def tags_of(name: str) -> dict[str, str] | None:
        site = INVENTORY.get(name)
        return None if site is None else {"client": "mlhg", "site": site, "device": name}

    sink = Sink(BASE, lambda: int(at * 1e9), tags_of)
    await OmadaCollector(OmadaOptions.model_validate(options(fake, **extra)), context()).collect(target(), sink)
    return list(sink)


async def test_each_uplink_is_the_devices_parent(fake: OmadaFake) -> None:
    samples = await poll(fake, T0)
    uplinks = {s.tags["device"]: (s.fields["uplink_device"], s.fields["uplink_type"], s.fields["port"])
               for s in samples if s.measurement == "omada_uplink"}
    # the fake's wiring: switches on the gateway's LAN port 2, APs on the switch's ports from 1
    assert uplinks == {"sw-siege": ("gw-siege", "gateway", 2), "ap-siege-1": ("sw-siege", "switch", 1),
                       "ap-siege-2": ("sw-siege", "switch", 2), "sw-nord-est": ("gw-nord-est", "gateway", 2),
                       "ap-nord-est-1": ("sw-nord-est", "switch", 1)}
    topology = Topology(inventory(), Plugins.discover().edge_sources())
    assert topology.observe(samples) is True
    derived = topology.derive("mlhg")
    assert {n: (p.parent, p.origin, p.via) for n, p in derived.parents.items()} == {
        "sw-siege": ("gw-siege", "omada", "? <-> 2"), "ap-siege-1": ("sw-siege", "omada", "? <-> 1"),
        "ap-siege-2": ("sw-siege", "omada", "? <-> 2"), "sw-nord-est": ("gw-nord-est", "omada", "? <-> 2"),
        "ap-nord-est-1": ("sw-nord-est", "omada", "? <-> 1")}
    # without the uplink calls the controller says nothing of the wiring
    assert not [s for s in await poll(fake, T0, uplinks=False) if s.measurement == "omada_uplink"]


def collection(device: str, status: str, at: float) -> Sample:
    return Sample("collection", {"client": "mlhg", "site": "nord-est", "device": device, "collector": "snmp"},
                  {"status": status}, int(at * 1e9))


async def test_a_switch_down_holds_back_the_alerts_of_the_aps_behind_it(fake: OmadaFake, tmp_path: Path) -> None:
    topology = Topology(inventory(), PLUGIN.edge_sources)
    topology.observe(await poll(fake, T0))  # everything up: the controller says who hangs from whom
    fake.device("sw-nord-est")[1].connected = False  # and with it, the AP behind it
    held = AlertEngine(str(tmp_path / "held.db"), PLUGIN.default_rules())
    bare = AlertEngine(str(tmp_path / "bare.db"), PLUGIN.default_rules())  # no parents: the contrast
    for at in (T0 + 60, T0 + 360):
        samples = await poll(fake, at)
        topology.observe(samples)
        held.set_parents(topology.parent_map(["mlhg"])[0])
        down = {s.tags["device"]: s.fields["connected"] for s in samples if s.measurement == "omada_device"}
        assert down["sw-nord-est"] is False and down["ap-nord-est-1"] is False
        for engine in (held, bare):
            # the switch's own SNMP poll does not answer either
            engine.evaluate([*samples, collection("sw-nord-est", "unreachable", at)], at)
    # the AP was not asked (disconnected): it keeps the uplink it had
    assert topology.derive("mlhg").parents["ap-nord-est-1"].parent == "sw-nord-est"
    assert ("omada_device_disconnected", "ap-nord-est-1") in {(a.rule, a.labels["device"]) for a in bare.firing()}
    assert "ap-nord-est-1" not in {a.labels["device"] for a in held.firing()}
    (ap,) = [a for a in held.alerts(states=["pending"]) if a.labels["device"] == "ap-nord-est-1"]
    assert ap.rule == "omada_device_disconnected" and ap.inhibited_by == "mlhg/sw-nord-est"


def omada_only_estate(directory: Path) -> Path:
    """lab/estates/mlhg.yaml with only its Omada controller polled (no SNMP lab, no Graph fake)."""
    data = yaml.safe_load((ESTATES / "mlhg.yaml").read_text(encoding="utf-8"))
    for client in data["clients"]:
        for site in client["sites"]:
            for device in site["devices"]:
                if "omada" not in (device.get("collectors") or {}):
                    device["collectors"] = {}
    path = directory / "mlhg.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


async def test_vigie_topology_shows_the_controllers_edges_on_the_association_estate(tmp_path: Path, capsys) -> None:
    secrets = tmp_path / "secrets.yaml"
    shutil.copyfile(ESTATES / "secrets.yaml", secrets)
    secrets.chmod(0o600)
    login = yaml.safe_load(secrets.read_text(encoding="utf-8"))["lab-mlhg-omada-controller"]
    estate = omada_only_estate(tmp_path)
    sites = yaml.safe_load(estate.read_text(encoding="utf-8"))["clients"][0]["sites"]
    controller = OmadaFake(build_sites(sites), login["username"], login["password"])
    await controller.start()
    state = tmp_path / "state"
    environ = {"VIGIE_LAB_OMADA_URL": controller.url, "VIGIE_STATE_DIR": str(state)}
    try:
        agent = Agent(load_config(estate, secrets_path=secrets, environ=environ), state_dir=state)
        await agent.start()
        try:
            await eventually(lambda: agent.engine.parents.get(("mlhg", "ap-ouest-1")) == "sw-ouest",
                             "the controller's first poll")
        finally:
            await agent.stop()
    finally:
        await controller.stop()
    assert main(["topology", "--config", str(estate), "--state-dir", str(state), "--json"]) == 0
    (shown,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    parents = {p["device"]: (p["parent"], p["origin"], p["confirmed_by"]) for p in shown["parents"]}
    # the APs' parents come from the controller; the switches' pins, it confirms
    assert parents["ap-siege-3"] == ("sw-siege", "omada", [])
    assert parents["ap-nord-est-1"] == ("sw-nord-est", "omada", [])
    assert parents["sw-nord-est"] == ("gw-nord-est", "config", ["omada"])
    edges = {(e["a"], e["b"]) for e in shown["edges"] if e["origin"] == "omada"}
    assert len(edges) == 8 + 10  # a switch per site but the bus, an AP per site (3 at the seat)
    assert main(["topology", "--config", str(estate), "--state-dir", str(state), "--client", "mlhg"]) == 0
    text = capsys.readouterr().out
    assert "└── ap-nord-est-1  [omada: ? <-> 1]" in text and "sw-nord-est  [config, confirmed by omada]" in text
