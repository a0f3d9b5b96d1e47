"""The agent watches the disk of its state directory: `vigie_disk` every minute, and the built-in
rule agent_disk_low fires when it runs out (5 % or 500 MB left)."""

from __future__ import annotations

import shutil
from collections import namedtuple

from tests.receivers import latest_fields, running_agent

CONFIG = """
agent: {name: noc-a}
clients:
  - name: acme
    display_name: Acme
    sites:
      - name: hq
        devices:
          - {name: sw-1, address: 127.0.0.1}
"""


async def test_the_state_disk_is_reported_and_a_full_one_alerts(tmp_path, monkeypatch) -> None:
    async with running_agent(tmp_path, CONFIG) as (agent, clock):
        await agent._disk()
        await agent.pipeline.drain()
        seen = latest_fields(agent, "vigie_disk")
        real = shutil.disk_usage(tmp_path)
        assert seen["total_bytes"] == real.total and 0 <= seen["free_percent"] <= 100
        (row,) = [r for r in agent.state.latest("vigie_disk") if r.field == "free_bytes"]
        assert row.tags["client"] == "acme" and row.tags["device"] == "vigie-agent-noc-a"
        # the disk fills: 1 % left
        usage = namedtuple("usage", "total used free")
        monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 99 * 10**10, 10**10))
        for step in range(3):
            clock.now += 60 * step
            await agent._disk()
            await agent.pipeline.drain()
        disk = [r for r in agent.engine.firing() if r.rule == "agent_disk_low"]
        assert len(disk) == 1 and "1.0 % free" in disk[0].summary
