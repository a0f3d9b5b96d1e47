"""Rules shipped by collectors sit under the config's rules; the engine gets them scoped per client."""

from pathlib import Path

from agent.api import PluginSpec, Rule
from agent.config import load_config
from agent.plugins import Plugins
from agent.runner import rules_by_client

SHIPPED = [
    Rule(name="ups_on_battery", measurement="snmp_ups", when="on_battery == True", severity="critical",
         summary="{device} on battery"),
    Rule(name="ups_load_high", measurement="snmp_ups", when="load_percent > 90", for_s=300, severity="major"),
]
UPS = PluginSpec(name="ups", kind="collector", factory=lambda options, context: None, default_rules=lambda: SHIPPED)

CONFIG = """
rules:
  - {name: ups_on_battery, measurement: snmp_ups, when: "on_battery == True", for_s: 30, severity: critical}
clients:
  - name: alpha
    display_name: A client
    timezone: Europe/Paris
    rules:
      - {name: ups_load_high, enabled: false}
    sites: []
  - name: beta
    display_name: A client
    timezone: Europe/Paris
    rules:
      - {name: ups_load_high, for_s: 60}
    sites: []
"""


def _load(tmp_path: Path):
    path = tmp_path / "vigie.yaml"
    path.write_text(CONFIG)
    return load_config(path, environ={}, plugins=Plugins.discover().extended([UPS]))


def test_a_config_rule_replaces_a_shipped_rule_of_the_same_name(tmp_path: Path) -> None:
    config = _load(tmp_path)
    by_name = {r.name: r for r in config.rules_for("beta")}
    assert by_name["ups_on_battery"].for_s == 30


def test_a_client_disables_or_retunes_a_shipped_rule(tmp_path: Path) -> None:
    config = _load(tmp_path)
    assert "ups_load_high" not in {r.name for r in config.rules_for("alpha")}
    beta = {r.name: r for r in config.rules_for("beta")}
    assert beta["ups_load_high"].for_s == 60
    assert beta["ups_load_high"].when == "load_percent > 90"  # the rest comes from the shipped rule


def test_engine_rules_are_scoped_to_their_client(tmp_path: Path) -> None:
    rules = rules_by_client(_load(tmp_path), ["alpha", "beta"])
    assert {(r.name, r.match["client"]) for r in rules} >= {("ups_on_battery", "alpha"), ("ups_load_high", "beta")}
    # alpha's copy is disabled: the engine skips it (it stays a known target for inhibitions)
    assert ("ups_load_high", "alpha") not in {(r.name, r.match["client"]) for r in rules if r.enabled}


def test_every_installed_collector_ships_valid_rules(tmp_path: Path) -> None:
    path = tmp_path / "vigie.yaml"
    path.write_text("clients: []\n")
    plugins = Plugins.discover()
    assert not plugins.problems
    rules = plugins.default_rules()  # each a validated Rule: an invalid shipped rule fails here
    assert rules, "the snmp collector ships per-family rules"
    config = load_config(path, environ={}, plugins=plugins)
    assert config.clients == [] and {r.name for r in rules} >= {"interface_down", "sensor_critical"}
