"""A plugin written outside vigie's packages, as a third party would: one module, one entry point.

The acceptance test of the kernel (issue 6): the toy collector has its own options model, its own
credentials model, a default rule, and reports samples about other inventory devices (an
organization-wide call, as Meraki's or Omada's controllers answer) through ``sink.for_device`` —
and the agent runs it without a line of agent/, alerting/ or collectors/ knowing it exists.
"""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from agent.api import PluginSpec, Sample
from agent.config import ConfigError, load_config
from agent.plugins import Plugins
from agent.runner import Agent

TOY_MODULE = '''
"""A toy UPS controller: one call returns the battery charge of every UPS it manages."""
import json
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from agent.api import CollectError, CollectorContext, PluginSpec, Rule, UnknownDevice


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    answers: str  # the file the fake controller answers from
    low_charge_percent: Annotated[int, Field(ge=1, le=99)] = 20


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    api_key: Annotated[str, Field(min_length=8)]


class Controller:
    def __init__(self, options: Options, context: CollectorContext) -> None:
        self.options = options
        self.client = context.client

    async def collect(self, target, sink) -> None:
        if target.credentials.get("api_key") != "toy-key-123":
            raise CollectError("controller refused the API key")
        answers = json.loads(Path(self.options.answers).read_text())
        sink.emit("toy_controller", {"managed": len(answers)})
        for name, charge in answers.items():
            try:
                device = sink.for_device(name)
            except UnknownDevice as exc:
                sink.error(str(exc))
                continue
            device.emit("toy_ups", {"charge_percent": charge, "low": charge < self.options.low_charge_percent})


def rules():
    return [Rule(name="toy_ups_battery_low", measurement="toy_ups", when="low == True", severity="critical",
                 summary="{device}: battery at {charge_percent}%")]


PLUGIN = PluginSpec(name="toy", kind="collector", factory=Controller, options=Options, credentials=Credentials,
                    default_rules=rules, state_fields=frozenset({("toy_ups", "low")}))
'''

CONFIG = """
clients:
  - name: acme
    display_name: Acme
    sites:
      - name: hq
        devices:
          - name: ups-controller
            address: 127.0.0.1
            interval_s: 1
            jitter_s: 0
            timeout_s: 1
            credentials: toy
            collectors: {{toy: {{answers: "{answers}"{extra}}}}}
          - {{name: ups-1, address: 127.0.0.2}}
          - {{name: ups-2, address: 127.0.0.3}}
"""


@pytest.fixture
def toy_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Plugins:
    """Installs the toy distribution the way pip would: a module and its dist-info on sys.path."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "toy_ups_plugin.py").write_text(textwrap.dedent(TOY_MODULE))
    info = site / "toy_ups_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-ups-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text('[vigie.collectors]\ntoy = toy_ups_plugin:PLUGIN\n')
    monkeypatch.syspath_prepend(str(site))
    plugins = Plugins.discover()
    assert not plugins.problems
    return plugins


def _config(tmp_path: Path, extra: str = "", api_key: str = "toy-key-123") -> tuple[Path, Path, Path]:
    answers = tmp_path / "answers.json"
    answers.write_text('{"ups-1": 85, "ups-2": 12, "ups-unknown": 50}')
    config = tmp_path / "vigie.yaml"
    config.write_text(CONFIG.format(answers=answers, extra=extra))
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(f"toy: {{api_key: {api_key}}}\n")
    secrets.chmod(0o600)
    return config, secrets, answers


def test_its_options_and_credentials_are_checked_by_its_own_models(tmp_path, toy_installed) -> None:
    config, secrets, _ = _config(tmp_path, extra=", low_charge_percent: 0, colour: red", api_key="short")
    with pytest.raises(ConfigError) as caught:
        load_config(config, secrets, environ={}, plugins=toy_installed)
    errors = "\n".join(caught.value.errors)
    where = f"{config}:14: clients[acme].sites[hq].devices[ups-controller]"
    assert f"{where}.collectors.toy.low_charge_percent: Input should be greater than or equal to 1" in errors
    assert f"{where}.collectors.toy.colour: unknown option" in errors
    assert f"{config}:13: clients[acme].sites[hq].devices[ups-controller].credentials: secret 'toy' is not toy " \
           "credentials: api_key: String should have at least 8 characters" in errors
    assert "short" not in errors  # a secret is never echoed


async def test_the_agent_runs_it_and_its_rule_fires_on_the_device_it_reported_about(tmp_path, toy_installed) -> None:
    config_path, secrets, _ = _config(tmp_path)
    config = load_config(config_path, secrets, environ={}, plugins=toy_installed)
    agent = Agent(config, state_dir=tmp_path / "state", plugins=toy_installed, health_interval_s=60)
    await agent.start()
    try:
        async with asyncio.timeout(20):
            while not agent.engine.firing():
                await asyncio.sleep(0.1)
        (alert,) = agent.engine.firing()
        assert (alert.rule, alert.device, alert.severity) == ("toy_ups_battery_low", "ups-2", "critical")
        assert alert.summary == "ups-2: battery at 12%"
        await agent.pipeline.drain()
        latest = {(s.tags["device"], s.field): s.value for s in agent.state.latest("toy_ups")}
        # (the state database keeps booleans as SQLite integers)
        assert latest[("ups-1", "charge_percent")] == 85 and latest[("ups-2", "low")] == 1
        # the sample about a device the inventory lacks is the run's partial error, nothing is lost
        (status,) = [s for s in agent.state.latest("collection") if s.field == "status"]
        assert (status.tags["device"], status.value) == ("ups-controller", "partial")
        (error,) = [s for s in agent.state.latest("collection") if s.field == "error"]
        assert "ups-unknown" in error.value
    finally:
        await agent.stop()


class HeartbeatService:
    """A toy service: every tick it submits a sample about an inventory device it looked up."""

    def __init__(self, options) -> None:
        self.options = options
        self.started_with = None
        self.stopped = False

    async def start(self, context) -> None:
        self.started_with = context
        (device,) = [d for d in context.inventory.devices("acme") if d.name == "ups-1"]

        async def tick() -> None:
            tags = context.tags_for(device.client, device.name)
            await context.submit([Sample("toy_heartbeat", tags, {"beat": 1}, int(context.clock() * 1e9))])

        context.every(0.05, tick, "heartbeat")

    async def stop(self) -> None:
        self.stopped = True


class HeartbeatOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    label: str = "beat"


async def test_a_service_plugin_is_started_fed_the_inventory_and_stopped(tmp_path, toy_installed) -> None:
    built: list[HeartbeatService] = []

    def factory(options: HeartbeatOptions) -> HeartbeatService:
        built.append(HeartbeatService(options))
        return built[-1]

    plugins = toy_installed.extended(
        [PluginSpec(name="heartbeat", kind="service", factory=factory, options=HeartbeatOptions)]
    )
    config_path, secrets, _ = _config(tmp_path)
    config_path.write_text("agent: {services: {heartbeat: {label: lub}}}\n" + config_path.read_text())
    config = load_config(config_path, secrets, environ={}, plugins=plugins)
    agent = Agent(config, state_dir=tmp_path / "state", plugins=plugins, health_interval_s=60)
    await agent.start()
    try:
        # built once when the agent checked its configuration (no start), once to run
        checked, service = built
        assert checked.started_with is None and not checked.stopped
        assert service.options.label == "lub" and service.started_with.state_dir == tmp_path / "state"
        async with asyncio.timeout(20):
            while not agent.state.latest("toy_heartbeat"):
                await asyncio.sleep(0.05)
        (beat,) = agent.state.latest("toy_heartbeat")
        assert beat.tags["device"] == "ups-1" and beat.tags["site"] == "hq"
    finally:
        await agent.stop()
    assert service.stopped
