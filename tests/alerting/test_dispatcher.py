import asyncio
import contextlib
import json
import logging
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from agent.api.tickets import TicketRef
from alerting.engine import AlertEngine
from alerting.notifier import BACKOFF_S, CRASH_ENV, TicketDispatcher
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


async def fire(eng, t=T0, **tags):
    eng.evaluate([iface(t, "down", **tags)], now=t)
    return eng.evaluate([iface(t + 60, "down", **tags)], now=t + 60)


@contextlib.asynccontextmanager
async def running(disp, firing=None):
    await disp.start(firing)
    try:
        yield disp
    finally:
        await disp.stop()


async def step(disp, clock, at, transitions=()):
    """Drive the clock to ``at``, record, and let every lane finish what is due then."""
    clock.t = at
    await disp.record(transitions, at)
    return await disp.settle()


async def test_open_on_firing_solve_on_resolved_with_ticket_log(state, clock):
    log = TicketLog(str(state / "log.sqlite"), clock=clock)
    eng = engine(state, [T0])
    async with running(TicketDispatcher(str(state / "links.sqlite"), {"vsgp": log}, clock=clock)) as disp:
        res = await step(disp, clock, T0 + 61.5, await fire(eng))
        (link,) = res.opened
        assert link.state == "open" and link.time_to_ticket_s == pytest.approx(61.5)
        (ticket,) = log.list()
        assert (ticket.client, ticket.alert, ticket.status) == ("vsgp", "interface_down", "open")
        # nothing more while firing
        again = await step(disp, clock, T0 + 90, eng.evaluate([iface(T0 + 90, "down")], now=T0 + 90))
        assert not again and len(log.list()) == 1
        res = await step(disp, clock, T0 + 120, eng.evaluate([iface(T0 + 120, "up")], now=T0 + 120))
        assert [link.state for link in res.solved] == ["solved"]
        assert [t.status for t in log.list()] == ["solved"]
        assert not await step(disp, clock, T0 + 180)


async def test_never_opens_a_ticket_for_an_already_resolved_alert(state, clock):
    log = TicketLog(str(state / "log.sqlite"), clock=clock)
    eng = engine(state, [T0])
    async with running(TicketDispatcher(str(state / "links.sqlite"), {"vsgp": log}, clock=clock)) as disp:
        transitions = await fire(eng)
        transitions += eng.evaluate([iface(T0 + 61, "up")], now=T0 + 61)  # recovered before dispatch
        res = await step(disp, clock, T0 + 61, transitions)
        assert res.opened == [] and log.list() == []
        assert [link.state for link in disp.links()] == ["cancelled"]


async def test_failed_open_is_retried_on_a_later_cycle(state, clock, glpi):
    eng = engine(state, [T0])
    conn = GlpiConnector(glpi.url, "app-token", "user-token", backoff_s=0, retries=0)
    glpi.inject(503, times=2, method="POST", path="Ticket")
    async with running(TicketDispatcher(str(state / "links.sqlite"), {"vsgp": conn}, clock=clock)) as disp:
        res = await step(disp, clock, T0 + 60, await fire(eng))
        assert res.opened == [] and "HTTP 503" in res.retrying[0][1]
        (link,) = disp.links()
        assert link.state == "opening" and link.attempts == 1 and "503" in link.last_error
        assert link.next_attempt_at == T0 + 60 + BACKOFF_S
        assert not await step(disp, clock, T0 + 70)  # backing off (30 s): not due yet
        res = await step(disp, clock, T0 + 90)
        assert res.retrying and disp.links()[0].attempts == 2
        res = await step(disp, clock, T0 + 90 + 60)  # second backoff: 60 s
        assert [link.ticket_id for link in res.opened] == ["1"] and len(glpi.tickets) == 1
    await conn.close()


async def test_a_client_without_target_is_reported_and_tried_again_at_the_next_start(state, clock):
    log = TicketLog(str(state / "log.sqlite"), clock=clock)
    eng = engine(state, [T0])
    links = str(state / "links.sqlite")
    async with running(TicketDispatcher(links, {"ofdt": log}, clock=clock)) as disp:
        res = await step(disp, clock, T0 + 60, await fire(eng))
        assert res.failed == [(disp.links()[0].key, "no ticket target for client 'vsgp'")]
        assert disp.links()[0].state == "failed"
    async with running(TicketDispatcher(links, {"ofdt": log, "vsgp": log}, clock=clock)) as disp:
        res = await disp.settle()
        assert len(res.opened) == 1 and log.list()[0].client == "vsgp"


async def test_in_process_crash_after_create_then_restart_reattaches(state, clock):
    log = TicketLog(str(state / "log.sqlite"), clock=clock)
    eng = engine(state, [T0])
    links = str(state / "links.sqlite")
    async with running(TicketDispatcher(links, {"vsgp": log}, clock=clock, checkpoint=crash_at("after_open"))) as disp:
        with pytest.raises(Crash):
            await step(disp, clock, T0 + 60, await fire(eng))
        assert len(log.list()) == 1 and disp.links()[0].state == "opening"
    clock.t = T0 + 70
    async with running(TicketDispatcher(links, {"vsgp": log}, clock=clock)) as disp:
        res = await disp.settle()
        assert [link.ticket_id for link in res.reattached] == ["1"] and len(log.list()) == 1
        assert disp.links()[0].reused
        assert "rattaché" in log.followups(1)[0]


async def test_crash_between_engine_and_dispatcher_is_reconciled(state, clock):
    log = TicketLog(str(state / "log.sqlite"), clock=clock)
    eng = engine(state, [T0])
    await fire(eng)  # transitions lost: the agent died before the dispatcher saw them
    clock.t = T0 + 70
    async with running(TicketDispatcher(str(state / "links.sqlite"), {"vsgp": log}, clock=clock), eng.firing) as disp:
        res = await disp.settle()
        assert len(res.opened) == 1
        # and the recovery transition lost too: the next reconciliation solves the ticket
        eng.evaluate([iface(T0 + 120, "up")], now=T0 + 120)
        clock.t = T0 + 130
        await disp.reconcile()
        res = await disp.settle()
        assert len(res.solved) == 1 and log.list()[0].status == "solved"


async def test_reconciliation_also_runs_periodically(state, clock):
    log = TicketLog(str(state / "log.sqlite"), clock=clock)
    eng = engine(state, [T0])
    done = asyncio.Event()
    disp = TicketDispatcher(
        str(state / "links.sqlite"),
        {"vsgp": log},
        clock=clock,
        reconcile_interval_s=0.01,
        on_result=lambda r: done.set(),
    )
    async with running(disp, eng.firing):
        clock.t = T0 + 60
        await fire(eng)  # fired after the start-up reconciliation, its transitions lost
        await done.wait()  # the next periodic pass queues it and the lane opens it
        assert [(link.state, link.ticket_id) for link in disp.links()] == [("open", "1")]


async def test_resolved_while_create_outcome_unknown_solves_the_ticket_if_it_exists(state, clock):
    log = TicketLog(str(state / "log.sqlite"), clock=clock)
    eng = engine(state, [T0])
    links = str(state / "links.sqlite")
    async with running(TicketDispatcher(links, {"vsgp": log}, clock=clock, checkpoint=crash_at("after_open"))) as disp:
        with pytest.raises(Crash):
            await step(disp, clock, T0 + 60, await fire(eng))
    disp = TicketDispatcher(links, {"vsgp": log}, clock=clock)
    recovered = eng.evaluate([iface(T0 + 70, "up")], now=T0 + 70)
    await disp.record(recovered, T0 + 70)  # recorded before the lanes run: the row is to_solve
    async with running(disp):
        res = await disp.settle()
        assert len(res.solved) == 1 and [t.status for t in log.list()] == ["solved"]


async def test_solve_of_a_ticket_solved_by_hand_is_not_an_error(state, clock, glpi):
    conn = GlpiConnector(glpi.url, "app-token", "user-token", backoff_s=0)
    eng = engine(state, [T0])
    async with running(TicketDispatcher(str(state / "links.sqlite"), {"vsgp": conn}, clock=clock)) as disp:
        transitions = await fire(eng)
        (link,) = (await step(disp, clock, T0 + 60, transitions)).opened
        await conn.solve(TicketRef("glpi", link.ticket_id), transitions[-1].alert)  # a technician solved it
        res = await step(disp, clock, T0 + 120, eng.evaluate([iface(T0 + 120, "up")], now=T0 + 120))
        assert len(res.solved) == 1 and res.retrying == res.failed == []
    await conn.close()


async def test_a_glpi_400_is_reported_not_retried(state, clock, glpi, caplog):
    conn = GlpiConnector(glpi.url, "app-token", "user-token", backoff_s=0)
    eng = engine(state, [T0])
    links = str(state / "links.sqlite")
    glpi.inject(400, times=1, method="POST", path="Ticket")
    async with running(TicketDispatcher(links, {"vsgp": conn}, clock=clock)) as disp:
        with caplog.at_level(logging.ERROR, logger="alerting.notifier"):
            res = await step(disp, clock, T0 + 60, await fire(eng))
        ((key, error),), (link,) = res.failed, disp.links(states=["failed"])
        assert res.retrying == [] and key == link.key and "HTTP 400" in error and "HTTP 400" in link.last_error
        (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert "vsgp/sw-core-1 interface_down" in record.getMessage() and "not retried" in record.getMessage()
        # an hour later, nothing was tried again
        assert not await step(disp, clock, T0 + 3600)
        assert glpi.count("POST", "Ticket") == 1 and glpi.tickets == {}
    # the operator fixed what GLPI refused and restarted the agent: one more chance
    async with running(TicketDispatcher(links, {"vsgp": conn}, clock=clock)) as disp:
        res = await disp.settle()
        assert [link.ticket_id for link in res.opened] == ["1"] and disp.links()[0].state == "open"
    await conn.close()


async def test_retry_after_longer_than_the_connector_waits_is_honoured_by_the_outbox(state, clock, glpi):
    conn = GlpiConnector(glpi.url, "app-token", "user-token", backoff_s=0)
    eng = engine(state, [T0])
    glpi.inject(429, times=1, path="search", retry_after="600")
    async with running(TicketDispatcher(str(state / "links.sqlite"), {"vsgp": conn}, clock=clock)) as disp:
        res = await step(disp, clock, T0 + 60, await fire(eng))
        assert "HTTP 429" in res.retrying[0][1]
        assert disp.links()[0].next_attempt_at == T0 + 60 + 600  # not the 30 s backoff
        assert glpi.count("GET", "search/Ticket") == 1  # the connector did not sleep 600 s on it
        assert not await step(disp, clock, T0 + 60 + 599)
        assert len((await step(disp, clock, T0 + 60 + 600)).opened) == 1
    await conn.close()


async def test_a_hung_glpi_holds_only_its_own_lane_and_stop_is_bounded(state, clock, glpi):
    """One client's GLPI accepts connections and never answers; the other client, on the built-in
    log, gets its ticket as if nothing were wrong; stop() does not wait for the hung call."""
    hung = GlpiConnector(glpi.url, "app-token", "user-token", backoff_s=0)
    log = TicketLog(str(state / "log.sqlite"), clock=clock)
    eng = engine(state, [T0])
    links = str(state / "links.sqlite")
    glpi.hang()
    # A deadline far beyond the test: only the lanes' independence lets the log client through.
    disp = TicketDispatcher(links, {"vsgp": hung, "ofdt": log}, clock=clock, call_timeout_s=3600, stop_timeout_s=0)
    await disp.start()
    clock.t = T0 + 60
    await disp.record(await fire(eng), T0 + 60)
    await glpi.hung.wait()  # the vsgp lane is inside its call to GLPI
    clock.t = T0 + 61
    await disp.record(await fire(eng, T0 + 1, client="ofdt"), T0 + 61)
    res = await disp.settle(["ofdt"])
    (opened,) = res.opened
    assert (opened.client, opened.state, opened.time_to_ticket_s) == ("ofdt", "open", 60.0)
    assert [t.client for t in log.list()] == ["ofdt"]
    assert [(link.client, link.state, link.attempts) for link in disp.links(client="vsgp")] == [("vsgp", "opening", 1)]
    async with asyncio.timeout(60):  # a guard against a hang, not a measure: stop cancels the call
        await disp.stop()
    assert glpi.hanging == [("GET", "initSession")] and glpi.count("POST", "Ticket") == 0
    await hung.close()
    # GLPI answers again: the next start opens the ticket (looking for it first)
    glpi.clear_faults()
    back = GlpiConnector(glpi.url, "app-token", "user-token", backoff_s=0)
    async with running(TicketDispatcher(links, {"vsgp": back, "ofdt": log}, clock=clock)) as disp:
        res = await disp.settle()
        assert [link.client for link in res.opened] == ["vsgp"] and glpi.count("POST", "Ticket") == 1
        assert glpi.count("GET", "search/Ticket") == 1
    await back.close()


async def test_a_call_past_its_deadline_is_a_retryable_failure(state, clock, glpi):
    conn = GlpiConnector(glpi.url, "app-token", "user-token", backoff_s=0)
    eng = engine(state, [T0])
    glpi.hang()
    async with running(
        TicketDispatcher(str(state / "links.sqlite"), {"vsgp": conn}, clock=clock, call_timeout_s=0.05)
    ) as disp:
        res = await step(disp, clock, T0 + 60, await fire(eng))
        assert res.retrying == [(disp.links()[0].key, "glpi: no answer to find_open within 0.05 s")]
        (link,) = disp.links()
        assert (link.state, link.failures, link.next_attempt_at) == ("opening", 1, T0 + 60 + BACKOFF_S)
    await conn.close()


@pytest.mark.parametrize("policy", [None, "never"])
async def test_an_alert_that_fired_and_resolved_while_glpi_failed_is_opened_then_solved(state, clock, glpi, policy):
    conn = GlpiConnector(glpi.url, "app-token", "user-token", backoff_s=0, retries=0)
    eng = engine(state, [T0])
    options = {} if policy is None else {"ticket_resolved_during_outage": lambda alert: False}
    glpi.inject(503, times=1_000_000)
    async with running(TicketDispatcher(str(state / "links.sqlite"), {"vsgp": conn}, clock=clock, **options)) as disp:
        assert (await step(disp, clock, T0 + 60, await fire(eng))).retrying
        res = await step(disp, clock, T0 + 300, eng.evaluate([iface(T0 + 300, "up")], now=T0 + 300))
        assert res.retrying  # resolved while GLPI still answers 503
        glpi.clear_faults()
        res = await step(disp, clock, T0 + 300 + 2 * BACKOFF_S)
        if policy == "never":
            assert res.cancelled and glpi.tickets == {} and disp.links()[0].state == "cancelled"
            return
        (opened,), (solved,) = res.opened, res.solved
        assert opened.key == solved.key and solved.state == "solved"
        (ticket,) = glpi.tickets.values()
        assert ticket["status"] == 5 and len(glpi.solutions) == 1
        (note,) = glpi.followups
        assert note["content"].startswith("Ticket ouvert après coup")
        # CET: the alert fired at T0 + 60 and resolved at T0 + 300, in the client's zone
        assert "2023-11-14 23:14:20 CET" in note["content"] and "2023-11-14 23:18:20 CET" in note["content"]
        assert "GLPI était injoignable" in note["content"]
    await conn.close()


async def test_reconciliation_cost_does_not_grow_with_the_alerts_already_firing(state, clock):
    """Count the SQL the dispatcher runs per evaluation batch and per reconciliation once N
    alerts fire and are linked: the same for 5 and for 60."""

    def downs(t: float, indexes: range) -> list:
        return [iface(t, "down", if_index=str(i), if_name=f"Gi0/{i}") for i in indexes]

    def writes(statements: list[str]) -> int:
        return sum(1 for s in statements if not s.lstrip().upper().startswith("SELECT"))

    async def cost(n: int, where: Path) -> list[int]:
        where.mkdir()
        log = TicketLog(str(where / "log.sqlite"), clock=clock)
        eng = engine(where, [T0])
        eng.evaluate(downs(T0, range(n)), now=T0)
        fired = eng.evaluate(downs(T0 + 60, range(n)), now=T0 + 60)
        assert len(fired) == n
        disp = TicketDispatcher(str(where / "links.sqlite"), {"vsgp": log}, clock=clock)
        async with running(disp, eng.firing):
            assert len((await step(disp, clock, T0 + 60, fired)).opened) == n
            statements: list[str] = []
            disp._db.set_trace_callback(statements.append)  # what SQLite runs for the outbox, counted
            counts = []
            for t in (T0 + 90, T0 + 120, T0 + 150, T0 + 180, T0 + 210):
                clock.t = t
                await disp.record(eng.evaluate(downs(t, range(n)), now=t), t)
                await disp.reconcile()
                counts.append(writes(statements))
                statements.clear()
            # one new alert: its own INSERT, not one per alert already firing
            eng.evaluate(downs(T0 + 240, range(n, n + 1)), now=T0 + 240)
            await disp.record(eng.evaluate(downs(T0 + 300, range(n, n + 1)), now=T0 + 300), T0 + 300)
            counts.append(sum(1 for s in statements if "INSERT" in s.upper()))
        return counts

    few, many = await cost(5, state / "few"), await cost(60, state / "many")
    assert few == many == [0, 0, 0, 0, 0, 1]


async def test_one_info_line_per_ticket_opened_followed_up_solved(state, clock, caplog):
    log = TicketLog(str(state / "log.sqlite"), clock=clock)
    eng = engine(state, [T0])
    links = str(state / "links.sqlite")
    with caplog.at_level(logging.INFO, logger="alerting.notifier"):
        async with running(TicketDispatcher(links, {"vsgp": log}, clock=clock, checkpoint=crash_at("after_open"))) as d:
            with pytest.raises(Crash):
                await step(d, clock, T0 + 60, await fire(eng))
        caplog.clear()
        async with running(TicketDispatcher(links, {"vsgp": log}, clock=clock)) as disp:
            await disp.settle()
            await step(disp, clock, T0 + 120, eng.evaluate([iface(T0 + 120, "up")], now=T0 + 120))
    lines = [r.getMessage() for r in caplog.records if r.name == "alerting.notifier"]
    assert len(lines) == 3
    assert lines[0].startswith("ticket log#1 re-attached for vsgp/sw-core-1 interface_down (sw-core-1 Gi0/1 down)")
    assert lines[1].startswith("ticket log#1 followed up for vsgp/sw-core-1 interface_down: re-attached")
    assert lines[2].startswith("ticket log#1 solved for vsgp/sw-core-1 interface_down")


async def run_agent(state, url, now, oper, crash=None, extra=()):
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
        *extra,
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
