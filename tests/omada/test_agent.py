"""The Omada collector in the real command line and the real agent, against the fake controller:
`vigie collect --config F --device omada-controller --json` as a subprocess, a 4G failover
through `vigie run` reaching a warning ticket in the built-in ticket log (and solved when the fibre
is back), and the engine's parent-aware view (an unreachable switch holds its AP's alert; an
unreachable controller is one alert, its devices unknown)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import yaml

from alerting.engine import AlertEngine
from collectors.omada import PLUGIN
from lab.omada_fake import OmadaFake
from tests.e2e.helpers import AgentProcess, eventually, query_sqlite
from tests.probes.helpers import vigie_collect

from .test_omada import PASSWORD, USER

AP = "ap-nord-est-1"


def write_config(directory: Path, url: str, *, interval_s: float = 60) -> tuple[Path, Path]:
    def dev(name: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "address": "127.0.0.1", **extra}

    controller = dev("omada-controller", credentials="omada-login", interval_s=interval_s,
                     timeout_s=min(5, interval_s), jitter_s=0, collectors={"omada": {"url": url, "timeout_s": 1}})
    config = {
        "agent": {"state_dir": str(directory / "state"), "store": {"kind": "sqlite"}},
        "clients": [{
            "name": "mlhg",
            "display_name": "MLHG",
            "ticketing": {"kind": "log"},
            "sites": [
                {"name": "siege", "devices": [controller, dev("gw-siege"), dev("sw-siege", parent="gw-siege"),
                                              dev("ap-siege-1", parent="sw-siege"),
                                              dev("ap-siege-2", parent="sw-siege")]},
                {"name": "nord-est", "devices": [dev("gw-nord-est"), dev("sw-nord-est", parent="gw-nord-est"),
                                                 dev(AP, parent="sw-nord-est")]},
            ],
            # the shipped rule waits 60 s: the test's agent polls every 2 s
            "rules": [{"name": "omada_wan_failover", "for_s": 0}],
        }],
    }
    config_path, secrets_path = directory / "config.yaml", directory / "secrets.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    secrets_path.write_text(yaml.safe_dump({"omada-login": {"username": USER, "password": PASSWORD}}))
    os.chmod(secrets_path, 0o600)
    return config_path, secrets_path


async def test_vigie_collect_prints_the_samples_of_every_omada_device(fake: OmadaFake, tmp_path: Path) -> None:
    fake.site("nord-est").failover = True
    config, secrets = write_config(tmp_path, fake.url)
    code, lines, stderr = await asyncio.to_thread(
        vigie_collect, "--config", str(config), "--secrets", str(secrets), "--device", "omada-controller"
    )
    assert code == 0, stderr
    (collection,) = [line for line in lines if line["measurement"] == "collection"]
    assert collection["fields"]["status"] == "ok"
    gateways = {line["tags"]["device"]: line for line in lines if line["measurement"] == "omada_gateway"}
    assert gateways["gw-nord-est"]["tags"]["site"] == "nord-est"  # the inventory device's tags (piggyback)
    assert gateways["gw-nord-est"]["fields"]["on_backup"] is True
    assert gateways["gw-nord-est"]["fields"]["active_wan"] == "USB 4G"
    assert gateways["gw-siege"]["fields"]["on_backup"] is False
    devices = {line["tags"]["device"] for line in lines if line["measurement"] == "omada_device"}
    assert devices == {"gw-siege", "sw-siege", "ap-siege-1", "ap-siege-2", "gw-nord-est", "sw-nord-est", AP}
    assert PASSWORD not in "".join(str(line) for line in lines) + stderr


def tickets(state: Path) -> list[tuple[str, str, str]]:
    return [tuple(row) for row in query_sqlite(state / "tickets.sqlite", "SELECT alert, severity, status FROM tickets")]


async def test_a_4g_failover_reaches_a_warning_ticket_and_the_fibre_back_solves_it(
    fake: OmadaFake, tmp_path: Path
) -> None:
    config, secrets = write_config(tmp_path, fake.url, interval_s=2)
    state = tmp_path / "state"
    agent = AgentProcess(config, secrets, state).start()
    try:
        await eventually(lambda: fake.logins >= 1 and len(fake.requests) > 20, "the agent's first Omada poll",
                         agents=[agent])
        assert tickets(state) == []
        fake.site("nord-est").failover = True
        opened = await eventually(lambda: tickets(state), "a ticket for the failover", agents=[agent])
        assert opened == [("omada_wan_failover", "warning", "open")]
        fake.site("nord-est").failover = False
        await eventually(lambda: tickets(state) == [("omada_wan_failover", "warning", "solved")],
                         "the failover ticket solved", agents=[agent])
    finally:
        await agent.terminate()


# -- the engine's view: parents and an unreachable controller -----------------------------------------


def sample(measurement: str, device: str, fields: dict[str, Any], ts: float, **tags: str):
    from agent.api import Sample

    return Sample(measurement, {"client": "mlhg", "site": "nord-est", "device": device, **tags}, fields,
                  int(ts * 1e9))


def collection(device: str, status: str, ts: float, collector: str):
    return sample("collection", device, {"status": status}, ts, collector=collector)


def ap_down(ts: float):
    return sample("omada_device", AP, {"connected": False, "status": "disconnected"}, ts, omada_site="nord-est",
                  mac="50-C7-BF-77-67-6B", type="ap", omada_device=AP)


def test_an_ap_behind_an_unreachable_switch_is_held_back(tmp_path: Path) -> None:
    parents = {("mlhg", AP): "sw-nord-est", ("mlhg", "sw-nord-est"): "gw-nord-est"}
    engine = AlertEngine(str(tmp_path / "alerts.db"), PLUGIN.default_rules(), parents=parents)
    t0 = 1_800_000_000.0
    for ts in (t0, t0 + 300):
        engine.evaluate([collection("sw-nord-est", "unreachable", ts, "snmp"), ap_down(ts)], ts)
    assert engine.firing() == []
    (held,) = engine.alerts(states=["pending"])
    assert held.rule == "omada_device_disconnected" and held.inhibited_by == "mlhg/sw-nord-est"
    # the switch answers again, the AP is still down: its alert fires
    engine.evaluate([collection("sw-nord-est", "ok", t0 + 360, "snmp"), ap_down(t0 + 360)], t0 + 360)
    assert [a.rule for a in engine.firing()] == ["omada_device_disconnected"]


def test_an_unreachable_controller_is_one_alert_and_its_devices_are_unknown(tmp_path: Path) -> None:
    from agent.config.schema import BUILTIN_RULES

    engine = AlertEngine(str(tmp_path / "alerts.db"), [*BUILTIN_RULES, *PLUGIN.default_rules()])
    t0 = 1_800_000_000.0
    for ts in (t0, t0 + 60, t0 + 180):  # what the scheduler feeds the engine: the collection sample only
        engine.evaluate([sample("collection", "omada-controller", {"status": "unreachable"}, ts,
                                collector="omada")], ts)
    assert [(a.rule, a.labels["device"]) for a in engine.firing()] == [("device_unreachable", "omada-controller")]
