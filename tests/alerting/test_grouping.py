"""Alerts grouped into tickets as Alertmanager groups notifications: group_by labels, group_wait
before the first ticket, group_interval between follow-ups, repeat_interval reminders; the group
ticket solved once every alert of it resolved. Driven clocks throughout."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3

import pytest

from agent.api.ticket_text import TicketLocale
from agent.db import open_db
from alerting.engine import AlertEngine
from alerting.notifier import _ROW_COLUMNS, Grouping, TicketDispatcher
from alerting.ticketing.log import TicketLog

from .helpers import IF_DOWN, T0, iface
from .test_dispatcher import Crash, crash_at, run_agent

EN = TicketLocale("UTC", "en")
GROUPING = Grouping(wait_s=30, interval_s=300, repeat_s=4 * 3600)


class Estate:
    """An engine, a ticket log and a dispatcher grouping by [client, site, alertname], on a
    driven clock; ``at(t, samples)`` evaluates, records and settles."""

    def __init__(self, tmp_path, clock, grouping: Grouping | None = GROUPING, **options) -> None:
        self.tmp_path, self.clock, self.grouping, self.options = tmp_path, clock, grouping, options
        self.log = TicketLog(str(tmp_path / "log.sqlite"), clock=clock, locale_for=lambda client: EN)
        self.engine = AlertEngine(str(tmp_path / "alerts.sqlite"), [IF_DOWN], clock=clock)
        self.disp = self.dispatcher()

    def dispatcher(self, **options) -> TicketDispatcher:
        return TicketDispatcher(str(self.tmp_path / "links.sqlite"), {"vsgp": self.log}, clock=self.clock,
                                grouping_for=lambda client: self.grouping, locale_for=lambda client: EN,
                                **{**self.options, **options})

    async def at(self, t: float, samples=()):
        self.clock.t = t
        await self.disp.record(self.engine.evaluate(list(samples), now=t), t)
        return await self.disp.settle()

    async def down(self, start: float, devices, site: str = "hdv", spread_s: float = 0.0):
        """``devices`` go down from ``start`` (their first bad samples spread over ``spread_s``)
        and fire 60 s later."""
        devices = list(devices)
        step = spread_s / max(len(devices), 1)
        for offset in (0.0, 60.0):
            for i, device in enumerate(devices):
                await self.at(start + offset + i * step, [iface(start + offset + i * step, "down", device=device,
                                                               site=site)])

    async def up(self, t: float, devices, site: str = "hdv"):
        return await self.at(t, [iface(t, "up", device=d, site=site) for d in devices])


@contextlib.asynccontextmanager
async def estate(tmp_path, clock, grouping: Grouping | None = GROUPING, **options):
    place = Estate(tmp_path, clock, grouping, **options)
    await place.disp.start(place.engine.firing)
    try:
        yield place
    finally:
        await place.disp.stop()
        place.engine.close()


def switches(n: int, first: int = 0) -> list[str]:
    return [f"sw-{i:03d}" for i in range(first, first + n)]


async def test_150_alerts_within_10_s_on_one_site_are_one_ticket_with_follow_ups(tmp_path, clock):
    async with estate(tmp_path, clock) as place:
        await place.down(T0, switches(150), spread_s=10)
        assert place.log.list() == []  # group_wait: the first fired at T0+60, its ticket waits 30 s
        result = await place.at(T0 + 90)
        (group,) = result.opened
        (ticket,) = place.log.list()
        assert "150 alerts on site hdv: interface_down" in ticket.title
        assert ticket.idempotency_key == group.key and ticket.title.startswith(f"[{group.key}]")
        assert ticket.content.count("\n- sw-") == 150
        links = place.disp.links()
        assert len(links) == 150 and {(link.state, link.ticket_id) for link in links} == {("open", str(ticket.id))}
        # time_to_ticket_s per alert: its own first bad sample -> the group ticket's creation
        assert [link.time_to_ticket_s for link in links[:2]] == pytest.approx([90.0, 90.0 - 10 / 150])

        await place.down(T0 + 200, ["sw-new-1", "sw-new-2"])  # join the open group at T0+260
        joined = place.disp.link(place.disp.links()[-1].key)
        assert (joined.state, joined.ticket_id, joined.time_to_ticket_s) == ("open", str(ticket.id), 60.0)
        assert place.log.followups(ticket.id) == []  # group_interval: not before T0+90+300
        result = await place.at(T0 + 390)
        assert len(result.followed_up) == 1
        (text,) = place.log.followups(ticket.id)
        assert "New alerts on this ticket (2)" in text and "Still firing: 152 alert(s)." in text

        await place.up(T0 + 400, switches(150))
        await place.up(T0 + 410, ["sw-new-1"])
        assert place.log.list()[0].status == "open"  # one alert still fires
        assert len(place.log.followups(ticket.id)) == 1
        await place.at(T0 + 690)
        texts = place.log.followups(ticket.id)
        assert len(texts) == 2 and "Resolved alerts (151)" in texts[1] and "Still firing: 1 alert(s)." in texts[1]
        result = await place.up(T0 + 700, ["sw-new-2"])
        assert [g.key for g in result.solved] == [group.key]
        assert place.log.list()[0].status == "solved" and len(place.log.list()) == 1
        assert {link.state for link in place.disp.links()} == {"solved"}


async def test_two_sites_are_two_tickets(tmp_path, clock):
    async with estate(tmp_path, clock) as place:
        await place.down(T0, switches(3), site="hdv")
        await place.down(T0 + 1, switches(2, 10), site="port")
        await place.at(T0 + 100)
        titles = sorted(ticket.title.split("] ", 1)[1] for ticket in place.log.list())
        assert titles == ["2 alerts on site port: interface_down", "3 alerts on site hdv: interface_down"]
        by_ticket = {}
        for link in place.disp.links():
            by_ticket.setdefault(link.ticket_id, []).append(link)
        assert sorted(len(links) for links in by_ticket.values()) == [2, 3]


async def test_no_grouping_is_one_ticket_per_alert_keyed_by_the_alert(tmp_path, clock):
    async with estate(tmp_path, clock, grouping=None) as place:
        await place.down(T0, switches(3))
        tickets = place.log.list()
        assert len(tickets) == 3 and place.disp.groups() == []
        assert sorted(t.idempotency_key for t in tickets) == sorted(link.key for link in place.disp.links())


async def test_a_group_of_one_reads_as_its_alert(tmp_path, clock):
    async with estate(tmp_path, clock) as place:
        await place.down(T0, ["sw-core-1"])
        await place.at(T0 + 90)
        (ticket,) = place.log.list()
        assert ticket.title.endswith("sw-core-1 Gi0/1 down") and "device: sw-core-1" in ticket.content


async def test_the_group_is_solved_only_when_every_alert_resolved(tmp_path, clock):
    async with estate(tmp_path, clock) as place:
        await place.down(T0, switches(3))
        await place.at(T0 + 90)
        await place.up(T0 + 100, switches(2))
        (ticket,) = place.log.list()
        assert ticket.status == "open"
        assert [link.state for link in place.disp.links()] == ["to_solve", "to_solve", "open"]
        await place.up(T0 + 110, switches(1, 2))
        assert place.log.list()[0].status == "solved"
        assert [link.state for link in place.disp.links()] == ["solved"] * 3


async def test_alerts_over_before_group_wait_never_open_a_ticket(tmp_path, clock):
    async with estate(tmp_path, clock) as place:
        await place.down(T0, switches(2))
        await place.up(T0 + 70, switches(2))
        await place.at(T0 + 200)
        assert place.log.list() == []
        assert {link.state for link in place.disp.links()} == {"cancelled"}
        assert [g.state for g in place.disp.groups()] == ["cancelled"]


async def test_a_group_still_firing_gets_a_reminder_at_repeat_interval(tmp_path, clock):
    async with estate(tmp_path, clock, grouping=Grouping(wait_s=30, interval_s=300, repeat_s=3600)) as place:
        await place.down(T0, switches(2))
        await place.at(T0 + 90)
        (ticket,) = place.log.list()
        await place.at(T0 + 90 + 3599)
        assert place.log.followups(ticket.id) == []
        await place.at(T0 + 90 + 3600)
        (text,) = place.log.followups(ticket.id)
        assert text.startswith("Reminder: this group of alerts is still firing.")


async def test_restart_mid_group_keeps_one_ticket(tmp_path, clock):
    place = Estate(tmp_path, clock)
    await place.disp.start(place.engine.firing)
    await place.down(T0, switches(2))
    await place.disp.stop()  # stopped while the group waits
    place.disp = place.dispatcher()
    await place.disp.start(place.engine.firing)
    try:
        await place.down(T0 + 10, switches(2, 2))
        await place.at(T0 + 90)
        (ticket,) = place.log.list()
        assert "4 alerts on site hdv" in ticket.title
        await place.disp.stop()  # and again once it is open
        place.disp = place.dispatcher()
        await place.disp.start(place.engine.firing)
        await place.down(T0 + 120, ["sw-late"])
        assert len(place.log.list()) == 1
        assert {link.ticket_id for link in place.disp.links()} == {str(ticket.id)}
    finally:
        await place.disp.stop()
        place.engine.close()


async def test_a_crash_between_the_group_ticket_and_its_link_reattaches_it(tmp_path, clock):
    place = Estate(tmp_path, clock, checkpoint=crash_at("after_open"))
    await place.disp.start(place.engine.firing)
    await place.down(T0, switches(3))
    clock.t = T0 + 90
    place.disp.wake()
    with pytest.raises(Crash):
        await place.disp.settle()
    assert len(place.log.list()) == 1
    assert {link.state for link in place.disp.links()} == {"opening"}
    place.disp = place.dispatcher()  # the restart: a new dispatcher on the same outbox
    await place.disp.start(place.engine.firing)
    try:
        result = await place.disp.settle()
        (group,) = result.reattached
        (ticket,) = place.log.list()
        assert group.ticket_id == str(ticket.id) and result.opened == []
        assert {(link.state, link.ticket_id, link.reused) for link in place.disp.links()} == {
            ("open", str(ticket.id), True)}
    finally:
        await place.disp.stop()
        place.engine.close()


async def test_a_group_firing_again_within_the_reopen_window_reopens_its_ticket(tmp_path, clock):
    async with estate(tmp_path, clock, reopen_within_s=lambda client: 1800) as place:
        await place.down(T0, switches(2))
        await place.at(T0 + 90)
        await place.up(T0 + 100, switches(2))
        await place.down(T0 + 400, switches(1))
        result = await place.at(T0 + 500)
        (ticket,) = place.log.list()
        assert [g.ticket_id for g in result.reopened] == [str(ticket.id)] and ticket.status == "open"
        assert place.disp.links()[-1].ticket_id == str(ticket.id)


async def test_an_outbox_written_before_grouping_is_migrated(tmp_path, clock):
    old = open_db(str(tmp_path / "links.sqlite"), f"CREATE TABLE ticket_links ({_ROW_COLUMNS});")
    old.close()
    async with estate(tmp_path, clock) as place:
        await place.down(T0, switches(2))
        await place.at(T0 + 90)
        assert len(place.log.list()) == 1
    columns = {r[1] for r in sqlite3.connect(tmp_path / "links.sqlite").execute("PRAGMA table_info(ticket_links)")}
    assert {"group_key", "announced"} <= columns


async def test_sigkill_between_the_group_ticket_and_its_link_never_opens_a_second_one(tmp_path, glpi):
    grouped = ("--devices", "5", "--group-wait", "0")
    _, out = await run_agent(tmp_path, glpi.url, T0, "down", extra=grouped)
    assert out["transitions"] == ["pending"] * 5 and glpi.tickets == {}

    rc, _ = await run_agent(tmp_path, glpi.url, T0 + 60, "down", crash="after_open", extra=grouped)
    assert rc == -signal.SIGKILL
    assert len(glpi.tickets) == 1 and glpi.count("POST", "Ticket", 201) == 1
    db = sqlite3.connect(tmp_path / "tickets.sqlite")
    assert db.execute("SELECT DISTINCT state, ticket_id FROM ticket_links").fetchall() == [("opening", None)]
    db.close()

    _, out = await run_agent(tmp_path, glpi.url, T0 + 90, "down", extra=grouped)  # restart: found by its key
    assert out["opened"] == [] and out["reattached"] == ["1"]
    assert out["groups"] == [["open", "1"]] and {tuple(link[:2]) for link in out["links"]} == {("open", "1")}
    (ticket,) = glpi.tickets.values()
    assert ticket["name"].endswith("] 5 alertes sur site hdv : interface_down")  # the default locale: fr

    _, out = await run_agent(tmp_path, glpi.url, T0 + 120, "up", extra=grouped)
    assert out["solved"] == ["1"] and glpi.count("POST", "Ticket") == 1


async def test_vigie_tickets_lists_each_alert_with_its_group_ticket(tmp_path, clock):
    from agent.statedir import StateDir
    from agent.views import ticket_rows

    async with estate(tmp_path, clock) as place:
        await place.down(T0, switches(3))
        await place.at(T0 + 90)
        (group,) = place.disp.groups()
    files = StateDir(tmp_path)
    (tmp_path / "links.sqlite").rename(files.outbox_db)
    found = ticket_rows(files)
    assert [row.device for row in found] == switches(3)
    assert {(row.key, row.status, row.title.split("] ", 1)[1]) for row in found} == {
        (group.key, "open", "3 alerts on site hdv: interface_down")}
    assert [row.time_to_ticket_s for row in found] == [90.0, 90.0, 90.0]


class HeldOpen:
    """The ticket log, its ``open`` held until released: alerts can join while it is in flight."""

    def __init__(self, log: TicketLog) -> None:
        self.log, self.name = log, log.name
        self.entered, self.release = asyncio.Event(), asyncio.Event()

    async def open(self, alert):
        self.entered.set()
        await self.release.wait()
        return await self.log.open(alert)

    def __getattr__(self, name):
        return getattr(self.log, name)


async def test_an_alert_joining_while_the_ticket_is_being_opened_is_named_in_the_next_follow_up(tmp_path, clock):
    place = Estate(tmp_path, clock)
    held = HeldOpen(place.log)
    place.disp = TicketDispatcher(str(tmp_path / "links.sqlite"), {"vsgp": held}, clock=clock,
                                  grouping_for=lambda client: GROUPING, locale_for=lambda client: EN)
    await place.disp.start(place.engine.firing)
    try:
        for t, oper in ((T0, "down"), (T0 + 60, "down")):
            clock.t = t
            await place.disp.record(place.engine.evaluate([iface(t, oper, device=d) for d in switches(2)], now=t))
        clock.t = T0 + 90
        place.disp.wake()
        await held.entered.wait()
        place.engine.evaluate([iface(T0 + 30, "down", device="sw-late")], now=T0 + 30)
        await place.disp.record(place.engine.evaluate([iface(T0 + 90, "down", device="sw-late")], now=T0 + 90))
        held.release.set()
        await place.disp.settle()
        (ticket,) = place.log.list()
        assert "2 alerts on site hdv" in ticket.title and "sw-late" not in ticket.content
        assert {link.ticket_id for link in place.disp.links()} == {str(ticket.id)}
        await place.at(T0 + 90 + 300)
        (text,) = place.log.followups(ticket.id)
        assert "New alerts on this ticket (1):\n- sw-late Gi0/1 down" in text
    finally:
        await place.disp.stop()
        place.engine.close()


async def test_a_group_ticket_taken_in_charge_is_taken_for_every_alert_on_it(tmp_path, clock):
    async with estate(tmp_path, clock) as place:
        await place.down(T0, switches(3))
        await place.at(T0 + 90)
        first, *others = place.disp.links()
        assert await place.disp.record_taken(first.key, T0 + 120)
        assert {place.disp.link(link.key).taken_at for link in [first, *others]} == {T0 + 120}
        # an alert joining the ticket once it is in someone's hands is taken from its own start
        await place.down(T0 + 200, ["sw-late"])
        (late,) = [link for link in place.disp.links() if link.taken_at is None]
        assert late.ticket_id == first.ticket_id
        assert await place.disp.record_taken(first.key, T0 + 120)
        assert place.disp.link(late.key).taken_at == late.started_at == T0 + 200
        assert not await place.disp.record_taken(first.key, T0 + 500)  # the first answer stands


async def test_without_group_wait_the_first_alert_opens_the_ticket_and_the_storm_joins_it(tmp_path, clock):
    async with estate(tmp_path, clock, Grouping(wait_s=0, interval_s=300, repeat_s=4 * 3600)) as place:
        await place.down(T0, switches(150), spread_s=10)
        (ticket,) = place.log.list()
        links = place.disp.links()
        assert len(links) == 150 and {(link.state, link.ticket_id) for link in links} == {("open", str(ticket.id))}
        assert links[0].time_to_ticket_s == pytest.approx(60.0)  # no wait: opened as it fired
        await place.at(T0 + 400)
        (text,) = place.log.followups(ticket.id)
        assert "New alerts on this ticket (149)" in text
