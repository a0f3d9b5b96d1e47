"""The real agent (`vigie run`) on a GLPI whose API profile lacks the Ticket "Change priority"
right: the critical ticket lands at GLPI's own priority, and the agent's log says so, once."""

from __future__ import annotations

import socket
from pathlib import Path

from lab.glpi_fake import ALL_TICKET_RIGHTS, TICKET_CHANGEPRIORITY, FakeGlpi
from tests.e2e.helpers import (
    APP_TOKEN,
    USER_TOKEN,
    AgentProcess,
    device,
    eventually,
    glpi_ticketing,
    unreachable_rule,
    write_estate,
)


def dead_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_the_agent_logs_a_critical_ticket_glpi_put_at_its_own_priority(tmp_path: Path) -> None:
    fake = FakeGlpi(app_token=APP_TOKEN, user_tokens={USER_TOKEN: 2},
                    ticket_rights=ALL_TICKET_RIGHTS & ~TICKET_CHANGEPRIORITY)
    await fake.start()
    config, secrets = write_estate(
        tmp_path,
        {"vsgp": [device("gone-1", dead_port(), interval_s=2, timeout_s=1),
                  device("gone-2", dead_port(), interval_s=2, timeout_s=1)]},
        [unreachable_rule(for_s=0)],
        {"vsgp": glpi_ticketing(fake.url, "vsgp")},
        # one ticket per alert: two critical tickets, and the log says it once
        {"ticket_grouping": {"group_by": ["..."]}},
    )
    agent = AgentProcess(config, secrets, tmp_path / "state")
    try:
        agent.start()
        await eventually(lambda: len(fake.tickets) == 2, "both critical tickets", agents=[agent])
        assert [t["priority"] for t in fake.tickets.values()] == [5, 5]  # sent 6: GLPI's matrix gives 5
        assert await agent.terminate() == 0
    finally:
        agent.ensure_stopped()
        await fake.stop()
    lines = [line for line in agent.log_text().splitlines() if "land in GLPI" in line]
    assert len(lines) == 1 and " ERROR " in lines[0], agent.log_text()
    assert "critical alerts land in GLPI with priority 5 (sent 6)" in lines[0] and "'Change priority'" in lines[0]
