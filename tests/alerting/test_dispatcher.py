import asyncio
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from alerting.engine import AlertEngine
from alerting.notifier import CRASH_ENV, TicketDispatcher
from alerting.ticketing import TicketRef
from alerting.ticketing.glpi import GlpiConnector
from alerting.ticketing.log import TicketLog

from .helpers import IF_DOWN, T0, iface

ROOT = Path(__file__).resolve().parents[2]


class Crash(BaseException):
    """Stands for the process dying at a checkpoint (in-process variant of the SIGKILL test)."""


def crash_at(point):
    def checkpoint(p, key):
        if p == point:
            raise Crash(p)

    return checkpoint


@pytest.fixture
def state(tmp_path):
    return tmp_path


def engine(state, now_box):
    return AlertEngine(str(state / "alerts.sqlite"), [IF_DOWN], clock=lambda: now_box[0])


async def fire(eng, t=T0):
    eng.evaluate([iface(t, "down")], now=t)
    return eng.evaluate([iface(t + 60, "down")], now=t + 60)


async def test_open_on_firing_solve_on_resolved_with_ticket_log(state, clock):
    log = TicketLog(str(state / "log.sqlite"), clock=clock)
    eng = engine(state, [T0])
    disp = TicketDispatcher(str(state / "links.sqlite"), {"vsgp": log}, clock=clock)
    clock.t = T0 + 61.5
    res = await disp.dispatch(await fire(eng), now=T0 + 60)
    (link,) = res.opened
    assert link.state == "open" and link.time_to_ticket_s == pytest.approx(61.5)
    (ticket,) = log.list()
    assert (ticket.client, ticket.alert, ticket.status) == ("vsgp", "interface_down", "open")
    # nothing more while firing
    again = await disp.dispatch(eng.evaluate([iface(T0 + 90, "down")], now=T0 + 90), now=T0 + 90)
    assert again.opened == again.reattached == [] and len(log.list()) == 1
    res = await disp.dispatch(eng.evaluate([iface(T0 + 120, "up")], now=T0 + 120), now=T0 + 120)
    assert [link.state for link in res.solved] == ["solved"]
    assert [t.status for t in log.list()] == ["solved"]
    assert (await disp.dispatch([], now=T0 + 180)).solved == []


async def test_never_opens_a_ticket_for_an_already_resolved_alert(state, clock):
    log = TicketLog(str(state / "log.sqlite"), clock=clock)
    eng = engine(state, [T0])
    disp = TicketDispatcher(str(state / "links.sqlite"), {"vsgp": log}, clock=clock)
    transitions = await fire(eng)
    transitions += eng.evaluate([iface(T0 + 61, "up")], now=T0 + 61)  # recovered before dispatch
    res = await disp.dispatch(transitions, now=T0 + 61)
    assert res.opened == [] and log.list() == []
    assert [link.state for link in disp.links()] == ["cancelled"]


async def test_failed_open_is_retried_on_a_later_cycle(state, clock, glpi):
    eng = engine(state, [T0])
    conn = GlpiConnector(glpi.url, "app-token", "user-token", backoff_s=0, retries=0)
    disp = TicketDispatcher(str(state / "links.sqlite"), {"vsgp": conn}, clock=clock)
    glpi.inject(503, times=2, method="POST", path="Ticket")
    res = await disp.dispatch(await fire(eng), now=T0 + 60)
    assert res.opened == [] and "HTTP 503" in res.failed[0][1]
    (link,) = disp.links()
    assert link.state == "opening" and link.attempts == 1 and "503" in link.last_error
    assert (await disp.dispatch([], now=T0 + 70)).failed == []  # backing off (30 s): not due yet
    res = await disp.dispatch([], now=T0 + 90)
    assert res.failed and disp.links()[0].attempts == 2
    res = await disp.dispatch([], now=T0 + 90 + 60)  # second backoff: 60 s
    assert [link.ticket_id for link in res.opened] == ["1"] and len(glpi.tickets) == 1
    await conn.close()


async def test_clients_route_to_their_own_target_and_unknown_clients_wait(state, clock):
    log_a = TicketLog(str(state / "a.sqlite"), clock=clock)
    eng = engine(state, [T0])
    disp = TicketDispatcher(str(state / "links.sqlite"), {"ofdt": log_a}, clock=clock)
    res = await disp.dispatch(await fire(eng), now=T0 + 60)
    assert res.failed == [(disp.links()[0].key, "no ticket target for client 'vsgp'")]
    disp.targets["vsgp"] = log_a
    res = await disp.dispatch([], now=T0 + 60 + 30)
    assert len(res.opened) == 1 and log_a.list()[0].client == "vsgp"


async def test_in_process_crash_after_create_then_restart_reattaches(state, clock):
    log = TicketLog(str(state / "log.sqlite"), clock=clock)
    eng = engine(state, [T0])
    links = str(state / "links.sqlite")
    disp = TicketDispatcher(links, {"vsgp": log}, clock=clock, checkpoint=crash_at("after_open"))
    with pytest.raises(Crash):
        await disp.dispatch(await fire(eng), now=T0 + 60)
    assert len(log.list()) == 1 and disp.links()[0].state == "opening"
    disp.close()
    disp = TicketDispatcher(links, {"vsgp": log}, clock=clock)
    res = await disp.dispatch([], now=T0 + 70)
    assert [link.ticket_id for link in res.reattached] == ["1"] and len(log.list()) == 1
    assert disp.links()[0].reused


async def test_crash_between_engine_and_dispatcher_is_reconciled(state, clock):
    log = TicketLog(str(state / "log.sqlite"), clock=clock)
    eng = engine(state, [T0])
    await fire(eng)  # transitions lost: the agent died before the dispatcher saw them
    disp = TicketDispatcher(str(state / "links.sqlite"), {"vsgp": log}, clock=clock)
    res = await disp.dispatch([], now=T0 + 70, firing=eng.firing())
    assert len(res.opened) == 1
    # and the recovery transition lost too: the next reconciliation solves the ticket
    eng.evaluate([iface(T0 + 120, "up")], now=T0 + 120)
    res = await disp.dispatch([], now=T0 + 130, firing=eng.firing())
    assert len(res.solved) == 1 and log.list()[0].status == "solved"


async def test_resolved_while_create_outcome_unknown_solves_the_ticket_if_it_exists(state, clock):
    log = TicketLog(str(state / "log.sqlite"), clock=clock)
    eng = engine(state, [T0])
    links = str(state / "links.sqlite")
    disp = TicketDispatcher(links, {"vsgp": log}, clock=clock, checkpoint=crash_at("after_open"))
    with pytest.raises(Crash):
        await disp.dispatch(await fire(eng), now=T0 + 60)
    disp = TicketDispatcher(links, {"vsgp": log}, clock=clock)
    res = await disp.dispatch(eng.evaluate([iface(T0 + 70, "up")], now=T0 + 70), now=T0 + 70)
    assert len(res.solved) == 1 and [t.status for t in log.list()] == ["solved"]


async def test_solve_of_a_ticket_solved_by_hand_is_not_an_error(state, clock, glpi):
    conn = GlpiConnector(glpi.url, "app-token", "user-token", backoff_s=0)
    eng = engine(state, [T0])
    disp = TicketDispatcher(str(state / "links.sqlite"), {"vsgp": conn}, clock=clock)
    transitions = await fire(eng)
    (link,) = (await disp.dispatch(transitions, now=T0 + 60)).opened
    await conn.solve(TicketRef("glpi", link.ticket_id), transitions[-1].alert)  # a technician solved it
    res = await disp.dispatch(eng.evaluate([iface(T0 + 120, "up")], now=T0 + 120), now=T0 + 120)
    assert len(res.solved) == 1 and res.failed == []
    await conn.close()


async def run_agent(state, url, now, oper, crash=None):
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash:
        env[CRASH_ENV] = crash
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.alerting.agent_run",
        "--state",
        str(state),
        "--glpi",
        url,
        "--now",
        str(now),
        "--oper",
        oper,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    if crash:
        return proc.returncode, None
    assert proc.returncode == 0, err.decode()
    return proc.returncode, json.loads(out)


async def test_sigkill_after_ticket_created_never_opens_a_second_ticket(state, glpi):
    url = glpi.url
    _, out = await run_agent(state, url, T0, "down")
    assert out["transitions"] == ["pending"] and glpi.tickets == {}

    rc, _ = await run_agent(state, url, T0 + 60, "down", crash="after_open")
    assert rc == -signal.SIGKILL
    assert len(glpi.tickets) == 1 and glpi.count("POST", "Ticket", 201) == 1
    row = sqlite3.connect(state / "tickets.sqlite").execute("SELECT state, ticket_id FROM ticket_links").fetchall()
    assert row == [("opening", None)]  # the link was never recorded

    _, out = await run_agent(state, url, T0 + 90, "down")  # restart: finds the ticket by its key
    assert out["opened"] == [] and out["reattached"] == ["1"]
    assert out["links"] == [["open", "1", 90.0]]
    assert glpi.count("POST", "Ticket") == 1

    _, out = await run_agent(state, url, T0 + 120, "down")  # restart while firing: nothing new
    assert out["transitions"] == [] and out["opened"] == out["reattached"] == []
    assert glpi.count("POST", "Ticket") == 1

    _, out = await run_agent(state, url, T0 + 180, "up")  # recovery: solved once
    assert out["transitions"] == ["resolved"] and out["solved"] == ["1"]
    assert glpi.tickets[1]["status"] == 5 and len(glpi.solutions) == 1

    _, out = await run_agent(state, url, T0 + 240, "up")
    assert out["solved"] == [] and len(glpi.solutions) == 1 and len(glpi.tickets) == 1
