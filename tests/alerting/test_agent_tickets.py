"""The real agent (`vigie run`) with one client's GLPI hung — it accepts connections and never
answers — and another client on the built-in ticket log: the second client's ticket opens while
the first one's call is still in flight, SIGTERM stops the agent, and after a restart the polls
run while the outbox's pending row waits on the hung GLPI again.

No SNMP lab: each client's device sits on a UDP port nobody listens on, so it is unreachable from
its first poll and ``device_unreachable`` fires at once.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lab.glpi_fake import FakeGlpi
from tests.e2e.helpers import (
    APP_TOKEN,
    USER_TOKEN,
    AgentProcess,
    collections,
    device,
    eventually,
    glpi_ticketing,
    query_sqlite,
    unreachable_rule,
    write_estate,
)

HUNG, ON_LOG = "acme", "beta"


@pytest.fixture
async def hung_glpi() -> AsyncIterator[FakeGlpi]:
    fake = FakeGlpi(app_token=APP_TOKEN, user_tokens={USER_TOKEN: 2})
    fake.hang()
    await fake.start()
    yield fake
    await fake.stop()


def dead_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def links_of(state: Path, client: str) -> list[tuple[str, str | None]]:
    return query_sqlite(
        state / "ticket-outbox.sqlite", "SELECT state, ticket_id FROM ticket_links WHERE client = ?", (client,)
    )


async def test_a_hung_glpi_does_not_hold_another_clients_tickets_nor_the_stop(
    tmp_path: Path, hung_glpi: FakeGlpi
) -> None:
    config, secrets = write_estate(
        tmp_path,
        {HUNG: [device("gone", dead_port(), interval_s=2, timeout_s=1)], ON_LOG: [device("lost", dead_port())]},
        [unreachable_rule(for_s=0)],
        {HUNG: glpi_ticketing(hung_glpi.url, HUNG)},
    )
    state = tmp_path / "state"
    agent = AgentProcess(config, secrets, state)
    try:
        agent.start()
        await eventually(lambda: hung_glpi.hanging, "the agent's first call to the hung GLPI", agents=[agent])
        await eventually(
            lambda: query_sqlite(state / "tickets.sqlite", "SELECT client FROM tickets WHERE status = 'open'"),
            f"{ON_LOG}'s ticket in the built-in log",
            agents=[agent],
        )
        assert [row_state for row_state, _ in links_of(state, ON_LOG)] == ["open"]
        assert links_of(state, HUNG) == [("opening", None)]  # its call is still waiting for GLPI
        assert hung_glpi.count("POST", "Ticket") == 0
        assert await agent.terminate() == 0

        restarted_ns = time.time_ns()
        held = len(hung_glpi.hanging)
        agent.start()
        # The start-up outbox pass runs beside the polls: the pending row waits on GLPI again while
        # the devices are polled.
        await eventually(lambda: len(hung_glpi.hanging) > held, "the restart's call to the hung GLPI", agents=[agent])
        await eventually(
            lambda: collections(state, ON_LOG, "lost", restarted_ns) and collections(state, HUNG, "gone", restarted_ns),
            "polls after the restart",
            agents=[agent],
        )
        assert links_of(state, HUNG) == [("opening", None)]
        assert [row_state for row_state, _ in links_of(state, ON_LOG)] == ["open"]  # one ticket, still
        assert await agent.terminate() == 0
    finally:
        agent.ensure_stopped()
