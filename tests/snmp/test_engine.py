"""Pure engine tests: counters, resets, reboots, partial data. No network, time is an argument."""

from __future__ import annotations

import pytest

from collectors.snmp.client import SnmpValue, decode_octets
from collectors.snmp.engine import CounterStore, Snapshot, evaluate
from collectors.snmp.profile import ProfileSet

KEY = ("interface", "1", "in_octets64")
IF = "1.3.6.1.2.1.2.2.1"
IFX = "1.3.6.1.2.1.31.1.1.1"


@pytest.fixture(scope="module")
def profiles() -> ProfileSet:
    return ProfileSet.load()


def c32(value: int) -> SnmpValue:
    return SnmpValue(value, "counter32")


def c64(value: int) -> SnmpValue:
    return SnmpValue(value, "counter64")


def test_first_reading_has_no_rate() -> None:
    assert CounterStore().rate(KEY, c64(10), now=0.0, limit=None) is None


def test_counter32_wrap_is_added_back() -> None:
    store = CounterStore()
    store.rate(KEY, c32(2**32 - 100), now=0.0, limit=None)
    assert store.rate(KEY, c32(900), now=10.0, limit=None) == pytest.approx(100.0)


def test_counter64_wrap_near_the_top() -> None:
    store = CounterStore()
    store.rate(KEY, c64(2**64 - 1000), now=0.0, limit=None)
    # Going from near 2**64 to a small value is a reset for a 64-bit counter, never a wrap.
    assert store.rate(KEY, c64(500), now=10.0, limit=None) is None
    assert store.rate(KEY, c64(1500), now=20.0, limit=None) == pytest.approx(100.0)


def test_counter64_large_increase() -> None:
    store = CounterStore()
    store.rate(KEY, c64(2**40), now=0.0, limit=None)
    assert store.rate(KEY, c64(2**40 + 10**12), now=100.0, limit=None) == pytest.approx(10**10)


def test_counter32_reset_impossible_for_link_speed_is_none() -> None:
    store = CounterStore()
    store.rate(KEY, c32(3_000_000_000), now=0.0, limit=None)
    # Back to a small value: as a wrap this would be ~1.3 GB in 10 s on a 100 Mbit/s link.
    assert store.rate(KEY, c32(5_000), now=10.0, limit=100e6 / 8 * 2) is None
    # The interval after the reset is measured normally again.
    assert store.rate(KEY, c32(15_000), now=20.0, limit=100e6 / 8 * 2) == pytest.approx(1000.0)


def test_counter_kind_change_is_none() -> None:
    store = CounterStore()
    store.rate(KEY, c32(10), now=0.0, limit=None)
    assert store.rate(KEY, c64(20), now=10.0, limit=None) is None


def test_went_backwards_and_timeticks_wrap() -> None:
    store = CounterStore()
    key = ("system", "0", "uptime")
    assert store.went_backwards(key, SnmpValue(5000, "timeticks")) is None
    assert store.went_backwards(key, SnmpValue(6000, "timeticks")) is False
    assert store.went_backwards(key, SnmpValue(100, "timeticks")) is True
    store.went_backwards(key, SnmpValue(2**32 - 500, "timeticks"))
    assert store.went_backwards(key, SnmpValue(300, "timeticks")) is False  # 497-day wrap


def _snapshot(uptime: int, octets: int) -> Snapshot:
    return Snapshot(
        columns={
            f"{IF}.2": {"1": SnmpValue("Gi1/0/1", "string")},
            f"{IF}.5": {"1": SnmpValue(1_000_000_000, "gauge")},
            f"{IF}.8": {"1": SnmpValue(1, "integer")},
            f"{IFX}.6": {"1": c64(octets)},
        },
        scalars={
            "1.3.6.1.2.1.1.1.0": SnmpValue("test agent", "string"),
            "1.3.6.1.2.1.1.2.0": SnmpValue("1.3.6.1.4.1.99999", "oid"),
            "1.3.6.1.2.1.1.3.0": SnmpValue(uptime, "timeticks"),
        },
    )


def _fields(rows, measurement):
    return next(r.fields for r in rows if r.measurement == measurement)


def test_reboot_resets_rates_instead_of_a_spike(profiles: ProfileSet) -> None:
    profile = profiles.get("generic")
    store = CounterStore()
    evaluate(profile, _snapshot(uptime=100_000, octets=10_000_000), store, now=0.0)
    rows = evaluate(profile, _snapshot(uptime=106_000, octets=22_500_000), store, now=60.0)
    assert _fields(rows, "snmp_system")["rebooted"] is False
    assert _fields(rows, "snmp_interface")["in_bps"] == pytest.approx(12_500_000 * 8 / 60)

    # Uptime went back: the agent restarted. Its counters restarted too (here, by chance, at a
    # value that would look like traffic): no rate for this interval.
    rows = evaluate(profile, _snapshot(uptime=500, octets=30_000_000), store, now=120.0)
    assert _fields(rows, "snmp_system")["rebooted"] is True
    assert _fields(rows, "snmp_system")["uptime_s"] == 5
    assert _fields(rows, "snmp_interface")["in_bps"] is None

    rows = evaluate(profile, _snapshot(uptime=6_500, octets=31_000_000), store, now=180.0)
    assert _fields(rows, "snmp_system")["rebooted"] is False
    assert _fields(rows, "snmp_interface")["in_bps"] == pytest.approx(1_000_000 * 8 / 60)


def test_missing_columns_are_none_not_zero(profiles: ProfileSet) -> None:
    snapshot = Snapshot(columns={f"{IF}.2": {"7": SnmpValue("eth7", "string")}})
    rows = evaluate(profiles.get("if_mib"), snapshot, CounterStore(), now=0.0)
    (row,) = rows
    assert row.tags == {"if_index": "7", "if_name": "eth7", "profile": "if_mib"}
    assert row.fields["speed_bps"] is None
    assert row.fields["oper_status"] is None
    assert row.fields["in_octets"] is None
    assert row.fields["in_bps"] is None


def test_fallback_table_only_when_preferred_one_is_empty(profiles: ProfileSet) -> None:
    cemp = "1.3.6.1.4.1.9.9.221.1.1.1.1"
    cmp_ = "1.3.6.1.4.1.9.9.48.1.1.1"
    both = Snapshot(
        columns={
            f"{cemp}.3": {"1.1": SnmpValue("Processor", "string")},
            f"{cemp}.18": {"1.1": c64(30)},
            f"{cemp}.20": {"1.1": c64(70)},
            f"{cmp_}.2": {"1": SnmpValue("Processor", "string")},
            f"{cmp_}.5": {"1": SnmpValue(1, "gauge")},
            f"{cmp_}.6": {"1": SnmpValue(3, "gauge")},
        }
    )
    rows = [r for r in evaluate(profiles.get("cisco_ios"), both, CounterStore(), 0.0) if r.measurement == "snmp_memory"]
    assert [(r.table, r.fields["usage_percent"]) for r in rows] == [("cemp", 30.0)]
    del both.columns[f"{cemp}.3"], both.columns[f"{cemp}.18"], both.columns[f"{cemp}.20"]
    rows = [r for r in evaluate(profiles.get("cisco_ios"), both, CounterStore(), 0.0) if r.measurement == "snmp_memory"]
    assert [(r.table, r.fields["usage_percent"]) for r in rows] == [("cmp", 25.0)]


def test_octet_strings_decode_to_text_or_hex() -> None:
    assert decode_octets(b"Gi1/0/1") == SnmpValue("Gi1/0/1", "string")
    assert decode_octets(b"eth0\x00\x00") == SnmpValue("eth0", "string")
    assert decode_octets(b"\x00\xff\x10") == SnmpValue("00ff10", "hex")
    assert decode_octets(b"<private>") == SnmpValue("<private>", "string")


def _ports(ports: dict[str, tuple[int, int]]) -> Snapshot:
    """ifTable/ifXTable rows: index -> (ifOperStatus, ifHCInOctets)."""
    return Snapshot(
        columns={
            f"{IF}.2": {index: SnmpValue(f"port{index}", "string") for index in ports},
            f"{IF}.5": {index: SnmpValue(1_000_000_000, "gauge") for index in ports},
            f"{IF}.8": {index: SnmpValue(oper, "integer") for index, (oper, _) in ports.items()},
            f"{IFX}.6": {index: c64(octets) for index, (_, octets) in ports.items()},
        }
    )


def test_readings_of_a_row_gone_for_ten_polls_are_forgotten(profiles: ProfileSet) -> None:
    profile, store = profiles.get("if_mib"), CounterStore()

    def poll(number: int, ports: dict[str, tuple[int, int]]) -> dict[str, dict]:
        return {row.index: row.fields for row in evaluate(profile, _ports(ports), store, now=60.0 * number)}

    poll(0, {"1": (1, 0), "2": (1, 0)})
    for number in range(1, 10):
        assert poll(number, {"1": (1, number * 1000)})["1"]["in_bps"] == pytest.approx(1000 * 8 / 60)
    # Port 2 missed 9 polls (a stack member rebooting): it comes back with its history.
    back = poll(10, {"1": (1, 10_000), "2": (2, 60_000)})["2"]
    assert (back["was_up"], back["in_bps"]) == (True, pytest.approx(60_000 * 8 / 600))
    for number in range(11, 21):
        assert poll(number, {"1": (1, number * 1000)})["1"]["was_up"] is True
    # Gone for 10 polls: forgotten, it comes back as a new port (an agent restart would do the same).
    back = poll(21, {"1": (1, 21_000), "2": (2, 70_000)})["2"]
    assert (back["was_up"], back["in_bps"]) == (None, None)


def test_only_rows_with_readings_are_held(profiles: ProfileSet) -> None:
    # Memory for thousands of switches: a row no rate, reboot check or seen_before read (most of
    # an entPhysicalTable) costs nothing; one that has readings is held until it is forgotten.
    profile, store = profiles.get("if_mib"), CounterStore(forget_after_polls=2)
    stateless = _ports({str(index): (1, 0) for index in range(1, 49)})
    del stateless.columns[f"{IFX}.6"]  # no counters
    stateless.columns[f"{IF}.8"] = {index: SnmpValue(2, "integer") for index in stateless.columns[f"{IF}.2"]}
    assert len(evaluate(profile, stateless, store, now=0.0)) == 48
    assert len(store) == 0
    evaluate(profile, _ports({"1": (1, 0), "2": (1, 0)}), store, now=60.0)
    assert len(store) == 2
    for number in range(2, 4):
        evaluate(profile, _ports({"1": (1, number * 1000)}), store, now=60.0 * number)
    assert len(store) == 1


def test_a_present_row_keeps_readings_its_expressions_did_not_touch() -> None:
    store = CounterStore(forget_after_polls=3)
    up = ("interface", "1", "oper == 1")
    store.saw_row("interface", "1")
    store.seen_before(up, True, now=0.0)
    store.end_poll()
    for _ in range(4):
        # Present, but `admin == 1 and seen_before(oper == 1)` short-circuited: not asked.
        store.saw_row("interface", "1")
        store.end_poll()
    assert store.seen_before(up, None, now=5.0) is True
