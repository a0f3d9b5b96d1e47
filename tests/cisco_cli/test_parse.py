"""The parsers over recorded outputs of real devices (fixtures/README.md says where each is from)."""

from __future__ import annotations

import pytest

from collectors.cisco_cli import parse
from lab import ios_outputs

from .conftest import FIXTURES


def test_show_version_of_a_catalyst_9500_on_ios_xe() -> None:
    version = parse.show_version(ios_outputs.SHOW_VERSION.format(hostname="fed-siege"))
    assert (version.hostname, version.version, version.software_image) == ("fed-siege", "16.12.4", "CAT9K_IOSXE")
    assert version.hardware == ("C9500-48Y4C",) and version.serials == ("CAT23XXXXXX",)
    assert version.uptime_s == 7 * 7 * 86400 + 17 * 3600 + 14 * 60  # "7 weeks, 17 hours, 14 minutes"
    assert version.reload_reason == "Reload Command"


def test_power_supplies_not_present_and_without_input() -> None:
    supplies = parse.show_environment_power(
        (FIXTURES / "cisco_ios_show_environment_power_all-3850-not-pres.raw").read_text())
    by_slot = {psu.slot: psu for psu in supplies}
    assert list(by_slot) == ["1A", "1B", "2A", "2B", "3A", "3B"]
    assert by_slot["1A"].ok is True and by_slot["1A"].watts == 715 and by_slot["1A"].serial == "LIT11111111"
    assert by_slot["1B"].present is False and by_slot["1B"].ok is None and by_slot["1B"].status == "Not Present"
    failed = by_slot["2B"]
    assert (failed.present, failed.ok, failed.status, failed.sys_pwr) == (True, False, "No Input Power", "Bad")


def test_an_unknown_power_supply_without_input() -> None:
    supplies = parse.show_environment_power((FIXTURES / "cisco_ios_show_environment_power_all.raw").read_text())
    assert [p.slot for p in supplies if p.ok is False] == ["3A"]
    assert all(p.present for p in supplies)


def test_show_environment_all_of_a_c9300_stack() -> None:
    env = parse.show_environment_all((FIXTURES / "iosxe_c9300_show_environment_all.txt").read_text())
    chassis = [f for f in env.fans if not f.fan.startswith("PS-")]
    assert [(f.switch, f.fan, f.speed_rpm, f.ok) for f in chassis] == [
        (s, n, 14240, True) for s in ("1", "2") for n in ("1", "2", "3")
    ]
    ps_fans = {(f.switch, f.fan): (f.present, f.ok) for f in env.fans if f.fan.startswith("PS-")}
    assert ps_fans == {("1", "PS-1"): (True, True), ("1", "PS-2"): (False, None),
                       ("2", "PS-1"): (True, True), ("2", "PS-2"): (False, None)}
    readings = {(t.switch, t.sensor): (t.celsius, t.state, t.yellow_c, t.red_c) for t in env.temperatures}
    assert readings[("1", "inlet")] == (21, "GREEN", 46, 56)
    assert readings[("2", "hotspot")] == (52, "GREEN", 105, 125)
    assert len(readings) == 6


def test_the_lab_device_prints_the_recorded_layout() -> None:
    recorded = (FIXTURES / "iosxe_c9300_show_environment_all.txt").read_text()
    played = ios_outputs.environment_all(
        ios_outputs.recorded_fans(), ios_outputs.recorded_sensors(), ios_outputs.recorded_psus())
    assert played == recorded


def test_err_disabled_and_other_port_states() -> None:
    ports = parse.show_interfaces_status((FIXTURES / "cisco_ios_show_interfaces_status.raw").read_text())
    by_name = {p.port: p for p in ports}
    assert len(ports) == 23
    assert [p.port for p in ports if p.status == "err-disabled"] == ["Gi1/0/16"]
    assert by_name["Gi1/0/16"].name == "Multi Space to the" and by_name["Gi1/0/16"].vlan == "16"
    assert by_name["Gi1/0/2"].status == "connected" and by_name["Gi1/0/1"].name is None


@pytest.mark.parametrize("command, parser", [
    ("show version", parse.show_version),
    ("show environment power all", parse.show_environment_power),
    ("show environment all", parse.show_environment_all),
    ("show interfaces status", parse.show_interfaces_status),
])
def test_an_output_not_understood_names_its_command(command, parser) -> None:
    with pytest.raises(parse.ParseError) as caught:
        parser("Switch uptime: a while\nsomething else entirely\n")
    assert str(caught.value).startswith(f"{command}: output not understood")
