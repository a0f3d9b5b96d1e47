"""Hysteresis (fire above X, clear below Y) and flapping (one alert held open, not one per flap)
in the rule format, through the real engine."""

from __future__ import annotations

from agent.api import Sample
from agent.api.rules import Rule
from alerting.engine import AlertEngine

from .helpers import T0, iface

CPU = Rule(name="cpu_high", measurement="snmp_cpu", when="load_percent > 90", clear_when="load_percent < 80",
           severity="warning", summary="{device} CPU {load_percent} %")
PORT = Rule(name="interface_down", measurement="snmp_interface", when="oper_status == 'down'",
            flapping={"window_s": 600, "threshold": 3}, severity="major", summary="{device} {if_name} down")


def cpu(t: float, load: float) -> Sample:
    return Sample("snmp_cpu", {"client": "vsgp", "site": "hdv", "device": "fw-1", "cpu": "0"},
                  {"load_percent": load}, int(t * 1e9))


def test_a_cpu_alert_clears_below_the_lower_threshold_only(tmp_path) -> None:
    engine = AlertEngine(str(tmp_path / "a.sqlite"), [CPU], clock=lambda: T0)
    engine.evaluate([cpu(T0, 95)], now=T0)
    assert [a.rule for a in engine.firing()] == ["cpu_high"]
    for step, load in enumerate((85, 89, 91, 82), start=1):  # between the thresholds: still firing
        engine.evaluate([cpu(T0 + 60 * step, load)], now=T0 + 60 * step)
        assert engine.firing(), load
    transitions = engine.evaluate([cpu(T0 + 600, 75)], now=T0 + 600)
    assert [t.state for t in transitions] == ["resolved"] and not engine.firing()
    # below the upper threshold never fires, whatever the lower one says
    engine.evaluate([cpu(T0 + 700, 85)], now=T0 + 700)
    assert not engine.alerts(["pending", "firing"])


def test_a_flapping_port_is_one_alert_held_until_stable_for_the_window(tmp_path) -> None:
    engine = AlertEngine(str(tmp_path / "a.sqlite"), [PORT], clock=lambda: T0)
    fired = resolved = 0
    t = T0
    for _ in range(6):  # down 30 s, up 30 s, six times
        fired += sum(tr.state == "firing" for tr in engine.evaluate([iface(t, "down")], now=t))
        resolved += sum(tr.state == "resolved" for tr in engine.evaluate([iface(t + 30, "up")], now=t + 30))
        t += 60
    # two flaps are two alerts; the third fire makes it flapping: held open from then on
    assert (fired, resolved) == (3, 2)
    (alert,) = engine.firing()
    assert alert.flapping is True
    # stable for less than the window: still open; a bad sample starts the wait again
    engine.evaluate([iface(t + 300, "up")], now=t + 300)
    engine.evaluate([iface(t + 400, "down")], now=t + 400)
    engine.evaluate([iface(t + 450, "up")], now=t + 450)
    assert not engine.evaluate([iface(t + 700, "up")], now=t + 700) and engine.firing()
    # good for the whole window since its last bad sample: resolved, once
    transitions = engine.evaluate([iface(t + 1050, "up")], now=t + 1050)
    assert [tr.state for tr in transitions] == ["resolved"] and transitions[0].alert.flapping is True
    assert not engine.firing()


def test_rules_written_before_these_fields_load_and_old_databases_are_upgraded(tmp_path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""CREATE TABLE alerts (id INTEGER PRIMARY KEY AUTOINCREMENT, fingerprint TEXT NOT NULL,
        rule TEXT NOT NULL, labels TEXT NOT NULL, severity TEXT NOT NULL, summary TEXT NOT NULL, state TEXT NOT NULL,
        started_at REAL NOT NULL, fired_at REAL, resolved_at REAL, last_sample_at REAL, inhibited_by TEXT);""")
    db.close()
    engine = AlertEngine(str(path), [PORT], clock=lambda: T0)
    engine.evaluate([iface(T0, "down")], now=T0)
    assert engine.firing()[0].flapping is False
