"""The agent, configured for InfluxDB, writes through its spool to a real line-protocol server; a
hung one costs a bounded stop and no point."""

import asyncio
from pathlib import Path

import pytest

from agent.config import load_config
from agent.runner import Agent
from agent.stores import build_store
from tests.agent.helpers import SAFETY_S


def agent_for(tmp_path: Path, url: str) -> Agent:
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text("influx-token: not-checked-by-victoria\n")
    secrets.chmod(0o600)
    config_file = tmp_path / "vigie.yaml"
    config_file.write_text(
        "agent:\n"
        f"  state_dir: {tmp_path / 'state'}\n"
        f"  store: {{kind: influxdb, url: '{url}', org: noc, bucket: vigie,\n"
        "           token: {secret: influx-token}}\n"
        "clients: []\n"
    )
    return Agent(load_config(config_file, secrets_path=secrets, environ={}), health_interval_s=0.1)


async def test_agent_sends_its_samples_to_the_configured_influxdb(tmp_path: Path, victoria) -> None:
    agent = agent_for(tmp_path, victoria.url)
    await agent.start()
    try:
        # The agent's own health samples are enough to prove the wiring: token, spool, writer.
        for _ in range(100):
            if victoria.export('{__name__=~"vigie_agent_.*"}'):
                break
            await asyncio.sleep(0.1)
    finally:
        await agent.stop()
    names = {name for name, _, _ in victoria.export('{__name__=~"vigie_agent_.*"}')}
    assert "vigie_agent_runs" in names
    assert agent.store.depth().points == 0  # nothing left in the spool


@pytest.mark.timeout(120)
async def test_agent_stops_within_bound_on_a_hung_tsdb_and_its_spool_replays_every_point(
    tmp_path: Path, hung_tsdb, victoria
) -> None:
    agent = agent_for(tmp_path, hung_tsdb.url)
    await agent.start()
    try:
        # Health samples keep coming while the first send hangs: they land on disk, not in memory.
        for _ in range(100):
            if hung_tsdb.connections and agent.store.depth().points >= 5:
                break
            await asyncio.sleep(0.1)
    finally:
        async with asyncio.timeout(SAFETY_S):  # the store's close stops sending after 5 s
            await agent.stop()
    spooled = agent.store.depth().points
    assert hung_tsdb.connections and spooled >= 5

    # The next start, against a TSDB that answers, sends them all, once each.
    store = build_store(
        {"kind": "influxdb", "url": victoria.url, "org": "noc", "bucket": "vigie", "token": ""}, tmp_path / "state"
    )
    assert store.depth().points == spooled
    assert await store.flush() is True
    await store.close()
    ((_, timestamps, _),) = victoria.export('{__name__="vigie_agent_runs"}')
    assert len(timestamps) == len(set(timestamps)) == spooled
