"""The agent, configured for InfluxDB, writes through its spool to a real line-protocol server."""

import asyncio
from pathlib import Path

from agent.config import load_config
from agent.runner import Agent


async def test_agent_sends_its_samples_to_the_configured_influxdb(tmp_path: Path, victoria) -> None:
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text("influx-token: not-checked-by-victoria\n")
    secrets.chmod(0o600)
    config_file = tmp_path / "vigie.yaml"
    config_file.write_text(
        "agent:\n"
        f"  state_dir: {tmp_path / 'state'}\n"
        f"  store: {{kind: influxdb, url: '{victoria.url}', org: noc, bucket: vigie,\n"
        "           token: {secret: influx-token}}\n"
        "clients: []\n"
    )
    agent = Agent(load_config(config_file, secrets_path=secrets, environ={}), health_interval_s=0.1)
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
