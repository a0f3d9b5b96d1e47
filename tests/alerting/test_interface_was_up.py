"""The built-in `core_interface_down` pages only for ports that went down (`was_up`), end to end:
IF-MIB rows from the SNMP engine -> samples -> AlertEngine with the SNMP plugin's default rules."""

from __future__ import annotations

import pytest

from agent.api import Sample
from agent.api.alerts import FIRING, PENDING
from alerting.engine import AlertEngine
from collectors.snmp import PLUGIN as SNMP
from collectors.snmp.client import SnmpValue
from collectors.snmp.engine import CounterStore, Snapshot, evaluate
from collectors.snmp.profile import ProfileSet

from .helpers import T0

IF = "1.3.6.1.2.1.2.2.1"
UP, DOWN = 1, 2
BASE = {"client": "vsgp", "site": "hdv", "device": "sw-core-1", "role": "core"}


@pytest.fixture(scope="module")
def if_mib():
    return ProfileSet.load().get("if_mib")


@pytest.fixture
def engine(tmp_path):
    def make() -> AlertEngine:
        rules = [r for r in SNMP.default_rules() if r.name in ("interface_down", "core_interface_down")]
        return AlertEngine(str(tmp_path / "alerts.sqlite"), rules, clock=lambda: pytest.fail("time is passed"))

    return make


def poll(profile, store: CounterStore, t: float, oper: dict[str, int]) -> list[Sample]:
    """One poll of a core switch whose ports are admin up (no alias: not declared uplinks)."""
    snapshot = Snapshot(
        columns={
            f"{IF}.2": {i: SnmpValue(f"Gi1/0/{i}", "string") for i in oper},
            f"{IF}.7": {i: SnmpValue(UP, "integer") for i in oper},
            f"{IF}.8": {i: SnmpValue(code, "integer") for i, code in oper.items()},
        }
    )
    rows = evaluate(profile, snapshot, store, now=t)
    return [Sample(r.measurement, {**BASE, **r.tags}, r.fields, int(t * 1e9)) for r in rows]


def states(transitions):
    return [(t.alert.labels["if_name"], t.previous, t.state) for t in transitions]


def test_never_up_port_never_pages(if_mib, engine) -> None:
    eng, store = engine(), CounterStore()
    for step in range(10):
        t = T0 + 60 * step
        assert eng.evaluate(poll(if_mib, store, t, {"1": DOWN, "2": DOWN}), now=t) == []
    assert eng.alerts() == []


def test_port_that_went_down_fires_and_restart_keeps_one_alert(if_mib, engine) -> None:
    eng, store = engine(), CounterStore()
    assert eng.evaluate(poll(if_mib, store, T0, {"1": UP, "2": DOWN}), now=T0) == []
    out = eng.evaluate(poll(if_mib, store, T0 + 60, {"1": DOWN, "2": DOWN}), now=T0 + 60)
    assert states(out) == [("Gi1/0/1", None, PENDING)]
    out = eng.evaluate(poll(if_mib, store, T0 + 120, {"1": DOWN, "2": DOWN}), now=T0 + 120)
    assert states(out) == [("Gi1/0/1", PENDING, FIRING)]
    (alert,) = eng.firing()
    assert alert.rule == "core_interface_down"

    # Agent restart: new alert engine on the same database, new collector (empty store). The
    # port is still down and was_up is unknown: no recovery, no second alert.
    eng.close()
    eng, store = engine(), CounterStore()
    for step in range(3, 8):
        t = T0 + 60 * step
        samples = poll(if_mib, store, t, {"1": DOWN, "2": DOWN})
        assert {s.tags["if_index"]: s.fields["was_up"] for s in samples} == {"1": None, "2": None}
        assert eng.evaluate(samples, now=t) == []
    assert [(a.fingerprint, a.state) for a in eng.alerts()] == [(alert.fingerprint, FIRING)]

    # The port comes back: the same alert resolves.
    out = eng.evaluate(poll(if_mib, store, T0 + 600, {"1": UP, "2": DOWN}), now=T0 + 600)
    assert [(t.alert.fingerprint, t.state) for t in out] == [(alert.fingerprint, "resolved")]
