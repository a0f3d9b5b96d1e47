"""The collector and client against snmpsim on loopback: odd agents, faults, SNMPv3, rates."""

from __future__ import annotations

import socket
import time

import pytest
from pysnmp.proto import rfc1902

from agent.api import CollectError, Sink, Target, Unreachable
from collectors.snmp import SnmpCollector, target_from_url
from collectors.snmp.client import SnmpAuth, SnmpClient, receive_buffer_bytes
from tests.snmp.conftest import V3_USERS

HC_IN = "1.3.6.1.2.1.31.1.1.1.6"


def by_measurement(sink: Sink, measurement: str) -> list:
    return [s for s in sink.samples if s.measurement == measurement]


async def test_samples_carry_base_tags_and_public_names(lab, target) -> None:
    sink = Sink({"client": "c1", "site": "s1", "device": "core"}, time.time_ns)
    await SnmpCollector({}).collect(target("iosxe_c9400-svl"), sink)
    names = {s.measurement for s in sink.samples}
    assert names == {"snmp_system", "snmp_interface", "snmp_cpu", "snmp_memory", "snmp_sensor", "snmp_neighbor",
                     "snmp_lldp_local", "snmp_inventory"}
    (system,) = by_measurement(sink, "snmp_system")
    assert system.tags == {"client": "c1", "site": "s1", "device": "core", "profile": "cisco_iosxe"}
    assert system.tags["profile"] == "cisco_iosxe"
    # every sample carries the profile tag, so per-family rules can match on it
    assert {s.tags.get("profile") for s in sink.samples} == {"cisco_iosxe"}
    assert system.fields["uptime_s"] > 0
    assert system.fields["rebooted"] is None  # first poll: nothing to compare with
    port = by_measurement(sink, "snmp_interface")[0]
    assert set(port.tags) >= {"if_index", "if_name", "if_type"}
    assert port.fields["oper_status"] in ("up", "down")
    sensor = by_measurement(sink, "snmp_sensor")[0]
    assert {"sensor", "sensor_class"} <= set(sensor.tags)
    assert sensor.fields["state"] in ("ok", "warn", "crit", "unknown")


async def test_private_values_and_missing_columns(lab, target) -> None:
    rows = await SnmpCollector({}).poll(target("odd_agent"))
    system = next(r for r in rows if r.measurement == "snmp_system")
    assert system.fields["sys_descr"] == "<private>"
    assert system.tags["profile"] == "generic"
    eth0, odd = [r for r in rows if r.measurement == "snmp_interface"]
    assert eth0.tags == {"if_index": "1", "if_name": "eth0", "if_type": "ethernetCsmacd", "profile": "generic"}
    assert eth0.fields["speed_bps"] == 100_000_000  # no ifXTable: ifSpeed
    assert eth0.fields["in_octets"] == 4294967000  # 32-bit counter when there is no HC one
    assert eth0.fields["in_bps"] is None  # first poll
    assert odd.tags["if_name"] == "00ff10"  # non-printable ifDescr comes out as hex
    assert odd.fields["oper_status"] == "9"  # unknown code: raw, as text
    assert odd.fields["speed_bps"] is None
    assert odd.fields["in_octets"] is None
    (disk,) = [r for r in rows if r.measurement == "snmp_storage"]
    assert disk.tags == {"storage": "<private>", "profile": "generic"}
    assert disk.fields["total_bytes"] == 4294967295 * 4096  # Integer32 wrapped negative
    assert disk.fields["used_bytes"] is None
    assert disk.fields["usage_percent"] is None


def _closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_unreachable_device_raises_quickly() -> None:
    collector = SnmpCollector({"timeout_s": 0.2, "retries": 1})
    port = _closed_udp_port()
    started = time.monotonic()
    with pytest.raises(Unreachable, match=f"127.0.0.1:{port}"):
        await collector.collect(Target("ghost", "127.0.0.1", port, {"community": "x"}), Sink({}, time.time_ns))
    assert time.monotonic() - started < 2.0


async def test_oper_status_and_cpu_faults_are_visible(lab, target) -> None:
    collector = SnmpCollector({"interfaces": {"include": ["^Gi1/0/1$"]}})
    before = await collector.poll(target("fault_switch"))
    (port,) = [r for r in before if r.measurement == "snmp_interface"]
    index = int(port.tags["if_index"])
    lab.set_oper_status("fault_switch", index, "down")
    lab.set_cpu("fault_switch", 97)
    try:
        after = await collector.poll(target("fault_switch"))
        (port,) = [r for r in after if r.measurement == "snmp_interface"]
        assert port.fields["oper_status"] == "down"
        assert [r.fields["usage_percent"] for r in after if r.measurement == "snmp_cpu"] == [97]
    finally:
        lab.set_oper_status("fault_switch", index, "up")


async def test_take_away_makes_the_device_silent(lab, target) -> None:
    collector = SnmpCollector({"timeout_s": 0.3, "retries": 0})
    await collector.poll(target("fault_gone"))
    lab.take_away("fault_gone")
    try:
        with pytest.raises(Unreachable):
            await collector.poll(target("fault_gone"))
        # Not only the system group: a walk anywhere in the device gets no answer either.
        client = SnmpClient(lab.host, lab.port, SnmpAuth(community="fault_gone"), timeout_s=0.3, retries=0)
        with pytest.raises(Unreachable):
            await client.walk("1.3.6.1.2.1.2.2.1.2")
    finally:
        lab.bring_back("fault_gone")
    assert await collector.poll(target("fault_gone"))


async def test_rates_from_counters_between_two_polls(lab, target) -> None:
    now = [1000.0]
    collector = SnmpCollector({"interfaces": {"include": ["^Gi1/0/2$"]}}, clock=lambda: now[0])
    (first,) = [r for r in await collector.poll(target("rates_switch")) if r.measurement == "snmp_interface"]
    assert first.fields["in_bps"] is None
    index = first.tags["if_index"]
    start = first.fields["in_octets"]
    lab.set_values("rates_switch", {f"{HC_IN}.{index}": rfc1902.Counter64(start + 125_000_000)})
    now[0] += 10.0
    (second,) = [r for r in await collector.poll(target("rates_switch")) if r.measurement == "snmp_interface"]
    assert second.fields["in_bps"] == pytest.approx(100_000_000)  # 125 MB in 10 s on a 1 Gbit/s port
    # A jump no 1 Gbit/s link can carry is a counter reset, not a 800 Gbit/s spike.
    lab.set_values("rates_switch", {f"{HC_IN}.{index}": rfc1902.Counter64(start + 10**13)})
    now[0] += 10.0
    (third,) = [r for r in await collector.poll(target("rates_switch")) if r.measurement == "snmp_interface"]
    assert third.fields["in_bps"] is None


@pytest.mark.parametrize("user", V3_USERS, ids=lambda u: f"{u.auth_protocol}-{u.priv_protocol}")
async def test_snmpv3_auth_priv(lab, target, user) -> None:
    credentials = {
        "user": user.user,
        "auth_protocol": user.auth_protocol,
        "auth_key": user.auth_key,
        "priv_protocol": user.priv_protocol,
        "priv_key": user.priv_key,
        "context": "odd_agent",  # snmpsim picks the simulated device by SNMPv3 context name
    }
    rows = await SnmpCollector({"version": "3"}).poll(target("odd_agent", **credentials))
    assert [r.fields["sys_object_id"] for r in rows if r.measurement == "snmp_system"] == ["1.3.6.1.4.1.99999.1"]


async def test_snmpv3_wrong_key_is_an_error_not_silence(lab) -> None:
    user = V3_USERS[0]
    auth = SnmpAuth("3", user=user.user, auth_protocol="SHA", auth_key="not-the-key", priv_protocol="AES",
                    priv_key=user.priv_key, context="odd_agent")
    with pytest.raises(CollectError) as excinfo:
        await SnmpClient(lab.host, lab.port, auth, timeout_s=1, retries=0).get(["1.3.6.1.2.1.1.2.0"])
    assert not isinstance(excinfo.value, Unreachable)


@pytest.mark.parametrize("max_repetitions", [1, 7, 50])
async def test_walk_stays_in_subtree(lab, max_repetitions) -> None:
    client = SnmpClient(lab.host, lab.port, SnmpAuth(community="ios_2960x"), max_repetitions=max_repetitions)
    column = await client.walk("1.3.6.1.2.1.2.2.1.8")
    assert len(column) == 146
    assert all(oid.startswith("1.3.6.1.2.1.2.2.1.8.") for oid in column)
    assert {v.value for v in column.values()} <= {1, 2}
    assert await client.walk("1.3.6.1.2.1.2.2.1.8.999999") == {}


async def test_client_decodes_types_and_absent_oids(lab) -> None:
    client = SnmpClient(lab.host, lab.port, SnmpAuth(community="ios_2960x"))
    got = await client.get(["1.3.6.1.2.1.1.2.0", "1.3.6.1.2.1.1.3.0", "1.3.6.1.2.1.1.99.0", f"{HC_IN}.10101"])
    assert got["1.3.6.1.2.1.1.2.0"].kind == "oid"
    assert got["1.3.6.1.2.1.1.3.0"].kind == "timeticks"
    assert got[f"{HC_IN}.10101"].kind == "counter64"
    assert "1.3.6.1.2.1.1.99.0" not in got  # noSuchObject -> absent


async def test_receive_buffer_is_several_mib(lab) -> None:
    await SnmpClient(lab.host, lab.port, SnmpAuth(community="odd_agent")).get(["1.3.6.1.2.1.1.3.0"])
    granted = receive_buffer_bytes()
    limit = int(open("/proc/sys/net/core/rmem_max").read())
    if granted < 2 * 1024 * 1024 and limit < 4 * 1024 * 1024:
        pytest.skip(f"kernel caps SO_RCVBUF at {limit} and SO_RCVBUFFORCE is not permitted")
    assert granted >= 4 * 1024 * 1024


def test_target_from_url_v2c() -> None:
    target, options = target_from_url("snmp://s3cr%40t@10.1.2.3:1161?profile=cisco_ios&timeout_s=1.5")
    assert (target.name, target.address, target.port) == ("10.1.2.3", "10.1.2.3", 1161)
    assert target.credentials == {"community": "s3cr@t"}
    assert options == {"profile": "cisco_ios", "timeout_s": 1.5, "version": "2c"}


def test_target_from_url_v3() -> None:
    target, options = target_from_url("snmpv3://ops:authpass:privpass@sw1.example?auth=sha256&priv=aes256")
    assert target.port == 161
    assert target.credentials == {
        "user": "ops", "auth_key": "authpass", "auth_protocol": "SHA256",
        "priv_key": "privpass", "priv_protocol": "AES256",
    }
    assert options == {"version": "3"}
    target, _ = target_from_url("snmpv3://monitor@10.0.0.1")
    assert target.credentials == {"user": "monitor"}


@pytest.mark.parametrize(
    "url",
    ["http://x", "snmp://", "snmp://a:b@host", "snmpv3://@host", "snmpv3://u:k@h?auth=CRC32", "snmp://c@h?bogus=1"],
)
def test_target_from_url_rejects(url: str) -> None:
    with pytest.raises(ValueError):
        target_from_url(url)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"profile": "nope"}, "profile"),
        ({"version": "4"}, "version"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"interfaces": {"include": ["("]}}, "interfaces.include"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_options_are_named(options, message) -> None:
    with pytest.raises(ValueError, match=message):
        SnmpCollector(options)


async def test_profile_is_detected_again_when_sys_object_id_changes(lab, target) -> None:
    """A device swapped for another model behind the same address is polled with the new one's
    profile; a changed sysDescr alone (a firmware upgrade) keeps the cached detection.
    ``swapped_switch`` is this test's own device: it is left changed."""
    sys_descr, sys_object_id = "1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.2.0"
    collector = SnmpCollector({})

    async def profiles() -> set[str]:
        return {row.tags["profile"] for row in await collector.poll(target("swapped_switch"))}

    assert await profiles() == {"cisco_ios"}
    # Alone, this sysDescr no longer matches cisco_ios: only the cache keeps the profile.
    lab.set_values("swapped_switch", {sys_descr: rfc1902.OctetString("Linux nas 5.10")})
    assert await profiles() == {"cisco_ios"}
    lab.set_values("swapped_switch", {sys_object_id: rfc1902.ObjectName("1.3.6.1.4.1.24681")})  # QNAP
    assert await profiles() == {"qnap"}
    # And back to a Catalyst 2960X.
    lab.set_values(
        "swapped_switch",
        {
            sys_descr: rfc1902.OctetString("Cisco IOS Software, C2960X Software, Version 15.0(2a)EX5"),
            sys_object_id: rfc1902.ObjectName("1.3.6.1.4.1.9.1.1208"),
        },
    )
    assert await profiles() == {"cisco_ios"}


async def test_a_focused_read_is_one_row_as_the_full_poll_has_it(lab, target) -> None:
    # what a linkDown trap asks: that interface only, read with one GET, the same tags and fields
    collector = SnmpCollector({})
    device = target("iosxe_c9400-svl")
    base = {"client": "c1", "site": "s1", "device": "core"}
    focus = {"measurement": "snmp_interface", "if_index": "0"}
    assert await collector.collect_focused(device, Sink(base, time.time_ns), focus) is False  # not detected yet
    full = Sink(base, time.time_ns)
    await collector.collect(device, full)
    polled = by_measurement(full, "snmp_interface")[5]
    narrow = Sink(base, time.time_ns)
    focus = {"measurement": "snmp_interface", "if_index": polled.tags["if_index"]}
    assert await collector.collect_focused(device, narrow, focus) is True
    (row,) = narrow.samples
    assert row.tags == polled.tags
    assert {k: v for k, v in row.fields.items() if not k.endswith("_ps") and not k.endswith("_bps")} == {
        k: v for k, v in polled.fields.items() if not k.endswith("_ps") and not k.endswith("_bps")
    }
    # sensors join entPhysicalName from another table: they cannot be read alone, the poll is whole
    sensor = by_measurement(full, "snmp_sensor")[0]
    assert await collector.collect_focused(device, Sink(base, time.time_ns), {
        "measurement": "snmp_sensor", "sensor": sensor.tags["sensor"]}) is False
    # a row the device does not have: nothing emitted, the rows it has keep their readings
    empty = Sink(base, time.time_ns)
    assert await collector.collect_focused(device, empty, {"measurement": "snmp_interface", "if_index": "999999"})
    assert empty.samples == []
    again = Sink(base, time.time_ns)
    await collector.collect(device, again)
    assert len(by_measurement(again, "snmp_interface")) == len(by_measurement(full, "snmp_interface"))
