"""Switch families (AOS-CX, ProCurve, JetStream, Dell OS10, Meraki MS) on their recorded walks,
read straight into a Snapshot (no network): what the LibreNMS comparison cannot see (stack
members, PoE budget, failure states), and that redacted or missing columns give unknowns, never a
crash, a string where a number belongs, or a made-up 0."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from collectors.snmp.client import SnmpValue, decode_octets
from collectors.snmp.engine import CounterStore, Row, Snapshot, evaluate, planned_oids
from collectors.snmp.profile import Profile, ProfileSet
from lab.snmpsim import recording

_KINDS = {"2": "integer", "65": "counter32", "66": "gauge", "67": "timeticks", "70": "counter64"}
FAMILY_WALKS = {
    "arubaos-cx_6300m": "arubaos_cx",
    "procurve_e2910": "procurve",
    "jetstream_sg2218p": "jetstream",
    "jetstream_t1600g-28ts": "jetstream",
    "dell-os10": "dell_os10",
    "merakims_c9300": "meraki_ms",
}
# Fields that carry a quantity: a number or None, whatever the agent sent.
NUMERIC = {
    "value",
    "usage_percent",
    "usage_1m_percent",
    "usage_5m_percent",
    "total_bytes",
    "used_bytes",
    "free_bytes",
    "budget_w",
    "used_w",
    "remaining_w",
    "limit_w",
    "max_w",
    "cpu_percent",
    "memory_percent",
}
Edit = Callable[[str, SnmpValue], SnmpValue | None]


@pytest.fixture(scope="module")
def profiles() -> ProfileSet:
    return ProfileSet.load()


def read_walk(walk: str) -> dict[str, SnmpValue]:
    values = {}
    for line in recording(walk).read_text(encoding="utf-8", errors="replace").splitlines():
        oid, kind, text = line.split("|", 2)
        if kind == "4x":
            values[oid] = decode_octets(bytes.fromhex(text))
        elif kind in ("6", "64"):
            values[oid] = SnmpValue(text.lstrip("."), "oid" if kind == "6" else "ipaddress")
        elif kind in _KINDS:
            values[oid] = SnmpValue(int(text), _KINDS[kind])
        else:
            values[oid] = SnmpValue(text, "string")
    return values


def poll(profile: Profile, walk: str, edit: Edit | None = None) -> list[Row]:
    """What one poll of ``walk`` yields; ``edit`` may replace a value or drop it (None)."""
    values = read_walk(walk)
    if edit is not None:
        values = {oid: new for oid, value in values.items() if (new := edit(oid, value)) is not None}
    walks, gets = planned_oids(profile.tables)
    snapshot = Snapshot(scalars={oid: values[oid] for oid in gets if oid in values})
    for column in walks:
        prefix = column + "."
        snapshot.columns[column] = {oid[len(prefix) :]: v for oid, v in values.items() if oid.startswith(prefix)}
    return evaluate(profile, snapshot, CounterStore(), now=0.0)


def rows_of(rows: list[Row], table: str) -> dict[str, Row]:
    return {row.index: row for row in rows if row.table == table}


def setting(changes: Mapping[str, object]) -> Edit:
    def edit(oid: str, value: SnmpValue) -> SnmpValue:
        if oid not in changes:
            return value
        new = changes[oid]
        return SnmpValue(new, "string" if isinstance(new, str) else "integer")

    return edit


@pytest.mark.parametrize("walk", sorted(FAMILY_WALKS))
def test_detected(profiles: ProfileSet, walk: str) -> None:
    values = read_walk(walk)
    detected = profiles.detect(str(values["1.3.6.1.2.1.1.2.0"].value), str(values["1.3.6.1.2.1.1.1.0"].value))
    assert detected.name == FAMILY_WALKS[walk]


def test_meraki_enterprise_alone_is_not_a_switch(profiles: ProfileSet) -> None:
    assert profiles.detect("1.3.6.1.4.1.29671.2.45", "Meraki MR42 Cloud Managed AP").name != "meraki_ms"
    assert profiles.detect("1.3.6.1.4.1.29671.2.120", "Meraki MS225-48FP Cloud Managed Switch").name == "meraki_ms"


def test_aruba_vsf_members(profiles: ProfileSet) -> None:
    rows = poll(profiles.get("arubaos_cx"), "arubaos-cx_6300m")
    members = rows_of(rows, "vsf_member")
    assert {i: (r.fields["role"], r.fields["state"], r.fields["serial"]) for i, r in members.items()} == {
        "1": ("conductor", "ok", "SG19KMX0MQ"),
        "2": ("member", "ok", "SG19KMX0SH"),
    }
    assert all(r.measurement == "snmp_stack" and r.tags["member"] == r.index for r in members.values())
    assert rows_of(rows, "vsf_status")["0"].fields["state"] == "ok"


def test_aruba_lost_member_and_split_are_crit(profiles: ProfileSet) -> None:
    base = "1.3.6.1.4.1.47196.4.1.1.3.15.1"
    rows = poll(
        profiles.get("arubaos_cx"),
        "arubaos-cx_6300m",
        setting({f"{base}.2.1.3.2": "not_present", f"{base}.1.1.0": "fragment_inactive"}),
    )
    lost = rows_of(rows, "vsf_member")["2"]
    assert (lost.fields["state"], lost.fields["status"]) == ("crit", "not_present")
    assert rows_of(rows, "vsf_status")["0"].fields["state"] == "crit"


def test_aruba_psus_are_power_supplies(profiles: ProfileSet) -> None:
    rows = poll(profiles.get("arubaos_cx"), "arubaos-cx_6300m")
    psus = {r.index: r for r in rows if r.tags.get("sensor_class") == "power_supply"}
    assert sorted(psus) == ["107301", "107401", "207301", "207401"]
    assert psus["107301"].fields["value"] == 34
    broken = poll(profiles.get("arubaos_cx"), "arubaos-cx_6300m", setting({"1.3.6.1.2.1.99.1.1.1.5.107401": 3}))
    assert rows_of(broken, "entity_sensor")["107401"].fields["state"] == "crit"


def test_procurve_memory_and_sensor_classes(profiles: ProfileSet) -> None:
    rows = poll(profiles.get("procurve"), "procurve_e2910")
    local = rows_of(rows, "procurve_local_memory")["1"].fields
    assert local["free_bytes"] == local["total_bytes"] - local["used_bytes"] == 73329744
    assert local["usage_percent"] == pytest.approx(27.15, abs=0.01)
    sensors = rows_of(rows, "procurve_chassis_sensor")
    assert sensors["1"].tags["sensor_class"] == "fan"
    assert sensors["2"].tags["sensor_class"] == "power_supply"
    assert sensors["7"].tags["sensor_class"] == "temperature"
    # An RPS that is not fitted is no failure.
    assert (sensors["6"].fields["state"], sensors["6"].fields["status"]) == ("unknown", "notPresent")


def poll_values(profile: Profile, values: Mapping[str, int | str]) -> list[Row]:
    """One poll of an agent that answers only ``values`` (full instance OID -> value)."""
    snapshot = Snapshot()
    for column in planned_oids(profile.tables)[0]:
        snapshot.columns[column] = {}
    for oid, value in values.items():
        column, _, index = oid.rpartition(".")
        snapshot.columns[column][index] = SnmpValue(value, "string" if isinstance(value, str) else "integer")
    return evaluate(profile, snapshot, CounterStore(), now=0.0)


def test_procurve_stack_member_states(profiles: ProfileSet) -> None:
    # The E2910al does not stack: an HP-STACK-MIB member table as a 2930M stack answers it.
    base = "1.3.6.1.4.1.11.2.14.11.5.1.69.1.3.1"
    assert not any(oid.startswith(base) for oid in read_walk("procurve_e2910"))
    stack = {f"{base}.9.1": 3, f"{base}.9.2": 4, f"{base}.9.3": 1, f"{base}.9.4": 0, f"{base}.14.3": "SG0000X"}
    members = rows_of(poll_values(profiles.get("procurve"), stack), "procurve_stack_member")
    assert {i: (r.fields["role"], r.fields["state"], r.fields["status"]) for i, r in members.items()} == {
        "1": ("conductor", "ok", "commander"),
        "2": ("standby", "ok", "standby"),
        "3": (None, "crit", "missing"),
    }
    assert members["3"].fields["serial"] == "SG0000X"


def test_procurve_psu_bays(profiles: ProfileSet) -> None:
    base = "1.3.6.1.4.1.11.2.14.11.5.1.55.1.1.1"
    bays = {f"{base}.2.1": 3, f"{base}.4.1": 38, f"{base}.6.1": 72, f"{base}.2.2": 1, f"{base}.2.3": 4}
    rows = poll_values(profiles.get("procurve"), bays)
    psus = rows_of(rows, "procurve_psu")
    assert {i: (r.fields["value"], r.fields["state"], r.fields["status"]) for i, r in psus.items()} == {
        "1": (72, "ok", "psPowered"),
        "2": (None, "unknown", "psNotPresent"),
        "3": (None, "crit", "psFailed"),
    }
    # The empty bay has no temperature row.
    assert sorted(rows_of(rows, "procurve_psu_temperature")) == ["1", "3"]


def test_jetstream_poe_budget_and_port_fault(profiles: ProfileSet) -> None:
    rows = poll(profiles.get("jetstream"), "jetstream_sg2218p")
    budget = rows_of(rows, "jetstream_poe")["0"]
    assert budget.measurement == "snmp_poe"
    assert budget.fields["budget_w"] == 150
    assert budget.fields["used_w"] == pytest.approx(40.4)
    assert budget.fields["usage_percent"] == pytest.approx(26.93, abs=0.01)
    ports = rows_of(rows, "jetstream_poe_port")
    assert (ports["1"].fields["value"], ports["1"].fields["state"]) == (pytest.approx(2.0), "ok")
    assert ports["1"].fields["port_descr"] == "ac31: Kam (p1)"
    shorted = poll(
        profiles.get("jetstream"), "jetstream_sg2218p", setting({"1.3.6.1.4.1.11863.6.56.1.1.2.1.1.11.5": 4})
    )
    assert rows_of(shorted, "jetstream_poe_port")["5"].fields["state"] == "crit"


def test_jetstream_without_poe_has_no_poe_rows(profiles: ProfileSet) -> None:
    rows = poll(profiles.get("jetstream"), "jetstream_t1600g-28ts")
    assert not [r for r in rows if r.measurement == "snmp_poe" or r.table == "jetstream_poe_port"]
    memory = rows_of(rows, "jetstream_memory")["1"].fields
    # The agent gives a percentage only: bytes are unknown, not 0 and not 100.
    assert (memory["usage_percent"], memory["total_bytes"], memory["used_bytes"]) == (75, None, None)


def test_dell_os10_failed_psu_and_fan(profiles: ProfileSet) -> None:
    base = "1.3.6.1.4.1.674.11000.5000.100.4.1.2"
    rows = poll(profiles.get("dell_os10"), "dell-os10", setting({f"{base}.1.1.4.2": 8, f"{base}.3.1.7.3": 2}))
    psu, fan = rows_of(rows, "os10_psu")["2"], rows_of(rows, "os10_fan")["3"]
    assert (psu.tags["sensor_class"], psu.fields["state"], psu.fields["status"]) == ("power_supply", "crit", "failed")
    assert (fan.tags["sensor_class"], fan.fields["state"], fan.fields["status"]) == ("fan", "crit", "down")
    assert rows_of(rows, "os10_card_temperature")["1.1"].fields["value"] == 37


def _family_rows(rows: list[Row], profile: Profile) -> list[Row]:
    own = {t.id for t in profile.tables} - {"system", "interface", "hr_cpu", "hr_memory", "hr_storage"}
    return [r for r in rows if r.table in own]


@pytest.mark.parametrize("walk", sorted(FAMILY_WALKS))
def test_redacted_values_give_unknowns(profiles: ProfileSet, walk: str) -> None:
    profile = profiles.get(FAMILY_WALKS[walk])

    def redact(oid: str, value: SnmpValue) -> SnmpValue:
        return value if oid.startswith("1.3.6.1.2.1.1.") else SnmpValue("<private>", "string")

    for row in _family_rows(poll(profile, walk, redact), profile):
        for name in NUMERIC & row.fields.keys():
            assert row.fields[name] is None, f"{row.table} {row.index} {name}: {row.fields[name]!r}"
        if "state" in row.fields:
            assert row.fields["state"] == "unknown", f"{row.table} {row.index}"


def dropping(prefix: str) -> Edit:
    def edit(oid: str, value: SnmpValue) -> SnmpValue | None:
        return None if oid.startswith(prefix) else value

    return edit


@pytest.mark.parametrize("walk", sorted(FAMILY_WALKS))
def test_missing_columns_give_unknowns(profiles: ProfileSet, walk: str) -> None:
    profile = profiles.get(FAMILY_WALKS[walk])
    full = _family_rows(poll(profile, walk), profile)
    for table in {r.table for r in full}:
        for column in next(t for t in profile.tables if t.id == table).own_columns:
            rows = poll(profile, walk, dropping(column.oid + "."))
            for row in _family_rows(rows, profile):
                for name in NUMERIC & row.fields.keys():
                    value = row.fields[name]
                    assert value is None or isinstance(value, (int, float)), f"{table}.{column.name}: {name}"
