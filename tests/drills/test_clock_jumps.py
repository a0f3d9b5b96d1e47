"""The wall clock jumps (an NTP step, a VM restored from a snapshot, a hand-set date): forward and
back, under the alert engine and the ticket dispatcher's backoff. Time is driven by hand."""

from __future__ import annotations

from pathlib import Path

from alerting.engine import AlertEngine
from alerting.notifier import BACKOFF_S, MAX_BACKOFF_S, TicketDispatcher
from alerting.ticketing.glpi import GlpiConnector
from lab.glpi_fake import FakeGlpi
from tests.alerting.conftest import Clock
from tests.alerting.helpers import IF_DOWN, T0, iface

HOUR = 3600.0


def engine(tmp_path: Path, clock: Clock) -> AlertEngine:
    return AlertEngine(str(tmp_path / "alerts.sqlite"), [IF_DOWN], clock=clock)


def states(transitions) -> list[str]:
    return [t.state for t in transitions]


def test_a_backward_jump_neither_fires_a_pending_alert_early_nor_resolves_a_firing_one(tmp_path: Path) -> None:
    clock = Clock(T0)
    eng = engine(tmp_path, clock)
    try:
        assert states(eng.evaluate([iface(T0, "down")], now=T0)) == ["pending"]
        # an hour back while pending: still pending, and not fired at the old time either
        assert states(eng.evaluate([iface(T0 - HOUR, "down")], now=T0 - HOUR)) == []
        assert states(eng.evaluate([iface(T0 - HOUR + 30, "down")], now=T0 - HOUR + 30)) == []
        # the hold-down counts again from the clock's new reading: fired once it is met
        fired = []
        for t in range(0, 3 * int(IF_DOWN.for_s) + 1, 30):
            fired += states(eng.evaluate([iface(T0 - HOUR + t, "down")], now=T0 - HOUR + t))
        assert fired == ["firing"]
        # firing, then another hour back: the port is still down, the alert stays firing (no resolve)
        assert states(eng.evaluate([iface(T0 - 2 * HOUR, "down")], now=T0 - 2 * HOUR)) == []
        assert [a.state for a in eng.alerts()] == ["firing"]
        # a day forward: still one alert, resolved once the port is up
        assert states(eng.evaluate([iface(T0 + 86400, "up")], now=T0 + 86400)) == ["resolved"]
    finally:
        eng.close()


def test_a_forward_jump_fires_a_pending_alert_once(tmp_path: Path) -> None:
    clock = Clock(T0)
    eng = engine(tmp_path, clock)
    try:
        eng.evaluate([iface(T0, "down")], now=T0)
        assert states(eng.evaluate([iface(T0 + 86400, "down")], now=T0 + 86400)) == ["firing"]
        assert states(eng.evaluate([iface(T0 + 86460, "down")], now=T0 + 86460)) == []
    finally:
        eng.close()


async def test_a_backward_jump_does_not_hold_a_ticket_retry_past_the_longest_backoff(tmp_path: Path) -> None:
    """A retry is due at a wall-clock time (now + backoff): after the clock went an hour back, it would
    wait that hour too. It must come within the longest backoff of the clock's new reading."""
    clock = Clock(T0)
    glpi = FakeGlpi(app_token="app-token", user_tokens={"user-token": 2}, session_lifetime_s=600, clock=clock)
    await glpi.start()
    conn = GlpiConnector(glpi.url, "app-token", "user-token", backoff_s=0, retries=0)
    eng = engine(tmp_path, clock)
    disp = TicketDispatcher(str(tmp_path / "links.sqlite"), {"vsgp": conn}, clock=clock)
    glpi.inject(503, times=1, method="POST", path="Ticket")
    await disp.start()
    try:
        eng.evaluate([iface(T0, "down")], now=T0)
        clock.t = T0 + 60
        await disp.record(eng.evaluate([iface(T0 + 60, "down")], now=T0 + 60), clock.t)
        result = await disp.settle()
        assert result.retrying and disp.links()[0].next_attempt_at == T0 + 60 + BACKOFF_S
        clock.t = T0 + 60 - HOUR + MAX_BACKOFF_S  # an hour back, then the longest backoff
        await disp.record([], clock.t)
        result = await disp.settle()
        assert [link.ticket_id for link in result.opened] == ["1"] and len(glpi.tickets) == 1
    finally:
        await disp.stop()
        await conn.close()
        await glpi.stop()
        eng.close()
