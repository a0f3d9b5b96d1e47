"""`seen_before(cond)`: a row's condition true at an earlier poll -> True, else unknown (None)."""

from __future__ import annotations

import pytest

from collectors.snmp.client import SnmpValue
from collectors.snmp.engine import CounterStore, Snapshot, evaluate
from collectors.snmp.expr import ExprError, compile_expression
from collectors.snmp.profile import ProfileSet

IF = "1.3.6.1.2.1.2.2.1"
UP, DOWN = 1, 2


@pytest.fixture(scope="module")
def if_mib():
    return ProfileSet.load().get("if_mib")


def _poll(profile, store: CounterStore, now: float, oper: dict[str, int]) -> dict[str, object]:
    snapshot = Snapshot(
        columns={
            f"{IF}.2": {index: SnmpValue(f"port{index}", "string") for index in oper},
            f"{IF}.7": {index: SnmpValue(UP, "integer") for index in oper},
            f"{IF}.8": {index: SnmpValue(code, "integer") for index, code in oper.items()},
        }
    )
    return {row.index: row.fields["was_up"] for row in evaluate(profile, snapshot, store, now=now)}


def test_unknown_until_seen_up_at_an_earlier_poll_per_row(if_mib) -> None:
    store = CounterStore()
    # Port 1 up, port 2 never connected: the first poll knows nothing of the past.
    assert _poll(if_mib, store, 0.0, {"1": UP, "2": DOWN}) == {"1": None, "2": None}
    # Port 1 was up before: True, down or up now. Port 2 was never up: unknown, never False.
    assert _poll(if_mib, store, 60.0, {"1": DOWN, "2": DOWN}) == {"1": True, "2": None}
    assert _poll(if_mib, store, 120.0, {"1": DOWN, "2": UP}) == {"1": True, "2": None}
    assert _poll(if_mib, store, 180.0, {"1": UP, "2": DOWN}) == {"1": True, "2": True}


def test_a_new_collector_instance_knows_nothing(if_mib) -> None:
    store = CounterStore()
    _poll(if_mib, store, 0.0, {"1": UP})
    assert _poll(if_mib, store, 60.0, {"1": DOWN}) == {"1": True}
    # Agent restart: a new collector (new store) sees the port down -> unknown, not False.
    restarted = CounterStore()
    assert _poll(if_mib, restarted, 120.0, {"1": DOWN}) == {"1": None}
    assert _poll(if_mib, restarted, 180.0, {"1": DOWN}) == {"1": None}


def test_one_answer_per_poll_and_survives_counter_reset() -> None:
    store = CounterStore()
    key = ("interface", "1", "oper == 1")
    assert store.seen_before(key, True, now=10.0) is None
    assert store.seen_before(key, True, now=10.0) is None  # same poll, asked twice
    store.reset_counters()  # a device reboot drops counters, not what was seen
    assert store.seen_before(key, None, now=20.0) is True
    assert store.seen_before(key, False, now=30.0) is True
    assert store.seen_before(("interface", "2", "oper == 1"), None, now=30.0) is None


def test_expression_checks() -> None:
    assert compile_expression("seen_before(oper == 1)").names == frozenset({"oper"})
    for bad in ("seen_before()", "seen_before(a, b)", "seen_before(x=1)", "seen_before(__import__)"):
        with pytest.raises(ExprError):
            compile_expression(bad)
    # Without an engine (no state) it is unknown.
    assert compile_expression("seen_before(oper == 1)").evaluate({"oper": 1}) is None
