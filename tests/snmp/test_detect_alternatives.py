"""Detection alternatives and value probes (LibreNMS's list of ``discovery:`` entries and
``snmpget`` value matches), and the RFC 1628 unit quirk of older MGE cards. Hand-written agents
(tests/snmp/data/README.md) through the whole collector, plus the profile rules on snapshots."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from collectors.snmp import SnmpCollector
from collectors.snmp.client import SnmpValue
from collectors.snmp.engine import CounterStore, Snapshot, evaluate
from collectors.snmp.profile import ProfileError, ProfileSet

LINUX = "1.3.6.1.4.1.8072.3.2.10"
INIT_LOAD = "1.3.6.1.2.1.25.1.4.0"
RFC_IN_V = "1.3.6.1.2.1.33.1.3.3.1.3"
RFC_OUT_V = "1.3.6.1.2.1.33.1.4.4.1.2"


@pytest.fixture(scope="module")
def profiles() -> ProfileSet:
    return ProfileSet.load()


def text(value: str) -> SnmpValue:
    return SnmpValue(value, "string")


def gauge(value: int) -> SnmpValue:
    return SnmpValue(value, "gauge32")


# --- detection ------------------------------------------------------------------------------


def test_idrac_by_sys_descr_alone(profiles) -> None:
    descr = "Dell Out-of-band SNMP Agent for Remote Access Controller"
    assert profiles.detect(None, descr).name == "idrac"
    assert profiles.detect("1.3.6.1.4.1.674.10892.5", "anything").name == "idrac"
    assert profiles.detect(None, "Dell something else").name == "generic"
    assert profiles.probes(None, descr) == []


def test_synology_by_init_load_parameters_value(profiles) -> None:
    descr = "Linux nas 4.4.59+ #25426 SMP x86_64"
    assert INIT_LOAD in profiles.probes(LINUX, descr)
    for value in ("syno_hw_version", "syno_dyn_module"):
        assert profiles.detect(LINUX, descr, present={INIT_LOAD: text(value)}).name == "synology_dsm"
    # Answering is not enough: the value must be one of the listed ones.
    assert profiles.detect(LINUX, descr, present={INIT_LOAD: text("BOOT_IMAGE=/vmlinuz")}).name == "linux"
    # A plain set of answering OIDs carries no values.
    assert profiles.detect(LINUX, descr, present={INIT_LOAD}).name == "linux"
    # Not a Linux sysDescr: nothing probed.
    assert profiles.probes(LINUX, "FreeBSD box") == []


def test_detect_schema_alternatives_are_validated(tmp_path: Path) -> None:
    def load(detect: dict) -> None:
        (tmp_path / "x.yaml").write_text(yaml.safe_dump({"name": "x", "detect": detect, "tables": []}))
        ProfileSet.load(tmp_path)

    load({"any_of": [{"sys_object_id": ["1.3.6.1.4.1.99"]}, {"sys_descr": ["^X"]}]})
    with pytest.raises(ProfileError, match="any_of"):
        load({"any_of": [{"sys_object_id": ["1.3.6.1.4.1.99"]}, {"oid_exists": ["1.3.6.1.4.1.99.1.0"]}]})
    with pytest.raises(ProfileError, match="dotted OID"):
        load({"sys_descr": ["^X"], "oid_values": {"not.an.oid": ["a"]}})
    with pytest.raises(ProfileError, match="priority"):
        load({"any_of": [{"sys_descr": ["^X"], "priority": 3}]})


def test_alternative_prefix_length_and_shared_conditions(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "x",
                "detect": {
                    "sys_descr": ["^Box"],
                    "any_of": [{"sys_object_id": ["1.3.6.1.4.1.99.1"]}, {"oid_values": {"1.3.6.1.4.1.99.0": ["y"]}}],
                    "priority": 5,
                },
                "tables": [],
            }
        )
    )
    (x,) = ProfileSet.load(tmp_path).profiles.values()
    assert x.matches("1.3.6.1.4.1.99.1.7", "Box 1") == (5, len("1.3.6.1.4.1.99.1"))
    assert x.matches("1.3.6.1.4.1.99.1.7", "Other") is None  # the shared sysDescr must hold
    assert x.matches("1.3.6.1.4.1.5", "Box 1") is None
    assert x.matches("1.3.6.1.4.1.5", "Box 1", {"1.3.6.1.4.1.99.0": text("y")}) == (5, 0)
    assert x.probes("1.3.6.1.4.1.5", "Box 1") == ["1.3.6.1.4.1.99.0"]


async def test_collector_detects_from_probed_values_and_sys_descr(lab, target) -> None:
    for device, profile in (("oob_drac", "idrac"), ("syno_bare", "synology_dsm")):
        rows = await SnmpCollector({}).poll(target(device))
        (system,) = [r for r in rows if r.measurement == "snmp_system"]
        assert system.tags["profile"] == profile, device


# --- MGE cards answering RFC 1628 line tables one level deep, in tenths of a volt -------------


def mge_snapshot(deep: bool) -> Snapshot:
    suffix = ".0" if deep else ""
    volts = (2281, 2314) if deep else (228, 231)
    return Snapshot(
        columns={
            RFC_IN_V: {f"1{suffix}": gauge(volts[0])},
            RFC_OUT_V: {f"1{suffix}": gauge(volts[1])},
        },
        scalars={
            f"{RFC_IN_V}.1{suffix}": gauge(volts[0]),
            f"{RFC_OUT_V}.1{suffix}": gauge(volts[1]),
            "1.3.6.1.4.1.705.1.5.2.0": SnmpValue(97, "integer"),  # upsmgBatteryLevel
        },
    )


@pytest.mark.parametrize("deep", [True, False])
def test_eaton_rfc_voltages_tenths_only_on_deep_rows(profiles, deep) -> None:
    rows = evaluate(profiles.get("eaton_ups"), mge_snapshot(deep), CounterStore(), now=0.0)
    sensors = {r.tags["sensor"]: r.fields["value"] for r in rows if r.measurement == "snmp_sensor"}
    want_in, want_out = (228.1, 231.4) if deep else (228, 231)
    # Named by the line, without the stray `.0`.
    assert sensors["Input line 1 voltage"] == pytest.approx(want_in)
    assert sensors["Output line 1 voltage"] == pytest.approx(want_out)
    (ups,) = [r for r in rows if r.measurement == "snmp_ups"]
    assert ups.fields["input_voltage_v"] == pytest.approx(want_in)
    assert ups.fields["output_voltage_v"] == pytest.approx(want_out)
    # No upsEstimatedChargeRemaining: upsmgBatteryLevel stands in.
    assert ups.fields["battery_charge_percent"] == 97


def test_plain_rfc1628_keeps_whole_volts_on_deep_rows(profiles) -> None:
    # The divisor is an Eaton/MGE decision, not a UPS-MIB one: other vendors are left alone.
    rows = evaluate(profiles.get("ups_rfc1628"), mge_snapshot(True), CounterStore(), now=0.0)
    sensors = {r.tags["sensor"]: r.fields["value"] for r in rows if r.measurement == "snmp_sensor"}
    assert sensors["Input line 1 voltage"] == 2281


async def test_mge_card_through_the_collector(lab, target) -> None:
    rows = await SnmpCollector({}).poll(target("mge_deep"))
    assert {r.tags["profile"] for r in rows} == {"eaton_ups"}
    sensors = {r.tags["sensor"]: (r.fields["value"], r.fields["unit"]) for r in rows if r.measurement == "snmp_sensor"}
    assert sensors["Input line 1 voltage"] == (pytest.approx(228.1), "V")
    assert sensors["Output line 1 voltage"] == (pytest.approx(231.4), "V")
    assert sensors["MGE battery voltage"] == (pytest.approx(432.0), "V")
    assert sensors["MGE battery charge"] == (97, "%")
    assert sensors["MGE input phase 1 voltage"] == (pytest.approx(395.0), "V")
    assert sensors["MGE input phase 2 voltage"] == (pytest.approx(396.2), "V")
    assert sensors["MGE input phase 2 frequency"] == (pytest.approx(50.1), "Hz")
    assert sensors["MGE output phase 1 voltage"] == (pytest.approx(401.0), "V")
    assert sensors["MGE output phase 1 frequency"] == (pytest.approx(50.0), "Hz")
    assert sensors["MGE output phase 1 current"] == (pytest.approx(12.3), "A")
    (ups,) = [r for r in rows if r.measurement == "snmp_ups"]
    assert ups.fields["battery_charge_percent"] == 97
    assert ups.fields["input_voltage_v"] == pytest.approx(228.1)
    assert ups.fields["output_voltage_v"] == pytest.approx(231.4)
