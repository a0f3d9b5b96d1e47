"""Silence: a series that used to report and stops is an alert of its own, never an OK; its next
sample resolves it; a silent series of an unreachable device is held by it like any alert."""

from __future__ import annotations

import pytest

from agent.api import Sample
from agent.api.rules import Rule
from alerting.engine import AlertEngine

from .helpers import DEVICE_DOWN, T0, collection

UPS_SILENT = Rule(name="ups_silent", measurement="snmp_ups", absent_for_s=300, severity="major",
                  summary="{device}: no UPS reading for {silent_s} s")


def ups(t: float, device: str = "ups-1") -> Sample:
    return Sample("snmp_ups", {"client": "vsgp", "site": "hdv", "device": device, "ups": "1"},
                  {"battery_percent": 100.0}, int(t * 1e9))


def test_a_series_gone_quiet_fires_and_its_return_resolves_it(tmp_path) -> None:
    engine = AlertEngine(str(tmp_path / "a.sqlite"), [UPS_SILENT], clock=lambda: T0)
    for minute in range(3):
        engine.evaluate([ups(T0 + 60 * minute)], now=T0 + 60 * minute)
    last = T0 + 120
    # other devices keep the engine busy; ups-1 says nothing any more
    assert not engine.evaluate([ups(last + 200, "ups-2")], now=last + 200)
    transitions = engine.evaluate([ups(last + 310, "ups-2")], now=last + 310)
    assert [(t.alert.device, t.state) for t in transitions] == [("ups-1", "pending"), ("ups-1", "firing")]
    (alert,) = engine.firing()
    assert alert.started_at == last and alert.summary == "ups-1: no UPS reading for 310 s"
    # a restart keeps what was heard and what fires
    engine.close()
    engine = AlertEngine(str(tmp_path / "a.sqlite"), [UPS_SILENT], clock=lambda: T0)
    assert [a.device for a in engine.firing()] == ["ups-1"]
    transitions = engine.evaluate([ups(last + 400)], now=last + 400)
    assert [t.state for t in transitions] == ["resolved"] and not engine.firing()


def test_an_unreachable_device_holds_the_silence_of_its_series(tmp_path) -> None:
    engine = AlertEngine(str(tmp_path / "a.sqlite"), [UPS_SILENT, DEVICE_DOWN], clock=lambda: T0)
    engine.evaluate([ups(T0)], now=T0)
    engine.evaluate([collection(T0 + 60, "unreachable", device="ups-1")], now=T0 + 60)
    engine.evaluate([collection(T0 + 400, "unreachable", device="ups-1")], now=T0 + 400)
    assert [a.rule for a in engine.firing()] == ["device_unreachable"]
    (held,) = engine.alerts(["pending"])
    assert held.rule == "ups_silent" and held.inhibited_by == "vsgp/ups-1"


def test_a_silence_rule_takes_no_condition_and_a_rule_needs_one() -> None:
    with pytest.raises(ValueError, match="absent_for_s"):
        Rule(name="both", measurement="snmp_ups", when="battery_percent < 50", absent_for_s=60)
    with pytest.raises(ValueError, match="give when"):
        Rule(name="neither", measurement="snmp_ups")
