"""What the event receivers' tests share (SNMP traps, syslog): a real agent run in-process on a
driven clock, with the receiver configured as a service, and ways to wait on it and read it."""

from __future__ import annotations

import asyncio
import socket
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from agent.api import Sample
from agent.config import load_config
from agent.plugins import Plugins
from agent.runner import Agent

WAIT_S = 20


class Clock:
    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
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


@asynccontextmanager
async def running_agent(
    tmp_path: Path, config_text: str, secrets_text: str = "{}\n"
) -> AsyncIterator[tuple[Agent, Clock]]:
    path = tmp_path / "vigie.yaml"
    path.write_text(textwrap.dedent(config_text))
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(textwrap.dedent(secrets_text))
    secrets.chmod(0o600)
    plugins = Plugins.discover()
    config = load_config(path, secrets, environ={}, plugins=plugins)
    clock = Clock()
    agent = Agent(config, state_dir=tmp_path / "state", plugins=plugins, clock=clock, health_interval_s=60)
    await agent.start()
    try:
        yield agent, clock
    finally:
        await agent.stop()


def firing(agent: Agent, rule: str) -> list[Any]:
    return [a for a in agent.engine.firing() if a.rule == rule]


def latest_fields(agent: Agent, measurement: str, tags: dict[str, str] | None = None) -> dict[str, Any]:
    return {row.field: row.value for row in agent.state.latest(measurement, tags)}


async def submit_poll(agent: Agent, measurement: str, tags: dict[str, str], fields: dict[str, Any], at: float) -> None:
    """A sample as a collector's poll would submit it, through the pipeline to the end."""
    await agent.pipeline.submit([Sample(measurement, tags, fields, int(at * 1e9))])
    await agent.pipeline.drain()
