"""One fault, one ticket: each family's own rule holds back the generic rule (and the roll-ups)
on the same object. The recorded walks (lab/snmprec) are served by snmpsim on loopback, a fault
is set by SNMP SET where the recording has the object, the SNMP collector polls them, and the
alert engine runs the shipped rules (the SNMP plugin's and the kernel's) on what it returns, with
driven time: two polls a minute apart (the generic sensor_critical waits 60 s), then the fault is
cleared."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from pysnmp.proto import rfc1902

from agent.api import Sample, Sink, Target
from agent.api.alerts import PENDING, RESOLVED, Alert
from agent.config import BUILTIN_RULES
from alerting.engine import AlertEngine
from collectors.snmp import SnmpCollector, default_rules
from lab.snmpsim import SnmpLab
from lab.walks import read_records, recording

T0 = 1_800_000_000.0
RULES = [*BUILTIN_RULES, *default_rules()]
IDRAC = "1.3.6.1.4.1.674.10892"
# Objects the iDRAC recording lacks (PSU status, storage roll-up), added in a copy of the walk so
# that they can be set: what an R640 with a current firmware answers, all healthy.
IDRAC_ADDED = {
    f"{IDRAC}.5.2.3.0": ("2", "3"),  # globalStorageStatus ok
    f"{IDRAC}.5.4.600.12.1.5.1.1": ("2", "3"),  # powerSupplyStatus ok
    f"{IDRAC}.5.4.600.12.1.5.1.2": ("2", "3"),
}
# Ten ports with an uplink alias were down when the 2960X was recorded.
UPLINKS_DOWN_2960X = {
    ("interface_down", f"Gi{port}")
    for port in ("1/0/49", "1/0/50", "1/0/51", "2/0/25", "2/0/26", "2/0/27", "2/0/28", "3/0/49", "3/0/50", "3/0/51")
}
WALKS = [
    "sophos-xg_xgs2100", "arubaos-cx_6300m", "dell-os10", "procurve_e2910", "jetstream_sg2218p", "qnap",
    "dsm_ds214se-dsm7", "eaton-mgeups_9pxle", "netmanplus_mct20", "apc_smt750x-nmc2", "linux_lsi",
    "ios_2960x", "iosxe_c9200l", "iosxe_c9400-svl", "iosxe_c9300",
]  # fmt: skip


def _with_records(source: Path, added: Mapping[str, tuple[str, str]], target: Path) -> Path:
    records = {oid: (tag, value) for oid, tag, value in read_records(source)}
    records.update(added)
    ordered = sorted(records, key=lambda oid: tuple(int(arc) for arc in oid.split(".")))
    lines = [f"{oid}|{records[oid][0]}|{records[oid][1]}\n" for oid in ordered]
    target.write_text("".join(lines), encoding="utf-8", errors="surrogateescape")
    return target


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpLab]:
    devices: dict[str, str | Path] = {walk: walk for walk in WALKS}
    devices["drac_r640"] = _with_records(
        recording("drac_r640"), IDRAC_ADDED, tmp_path_factory.mktemp("walks") / "drac_r640.snmprec"
    )
    with SnmpLab(devices) as running:
        yield running


class Watched:
    """One device polled by the SNMP collector, its samples evaluated by the shipped rules."""

    def __init__(self, lab: SnmpLab, device: str, state: Path) -> None:
        self.lab, self.device = lab, device
        self.collector = SnmpCollector({})
        self.engine = AlertEngine(str(state / f"{device}.sqlite"), RULES, clock=lambda: pytest.fail("time is passed"))

    async def poll(self, t: float) -> None:
        tags = {"client": "acme", "site": "hq", "device": self.device}
        sink = Sink(tags, lambda: int(t * 1e9))
        await self.collector.collect(
            Target(self.device, self.lab.host, self.lab.port, {"community": self.device}), sink
        )
        answered = Sample("collection", {**tags, "collector": "snmp"}, {"status": "ok"}, int(t * 1e9))
        self.engine.evaluate([*sink.samples, answered], t)

    def set(self, values: Mapping[str, int]) -> None:
        self.lab.set_values(self.device, {oid: rfc1902.Integer32(v) for oid, v in values.items()})

    def firing(self) -> set[tuple[str, str]]:
        return {(a.rule, _object(a)) for a in self.engine.firing()}

    def held(self) -> set[tuple[str, str, str]]:
        """(rule, object, inhibiting rule) of the alerts held back by another rule's."""
        return {
            (a.rule, _object(a), a.inhibited_by.split("/")[0])
            for a in self.engine.alerts(states=[PENDING])
            if a.inhibited_by is not None
        }

    def resolved(self) -> set[tuple[str, str]]:
        return {(a.rule, _object(a)) for a in self.engine.alerts(states=[RESOLVED])}


def _object(alert: Alert) -> str:
    return next((alert.labels[k] for k in ("sensor", "disk", "array", "component", "if_name") if k in alert.labels), "")


@pytest.fixture
def watch(lab: SnmpLab, tmp_path: Path):
    return lambda device: Watched(lab, device, tmp_path)


async def _fault(device: Watched, fault: Mapping[str, int]) -> None:
    """Poll with ``fault`` set, at T0 and T0 + 60: the generic rule's 60 s have passed."""
    device.set(fault)
    await device.poll(T0)
    await device.poll(T0 + 60)


async def _cleared(device: Watched, clear: Mapping[str, int], still: set[tuple[str, str]] = frozenset()) -> None:
    """Poll once the fault is cleared: nothing fires (but what ``still`` names, firing as
    recorded), nothing is left pending."""
    device.set(clear)
    await device.poll(T0 + 120)
    assert device.firing() == still
    assert device.engine.alerts(states=[PENDING]) == []


# -- what the recordings say as recorded ------------------------------------------------------------


@pytest.mark.parametrize(
    ("walk", "firing"),
    [
        # The XGS 2100 was recorded with its second PSU unplugged: one ticket, not two.
        ("sophos-xg_xgs2100", {("sophos_xg_psu_failed", "Power supply 2")}),
        # ten ports with an uplink alias were down when it was recorded
        (
            "ios_2960x",
            {
                ("interface_down", f"Gi{port}")
                for port in (
                    "1/0/49",
                    "1/0/50",
                    "1/0/51",
                    "2/0/25",
                    "2/0/26",
                    "2/0/27",
                    "2/0/28",
                    "3/0/49",
                    "3/0/50",
                    "3/0/51",
                )
            },
        ),  # fmt: skip
        ("iosxe_c9200l", set()),
        ("iosxe_c9300", set()),
        ("iosxe_c9400-svl", set()),  # its stack ring reads notRedundant (SVL): a warning, no rule
        ("eaton-mgeups_9pxle", set()),  # one active alarm: a warning, no rule
    ],
)
async def test_recorded_walks(watch, walk: str, firing: set[tuple[str, str]]) -> None:
    device = watch(walk)
    await device.poll(T0)
    await device.poll(T0 + 60)
    assert device.firing() == firing
    if walk == "sophos-xg_xgs2100":
        assert device.held() == {("sensor_critical", "Power supply 2", "sophos_xg_psu_failed")}


async def test_sophos_psu_back_resolves_the_family_alert_and_drops_the_held_one(watch) -> None:
    device = watch("sophos-xg_xgs2100")
    psu2 = "1.3.6.1.4.1.2604.5.1.9.4.1.2.2"  # 1 up, 2 down (as recorded)
    await _fault(device, {})
    assert device.firing() == {("sophos_xg_psu_failed", "Power supply 2")}
    try:
        await _cleared(device, {psu2: 1})
    finally:
        device.set({psu2: 2})  # the lab is shared: back as recorded
    assert device.resolved() == {("sophos_xg_psu_failed", "Power supply 2")}


async def test_sophos_left_standalone_is_one_ticket(watch) -> None:
    device = watch("sophos-xg_xgs2100")
    ha = "1.3.6.1.4.1.2604.5.1.4"  # .4.0 this appliance: 2 standalone, 3 primary; .5.0 its peer: 0 n/a, 1 auxiliary
    await _fault(device, {f"{ha}.4.0": 2, f"{ha}.5.0": 0})
    assert device.firing() - {("sophos_xg_psu_failed", "Power supply 2")} == {("sophos_xg_ha_local_faulty", "")}
    assert ("sophos_xg_ha_peer_lost", "", "sophos_xg_ha_local_faulty") in device.held()
    device.set({f"{ha}.4.0": 3, f"{ha}.5.0": 1})
    await device.poll(T0 + 120)
    assert device.firing() == {("sophos_xg_psu_failed", "Power supply 2")}  # as recorded
    assert device.held() == {("sensor_critical", "Power supply 2", "sophos_xg_psu_failed")}


# -- switches ---------------------------------------------------------------------------------------

ENT_OPER = "1.3.6.1.2.1.99.1.1.1.5"  # entSensorOperStatus: 3 nonoperational
OS10 = "1.3.6.1.4.1.674.11000.5000.100.4.1.2"
HPICF = "1.3.6.1.4.1.11.2.14.11.1.2.6.1.4"  # hpicfSensorStatus: 2 bad, 4 good


@pytest.mark.parametrize(
    ("walk", "fault", "clear", "firing"),
    [
        (
            "arubaos-cx_6300m",
            {f"{ENT_OPER}.107301": 3, f"{ENT_OPER}.107101": 3},
            {f"{ENT_OPER}.107301": 1, f"{ENT_OPER}.107101": 1},
            {("arubaos_cx_psu_failed", "sensor 107301"), ("arubaos_cx_fan_failed", "sensor 107101")},
        ),
        (
            "dell-os10",
            {f"{OS10}.1.1.4.1": 2, f"{OS10}.3.1.7.1": 2},
            {f"{OS10}.1.1.4.1": 1, f"{OS10}.3.1.7.1": 1},
            {("dell_os10_psu_failed", "PSU 1"), ("dell_os10_fan_failed", "Fan 1")},
        ),
        (
            "procurve_e2910",
            {f"{HPICF}.1": 2, f"{HPICF}.2": 2, f"{HPICF}.7": 2},
            {f"{HPICF}.1": 4, f"{HPICF}.2": 4, f"{HPICF}.7": 4},
            {
                ("procurve_fan_failed", "Fan Sensor"),
                ("procurve_psu_failed", "Power Supply 1 Sensor"),
                ("procurve_over_temperature", "Over-temperature Sensor"),
            },
        ),
        (
            "jetstream_sg2218p",
            {"1.3.6.1.4.1.11863.6.56.1.1.2.1.1.11.1": 3},  # PoE port 1 overload
            {"1.3.6.1.4.1.11863.6.56.1.1.2.1.1.11.1": 2},
            {("jetstream_poe_port_fault", "PoE port 1")},
        ),
    ],
)
async def test_switch_family_rules_hold_the_generic_one(
    watch, walk: str, fault: dict, clear: dict, firing: set[tuple[str, str]]
) -> None:
    device = watch(walk)
    await _fault(device, fault)
    assert device.firing() == firing
    assert device.held() == {("sensor_critical", sensor, rule) for rule, sensor in firing}
    await _cleared(device, clear)
    assert device.resolved() == firing


ENVMON = "1.3.6.1.4.1.9.9.13.1"  # CISCO-ENVMON-MIB: 1 normal, 3 critical
FRU_POWER = "1.3.6.1.4.1.9.9.117.1.1.2.1.2"  # cefcFRUPowerOperStatus: 2 on, 5 offEnvPower, 8 failed
STACK_STATE = "1.3.6.1.4.1.9.9.500.1.2.1.1.6"  # cswSwitchState: 4 ready, 9 provisioned


async def test_catalyst_2960x_psu_fan_temperature_and_stack_member(watch) -> None:
    device = watch("ios_2960x")
    fault = {f"{ENVMON}.5.1.3.1006": 3, f"{ENVMON}.4.1.3.2007": 3, f"{ENVMON}.3.1.6.3008": 3, f"{STACK_STATE}.2001": 9}
    clear = {f"{ENVMON}.5.1.3.1006": 1, f"{ENVMON}.4.1.3.2007": 1, f"{ENVMON}.3.1.6.3008": 1, f"{STACK_STATE}.2001": 4}
    await _fault(device, fault)
    assert device.firing() - UPLINKS_DOWN_2960X == {
        ("cisco_ios_psu_failed", "Sw1, PS1 Normal, RPS NotExist"),
        ("cisco_ios_fan_failed", "Switch#2, Fan#1"),
        ("cisco_ios_temperature_critical", "SW#3, Sensor#1, GREEN"),
        ("cisco_ios_stack_member_lost", "Stack member 2001"),  # provisioned = warn: no generic alert
    }
    assert device.held() == {
        ("sensor_critical", "Sw1, PS1 Normal, RPS NotExist", "cisco_ios_psu_failed"),
        ("sensor_critical", "Switch#2, Fan#1", "cisco_ios_fan_failed"),
        ("sensor_critical", "SW#3, Sensor#1, GREEN", "cisco_ios_temperature_critical"),
    }
    await _cleared(device, clear, still=UPLINKS_DOWN_2960X)


C9200L_PSU_A = {f"{ENVMON}.5.1.3.1013": 3, f"{FRU_POWER}.1013": 5}  # ENVMON critical, FRU offEnvPower
C9200L_PSU_A_BACK = {f"{ENVMON}.5.1.3.1013": 1, f"{FRU_POWER}.1013": 2}


async def test_catalyst_9200_psu_holds_the_generic_alert_of_its_rows(watch) -> None:
    # ENVMON names it "Switch 1 - Power Supply A, Normal", the FRU row "Switch 1 - Power Supply A":
    # the profile drops the state ENVMON appends, so both rows are one sensor
    device = watch("iosxe_c9200l")
    await _fault(device, C9200L_PSU_A)
    assert device.held() == {("sensor_critical", "Switch 1 - Power Supply A", "cisco_ios_psu_failed")}
    await _cleared(device, C9200L_PSU_A_BACK)


async def test_catalyst_9200_psu_is_one_ticket(watch) -> None:
    device = watch("iosxe_c9200l")
    await _fault(device, C9200L_PSU_A)
    try:
        assert len(device.firing()) == 1
    finally:
        await _cleared(device, C9200L_PSU_A_BACK)


async def test_catalyst_9400_psu_and_temperature_while_a_line_card_is_off(watch) -> None:
    # On a C9400 ENVMON and FRU (PSUs) and ENVMON and ENTITY-SENSOR (temperatures) name a
    # component alike: each pair is one series, which must neither flap nor page twice.
    device = watch("iosxe_c9400-svl")
    fault = {f"{ENVMON}.5.1.3.13": 3, f"{FRU_POWER}.13": 8, f"{FRU_POWER}.1000": 5, f"{ENVMON}.3.1.6.1012": 3}
    await _fault(device, fault)
    assert device.firing() == {
        ("cisco_ios_psu_failed", "Switch 1 Power Supply Module 1"),
        ("cisco_ios_temperature_critical", "Switch 1 Slot 1 Temp:   Outlet"),
        ("sensor_critical", "Switch 1 Slot 1 Linecard"),  # a line card off is not a PSU: it pages
    }
    assert device.held() == {("sensor_critical", "Switch 1 Power Supply Module 1", "cisco_ios_psu_failed")}
    assert device.resolved() == set()  # nothing fired and cleared within a poll
    await _cleared(
        device, {f"{ENVMON}.5.1.3.13": 1, f"{FRU_POWER}.13": 2, f"{FRU_POWER}.1000": 2, f"{ENVMON}.3.1.6.1012": 1}
    )


# -- NAS, servers -----------------------------------------------------------------------------------

SYNO = "1.3.6.1.4.1.6574"


async def test_synology_crashed_disk_is_one_ticket(watch) -> None:
    device = watch("dsm_ds214se-dsm7")
    # Disk 2 crashed: both arrays degrade and DSM's system status turns Failed (volume crashed).
    fault = {f"{SYNO}.2.1.1.5.1": 5, f"{SYNO}.3.1.1.3.0": 11, f"{SYNO}.3.1.1.3.1": 11, f"{SYNO}.1.1.0": 2}
    clear = {f"{SYNO}.2.1.1.5.1": 1, f"{SYNO}.3.1.1.3.0": 1, f"{SYNO}.3.1.1.3.1": 1, f"{SYNO}.1.1.0": 1}
    await _fault(device, fault)
    assert device.firing() == {("nas_disk_failed", "Disk 2")}
    assert device.held() == {
        ("nas_raid_degraded", "Volume 1", "nas_disk_failed"),
        ("nas_raid_degraded", "Storage Pool 1", "nas_disk_failed"),
        ("nas_system_failed", "system", "nas_raid_degraded"),  # held by a held (pending) alert
    }
    await _cleared(device, clear)


async def test_synology_and_qnap_psu(watch) -> None:
    syno, qnap = watch("dsm_ds214se-dsm7"), watch("qnap")
    await _fault(syno, {f"{SYNO}.1.3.0": 2})
    await _fault(qnap, {"1.3.6.1.4.1.24681.1.4.1.1.1.1.3.2.1.4.1": -1})
    assert syno.firing() == {("nas_psu_failed", "Power")}
    assert qnap.firing() == {("nas_psu_failed", "Enclosure 0 PSU 1")}
    assert syno.held() == {("sensor_critical", "Power", "nas_psu_failed")}
    assert qnap.held() == {("sensor_critical", "Enclosure 0 PSU 1", "nas_psu_failed")}
    await _cleared(syno, {f"{SYNO}.1.3.0": 1})
    await _cleared(qnap, {"1.3.6.1.4.1.24681.1.4.1.1.1.1.3.2.1.4.1": 0})


async def test_linux_megaraid_failed_disk(watch) -> None:
    device = watch("linux_lsi")
    failed = "1.3.6.1.4.1.3582.4.1.4.1.2.1.24.0"  # pdDiskFailedCount of controller 0
    await _fault(device, {failed: 1})
    assert device.firing() == {("server_raid_failed", "RAID controller 0 failed disks")}
    assert device.held() == {("sensor_critical", "RAID controller 0 failed disks", "server_raid_failed")}
    await _cleared(device, {failed: 0})


PSU_STATUS = f"{IDRAC}.5.4.600.12.1.5.1.2"  # PS2: 3 ok, 5 critical
GLOBAL = f"{IDRAC}.2.2.1.0"  # drsGlobalSystemStatus (what this firmware answers): 3 ok, 5 critical
STORAGE = f"{IDRAC}.5.2.3.0"


async def test_idrac_failed_psu_is_one_ticket(watch) -> None:
    device = watch("drac_r640")
    await _fault(device, {PSU_STATUS: 5, GLOBAL: 5})
    assert device.firing() == {("idrac_psu_failed", "PS2 Status")}
    assert device.held() == {
        ("sensor_critical", "PS2 Status", "idrac_psu_failed"),
        ("idrac_health_critical", "global", "idrac_psu_failed"),
    }
    await _cleared(device, {PSU_STATUS: 3, GLOBAL: 3})


async def test_idrac_failed_disk_is_one_ticket(watch) -> None:
    device = watch("drac_r640")
    disk, vd = f"{IDRAC}.5.5.1.20.130.4.1.4.1", f"{IDRAC}.5.5.1.20.140.1.1.4.1"  # 7 failed / 4 degraded
    await _fault(device, {disk: 7, vd: 4, STORAGE: 5, GLOBAL: 5})
    (failed,) = device.firing()
    assert failed[0] == "idrac_disk_failed"
    assert {(rule, by) for rule, _what, by in device.held()} == {
        ("idrac_virtual_disk_degraded", "idrac_disk_failed"),
        ("idrac_health_critical", "idrac_disk_failed"),
    }
    assert {what for _rule, what, _by in device.held() if _rule == "idrac_health_critical"} == {"global", "storage"}
    await _cleared(device, {disk: 3, vd: 2, STORAGE: 3, GLOBAL: 3})


async def test_idrac_hot_probe_holds_the_global_rollup_only(watch) -> None:
    probe = f"{IDRAC}.5.4.700.20.1.5.1.3"  # System Board Inlet Temp: 5 criticalUpper
    device = watch("drac_r640")
    await _fault(device, {probe: 5, GLOBAL: 5})
    assert device.firing() == {("idrac_component_critical", "System Board Inlet Temp")}
    assert device.held() == {
        ("sensor_critical", "System Board Inlet Temp", "idrac_component_critical"),
        ("idrac_health_critical", "global", "idrac_component_critical"),
    }
    await _cleared(device, {probe: 3, GLOBAL: 3})


async def test_idrac_predictive_disk_failure_holds_the_warning_rollups(watch) -> None:
    device = watch("drac_r640")
    smart = f"{IDRAC}.5.5.1.20.130.4.1.31.2"  # physicalDiskSmartAlertIndication: 2 predictive failure
    device.set({smart: 2, STORAGE: 4, GLOBAL: 4})  # nonCritical roll-ups
    for t in (T0, T0 + 300):  # the roll-up's warning waits 5 minutes
        await device.poll(t)
    ((rule, _disk),) = device.firing()
    assert rule == "idrac_disk_predictive_failure"
    assert {(r, what, by) for r, what, by in device.held()} == {
        ("idrac_health_warning", "global", "idrac_disk_predictive_failure"),
        ("idrac_health_warning", "storage", "idrac_disk_predictive_failure"),
    }
    await _cleared(device, {smart: 0, STORAGE: 3, GLOBAL: 3})


async def test_idrac_rollup_with_no_component_behind_it_pages(watch) -> None:
    device = watch("drac_r640")
    await _fault(device, {STORAGE: 5})
    assert device.firing() == {("idrac_health_critical", "storage")}
    await _cleared(device, {STORAGE: 3})


# -- UPS --------------------------------------------------------------------------------------------

RFC_SOURCE, RFC_SECONDS = "1.3.6.1.2.1.33.1.4.1.0", "1.3.6.1.2.1.33.1.2.2.0"


async def test_eaton_on_battery_is_one_ticket(watch) -> None:
    device = watch("eaton-mgeups_9pxle")
    mge = "1.3.6.1.4.1.705.1"
    fault = {RFC_SOURCE: 5, RFC_SECONDS: 120, "1.3.6.1.4.1.534.1.4.5.0": 5, f"{mge}.7.3.0": 1, f"{mge}.6.3.0": 1,
             f"{mge}.6.4.0": 4}  # fmt: skip
    clear = {RFC_SOURCE: 3, RFC_SECONDS: 0, "1.3.6.1.4.1.534.1.4.5.0": 3, f"{mge}.7.3.0": 2, f"{mge}.6.3.0": 2,
             f"{mge}.6.4.0": 1}  # fmt: skip
    await _fault(device, fault)
    assert device.firing() == {("ups_on_battery", "")}
    assert device.held() == {
        ("sensor_critical", sensor, "ups_on_battery")
        for sensor in ("Output source", "On battery", "Input status", "Input line fail cause")
    }
    await _cleared(device, clear)


async def test_rfc1628_battery_low_on_mains(watch) -> None:
    # Battery worn out: low, 5 minutes of runtime, still on mains.
    device = watch("netmanplus_mct20")
    status, minutes = "1.3.6.1.2.1.33.1.2.1.0", "1.3.6.1.2.1.33.1.2.3.0"
    await _fault(device, {status: 3, minutes: 5})
    assert device.firing() == {("ups_runtime_low", "")}
    assert device.held() == {("sensor_critical", "Battery status", "ups_runtime_low")}
    await _cleared(device, {status: 2, minutes: 38})


async def test_rfc1628_on_battery(watch) -> None:
    device = watch("netmanplus_mct20")
    await _fault(device, {RFC_SOURCE: 5})
    assert device.firing() == {("ups_on_battery", "")}
    assert device.held() == {("sensor_critical", "Output source", "ups_on_battery")}
    await _cleared(device, {RFC_SOURCE: 3})


async def test_apc_battery_to_replace(watch) -> None:
    device = watch("apc_smt750x-nmc2")
    replace = "1.3.6.1.4.1.318.1.1.1.2.2.4.0"
    await _fault(device, {replace: 2})
    assert device.firing() == {("ups_replace_battery", "")}
    assert device.held() == {("sensor_critical", "Battery replacement", "ups_replace_battery")}
    await _cleared(device, {replace: 1})


def test_shipped_inhibitions_name_shipped_rules_without_cycles(tmp_path: Path) -> None:
    engine = AlertEngine(str(tmp_path / "alerts.sqlite"), RULES, clock=lambda: T0)  # refuses otherwise
    engine.close()
    sources = {rule.name for rule in RULES if rule.inhibits}
    assert all(name != "sensor_critical" for name in sources)  # the generic rules inhibit nothing
