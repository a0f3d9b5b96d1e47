"""The spine's acceptance: a real `vigie run` process, SIGKILLed while an alert fires, restarted on
the same state directory, never opens a second ticket in the client's GLPI, and solves the one it
opened when the interface comes back.

Lab: snmpsim plays a TP-Link JetStream (acme/sw1); the test takes one of its live interfaces
down with an SNMP SET. GLPI: lab.glpi_fake in the test's event loop.
"""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from alerting.notifier import CRASH_ENV
from lab.glpi_fake import FakeGlpi
from lab.snmpsim import SnmpLab

from .helpers import (
    UP_IF_INDEX,
    UP_IF_NAME,
    WALK,
    AgentProcess,
    device,
    eventually,
    glpi_ticketing,
    interface_oper,
    polls_after,
    query_sqlite,
    ticket_links,
    uplink_rule,
    write_estate,
)

CLIENT, DEVICE = "acme", "sw1"
LAB_DEVICES = {f"{CLIENT}/{DEVICE}": WALK}
SOLVED = 5


def uplink_tickets(glpi: FakeGlpi) -> list[dict[str, Any]]:
    return [t for _, t in sorted(glpi.tickets.items()) if "Règle : uplink_down" in t["content"]]


def solutions(glpi: FakeGlpi, ticket_id: int) -> list[dict[str, Any]]:
    return [s for s in glpi.solutions if s["items_id"] == ticket_id]


def estate(tmp_path: Path, lab: SnmpLab, glpi: FakeGlpi) -> tuple[Path, Path]:
    return write_estate(
        tmp_path,
        {CLIENT: [device(DEVICE, lab.port)]},
        [uplink_rule()],
        {CLIENT: glpi_ticketing(glpi.url, CLIENT)},
    )


async def set_oper(lab: SnmpLab, status: str) -> None:
    await asyncio.to_thread(lab.set_oper_status, f"{CLIENT}/{DEVICE}", UP_IF_INDEX, status)


async def first_poll_sees_link_up(state: Path, agent: AgentProcess) -> None:
    await eventually(
        lambda: interface_oper(state, CLIENT, DEVICE, UP_IF_NAME) == "up",
        f"the agent's first poll to see {UP_IF_NAME} up",
        agents=[agent],
    )


async def recover_and_check_solved_once(lab: SnmpLab, glpi: FakeGlpi, state: Path, agent: AgentProcess) -> None:
    (ticket,) = uplink_tickets(glpi)
    await set_oper(lab, "up")
    await eventually(
        lambda: glpi.tickets[ticket["id"]]["status"] == SOLVED and solutions(glpi, ticket["id"]),
        "the ticket to be solved",
        agents=[agent],
    )
    # A few more cycles with the link up: nothing more happens in GLPI.
    await polls_after(state, CLIENT, DEVICE, 2, since_ns=time.time_ns(), agents=[agent])
    assert interface_oper(state, CLIENT, DEVICE, UP_IF_NAME) == "up"
    assert [t["id"] for t in uplink_tickets(glpi)] == [ticket["id"]]
    assert glpi.tickets[ticket["id"]]["status"] == SOLVED
    assert len(solutions(glpi, ticket["id"])) == 1
    assert glpi.count("POST", "Ticket") == 1, "a ticket was created again after the recovery"
    links = [(rule, st, tid) for rule, st, tid, _ in ticket_links(state)]
    assert links == [("uplink_down", "solved", str(ticket["id"]))]


async def test_sigkill_while_alert_fires_restart_keeps_one_ticket_and_solves_it(
    tmp_path: Path, lab: SnmpLab, glpi: FakeGlpi
) -> None:
    config, secrets = estate(tmp_path, lab, glpi)
    state = tmp_path / "state"
    agent = AgentProcess(config, secrets, state)
    try:
        agent.start()
        await first_poll_sees_link_up(state, agent)
        assert glpi.tickets == {}

        await set_oper(lab, "down")
        await eventually(lambda: uplink_tickets(glpi), "the uplink_down ticket", agents=[agent])
        await eventually(
            lambda: [row for row in ticket_links(state) if row[1] == "open"],
            "the alert <-> ticket link in the outbox",
            agents=[agent],
        )
        (ticket,) = uplink_tickets(glpi)
        assert "critical" in ticket["content"] and UP_IF_NAME in ticket["name"]
        # a technician takes it in charge; the restarted agent's first read-back pass reads it
        glpi.take_into_account(ticket["id"])
        taken_at = datetime.strptime(glpi.tickets[ticket["id"]]["takeintoaccountdate"], "%Y-%m-%d %H:%M:%S")

        assert await agent.kill() == -signal.SIGKILL
        restarted_at = time.time_ns()
        agent.start()
        await eventually(
            lambda: query_sqlite(state / "ticket-outbox.sqlite", "SELECT taken_at FROM ticket_links")
            == [(taken_at.replace(tzinfo=ZoneInfo("Europe/Paris")).timestamp(),)],
            "the outbox to hold when GLPI says the ticket was taken in charge",
            agents=[agent],
        )
        # Several cycles with the fault still there: the alert is still firing, the ticket stays
        # the one ticket, open.
        await polls_after(state, CLIENT, DEVICE, 3, since_ns=restarted_at, agents=[agent])
        assert interface_oper(state, CLIENT, DEVICE, UP_IF_NAME) == "down"
        assert [t["id"] for t in uplink_tickets(glpi)] == [ticket["id"]]
        assert glpi.tickets[ticket["id"]]["status"] not in (5, 6)
        assert glpi.count("POST", "Ticket") == 1

        await recover_and_check_solved_once(lab, glpi, state, agent)
        assert await agent.terminate() == 0
    finally:
        agent.ensure_stopped()
        await set_oper(lab, "up")


async def test_crash_after_ticket_post_before_link_restart_reattaches(
    tmp_path: Path, lab: SnmpLab, glpi: FakeGlpi
) -> None:
    """The dispatcher's crash seam: SIGKILL right after GLPI created the ticket, before the agent
    recorded it. The restart must find it by its idempotency key, not open a second one."""
    config, secrets = estate(tmp_path, lab, glpi)
    state = tmp_path / "state"
    doomed = AgentProcess(config, secrets, state, env={CRASH_ENV: "after_open"}, name="doomed")
    agent = AgentProcess(config, secrets, state)
    try:
        doomed.start()
        await first_poll_sees_link_up(state, doomed)

        await set_oper(lab, "down")
        await eventually(lambda: not doomed.alive, "the agent to kill itself after the ticket POST")
        assert doomed.proc is not None and doomed.proc.returncode == -signal.SIGKILL
        (ticket,) = uplink_tickets(glpi)
        assert [(rule, st, tid) for rule, st, tid, _ in ticket_links(state)] == [("uplink_down", "opening", None)]

        restarted_at = time.time_ns()
        agent.start()
        await eventually(
            lambda: [row for row in ticket_links(state) if row[1] == "open"],
            "the restarted agent to link the existing ticket",
            agents=[agent],
        )
        assert ticket_links(state) == [("uplink_down", "open", str(ticket["id"]), 1)]  # reused = found by key
        await polls_after(state, CLIENT, DEVICE, 3, since_ns=restarted_at, agents=[agent])
        assert interface_oper(state, CLIENT, DEVICE, UP_IF_NAME) == "down"
        assert [t["id"] for t in uplink_tickets(glpi)] == [ticket["id"]]
        assert glpi.tickets[ticket["id"]]["status"] not in (5, 6)
        assert glpi.count("POST", "Ticket") == 1
        # the ticket says why no second one was opened
        notes = [f for f in glpi.followups if f.get("items_id") == ticket["id"]]
        assert len(notes) == 1 and "rattaché" in notes[0]["content"]

        await recover_and_check_solved_once(lab, glpi, state, agent)
        assert await agent.terminate() == 0
    finally:
        doomed.ensure_stopped()
        agent.ensure_stopped()
        await set_oper(lab, "up")
