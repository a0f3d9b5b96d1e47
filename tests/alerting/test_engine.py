import sqlite3
import threading

import pytest
from pydantic import ValidationError

from agent.api import Sample
from agent.api.alerts import FIRING, PENDING, RESOLVED
from agent.api.rules import Rule
from alerting.engine import AlertEngine, inhibition_problems

from .helpers import DEVICE_DOWN, IF_DOWN, T0, collection, iface


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "alerts.sqlite")


def make(db, rules=(IF_DOWN, DEVICE_DOWN), **kw):
    return AlertEngine(db, list(rules), clock=lambda: pytest.fail("time must be passed"), **kw)


def states(transitions):
    return [(t.alert.rule, t.previous, t.state) for t in transitions]


def test_pending_firing_resolved_with_driven_time(db):
    eng = make(db)
    assert states(eng.evaluate([iface(T0, "down")], now=T0)) == [("interface_down", None, PENDING)]
    assert eng.evaluate([iface(T0 + 30, "down")], now=T0 + 30) == []  # for_s not elapsed
    fired = eng.evaluate([iface(T0 + 60, "down")], now=T0 + 60)
    assert states(fired) == [("interface_down", PENDING, FIRING)]
    alert = fired[0].alert
    assert alert.started_at == T0 and alert.fired_at == T0 + 60
    assert alert.summary == "sw-core-1 Gi0/1 down"
    assert alert.labels == {
        "alertname": "interface_down",
        "client": "vsgp",
        "site": "hdv",
        "device": "sw-core-1",
        "role": "core",
        "if_index": "1",
        "if_name": "Gi0/1",
        "team": "noc",
    }  # if_alias is descriptive, not identifying
    assert alert.idempotency_key == f"vigie:{alert.fingerprint}:{int(T0 + 60)}"
    assert eng.evaluate([iface(T0 + 90, "down")], now=T0 + 90) == []  # still firing, nothing new
    resolved = eng.evaluate([iface(T0 + 120, "up")], now=T0 + 120)
    assert states(resolved) == [("interface_down", FIRING, RESOLVED)]
    assert resolved[0].alert.resolved_at == T0 + 120
    assert resolved[0].alert.fingerprint == alert.fingerprint
    # a new occurrence: same fingerprint, new started_at, new idempotency key
    eng.evaluate([iface(T0 + 200, "down")], now=T0 + 200)
    again = eng.evaluate([iface(T0 + 260, "down")], now=T0 + 260)[0].alert
    assert again.fingerprint == alert.fingerprint and again.idempotency_key != alert.idempotency_key
    assert [a.state for a in eng.alerts()] == [RESOLVED, FIRING]


def test_pending_cleared_before_for_s_is_dropped_silently(db):
    eng = make(db)
    eng.evaluate([iface(T0, "down")], now=T0)
    assert eng.evaluate([iface(T0 + 30, "up")], now=T0 + 30) == []
    assert eng.alerts() == []
    # the next bad sample starts a fresh pending period
    eng.evaluate([iface(T0 + 40, "down")], now=T0 + 40)
    assert eng.evaluate([iface(T0 + 90, "down")], now=T0 + 90) == []
    assert states(eng.evaluate([iface(T0 + 100, "down")], now=T0 + 100)) == [("interface_down", PENDING, FIRING)]


def test_for_zero_fires_at_once(db):
    eng = make(db)
    out = eng.evaluate([collection(T0, "unreachable", device="sw-core-1")], now=T0)
    assert states(out) == [("device_unreachable", None, PENDING), ("device_unreachable", PENDING, FIRING)]


def test_matchers_exact_regex_negation(db):
    eng = make(db)
    assert eng.evaluate([iface(T0, "down", if_alias="user port")], now=T0) == []  # regex miss
    assert eng.evaluate([iface(T0, "down", role="access")], now=T0) == []  # exact miss
    assert len(eng.evaluate([iface(T0, "down", if_alias="to WAN orange")], now=T0)) == 1
    neg = Rule(
        name="x",
        measurement="snmp_interface",
        when="oper_status == 'down'",
        match={"role": "!core", "if_name": "!~^Vlan"},
    )
    eng2 = make(db + "2", rules=[neg])
    assert eng2.evaluate([iface(T0, "down")], now=T0) == []
    assert eng2.evaluate([iface(T0, "down", role="access")], now=T0) != []
    assert eng2.evaluate([iface(T0, "down", role="access", if_name="Vlan10", if_index="9")], now=T0) == []


@pytest.mark.parametrize("bad", [{"oper_status": None}, {"admin_status": None}])
def test_unknown_values_do_not_flip_state(db, bad):
    eng = make(db)
    eng.evaluate([iface(T0, "down")], now=T0)
    eng.evaluate([iface(T0 + 60, "down")], now=T0 + 60)
    unknown = iface(T0 + 90, bad.get("oper_status", "down"), admin=bad.get("admin_status", "up"))
    assert eng.evaluate([unknown], now=T0 + 90) == []  # no false recovery
    assert [a.state for a in eng.alerts()] == [FIRING]
    # and an unknown value never raises an alert
    eng2 = make(db + "2")
    assert eng2.evaluate([iface(T0, None)], now=T0) == []
    assert eng2.alerts() == []


def test_restart_continues_where_it_was(db):
    eng = make(db)
    eng.evaluate([iface(T0, "down")], now=T0)
    eng.close()
    eng = make(db)  # restart while pending
    fired = eng.evaluate([iface(T0 + 60, "down")], now=T0 + 60)
    assert states(fired) == [("interface_down", PENDING, FIRING)] and fired[0].alert.started_at == T0
    eng.close()
    eng = make(db)  # restart while firing: no new firing transition
    assert eng.evaluate([iface(T0 + 120, "down")], now=T0 + 120) == []
    assert states(eng.evaluate([iface(T0 + 180, "up")], now=T0 + 180)) == [("interface_down", FIRING, RESOLVED)]
    mode = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_stale_series_is_neither_resolved_nor_duplicated(db):
    eng = make(db)
    eng.evaluate([iface(T0, "down")], now=T0)
    eng.evaluate([iface(T0 + 60, "down")], now=T0 + 60)
    # the interface stops reporting for an hour: nothing happens
    for k in range(1, 60):
        assert eng.evaluate([], now=T0 + 60 + k * 60) == []
    (alert,) = eng.firing()
    assert alert.last_sample_at == T0 + 60
    # it comes back still down: same alert, no new transition
    assert eng.evaluate([iface(T0 + 4000, "down")], now=T0 + 4000) == []
    assert len(eng.alerts()) == 1


def test_unreachable_device_inhibits_its_own_alerts_but_not_its_reachability_alert(db):
    eng = make(db)
    eng.evaluate([iface(T0, "down")], now=T0)
    out = eng.evaluate([collection(T0 + 60, "unreachable", device="sw-core-1"), iface(T0 + 60, "down")], now=T0 + 60)
    assert states(out) == [("device_unreachable", None, PENDING), ("device_unreachable", PENDING, FIRING)]
    held = [a for a in eng.alerts() if a.rule == "interface_down"]
    assert held[0].state == PENDING and held[0].inhibited_by == "vsgp/sw-core-1"
    # device answers again: the held alert fires at its next bad sample
    out = eng.evaluate([collection(T0 + 120, "ok", device="sw-core-1"), iface(T0 + 120, "down")], now=T0 + 120)
    assert states(out) == [("device_unreachable", FIRING, RESOLVED), ("interface_down", PENDING, FIRING)]


def test_parent_unreachable_inhibits_children(db):
    parents = {("vsgp", "sw-access-2"): "sw-dist-1", ("vsgp", "sw-dist-1"): "fw-1"}
    eng = make(db, parents=parents)
    samples = [
        collection(T0, "unreachable", device="fw-1"),
        collection(T0, "unreachable", device="sw-access-2"),
        iface(T0, "down", device="sw-access-2"),
    ]
    out = eng.evaluate(samples, now=T0)
    fired = [(t.alert.device, t.alert.rule) for t in out if t.state == FIRING]
    assert fired == [("fw-1", "device_unreachable")]  # the child's own reachability alert is inhibited too
    samples = [
        collection(T0 + 60, "unreachable", device="fw-1"),
        collection(T0 + 60, "unreachable", device="sw-access-2"),
        iface(T0 + 60, "down", device="sw-access-2"),
    ]
    assert eng.evaluate(samples, now=T0 + 60) == []
    held = {(a.device, a.rule): a.inhibited_by for a in eng.alerts(states=[PENDING])}
    assert held == {
        ("sw-access-2", "device_unreachable"): "vsgp/fw-1",
        ("sw-access-2", "interface_down"): "vsgp/sw-access-2",  # nearest unreachable device
    }
    # another client's device of the same name is not inhibited (equal: client, device)
    other = eng.evaluate([collection(T0, "unreachable", device="sw-access-2", client="ofdt")], now=T0)
    assert [t.state for t in other] == [PENDING, FIRING]


def test_ok_from_another_collector_means_reachable(db):
    eng = make(db)
    eng.evaluate(
        [
            collection(T0, "unreachable", device="sw-core-1", collector="snmp"),
            collection(T0, "ok", device="sw-core-1", collector="icmp"),
        ],
        now=T0,
    )
    assert eng.is_unreachable("vsgp", "sw-core-1", T0) is False
    eng.evaluate([collection(T0 + 10, "unreachable", device="sw-core-1", collector="icmp")], now=T0 + 10)
    assert eng.is_unreachable("vsgp", "sw-core-1", T0 + 10) is True
    assert eng.is_unreachable("vsgp", "sw-core-1", T0 + 10 + 7200) is False  # statuses expire (status_ttl_s)


@pytest.mark.parametrize("answered", ["partial", "error"])
def test_a_device_that_answered_something_is_reachable(db, answered):
    # SNMP walks half failed (partial) or came back with errors: the device is up, whatever ping says.
    eng = make(db)
    samples = [
        collection(T0, "unreachable", device="sw-core-1", collector="icmp"),
        collection(T0, answered, device="sw-core-1", collector="snmp"),
    ]
    eng.evaluate(samples, now=T0)
    assert eng.is_unreachable("vsgp", "sw-core-1", T0) is False


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        (dict(when="x.y == 1"), "not allowed"),
        (dict(when="x == 1", severity="fatal"), "severity"),
        (dict(when="x == 1", labels={"device": "x"}), "labels may not set device"),
        (dict(when="x == 1", match={"t": "~("}), "match.t: invalid regular expression"),
    ],
)
def test_bad_rules_are_rejected_once_with_their_problem(rule, problem):
    """The one rule model checks a rule when it is built; the engine gets only valid rules."""
    with pytest.raises(ValidationError, match=problem):
        Rule(name="a", measurement="m", **rule)


def test_same_rule_scoped_per_client_and_disabled_rules(db):

    base = dict(name="interface_down", measurement="snmp_interface", when="oper_status == 'down'")
    rules = [
        Rule(**base, match={"client": "vsgp"}, severity="critical"),
        Rule(**base, match={"client": "ofdt"}, severity="minor"),
        Rule(name="off", measurement="snmp_interface", when="oper_status == 'down'", enabled=False),
    ]
    eng = make(db, rules=rules)
    out = eng.evaluate([iface(T0, "down"), iface(T0, "down", client="ofdt")], now=T0)
    assert sorted((t.alert.client, t.alert.severity) for t in out if t.state == FIRING) == [
        ("ofdt", "minor"),
        ("vsgp", "critical"),
    ]


def test_parent_cycles_are_rejected(db):
    with pytest.raises(ValueError, match="cycle in client vsgp: sw-a -> fw-1 -> sw-a"):
        make(db, parents={("vsgp", "sw-a"): "fw-1", ("vsgp", "fw-1"): "sw-a"})


# -- inhibition between rules (a family's rule over the generic one) -------------------------------

GENERIC = Rule(name="sensor_critical", measurement="snmp_sensor", when="state == 'crit'", for_s=60, severity="major")
FAMILY = Rule(
    name="sophos_xg_psu_failed",
    measurement="snmp_sensor",
    when="state == 'crit'",
    match={"profile": "sophos_xg", "sensor_class": "power_supply"},
    severity="critical",
    inhibits=[{"rule": "sensor_critical", "equal": ["client", "device", "sensor"]}],
)


def sensor(t, state, *, sensor="Power supply 2", device="fw-1", client="vsgp", status=None, **tags):
    base = {"client": client, "site": "hdv", "device": device, "sensor": sensor,
            "sensor_class": "power_supply", "profile": "sophos_xg", **tags}  # fmt: skip
    status = status or ("down" if state == "crit" else "up")
    return Sample("snmp_sensor", base, {"state": state, "status": status}, int(t * 1e9))


def at(t, samples):
    """The same samples taken again at ``t``."""
    return [Sample(s.measurement, s.tags, s.fields, int(t * 1e9)) for s in samples]


def test_family_rule_holds_the_generic_one_on_the_same_object(db):
    # The generic rule is listed (and would be applied) first: sources still go first.
    eng = make(db, rules=[GENERIC, FAMILY])
    out = eng.evaluate([sensor(T0, "crit")], now=T0)
    assert states(out) == [
        ("sophos_xg_psu_failed", None, PENDING),
        ("sophos_xg_psu_failed", PENDING, FIRING),
        ("sensor_critical", None, PENDING),
    ]
    source = out[1].alert
    assert eng.evaluate([sensor(T0 + 60, "crit")], now=T0 + 60) == []  # for_s elapsed, but held
    (held,) = eng.alerts(states=[PENDING])
    assert held.rule == "sensor_critical" and held.inhibited_by == f"sophos_xg_psu_failed/{source.fingerprint}"
    # The PSU comes back: both clear together, the held alert is dropped without a word.
    assert states(eng.evaluate([sensor(T0 + 120, "ok")], now=T0 + 120)) == [("sophos_xg_psu_failed", FIRING, RESOLVED)]
    assert eng.alerts(states=[PENDING, FIRING]) == []


def test_target_fires_at_its_next_bad_sample_once_the_source_resolves(db):
    # The family rule clears (here: an operator-fixed status) while the generic condition holds.
    family = FAMILY.with_changes(when="state == 'crit' and status == 'down'")
    eng = make(db, rules=[GENERIC, family])
    eng.evaluate([sensor(T0, "crit")], now=T0)
    eng.evaluate([sensor(T0 + 60, "crit")], now=T0 + 60)
    out = eng.evaluate([sensor(T0 + 90, "crit", status="other")], now=T0 + 90)
    # source resolved first in the batch, so the target is no longer held on the same sample
    assert states(out) == [("sophos_xg_psu_failed", FIRING, RESOLVED), ("sensor_critical", PENDING, FIRING)]
    assert out[1].alert.inhibited_by is None and out[1].alert.started_at == T0


def test_equal_labels_must_all_match_and_a_missing_one_is_a_non_match(db):
    eng = make(db, rules=[GENERIC, FAMILY])
    eng.evaluate([sensor(T0, "crit")], now=T0)  # PSU 2 of fw-1 down: its family alert fires
    others = [
        sensor(T0, "crit", sensor="Power supply 1"),  # another PSU of the same device
        sensor(T0, "crit", device="fw-2", profile="other"),  # same sensor name, another device
        sensor(T0, "crit", client="ofdt", profile="other"),  # same device name, another client
        Sample("snmp_sensor", {"client": "vsgp", "device": "fw-1", "sensor_class": "power_supply"},
               {"state": "crit"}, int(T0 * 1e9)),  # no sensor label at all
    ]  # fmt: skip
    # Power supply 1 is the family's too: its own family alert holds its generic one.
    eng.evaluate(others, now=T0)
    out = eng.evaluate(at(T0 + 60, [sensor(T0, "crit"), *others]), now=T0 + 60)
    fired = sorted(
        (t.alert.client, t.alert.device, t.alert.labels.get("sensor", "-")) for t in out if t.state == FIRING
    )
    assert fired == [("ofdt", "fw-1", "Power supply 2"), ("vsgp", "fw-1", "-"), ("vsgp", "fw-2", "Power supply 2")]


def test_match_restricts_the_targets_and_a_pending_source_already_holds(db):
    # One source on another measurement holding only some of the target rule's alerts.
    on_battery = Rule(
        name="ups_on_battery",
        measurement="snmp_ups",
        when="on_battery == True",
        for_s=300,  # stays pending throughout: pending sources hold too
        inhibits=[{"rule": "sensor_critical", "equal": ["client", "device"], "match": {"sensor": "~^Output source$"}}],
    )
    eng = make(db, rules=[GENERIC, on_battery])
    ups = Sample("snmp_ups", {"client": "vsgp", "device": "ups-1"}, {"on_battery": True}, int(T0 * 1e9))
    source = sensor(T0, "crit", device="ups-1", sensor="Output source", sensor_class="state")
    other = sensor(T0, "crit", device="ups-1", sensor="Ambient temperature", sensor_class="temperature")
    eng.evaluate([source, other, ups], now=T0)
    out = eng.evaluate(at(T0 + 60, [source, other, ups]), now=T0 + 60)
    assert [(t.alert.labels["sensor"], t.state) for t in out] == [("Ambient temperature", FIRING)]
    pending = eng.alerts(states=[PENDING])
    (battery,) = [a for a in pending if a.rule == "ups_on_battery"]
    held = {a.labels["sensor"]: a.inhibited_by for a in pending if a.rule == "sensor_critical"}
    assert held == {"Output source": f"ups_on_battery/{battery.fingerprint}"}


def test_a_target_already_firing_stays_firing(db):
    family = FAMILY.with_changes(when="state == 'crit' and status == 'down'")
    eng = make(db, rules=[GENERIC.with_changes(for_s=0), family])
    out = eng.evaluate([sensor(T0, "crit", status="other")], now=T0)
    assert states(out)[-1] == ("sensor_critical", PENDING, FIRING)
    out = eng.evaluate([sensor(T0 + 60, "crit")], now=T0 + 60)
    assert states(out) == [("sophos_xg_psu_failed", None, PENDING), ("sophos_xg_psu_failed", PENDING, FIRING)]
    assert {a.rule for a in eng.firing()} == {"sensor_critical", "sophos_xg_psu_failed"}


def test_inhibitions_are_checked_when_the_engine_is_built(db):
    unknown = FAMILY.with_changes(inhibits=[{"rule": "sensor_crit", "equal": ["device"]}])
    with pytest.raises(ValueError, match="rule sophos_xg_psu_failed inhibits sensor_crit, which is not a rule"):
        make(db, rules=[GENERIC, unknown])
    with pytest.raises(ValidationError, match="rule sensor_critical may not inhibit itself"):
        GENERIC.with_changes(inhibits=[{"rule": "sensor_critical", "equal": ["device"]}])
    back = GENERIC.with_changes(inhibits=[{"rule": "sophos_xg_psu_failed", "equal": ["device"]}])
    cycle = "inhibition cycle: sensor_critical -> sophos_xg_psu_failed -> sensor_critical"
    with pytest.raises(ValueError, match=cycle):
        make(db, rules=[back, FAMILY])
    # A target disabled (for every client) is a rule all the same: nothing to hold, no error.
    eng = make(db, rules=[GENERIC.with_changes(enabled=False), FAMILY])
    assert states(eng.evaluate([sensor(T0, "crit")], now=T0)) == [
        ("sophos_xg_psu_failed", None, PENDING),
        ("sophos_xg_psu_failed", PENDING, FIRING),
    ]


def test_inhibition_chains_are_applied_in_depth_order(db):
    # disk failed -> holds the degraded array -> which holds the roll-up: one page for one disk.
    disk = Rule(
        name="disk_failed",
        measurement="snmp_disk",
        when="state == 'crit'",
        inhibits=[{"rule": "raid_degraded", "equal": ["client", "device"]}],
    )
    raid = Rule(
        name="raid_degraded",
        measurement="snmp_raid",
        when="state == 'crit'",
        inhibits=[{"rule": "health_critical", "equal": ["client", "device"]}],
    )
    health = Rule(name="health_critical", measurement="snmp_health", when="state == 'crit'")  # fmt: skip
    eng = make(db, rules=[health, raid, disk])
    tags = {"client": "vsgp", "device": "srv-1"}
    batch = [Sample(m, tags, {"state": "crit"}, int(T0 * 1e9)) for m in ("snmp_health", "snmp_raid", "snmp_disk")]
    fired = [t.alert.rule for t in eng.evaluate(batch, now=T0) if t.state == FIRING]
    assert fired == ["disk_failed"]
    held = {a.rule: a.inhibited_by.split("/")[0] for a in eng.alerts(states=[PENDING])}
    assert held == {"raid_degraded": "disk_failed", "health_critical": "raid_degraded"}


class _HeldFields(dict):
    """Fields whose first read inside the engine signals ``entered`` and waits for ``release``:
    an evaluation caught in the middle of its transaction."""

    def __init__(self, fields, entered, release):
        super().__init__(fields)
        self.entered, self.release = entered, release

    def get(self, key, default=None):
        self.entered.set()
        self.release.wait()
        return super().get(key, default)


def test_reads_do_not_wait_for_an_evaluation_in_another_thread(db):
    eng = make(db)
    eng.evaluate([collection(T0, "unreachable", device="sw-core-1")], now=T0)  # committed: one firing alert
    entered, release = threading.Event(), threading.Event()
    fields = _HeldFields({"status": "ok", "duration_s": 0.1}, entered, release)
    held = Sample("collection", collection(T0 + 60, "ok", device="sw-core-1").tags, fields, int((T0 + 60) * 1e9))
    worker = threading.Thread(target=eng.evaluate, args=([held], T0 + 60))
    worker.start()
    try:
        entered.wait()
        # The worker is inside its write transaction: reads see the last committed batch at once.
        assert [a.state for a in eng.firing()] == [FIRING]
        assert eng.is_unreachable("vsgp", "sw-core-1", T0) is True
    finally:
        release.set()
        worker.join()
    assert eng.firing() == [] and [a.state for a in eng.alerts()] == [RESOLVED]


class _BrokenFields(dict):
    def get(self, key, default=None):
        raise RuntimeError("a collector bug")


def test_a_batch_that_fails_half_way_changes_nothing(db):
    eng = make(db)
    eng.evaluate([collection(T0, "unreachable", device="sw-core-1")], now=T0)
    back = collection(T0 + 60, "ok", device="sw-core-1")
    broken = Sample("snmp_interface", iface(T0 + 61, "down").tags, _BrokenFields(), int((T0 + 61) * 1e9))
    with pytest.raises(RuntimeError):
        eng.evaluate([back, broken], now=T0 + 61)
    assert [a.state for a in eng.alerts()] == [FIRING]  # the resolution was rolled back with the batch
    assert states(eng.evaluate([back], now=T0 + 62)) == [("device_unreachable", FIRING, RESOLVED)]


def test_an_inhibition_belongs_to_the_client_whose_copy_declares_it(db):
    # The runner gives the engine one copy of each rule per client (a `client` matcher); client
    # ofdt overrode the family rule with `inhibits: []`, so its generic alert fires beside it.
    rules = [
        GENERIC.with_changes(match={"client": "vsgp"}),
        GENERIC.with_changes(match={"client": "ofdt"}),
        FAMILY.with_changes(match={**FAMILY.match, "client": "vsgp"}),
        FAMILY.with_changes(match={**FAMILY.match, "client": "ofdt"}, inhibits=[]),
    ]
    eng = make(db, rules=rules)
    both = [sensor(T0, "crit"), sensor(T0, "crit", client="ofdt")]
    eng.evaluate(both, now=T0)
    eng.evaluate(at(T0 + 60, both), now=T0 + 60)
    assert sorted((a.client, a.rule) for a in eng.firing()) == [
        ("ofdt", "sensor_critical"),
        ("ofdt", "sophos_xg_psu_failed"),
        ("vsgp", "sophos_xg_psu_failed"),
    ]


def test_inhibition_problems_are_all_named_at_once():
    # What a configuration check reports with its file and line; a disabled rule is a name.
    typo = FAMILY.with_changes(inhibits=[{"rule": "sensor_crit", "equal": ["device"]}])
    loop_a = Rule(name="a", measurement="m", when="x == 1", inhibits=[{"rule": "b", "equal": ["device"]}])
    loop_b = Rule(name="b", measurement="m", when="x == 1", inhibits=[{"rule": "a", "equal": ["device"]}])
    off = Rule(
        name="off", measurement="m", when="x == 1", enabled=False, inhibits=[{"rule": "gone", "equal": ["device"]}]
    )
    assert inhibition_problems([GENERIC, typo, loop_a, loop_b, off]) == [
        "rule sophos_xg_psu_failed inhibits sensor_crit, which is not a rule",
        "inhibition cycle: a -> b -> a",
    ]
    assert inhibition_problems([GENERIC, FAMILY, GENERIC.with_changes(enabled=False)]) == []
