"""Inhibitions as an operator writes them: shipped with the SNMP rules, overridden per client in
the configuration, handed to the engine by the runner (one copy per client)."""

from __future__ import annotations

from pathlib import Path

from agent.api import Sample
from agent.config import load_config
from agent.plugins import Plugins
from agent.runner import rules_by_client
from alerting.engine import AlertEngine

T0 = 1_800_000_000.0
CONFIG = """
clients:
  - name: alpha
    display_name: Alpha
    timezone: Europe/Paris
    sites: []
  - name: beta
    display_name: Beta
    timezone: Europe/Paris
    rules:
      - {name: sophos_xg_psu_failed, inhibits: []}   # beta wants both tickets
    sites: []
"""


def psu_down(client: str, t: float) -> Sample:
    tags = {"client": client, "site": "hq", "device": "fw-1", "profile": "sophos_xg",
            "sensor": "Power supply 2", "sensor_class": "power_supply"}  # fmt: skip
    return Sample("snmp_sensor", tags, {"state": "crit", "status": "down"}, int(t * 1e9))


def test_a_client_override_drops_the_inhibition_for_that_client_only(tmp_path: Path) -> None:
    path = tmp_path / "vigie.yaml"
    path.write_text(CONFIG)
    config = load_config(path, environ={}, plugins=Plugins.discover())
    engine = AlertEngine(str(tmp_path / "alerts.sqlite"), rules_by_client(config, ["alpha", "beta"]), clock=lambda: T0)
    for t in (T0, T0 + 60):
        engine.evaluate([psu_down("alpha", t), psu_down("beta", t)], t)
    assert sorted((a.client, a.rule) for a in engine.firing()) == [
        ("alpha", "sophos_xg_psu_failed"),
        ("beta", "sensor_critical"),
        ("beta", "sophos_xg_psu_failed"),
    ]
    (held,) = engine.alerts(states=["pending"])
    assert (held.client, held.rule, held.inhibited_by.split("/")[0]) == (
        "alpha",
        "sensor_critical",
        "sophos_xg_psu_failed",
    )


def test_a_target_disabled_for_every_client_is_no_error(tmp_path: Path) -> None:
    path = tmp_path / "vigie.yaml"
    path.write_text(
        CONFIG.replace("{name: sophos_xg_psu_failed, inhibits: []}", "{name: sensor_critical, enabled: false}")
    )
    config = load_config(path, environ={}, plugins=Plugins.discover())
    engine = AlertEngine(str(tmp_path / "alerts.sqlite"), rules_by_client(config, ["beta"]), clock=lambda: T0)
    for t in (T0, T0 + 60):
        engine.evaluate([psu_down("beta", t)], t)
    assert [a.rule for a in engine.firing()] == ["sophos_xg_psu_failed"]
