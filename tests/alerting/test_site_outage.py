"""One ticket per outage: a site's router goes down and 150 devices behind it stop answering
within 10 s — one ticket, naming the site and listing the devices behind the router; theirs stay
pending, held by the router, and open nothing of their own."""

from __future__ import annotations

from agent.api.ticket_text import ticket_body
from agent.config.schema import BUILTIN_RULES
from alerting.engine import AlertEngine
from alerting.notifier import TicketDispatcher
from alerting.ticketing.log import TicketLog

from .helpers import T0, collection


async def test_150_devices_behind_a_router_down_within_10_s_are_one_ticket(tmp_path, clock) -> None:
    behind = [f"sw-{i:03d}" for i in range(150)]
    # two levels: the router, 10 distribution switches, 14 access switches under each
    parents = {("vsgp", f"sw-{i:03d}"): "rtr-agence-12" if i < 10 else f"sw-{(i - 10) // 14:03d}" for i in range(150)}
    engine = AlertEngine(str(tmp_path / "alerts.sqlite"), BUILTIN_RULES, clock=clock, parents=parents)
    log = TicketLog(str(tmp_path / "log.sqlite"), clock=clock)
    dispatcher = TicketDispatcher(str(tmp_path / "links.sqlite"), {"vsgp": log}, clock=clock)
    await dispatcher.start(engine.firing)
    try:
        # the children's polls notice first (their phases come round before the router's)
        for second in range(0, 301, 10):
            clock.t = T0 + second
            down = [collection(clock.t - (i % 10), "unreachable", device=d) for i, d in enumerate(behind)]
            if second >= 8:
                down.append(collection(clock.t, "unreachable", device="rtr-agence-12"))
            await dispatcher.record(engine.evaluate(down, now=clock.t))
            await dispatcher.settle()
        (ticket,) = log.list()
        (alert,) = engine.firing()
        assert alert.device == "rtr-agence-12" and alert.impacted == sorted(behind)
        assert "rtr-agence-12" in ticket.title
        assert "150 équipement(s) derrière rtr-agence-12" in ticket.content and "sw-149" in ticket.content
        held = engine.alerts(["pending"])
        assert len(held) == 150 and {a.inhibited_by for a in held} <= {"vsgp/rtr-agence-12", *(
            f"vsgp/sw-{i:03d}" for i in range(10))}
    finally:
        await dispatcher.stop()


def test_the_ticket_of_a_device_with_nothing_behind_it_lists_nothing(tmp_path) -> None:
    engine = AlertEngine(str(tmp_path / "alerts.sqlite"), BUILTIN_RULES, clock=lambda: T0)
    engine.evaluate([collection(T0, "unreachable", device="printer-3f")], now=T0)
    engine.evaluate([collection(T0 + 130, "unreachable", device="printer-3f")], now=T0 + 130)
    (alert,) = engine.firing()
    assert alert.impacted == [] and "derrière" not in ticket_body(alert)


def test_a_child_poll_begun_during_its_parent_outage_does_not_fire_when_the_parent_is_back(tmp_path) -> None:
    def status(t: float, device: str, value: str, took: float = 10.0):
        sample = collection(t, value, device=device)
        return type(sample)(sample.measurement, sample.tags, {**sample.fields, "duration_s": took}, sample.timestamp_ns)

    engine = AlertEngine(str(tmp_path / "alerts.sqlite"), BUILTIN_RULES, clock=lambda: T0,
                         parents={("vsgp", "sw-1"): "rtr"})
    for t in range(0, 301, 60):  # both silent for five minutes: the router's ticket, sw-1 held
        engine.evaluate([status(T0 + t, "rtr", "unreachable"), status(T0 + t + 5, "sw-1", "unreachable")],
                        now=T0 + t + 5)
    assert [a.device for a in engine.firing()] == ["rtr"]
    engine.evaluate([status(T0 + 360, "rtr", "ok", took=0.2)], now=T0 + 360)  # the router is back
    # sw-1's run began at 356, before the router answered again: it tells nothing of sw-1 itself
    engine.evaluate([status(T0 + 366, "sw-1", "unreachable")], now=T0 + 366)
    assert not [a for a in engine.firing() if a.device == "sw-1"]
    # its next run, begun after: sw-1 itself does not answer
    engine.evaluate([status(T0 + 426, "sw-1", "unreachable")], now=T0 + 426)
    assert [a.device for a in engine.firing() if a.device == "sw-1"] == ["sw-1"]
