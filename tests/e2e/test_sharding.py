"""Two agents share one estate file, each with its own `--clients` and state directory: each polls,
stores and rolls up its own clients' devices and nothing of the other's."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from agent.state import StateDB
from lab.snmpsim import SnmpLab

from .helpers import WALK, AgentProcess, device, polls_after, query_sqlite, write_estate

# The same device name in both clients: only the `client` tag tells them apart.
LAB_DEVICES = {"acme/sw1": WALK, "beta/sw1": WALK, "beta/sw2": WALK}


def stored(state: Path) -> set[tuple[str, str]]:
    """(client, device) of every series in the agent's samples store."""
    return set(
        query_sqlite(
            state / "samples.sqlite",
            "SELECT c.value, d.value FROM series s"
            " JOIN series_tag c ON c.series_id = s.id AND c.key = 'client'"
            " JOIN series_tag d ON d.series_id = s.id AND d.key = 'device'",
        )
    )


def rolled_up(state: Path) -> set[tuple[str, str]]:
    """(client, device) of every series in the agent's state rollups."""
    db = StateDB(state / "state.sqlite")
    try:
        return {(row.tags.get("client", ""), row.tags.get("device", "")) for row in db.latest()}
    finally:
        db.close()


async def test_two_agents_each_poll_only_their_clients(tmp_path: Path, lab: SnmpLab) -> None:
    config, secrets = write_estate(
        tmp_path,
        {"acme": [device("sw1", lab.port)], "beta": [device("sw1", lab.port), device("sw2", lab.port)]},
        [],
    )
    a_state, b_state = tmp_path / "state-a", tmp_path / "state-b"
    agent_a = AgentProcess(config, secrets, a_state, clients="acme", name="agent-a")
    agent_b = AgentProcess(config, secrets, b_state, clients="beta", name="agent-b")
    agents = [agent_a, agent_b]
    try:
        started = time.time_ns()
        for agent in agents:
            agent.start()
        await polls_after(a_state, "acme", "sw1", 2, since_ns=started, agents=agents)
        await polls_after(b_state, "beta", "sw1", 2, since_ns=started, agents=agents)
        await polls_after(b_state, "beta", "sw2", 2, since_ns=started, agents=agents)

        assert stored(a_state) == {("acme", "sw1")}
        assert stored(b_state) == {("beta", "sw1"), ("beta", "sw2")}
        assert rolled_up(a_state) == {("acme", "sw1")}
        assert rolled_up(b_state) == {("beta", "sw1"), ("beta", "sw2")}

        codes = await asyncio.gather(*(agent.terminate() for agent in agents))
        assert codes == [0, 0], "\n".join(agent.log_text() for agent in agents)
    finally:
        for agent in agents:
            agent.ensure_stopped()
