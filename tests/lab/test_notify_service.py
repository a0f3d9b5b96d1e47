"""`vigie lab fault DEVICE trap|syslog EVENT`: the lab's notifications reach a real agent's receivers
and are attributed to the device the fault names. The estate is the agent's configuration, as the
lab's estates are."""

from __future__ import annotations

import argparse
import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from agent.api import Sample
from agent.config import load_config
from agent.plugins import Plugins
from agent.runner import Agent
from lab.control import RuntimeDir
from lab.estate import Estate
from lab.notify_service import NotificationService
from lab.services import Context, FaultError, ServiceRegistry
from lab.supervisor import Supervisor

ESTATE = """\
agent:
  services:
    snmp_traps: {{address: 127.0.0.1, port: "${{TEST_TRAP_PORT:-{trap}}}", confirm_interval_s: 0.05,
                 sources: {{127.0.0.9: acme/fw-1}}}}
    syslog: {{address: 127.0.0.1, udp_port: {udp}, tcp_port: null}}
clients:
  - name: acme
    display_name: Acme
    sites:
      - name: hq
        devices:
          - {{name: core-1, address: 127.0.0.2, tags: {{role: core}}}}
          - {{name: fw-1, address: 127.0.0.1}}
          - {{name: web-1, address: 127.0.0.1}}
"""
WAIT_S = 20


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def until(condition: Callable[[], Any], what: str) -> Any:
    try:
        async with asyncio.timeout(WAIT_S):
            while not (found := condition()):
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not within {WAIT_S} s: {what}") from None
    return found


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[tuple[Supervisor, Agent]]:
    path = tmp_path / "estate.yaml"
    path.write_text(ESTATE.format(trap=free_udp_port(), udp=free_udp_port()))
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text("{}\n")
    secrets.chmod(0o600)
    plugins = Plugins.discover()
    agent = Agent(load_config(path, secrets, environ={}, plugins=plugins), state_dir=tmp_path / "state",
                  plugins=plugins, health_interval_s=60)
    context = Context(Estate.load(str(path), environ={}, secrets_path=None), argparse.Namespace(), {},
                      tmp_path / "rt")
    service = NotificationService.for_estate(context)
    assert service is not None
    supervisor = Supervisor(context, ServiceRegistry([NotificationService]), RuntimeDir(tmp_path / "rt"))
    supervisor.services = {"notifications": service}
    await agent.start()
    try:
        yield supervisor, agent
    finally:
        await agent.stop()


def firing(agent: Agent, rule: str) -> list[Any]:
    return [a for a in agent.engine.firing() if a.rule == rule]


async def test_a_trap_fault_fires_and_its_clear_sends_the_link_up_that_resolves_nothing(lab) -> None:
    supervisor, agent = lab
    polled = {"client": "acme", "site": "hq", "device": "core-1", "role": "core", "if_index": "3", "if_name": "Gi1/0/3"}
    before = int((agent.clock() - 10) * 1e9)
    await agent.pipeline.submit([Sample("snmp_interface", polled, {"oper_status": "up"}, before)])
    _, effect = await supervisor.fault("acme/core-1", "trap", ["link-down", "3"])
    assert effect.startswith("acme/core-1: trap 1.3.6.1.6.3.1.1.5.3 from 127.0.0.2 to udp 127.0.0.1:")
    (alert,) = await until(lambda: firing(agent, "snmp_trap_core_interface_down"), "the interface alert")
    assert alert.device == "core-1" and alert.labels["if_name"] == "Gi1/0/3"
    await supervisor.clear("acme/core-1", None)
    await until(lambda: agent.state.latest("snmp_trap", {"trap": "link_up"}), "the linkUp of the clear")
    assert firing(agent, "snmp_trap_core_interface_down")


async def test_sources_give_a_shared_address_device_its_own_and_refuse_the_others(lab) -> None:
    supervisor, agent = lab
    _, effect = await supervisor.fault("acme/fw-1", "trap", ["failover"])
    assert "from 127.0.0.9" in effect
    (alert,) = await until(lambda: firing(agent, "snmp_trap_failover"), "the failover alert")
    assert alert.device == "fw-1"
    with pytest.raises(FaultError, match="web-1 shares 127.0.0.1 with 1 other device.*sources"):
        await supervisor.fault("acme/web-1", "trap", ["cold-start"])
    with pytest.raises(FaultError, match="no event 'meltdown'"):
        await supervisor.fault("acme/core-1", "trap", ["meltdown"])
    with pytest.raises(FaultError, match="link-down takes IFINDEX"):
        await supervisor.fault("acme/core-1", "trap", ["link-down"])


async def test_a_syslog_fault_is_told_apart_by_its_hostname_on_a_shared_address(lab) -> None:
    supervisor, agent = lab
    await supervisor.fault("acme/web-1", "syslog", ["disk-error", "sdb"])
    (alert,) = await until(lambda: firing(agent, "syslog_disk_error"), "the disk alert")
    assert (alert.device, alert.labels["disk"]) == ("web-1", "sdb")
    await supervisor.fault("acme/web-1", "syslog", ["auth-failure"])
    (burst,) = await until(lambda: firing(agent, "syslog_auth_failure_burst"), "the burst")
    assert burst.device == "web-1"
    with pytest.raises(FaultError, match="COUNT is an integer"):
        await supervisor.fault("acme/web-1", "syslog", ["auth-failure", "many"])


def test_an_estate_without_receivers_needs_no_notification_service(tmp_path: Path) -> None:
    path = tmp_path / "estate.yaml"
    path.write_text("clients: [{name: acme, sites: [{name: hq, devices: [{name: a, address: 127.0.0.1}]}]}]\n")
    context = Context(Estate.load(str(path), environ={}, secrets_path=None), argparse.Namespace(), {}, tmp_path)
    assert NotificationService.for_estate(context) is None
    assert "notifications" in ServiceRegistry.installed().services
