"""A device that stops answering: the real agent records unreachable/timeout collections, opens a
device_unreachable ticket in GLPI, and solves it once the device answers again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from lab.glpi_fake import FakeGlpi
from lab.snmpsim import SnmpLab

from .helpers import (
    WALK,
    AgentProcess,
    collections,
    device,
    eventually,
    glpi_ticketing,
    polls_after,
    ticket_links,
    unreachable_rule,
    write_estate,
)

CLIENT, DEVICE = "acme", "gone"
LAB_DEVICES = {f"{CLIENT}/{DEVICE}": WALK}
DOWN = ("unreachable", "timeout")


async def test_unreachable_device_opens_then_solves_a_ticket(tmp_path: Path, lab: SnmpLab, glpi: FakeGlpi) -> None:
    config, secrets = write_estate(
        tmp_path,
        {CLIENT: [device(DEVICE, lab.port)]},
        [unreachable_rule(for_s=3)],
        {CLIENT: glpi_ticketing(glpi.url, CLIENT)},
    )
    state = tmp_path / "state"
    agent = AgentProcess(config, secrets, state)

    def unreachable_tickets() -> list[dict]:
        return [t for _, t in sorted(glpi.tickets.items()) if "Règle : device_unreachable" in t["content"]]

    try:
        agent.start()
        await eventually(
            lambda: [s for _, s in collections(state, CLIENT, DEVICE) if s == "ok"], "a first ok poll", agents=[agent]
        )

        away_at = time.time_ns()
        await asyncio.to_thread(lab.take_away, f"{CLIENT}/{DEVICE}")
        await eventually(
            lambda: [s for _, s in collections(state, CLIENT, DEVICE, away_at) if s in DOWN],
            "an unreachable/timeout collection",
            agents=[agent],
        )
        await eventually(unreachable_tickets, "the device_unreachable ticket", agents=[agent])
        (ticket,) = unreachable_tickets()
        assert DEVICE in ticket["name"] and ticket["status"] not in (5, 6)

        back_at = time.time_ns()
        await asyncio.to_thread(lab.bring_back, f"{CLIENT}/{DEVICE}")
        await eventually(
            lambda: [s for _, s in collections(state, CLIENT, DEVICE, back_at) if s == "ok"],
            "an ok collection after bring_back",
            agents=[agent],
        )
        await eventually(
            lambda: glpi.tickets[ticket["id"]]["status"] == 5, "the ticket to be solved", agents=[agent]
        )
        await polls_after(state, CLIENT, DEVICE, 2, since_ns=time.time_ns(), agents=[agent])
        assert [t["id"] for t in unreachable_tickets()] == [ticket["id"]]
        assert len([s for s in glpi.solutions if s["items_id"] == ticket["id"]]) == 1
        assert [(rule, st) for rule, st, _, _ in ticket_links(state)] == [("device_unreachable", "solved")]
        assert await agent.terminate() == 0
    finally:
        agent.ensure_stopped()
        await asyncio.to_thread(lab.bring_back, f"{CLIENT}/{DEVICE}")
