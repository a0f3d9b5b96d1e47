"""The trap receiver in a real agent, fed real datagrams on loopback: pysnmp's notification
originator (an independent implementation) and our BER encoder, each sent from the address of the
inventory device it speaks for (Linux answers for all of 127.0.0.0/8).

The agent's clock is driven by the test (token buckets, settle and quiet times); waits are for an
observable state, with a bound, never for a duration.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    NotificationType,
    ObjectIdentity,
    SnmpEngine,
    UdpTransportTarget,
    send_notification,
)
from pysnmp.proto.rfc1902 import Integer32, OctetString

from agent.runner import Agent
from agent.scheduler import Scheduler
from collectors.snmp import ber
from tests.receivers import Clock, firing, free_port, latest_fields, running_agent, submit_poll, until

CONFIG = """
agent:
  services:
    snmp_traps:
      address: 127.0.0.1
      port: {port}
      rate_per_source: 1
      burst_per_source: 20
      confirm_interval_s: 0.05
      health_interval_s: 0.05
      sources: {{127.0.0.9: acme/fw-1}}
clients:
  - name: acme
    display_name: Acme
    sites:
      - name: hq
        devices:
          - {{name: core-1, address: 127.0.0.2, tags: {{role: core}}}}
          - {{name: ups-1, address: 127.0.0.3}}
          - {{name: fw-1, address: 127.0.0.4}}
          - {{name: twin-a, address: 127.0.0.5}}
          - {{name: twin-b, address: 127.0.0.5}}
"""

LINK_DOWN = "1.3.6.1.6.3.1.1.5.3"
LINK_UP = "1.3.6.1.6.3.1.1.5.4"
COLD_START = "1.3.6.1.6.3.1.1.5.1"
IF_INDEX = "1.3.6.1.2.1.2.2.1.1"
IF_ADMIN = "1.3.6.1.2.1.2.2.1.7"
IF_OPER = "1.3.6.1.2.1.2.2.1.8"
def send(datagram: bytes, port: int, source: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind((source, 0))
        sender.sendto(datagram, ("127.0.0.1", port))


def v2c(trap_oid: str, varbinds: list[tuple[str, int, Any]], community: bytes = b"public",
        pdu_type: int = ber.TRAP_V2) -> bytes:
    head = [(ber.encode_oid("1.3.6.1.2.1.1.3.0"), ber.TIMETICKS, 4200),
            (ber.encode_oid("1.3.6.1.6.3.1.1.4.1.0"), ber.OBJECT_IDENTIFIER, ber.encode_oid(trap_oid))]
    body = [(ber.encode_oid(oid), tag, value) for oid, tag, value in varbinds]
    return ber.encode_pdu(ber.VERSION_2C, community, pdu_type, 7, head + body)


def link(trap_oid: str, if_index: int, admin: int, oper: int) -> bytes:
    return v2c(trap_oid, [(f"{IF_INDEX}.{if_index}", ber.INTEGER, if_index),
                          (f"{IF_ADMIN}.{if_index}", ber.INTEGER, admin),
                          (f"{IF_OPER}.{if_index}", ber.INTEGER, oper)])


async def pysnmp_trap(port: int, source: str, trap_oid: str, varbinds: list[tuple[str, Any]],
                      kind: str = "trap", version: int = 1) -> Any:
    """Sent by pysnmp's originator; for an inform, waits for our acknowledgement."""
    engine = SnmpEngine()
    target = await UdpTransportTarget.create(("127.0.0.1", port), timeout=2, retries=2)
    target.set_local_address((source, 0))
    notification = NotificationType(ObjectIdentity(trap_oid)).add_varbinds(
        *((ObjectIdentity(oid), value) for oid, value in varbinds)
    )
    try:
        return await send_notification(engine, CommunityData("public", mpModel=version), target, ContextData(), kind,
                                       notification)
    finally:
        engine.close_dispatcher()


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[Agent, int, Clock]]:
    port = free_port()
    async with running_agent(tmp_path, CONFIG.format(port=port)) as (agent, clock):
        yield agent, port, clock


def health(agent: Agent) -> dict[str, Any]:
    return latest_fields(agent, "snmp_trap_receiver")


async def poll(agent: Agent, measurement: str, device: str, tags: dict[str, str], fields: dict[str, Any],
               at: float) -> None:
    """A sample as the SNMP collector's poll would submit it."""
    base = {"client": "acme", "site": "hq", "device": device}
    if device == "core-1":
        base["role"] = "core"
    await submit_poll(agent, measurement, {**base, **tags}, fields, at)


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str | None, Any]]:
    """The polls the trap receiver asks the scheduler to run now (requested before `running`)."""
    calls: list[tuple[str, str, str | None, Any]] = []

    def poll_now(self: Scheduler, client: str, device: str, collector: str | None = None, focus: Any = None) -> int:
        calls.append((client, device, collector, focus))
        return 0

    monkeypatch.setattr(Scheduler, "poll_now", poll_now)
    return calls


async def test_a_link_down_fires_at_once_a_link_up_does_not_resolve_it_the_next_poll_does(asked, running) -> None:
    agent, port, clock = running
    uplink = {"if_index": "3", "if_name": "Gi1/0/3", "if_alias": "Uplink to dist-1", "if_type": "ethernetCsmacd"}
    await poll(agent, "snmp_interface", "core-1", uplink, {"admin_status": "up", "oper_status": "up"}, clock.now - 60)

    await pysnmp_trap(port, "127.0.0.2", LINK_DOWN, [(f"{IF_INDEX}.3", Integer32(3)), (f"{IF_ADMIN}.3", Integer32(1)),
                                                     (f"{IF_OPER}.3", Integer32(2))])
    (alert,) = await until(lambda: firing(agent, "snmp_trap_uplink_down"), "the uplink-down alert")
    assert alert.labels["device"] == "core-1" and alert.labels["if_index"] == "3"
    assert alert.summary == "core-1 (hq) uplink Gi1/0/3 down (SNMP trap)"
    assert "trap_oid" not in alert.labels and "if_alias" not in alert.labels  # descriptive
    await agent.pipeline.drain()
    stored = {row.field: row.value for row in agent.state.latest("snmp_trap", {"trap": "link_down"})}
    assert stored["oper_status"] == "down" and stored["source"] == "127.0.0.2" and stored["version"] == "2c"
    # the device is asked at once to confirm that interface
    assert asked == [("acme", "core-1", "snmp", {"measurement": "snmp_interface", "if_index": "3"})]

    send(link(LINK_UP, 3, 1, 1), port, "127.0.0.2")
    await until(lambda: agent.state.latest("snmp_trap", {"trap": "link_up"}), "the link-up sample")
    clock.now += 60
    rounds = health(agent).get("confirmation_rounds", 0)
    await until(lambda: health(agent).get("confirmation_rounds", 0) >= rounds + 3, "confirmation rounds")
    await agent.pipeline.drain()
    assert firing(agent, "snmp_trap_uplink_down"), "a trap never resolves an alert"

    await poll(agent, "snmp_interface", "core-1", uplink, {"admin_status": "up", "oper_status": "up"}, clock.now)
    await until(lambda: not firing(agent, "snmp_trap_uplink_down"), "resolution by the poll")
    (resolved,) = [a for a in agent.engine.alerts(["resolved"]) if a.rule == "snmp_trap_uplink_down"]
    assert resolved.fingerprint == alert.fingerprint
    await until(lambda: health(agent).get("cleared") == 1, "the confirmation counted")


async def test_an_access_port_going_down_pages_nobody_an_admin_shutdown_neither(running) -> None:
    agent, port, clock = running
    access = {"if_index": "7", "if_name": "Gi1/0/7", "if_alias": "bureau 12"}
    await poll(agent, "snmp_interface", "fw-1", access, {"oper_status": "up"}, clock.now - 60)
    send(link(LINK_DOWN, 7, 1, 2), port, "127.0.0.4")  # fw-1 is no core device
    send(link(LINK_DOWN, 9, 2, 2), port, "127.0.0.2")  # core-1, shut by an operator
    await until(lambda: {r.tags["device"] for r in agent.state.latest("snmp_trap", {"trap": "link_down"})}
                == {"fw-1", "core-1"}, "both traps taken")
    await agent.pipeline.drain()
    assert not agent.engine.firing()


async def test_v1_traps_ride_on_the_agent_address_and_sources_name_other_senders(running) -> None:
    agent, port, _ = running
    # APC upsOnBattery, SNMPv1 enterprise-specific 5, relayed: sent from 127.0.0.1 (in no
    # device's inventory) with agent-addr 127.0.0.3 (ups-1)
    apc = ber.encode_trap_v1(b"public", ber.encode_oid("1.3.6.1.4.1.318"), bytes([127, 0, 0, 3]), 6, 5, 100,
                             [(ber.encode_oid("1.3.6.1.4.1.318.2.3.3.0"), ber.OCTET_STRING, b"UPS: On battery power")])
    send(apc, port, "127.0.0.1")
    (on_battery,) = await until(lambda: firing(agent, "snmp_trap_ups_on_battery"), "the on-battery alert")
    assert on_battery.device == "ups-1" and on_battery.labels["trap"] == "ups_on_battery"
    # fgTrapHaSwitch from 127.0.0.9, fw-1's second address by `sources`
    send(v2c("1.3.6.1.4.1.12356.101.2.0.401", []), port, "127.0.0.9")
    (failover,) = await until(lambda: firing(agent, "snmp_trap_failover"), "the failover alert")
    assert failover.device == "fw-1"
    # a v1 coldStart (generic 0) from pysnmp
    await pysnmp_trap(port, "127.0.0.2", COLD_START, [], version=0)
    (restart,) = await until(lambda: firing(agent, "snmp_trap_device_restarted"), "the restart alert")
    assert restart.device == "core-1"
    await agent.pipeline.drain()
    (version,) = [r.value for r in agent.state.latest("snmp_trap", {"trap": "cold_start"}) if r.field == "version"]
    assert version == "1"


async def test_an_inform_is_acknowledged(running) -> None:
    agent, port, _ = running
    error, status, _, _ = await pysnmp_trap(port, "127.0.0.2", LINK_UP, [(f"{IF_INDEX}.1", Integer32(1))],
                                            kind="inform")
    assert error is None and not status
    await until(lambda: health(agent).get("informs_acknowledged") == 1, "the acknowledgement counted")


async def test_bad_input_is_counted_and_dropped_and_the_receiver_goes_on(running) -> None:
    agent, port, clock = running
    send(b"\x30\x03\x02\x01", port, "127.0.0.2")  # truncated
    send(ber.encode_pdu(ber.VERSION_2C, b"public", ber.TRAP_V2, 1, []), port, "127.0.0.2")  # no snmpTrapOID.0
    send(link(LINK_DOWN, 1, 1, 2), port, "127.0.0.77")  # in no inventory
    send(link(LINK_DOWN, 1, 1, 2), port, "127.0.0.5")  # twin-a and twin-b share it
    send(v2c("1.3.6.1.4.1.99999.0.1", [("1.3.6.1.4.1.99999.1.0", ber.OCTET_STRING, b"?")]), port, "127.0.0.2")
    # a flood from ups-1: its bucket holds 20, the clock does not move, so 20 pass and 80 are dropped
    flood = link(LINK_UP, 2, 1, 1)
    for _ in range(100):
        send(flood, port, "127.0.0.3")
    counts = await until(lambda: (h := health(agent)).get("received", 0) >= 105 and h, "every datagram counted")
    assert (counts["malformed"], counts["unknown_source"], counts["ambiguous_source"], counts["unknown_trap"]) == (
        2, 1, 1, 1)
    assert counts["rate_limited"] == 80 and counts["accepted"] == 20
    # the receiver is still there, and ups-1's bucket refills with time
    clock.now += 5
    await pysnmp_trap(port, "127.0.0.3", "1.3.6.1.2.1.33.2.1", [("1.3.6.1.2.1.33.1.2.3.0", Integer32(12))])
    (alert,) = await until(lambda: firing(agent, "snmp_trap_ups_on_battery"), "an alert after the flood")
    assert alert.device == "ups-1"
    await agent.pipeline.drain()
    minutes = [r.value for r in agent.state.latest("snmp_trap", {"trap": "ups_on_battery"}) if r.field ==
               "minutes_remaining"]
    assert minutes == [12]


async def test_a_psu_trap_ends_when_the_polled_sensor_is_ok_again(running) -> None:
    agent, port, clock = running
    supply = "1.3.6.1.4.1.9.9.13.1.5.1"
    trap = [(f"{supply}.2.1", OctetString("Switch 1 - Power Supply A")), (f"{supply}.3.1", Integer32(3))]
    await pysnmp_trap(port, "127.0.0.2", "1.3.6.1.4.1.9.9.13.3.0.9", trap)
    (alert,) = await until(lambda: firing(agent, "snmp_trap_psu_failed"), "the PSU alert")
    assert alert.summary == "core-1: power supply Switch 1 - Power Supply A critical (SNMP trap)"
    sensor = {"sensor": "Switch 1 - Power Supply A", "sensor_class": "power_supply"}
    clock.now += 30
    await poll(agent, "snmp_sensor", "core-1", sensor, {"state": "ok"}, clock.now)
    await until(lambda: not firing(agent, "snmp_trap_psu_failed"), "resolution by the polled sensor")


async def test_one_fault_one_ticket_the_polled_rule_is_held_while_the_trap_alert_fires(running) -> None:
    agent, port, clock = running
    uplink = {"if_index": "5", "if_name": "Te1/1/1", "if_alias": "Uplink fibre"}
    await poll(agent, "snmp_interface", "core-1", uplink, {"admin_status": "up", "oper_status": "up", "was_up": True},
               clock.now - 60)
    send(link(LINK_DOWN, 5, 1, 2), port, "127.0.0.2")
    await until(lambda: firing(agent, "snmp_trap_uplink_down"), "the trap's alert")
    # the link stays down: the polls say so for over a minute, which alone would fire interface_down
    down = {"admin_status": "up", "oper_status": "down", "was_up": True}
    for step in (15, 60):
        clock.now += step
        await poll(agent, "snmp_interface", "core-1", uplink, down, clock.now)
    assert [a.rule for a in agent.engine.firing()] == ["snmp_trap_uplink_down"]
    (held,) = [a for a in agent.engine.alerts(["pending"]) if a.rule == "interface_down"]
    assert held.inhibited_by.startswith("snmp_trap_uplink_down/")
    clock.now += 60
    await poll(agent, "snmp_interface", "core-1", uplink, {**down, "oper_status": "up"}, clock.now)
    await until(lambda: not agent.engine.firing(), "both ended by the poll")
    assert not [a for a in agent.engine.alerts(["pending"]) if a.rule == "interface_down"]
