"""agent.api.events: what the trap and syslog receivers share, on a driven clock."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.api import DeviceInfo, Sample
from agent.api.events import AMBIGUOUS_SOURCE, UNKNOWN_SOURCE, Attribution, Clearing, OpenEvents, TokenBucket


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def device(name: str, address: str, client: str = "acme") -> DeviceInfo:
    return DeviceInfo(client, "hq", name, address, {}, (), None)


def test_a_bucket_lets_a_burst_through_then_its_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate_per_s=2, burst=5, clock=clock)
    assert [bucket.allow("10.0.0.1") for _ in range(7)] == [True] * 5 + [False] * 2
    assert bucket.allow("10.0.0.2")  # another sender has its own bucket
    clock.now += 1.0
    assert [bucket.allow("10.0.0.1") for _ in range(3)] == [True, True, False]


def test_a_bucket_table_forgets_idle_senders_rather_than_growing() -> None:
    clock = Clock()
    bucket = TokenBucket(rate_per_s=1, burst=2, clock=clock, max_keys=3)
    for n in range(3):
        bucket.allow(f"10.0.0.{n}")
    clock.now += 10  # all refilled: idle
    assert bucket.allow("10.0.0.9") and len(bucket._buckets) == 1


def test_attribution_by_address_sources_and_hostname() -> None:
    devices = [device("sw1", "10.0.0.1"), device("twin-a", "10.0.0.5"), device("twin-b", "10.0.0.5"),
               device("fw", "10.0.0.6")]
    attribution = Attribution(devices, {"10.9.9.9": "acme/fw"})
    assert attribution.device(["10.0.0.1"]).name == "sw1"  # type: ignore[union-attr]
    assert attribution.device(["::ffff:10.0.0.1"]).name == "sw1"  # type: ignore[union-attr]
    assert attribution.device(["10.9.9.9"]).name == "fw"  # type: ignore[union-attr]
    assert attribution.device(["192.0.2.1"]) == UNKNOWN_SOURCE
    assert attribution.device(["10.0.0.5"]) == AMBIGUOUS_SOURCE
    assert attribution.device(["10.0.0.5"], hostname="TWIN-B.example.org").name == "twin-b"  # type: ignore[union-attr]
    # the sender is unknown, the address the message carries (v1 agent-addr) is not
    assert attribution.device(["192.0.2.1", "10.0.0.1"]).name == "sw1"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="acme/nope"):
        Attribution(devices, {"10.9.9.8": "acme/nope"})


@dataclass
class Row:
    tags: dict[str, str]
    field: str
    value: object
    timestamp_ns: int


class PolledState:
    def __init__(self) -> None:
        self.rows: list[Row] = []

    def poll(self, measurement: str, tags: dict[str, str], fields: dict[str, object], at: float) -> None:
        self.rows = [r for r in self.rows if not (r.tags == {"measurement": measurement, **tags} and r.field in fields)]
        self.rows += [Row({"measurement": measurement, **tags}, k, v, int(at * 1e9)) for k, v in fields.items()]

    def latest(self, measurement: str, wanted: dict[str, str]) -> list[Row]:
        return [r for r in self.rows if r.tags["measurement"] == measurement
                and all(r.tags.get(k) == v for k, v in wanted.items())]


LINK = Clearing(measurement="snmp_interface", same={"if_index": "if_index"}, when="oper_status == 'up'")
BASE = {"client": "acme", "site": "hq", "device": "sw1"}


def test_an_event_ends_only_on_a_poll_read_after_it_that_says_so(tmp_path: Path) -> None:
    clock, state = Clock(), PolledState()
    events = OpenEvents(tmp_path / "events.db", clock)
    trap = Sample("snmp_trap", {**BASE, "trap": "link_down", "if_index": "3"}, {"active": True}, int(clock.now * 1e9))
    events.remember([(trap, LINK)])
    # a poll from before the trap, and one read within settle_s of it, say nothing
    state.poll("snmp_interface", {**BASE, "if_index": "3"}, {"oper_status": "up"}, clock.now - 30)
    assert events.over(state.latest) == []
    state.poll("snmp_interface", {**BASE, "if_index": "3"}, {"oper_status": "up"}, clock.now + 5)
    assert events.over(state.latest) == []
    # another interface up says nothing about this one; this one still down neither
    state.poll("snmp_interface", {**BASE, "if_index": "4"}, {"oper_status": "up"}, clock.now + 20)
    state.poll("snmp_interface", {**BASE, "if_index": "3"}, {"oper_status": "down"}, clock.now + 20)
    assert events.over(state.latest) == []
    state.poll("snmp_interface", {**BASE, "if_index": "3"}, {"oper_status": "up"}, clock.now + 80)
    clock.now += 81
    (ended,) = events.over(state.latest)
    assert ended.tags == trap.tags and ended.fields == {"active": False, "cleared_by": "snmp_interface"}
    assert events.count() == 0 and events.over(state.latest) == []


def test_a_recurrence_moves_the_confirmation_after_it_and_a_restart_keeps_events(tmp_path: Path) -> None:
    clock, state = Clock(), PolledState()
    events = OpenEvents(tmp_path / "events.db", clock)
    trap = Sample("snmp_trap", {**BASE, "trap": "link_down", "if_index": "3"}, {"active": True}, int(clock.now * 1e9))
    events.remember([(trap, LINK)])
    state.poll("snmp_interface", {**BASE, "if_index": "3"}, {"oper_status": "up"}, clock.now + 30)
    again = Sample(trap.measurement, trap.tags, trap.fields, int((clock.now + 40) * 1e9))
    events.remember([(again, LINK)])
    events.close()
    events = OpenEvents(tmp_path / "events.db", clock)
    assert events.count() == 1 and events.over(state.latest) == []
    state.poll("snmp_interface", {**BASE, "if_index": "3"}, {"oper_status": "up"}, clock.now + 60)
    assert len(events.over(state.latest)) == 1


def test_every_polled_series_must_agree_and_quiet_ends_what_no_poll_sees(tmp_path: Path) -> None:
    clock, state = Clock(), PolledState()
    events = OpenEvents(tmp_path / "events.db", clock)
    fans = Clearing(measurement="snmp_sensor", match={"sensor_class": "fan"}, when="state == 'ok'")
    fan_failed = Sample("snmp_trap", {**BASE, "trap": "fan_failed"}, {"active": True}, int(clock.now * 1e9))
    events.remember([(fan_failed, fans)])
    disk = Clearing(quiet_s=3600)
    events.remember([(Sample("syslog_event", {**BASE, "event": "disk_error"}, {"active": True}, int(clock.now * 1e9)),
                      disk)])
    for n, fan_state in ((1, "ok"), (2, "crit")):
        state.poll("snmp_sensor", {**BASE, "sensor": f"fan {n}", "sensor_class": "fan"}, {"state": fan_state},
                   clock.now + 20)
    state.poll("snmp_sensor", {**BASE, "sensor": "psu 1", "sensor_class": "power_supply"}, {"state": "crit"},
               clock.now + 20)
    clock.now += 30
    assert events.over(state.latest) == []
    state.poll("snmp_sensor", {**BASE, "sensor": "fan 2", "sensor_class": "fan"}, {"state": "ok"}, clock.now)
    (fan,) = events.over(state.latest)
    assert fan.tags["trap"] == "fan_failed"
    clock.now += 3600
    (quiet,) = events.over(state.latest)
    assert quiet.tags["event"] == "disk_error" and quiet.fields["cleared_by"] == "quiet"


def test_open_events_are_bounded_oldest_first(tmp_path: Path) -> None:
    clock = Clock()
    events = OpenEvents(tmp_path / "events.db", clock, max_events=2)
    for n in range(3):
        tags = {**BASE, "trap": "link_down", "if_index": str(n)}
        events.remember([(Sample("snmp_trap", tags, {"active": True}, int((clock.now + n) * 1e9)), LINK)])
    state = PolledState()
    for n in range(3):
        state.poll("snmp_interface", {**BASE, "if_index": str(n)}, {"oper_status": "up"}, clock.now + 100)
    clock.now += 200
    assert sorted(s.tags["if_index"] for s in events.over(state.latest)) == ["1", "2"]


def test_a_clearing_says_how_it_can_be_confirmed() -> None:
    with pytest.raises(ValueError, match="measurement and when"):
        Clearing(measurement="snmp_interface")
    with pytest.raises(ValueError, match="quiet_s"):
        Clearing()
