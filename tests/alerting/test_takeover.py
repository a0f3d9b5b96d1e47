"""Taken in charge, read back from the ITSM (alerting/acknowledgement.py): GLPI's takeintoaccountdate
over the legacy API, the high-level API's status, the built-in log's ``take``; a slow or failing
ITSM holds only its own read-back; a restart keeps what was read."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agent.api.tickets import Takeable, TakeoverReadable, TicketRef
from alerting.acknowledgement import TakeoverReader
from alerting.notifier import TicketDispatcher
from alerting.ticketing.glpi import GlpiConnector, GlpiError
from alerting.ticketing.glpi_v2 import GlpiV2Connector
from alerting.ticketing.log import TicketLog, UnknownTicket
from lab.glpi_fake import FakeGlpi

from .helpers import T0, firing_alert, iface
from .test_dispatcher import engine, fire, running, step

T_OPEN = 1_700_000_100.0  # whole seconds: GLPI keeps dates to the second


@pytest.fixture
def state(tmp_path):
    return tmp_path


async def no_sleep(delay: float) -> None:
    return None


def legacy(fake, clock, **kwargs):
    return GlpiConnector(fake.url, "app-token", "user-token", clock=clock, sleep=no_sleep, **kwargs)


def v2(fake, clock):
    return GlpiV2Connector(fake.hl_url, "vigie-client", "vigie-secret", username="vigie", password="vigie-password",
                           clock=clock, sleep=no_sleep)


async def open_ticket(disp, clock, eng, at=T_OPEN, **tags):
    res = await step(disp, clock, at, await fire(eng, **tags))
    (link,) = res.opened
    return link


def reader(state, targets, disp, clock, **kwargs):
    return TakeoverReader(state / "links.sqlite", targets, disp.record_taken, clock, **kwargs)


async def test_glpi_legacy_takeintoaccountdate_is_read_back_to_the_second(state, clock, glpi):
    conn = legacy(glpi, clock)
    assert isinstance(conn, TakeoverReadable)
    eng = engine(state, [T0])
    async with running(TicketDispatcher(str(state / "links.sqlite"), {"vsgp": conn}, clock=clock)) as disp:
        link = await open_ticket(disp, clock, eng)
        back = reader(state, {"vsgp": conn}, disp, clock)
        assert await back.read_pass() == []  # nobody yet
        # vigie's own follow-up: GLPI made its API user the requester, which cannot take it in charge
        await conn.add_followup(TicketRef("glpi", link.ticket_id), "note")
        clock.t = T_OPEN + 200
        assert await back.read_pass() == []
        glpi.take_into_account(int(link.ticket_id), technician=4, at=T_OPEN + 137)
        assert glpi.tickets[int(link.ticket_id)]["status"] == 2
        glpi.take_into_account(int(link.ticket_id), technician=5, at=T_OPEN + 180)  # a second one changes nothing
        (taken,) = await back.read_pass()
        assert taken.taken_at == T_OPEN + 137 and taken.key == link.key
        assert disp.link(link.key).taken_at == T_OPEN + 137
        reads = glpi.count("GET", f"Ticket/{link.ticket_id}")
        assert await back.read_pass() == []
        assert glpi.count("GET", f"Ticket/{link.ticket_id}") == reads  # taken: not asked again
    await conn.close()


async def test_glpi_dates_are_read_in_glpi_timezone_and_glpi_9_5_from_the_delay(clock):
    fake = FakeGlpi(clock=clock, timezone="America/New_York")
    await fake.start()
    try:
        clock.t = T_OPEN
        conn = legacy(fake, clock, glpi_timezone="America/New_York")
        ticket = fake.add_ticket({"name": "x", "content": "y"})
        ref = TicketRef("glpi", str(ticket["id"]))
        fake.take_into_account(ticket["id"], at=T_OPEN + 42)
        assert await conn.taken_in_charge(ref) == T_OPEN + 42
        # GLPI 9.5: no takeintoaccountdate, the delay since `date` only
        del fake.tickets[ticket["id"]]["takeintoaccountdate"]
        assert await conn.taken_in_charge(ref) == T_OPEN + 42
        fake.tickets[ticket["id"]]["takeintoaccountdate"] = "yesterday-ish"
        with pytest.raises(GlpiError, match="takeintoaccountdate is not a date: 'yesterday-ish'"):
            await conn.taken_in_charge(ref)
        await conn.close()
    finally:
        await fake.stop()


async def test_glpi_v2_reads_a_technician_status_at_its_date_mod(clock, glpi):
    conn = v2(glpi, clock)
    clock.t = T_OPEN
    ticket = glpi.add_ticket({"name": "x", "content": "y"})
    ref = TicketRef("glpi", str(ticket["id"]))
    assert await conn.taken_in_charge(ref) is None
    glpi.take_into_account(ticket["id"], at=T_OPEN + 61)
    clock.t = T_OPEN + 300
    assert await conn.taken_in_charge(ref) == T_OPEN + 61  # the last change: the assignment
    await conn.close()


async def test_the_lab_technician_takes_each_new_ticket_after_a_delay(clock):
    fake = FakeGlpi(clock=clock, technician_after_s=95)
    await fake.start()
    try:
        clock.t = T_OPEN
        conn = legacy(fake, clock)
        ticket = fake.add_ticket({"name": "x", "content": "y"})
        ref = TicketRef("glpi", str(ticket["id"]))
        clock.t = T_OPEN + 60
        assert await conn.taken_in_charge(ref) is None
        clock.t = T_OPEN + 400
        assert await conn.taken_in_charge(ref) == T_OPEN + 95
        await conn.close()
    finally:
        await fake.stop()


async def test_ticket_log_take(state, clock):
    log = TicketLog(str(state / "log.sqlite"), clock=clock)
    eng = engine(state, [T0])
    async with running(TicketDispatcher(str(state / "links.sqlite"), {"vsgp": log}, clock=clock)) as disp:
        link = await open_ticket(disp, clock, eng)
        back = reader(state, {"vsgp": log}, disp, clock)
        assert await back.read_pass() == []
        clock.t = T_OPEN + 30
        assert isinstance(log, Takeable)
        assert log.take(link.ticket_id, by="alice") == ("alice", T_OPEN + 30)
        assert log.take(link.ticket_id, by="bob", at=T_OPEN + 99) == ("alice", T_OPEN + 30)  # the first stands
        assert (log.list()[0].taken_at, log.list()[0].taken_by) == (T_OPEN + 30, "alice")
        for unknown in ("99", "log#1"):
            with pytest.raises(UnknownTicket, match=f"no ticket #{unknown}"):
                log.take(unknown, by="alice")
        (taken,) = await back.read_pass()
        assert taken.taken_at == T_OPEN + 30
    await log.close()


async def test_a_ticket_taken_just_before_its_solution_is_read_once_more(state, clock):
    log = TicketLog(str(state / "log.sqlite"), clock=clock)
    eng = engine(state, [T0])
    async with running(TicketDispatcher(str(state / "links.sqlite"), {"vsgp": log}, clock=clock)) as disp:
        link = await open_ticket(disp, clock, eng)
        back = reader(state, {"vsgp": log}, disp, clock)
        assert await back.read_pass() == []
        log.take(int(link.ticket_id), by="alice", at=T_OPEN + 40)

        await step(disp, clock, T_OPEN + 50, eng.evaluate([iface(T_OPEN + 50, "up")], now=T_OPEN + 50))
        assert disp.link(link.key).state == "solved"
        (taken,) = await back.read_pass()
        assert taken.taken_at == T_OPEN + 40
    await log.close()


async def test_a_hung_itsm_holds_only_its_own_read_back_and_a_failing_one_is_retried(state, clock, caplog):
    slow, failing = FakeGlpi(clock=clock), FakeGlpi(clock=clock)
    await slow.start()
    await failing.start()
    log = TicketLog(str(state / "log.sqlite"), clock=clock)
    targets = {"slow": legacy(slow, clock), "failing": legacy(failing, clock, retries=0), "calm": log}
    eng = engine(state, [T0])
    try:
        async with running(TicketDispatcher(str(state / "links.sqlite"), targets, clock=clock)) as disp:
            links = {c: await open_ticket(disp, clock, eng, client=c, device=f"sw-{c}") for c in targets}
            slow.hang(path=f"Ticket/{links['slow'].ticket_id}")
            failing.inject(503, times=1, path=f"Ticket/{links['failing'].ticket_id}")
            for name in ("slow", "failing"):
                (slow if name == "slow" else failing).take_into_account(int(links[name].ticket_id), at=T_OPEN + 20)
            log.take(int(links["calm"].ticket_id), by="alice", at=T_OPEN + 25)
            back = reader(state, targets, disp, clock, interval_s=30, call_timeout_s=300, stop_timeout_s=0.1)
            caplog.set_level(logging.WARNING, "alerting.acknowledgement")
            await back.start()
            try:
                for _ in range(500):  # the calm target's answer lands while the slow one is held
                    if disp.link(links["calm"].key).taken_at is not None and slow.hung.is_set() \
                            and "failing" in caplog.text:
                        break
                    await asyncio.sleep(0.01)
                assert disp.link(links["calm"].key).taken_at == T_OPEN + 25
                assert slow.hung.is_set() and disp.link(links["slow"].key).taken_at is None
                assert disp.link(links["failing"].key).taken_at is None
                assert "taken-in-charge read-back of glpi for failing failed, next try in 30 s" in caplog.text
                assert "HTTP 503" in caplog.text
                clock.t += 31  # the backoff is over: asked again, answered
                back.wake()
                for _ in range(500):
                    if disp.link(links["failing"].key).taken_at is not None:
                        break
                    await asyncio.sleep(0.01)
                assert disp.link(links["failing"].key).taken_at == T_OPEN + 20
                assert disp.link(links["slow"].key).taken_at is None
            finally:
                await back.stop()  # bounded: the held call is cancelled
    finally:
        for connector in targets.values():
            await connector.close()
        await slow.stop()
        await failing.stop()


async def test_a_restart_keeps_taken_at_and_asks_no_more(state, clock, glpi):
    conn = legacy(glpi, clock)
    eng = engine(state, [T0])
    async with running(TicketDispatcher(str(state / "links.sqlite"), {"vsgp": conn}, clock=clock)) as disp:
        link = await open_ticket(disp, clock, eng)
        glpi.take_into_account(int(link.ticket_id), at=T_OPEN + 77)
        await reader(state, {"vsgp": conn}, disp, clock).read_pass()
    async with running(TicketDispatcher(str(state / "links.sqlite"), {"vsgp": conn}, clock=clock)) as disp:
        assert disp.link(link.key).taken_at == T_OPEN + 77
        reads = glpi.count("GET", f"Ticket/{link.ticket_id}")
        assert await reader(state, {"vsgp": conn}, disp, clock).read_pass() == []
        assert glpi.count("GET", f"Ticket/{link.ticket_id}") == reads
    await conn.close()


async def test_vigie_tickets_take_marks_the_log_and_the_read_back_follows(state, clock, capsys):
    from agent.cli import main

    log = TicketLog(str(state / "tickets.sqlite"), clock=clock)
    eng = engine(state, [T0])
    outbox = state / "ticket-outbox.sqlite"  # a state directory as the agent keeps it
    async with running(TicketDispatcher(str(outbox), {"vsgp": log}, clock=clock)) as disp:
        link = await open_ticket(disp, clock, eng)
        assert await asyncio.to_thread(main, ["tickets", "take", link.ticket_id, "--state-dir", str(state),
                                              "--by", "alice"]) == 0
        assert f"ticket #{link.ticket_id} of the built-in log taken in charge at" in capsys.readouterr().out
        assert await asyncio.to_thread(main, ["tickets", "take", link.ticket_id, "--state-dir", str(state),
                                              "--by", "bob"]) == 0
        assert "by alice (already: the first one stands)" in capsys.readouterr().out
        assert await asyncio.to_thread(main, ["tickets", "take", "42", "--state-dir", str(state)]) == 1
        assert "no ticket #42" in capsys.readouterr().err
        (taken,) = await TakeoverReader(outbox, {"vsgp": log}, disp.record_taken, clock).read_pass()
        assert disp.link(link.key).taken_at == taken.taken_at
        assert log.list()[0].taken_by == "alice"
    await log.close()


async def test_a_ticket_glpi_refuses_to_show_does_not_starve_the_others(state, clock, glpi, caplog):
    conn = legacy(glpi, clock)
    eng = engine(state, [T0])
    async with running(TicketDispatcher(str(state / "links.sqlite"), {"vsgp": conn}, clock=clock)) as disp:
        gone = await open_ticket(disp, clock, eng, device="sw-a")
        kept = await open_ticket(disp, clock, eng, at=T_OPEN + 10, device="sw-b")
        del glpi.tickets[int(gone.ticket_id)]  # deleted by someone in GLPI: 404 ERROR_ITEM_NOT_FOUND
        glpi.take_into_account(int(kept.ticket_id), at=T_OPEN + 30)
        back = reader(state, {"vsgp": conn}, disp, clock, per_pass=1)
        caplog.set_level(logging.ERROR, "alerting.acknowledgement")
        assert await back.read_pass() == []  # the oldest first: the deleted one, refused
        assert f"ticket glpi#{gone.ticket_id} cannot be read" in caplog.text
        (taken,) = await back.read_pass()  # then the other, not blocked behind it
        assert taken.key == kept.key and taken.taken_at == T_OPEN + 30
        await back.read_pass()
        assert caplog.text.count("cannot be read") == 1  # once per ticket
    await conn.close()


async def test_a_reopened_ticket_is_not_taken_by_its_first_take(state, clock, glpi):
    conn = legacy(glpi, clock)
    eng = engine(state, [T0])
    disp = TicketDispatcher(str(state / "links.sqlite"), {"vsgp": conn}, clock=clock,
                            reopen_within_s=lambda client: 1800)
    async with running(disp):
        first = await open_ticket(disp, clock, eng)
        glpi.take_into_account(int(first.ticket_id), at=T_OPEN + 20)
        back = reader(state, {"vsgp": conn}, disp, clock)
        assert [t.key for t in await back.read_pass()] == [first.key]
        await step(disp, clock, T_OPEN + 60, eng.evaluate([iface(T_OPEN + 60, "up")], now=T_OPEN + 60))
        # it fires again 10 min later: the solved ticket is reopened, GLPI keeps its first take
        eng.evaluate([iface(T_OPEN + 600, "down")], now=T_OPEN + 600)
        result = await step(disp, clock, T_OPEN + 660, eng.evaluate([iface(T_OPEN + 660, "down")], now=T_OPEN + 660))
        (again,) = result.reopened
        assert again.ticket_id == first.ticket_id and glpi.tickets[int(first.ticket_id)]["takeintoaccountdate"]
        assert await back.read_pass() == [] and disp.link(again.key).taken_at is None
        assert disp.link(first.key).taken_at == T_OPEN + 20
    await conn.close()


async def test_a_reopened_log_ticket_is_taken_again(state, clock):
    log = TicketLog(str(state / "log.sqlite"), clock=clock)
    clock.t = T_OPEN
    ref = await log.open(firing_alert())
    log.take(ref.id, by="alice")
    await log.solve(ref, firing_alert())
    await log.reopen(ref, "fired again")
    assert await log.taken_in_charge(ref) is None
    clock.t = T_OPEN + 50
    assert log.take(ref.id, by="bob") == ("bob", T_OPEN + 50)
    await log.close()


async def test_a_take_in_the_onsets_own_second_counts(state, clock, glpi):
    conn = legacy(glpi, clock)
    onset = T0 + 0.6  # GLPI keeps seconds: a take at onset + 0.1 s reads as T0, before the onset
    eng = engine(state, [onset])
    async with running(TicketDispatcher(str(state / "links.sqlite"), {"vsgp": conn}, clock=clock)) as disp:
        link = await step(disp, clock, onset + 60, await fire(eng, t=onset))
        (opened,) = link.opened
        glpi.take_into_account(int(opened.ticket_id), at=onset + 0.1)
        (taken,) = await reader(state, {"vsgp": conn}, disp, clock).read_pass()
        assert taken.taken_at == T0
    await conn.close()
