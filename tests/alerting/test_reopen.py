"""A re-fire soon after a ticket was solved reopens that ticket with a follow-up instead of a new
one (clients[].reopen_within_s), in the built-in log and in GLPI; past the window a new ticket
opens."""

from __future__ import annotations

from alerting.engine import AlertEngine
from alerting.notifier import TicketDispatcher
from alerting.ticketing.glpi import GlpiConnector
from alerting.ticketing.log import TicketLog

from .helpers import IF_DOWN, T0, iface


async def _flap(disp: TicketDispatcher, engine: AlertEngine, clock, down_at: float) -> None:
    """The uplink down (fires after 60 s), a ticket, back up 120 s later: solved."""
    for t, oper in ((down_at, "down"), (down_at + 60, "down"), (down_at + 120, "up")):
        clock.t = t
        await disp.record(engine.evaluate([iface(t, oper)], now=t))
        await disp.settle()


async def test_a_refire_within_the_window_reopens_the_solved_ticket(tmp_path, clock) -> None:
    log = TicketLog(str(tmp_path / "log.sqlite"), clock=clock)
    engine = AlertEngine(str(tmp_path / "alerts.sqlite"), [IF_DOWN], clock=clock)
    disp = TicketDispatcher(str(tmp_path / "links.sqlite"), {"vsgp": log}, clock=clock,
                            reopen_within_s=lambda client: 1800)
    await disp.start(engine.firing)
    try:
        await _flap(disp, engine, clock, T0)
        await _flap(disp, engine, clock, T0 + 600)  # 8 min after the solution: reopened
        (ticket,) = log.list()
        assert ticket.status == "solved"  # solved again by the second recovery
        assert any("redéclenchée" in text for text in log.followups(ticket.id))
        await _flap(disp, engine, clock, T0 + 600 + 3600)  # an hour later: a new ticket
        assert [t.status for t in log.list()] == ["solved", "solved"]
        states = [(link.state, link.ticket_id) for link in disp.links()]
        assert [s for s, _ in states] == ["solved"] * 3 and states[0][1] == states[1][1] != states[2][1]
    finally:
        await disp.stop()


async def test_glpi_reopens_the_same_ticket(tmp_path, clock, glpi) -> None:
    connector = GlpiConnector(glpi.url, "app-token", "user-token", backoff_s=0)
    engine = AlertEngine(str(tmp_path / "alerts.sqlite"), [IF_DOWN], clock=clock)
    disp = TicketDispatcher(str(tmp_path / "links.sqlite"), {"vsgp": connector}, clock=clock,
                            reopen_within_s=lambda client: 1800)
    await disp.start(engine.firing)
    try:
        await _flap(disp, engine, clock, T0)
        clock.t = T0 + 600
        engine.evaluate([iface(T0 + 600, "down")], now=T0 + 600)
        clock.t = T0 + 660
        await disp.record(engine.evaluate([iface(T0 + 660, "down")], now=T0 + 660))
        result = await disp.settle()
        (reopened,) = result.reopened
        (ticket,) = glpi.tickets.values()
        assert str(ticket["id"]) == reopened.ticket_id and ticket["status"] == 2  # processing again
    finally:
        await disp.stop()
        await connector.close()
