"""SNMPv3 traps: sent by pysnmp's notification originator (an independent USM implementation) from
the address of an inventory device, checked and decrypted with that device's USM user from the
secrets, whatever engine ID the sender has; a wrong key, a replay, a wrong security level or an
unknown user is refused and counted, never accepted."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pysnmp.hlapi.v3arch.asyncio import (
    ContextData,
    NotificationType,
    ObjectIdentity,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    send_notification,
    usm3DESEDEPrivProtocol,
    usmAesCfb128Protocol,
    usmAesCfb192Protocol,
    usmAesCfb256Protocol,
    usmDESPrivProtocol,
    usmHMAC128SHA224AuthProtocol,
    usmHMAC192SHA256AuthProtocol,
    usmHMAC384SHA512AuthProtocol,
    usmHMACMD5AuthProtocol,
    usmHMACSHAAuthProtocol,
    usmNoPrivProtocol,
)
from pysnmp.proto.rfc1902 import Integer32, OctetString

from agent.runner import Agent
from collectors.snmp import ber
from collectors.snmp.usm import Usm, UsmError, UsmUser
from tests.receivers import Clock, firing, free_port, latest_fields, running_agent, submit_poll, until

CONFIG = """
agent:
  services:
    snmp_traps: {{address: 127.0.0.1, port: {port}, confirm_interval_s: 0.05, health_interval_s: 0.05}}
defaults:
  interval_s: 3600
clients:
  - name: acme
    display_name: Acme
    sites:
      - name: hq
        devices:
          - {{name: core-1, address: 127.0.0.2, tags: {{role: core}}, credentials: core-v3, collectors: {{snmp: }}}}
          - {{name: core-2, address: 127.0.0.3, tags: {{role: core}}, credentials: core2-v3, collectors: {{snmp: }}}}
          - {{name: sw-v2, address: 127.0.0.4, credentials: v2, collectors: {{snmp: }}}}
"""
SECRETS = """
core-v3: {user: noc, auth_protocol: sha, auth_key: auth-pass-123, priv_protocol: aes, priv_key: priv-pass-456}
core2-v3: {user: noc2, auth_protocol: sha256, auth_key: auth-pass-789, priv_protocol: aes256, priv_key: priv-pass-000}
v2: {community: public}
"""
LINK_DOWN = "1.3.6.1.6.3.1.1.5.3"
IF_INDEX, IF_ADMIN, IF_OPER = "1.3.6.1.2.1.2.2.1.1", "1.3.6.1.2.1.2.2.1.7", "1.3.6.1.2.1.2.2.1.8"


async def v3_trap(port: int, source: str, user: UsmUserData, engine_id: str, if_index: int = 3) -> None:
    engine = SnmpEngine(OctetString(hexValue=engine_id))
    target = await UdpTransportTarget.create(("127.0.0.1", port), timeout=2, retries=0)
    target.set_local_address((source, 0))
    notification = NotificationType(ObjectIdentity(LINK_DOWN)).add_varbinds(
        (ObjectIdentity(f"{IF_INDEX}.{if_index}"), Integer32(if_index)),
        (ObjectIdentity(f"{IF_ADMIN}.{if_index}"), Integer32(1)),
        (ObjectIdentity(f"{IF_OPER}.{if_index}"), Integer32(2)),
    )
    try:
        await send_notification(engine, user, target, ContextData(), "trap", notification)
    finally:
        engine.close_dispatcher()


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[Agent, int, Clock]]:
    port = free_port()
    async with running_agent(tmp_path, CONFIG.format(port=port), SECRETS) as (agent, clock):
        yield agent, port, clock


def health(agent: Agent) -> dict[str, Any]:
    return latest_fields(agent, "snmp_trap_receiver")


async def test_authpriv_traps_from_any_engine_id_open_with_the_device_user(running) -> None:
    agent, port, clock = running
    uplink = {"client": "acme", "site": "hq", "device": "core-1", "role": "core", "if_index": "3", "if_name": "Gi1/0/3",
              "if_alias": "Uplink to dist-1", "if_type": "ethernetCsmacd"}
    await submit_poll(agent, "snmp_interface", uplink, {"admin_status": "up", "oper_status": "up"}, clock.now - 60)
    noc = UsmUserData("noc", "auth-pass-123", "priv-pass-456", authProtocol=usmHMACSHAAuthProtocol,
                      privProtocol=usmAesCfb128Protocol)
    await v3_trap(port, "127.0.0.2", noc, "8000000001020304")
    (alert,) = await until(lambda: firing(agent, "snmp_trap_uplink_down"), "the uplink-down alert from a v3 trap")
    assert alert.labels["device"] == "core-1" and alert.labels["if_index"] == "3"
    await agent.pipeline.drain()
    (version,) = [r.value for r in agent.state.latest("snmp_trap", {"trap": "link_down"}) if r.field == "version"]
    assert version == "3"
    # SHA-256 and AES-256 (the Reeder key extension, as pysnmp and Cisco do), another engine ID
    noc2 = UsmUserData("noc2", "auth-pass-789", "priv-pass-000", authProtocol=usmHMAC192SHA256AuthProtocol,
                       privProtocol=usmAesCfb256Protocol)
    await v3_trap(port, "127.0.0.3", noc2, "80001f8880aabbccdd")
    await until(lambda: {r.tags["device"] for r in agent.state.latest("snmp_trap", {"trap": "link_down"})}
                == {"core-1", "core-2"}, "core-2's v3 trap too")


async def test_wrong_keys_levels_users_and_a_v2c_device_are_refused_and_counted(running) -> None:
    agent, port, _ = running
    wrong_auth = UsmUserData("noc", "not-the-password", "priv-pass-456", authProtocol=usmHMACSHAAuthProtocol,
                             privProtocol=usmAesCfb128Protocol)
    await v3_trap(port, "127.0.0.2", wrong_auth, "8000000001020304")
    no_priv = UsmUserData("noc", "auth-pass-123", authProtocol=usmHMACSHAAuthProtocol)
    await v3_trap(port, "127.0.0.2", no_priv, "8000000001020304")
    stranger = UsmUserData("intruder", "auth-pass-123", "priv-pass-456", authProtocol=usmHMACSHAAuthProtocol,
                           privProtocol=usmAesCfb128Protocol)
    await v3_trap(port, "127.0.0.2", stranger, "8000000001020304")
    # sw-v2 polls with a community: it has no USM user to open a v3 trap with
    await v3_trap(port, "127.0.0.4", no_priv, "8000000001020305")
    counted = await until(lambda: (h := health(agent)) and h.get("v3_unknown_user") == 2 and h, "four refusals")
    assert (counted["v3_auth_failed"], counted["v3_wrong_security_level"], counted["accepted"]) == (1, 1, 0)
    assert not agent.state.latest("snmp_trap")


@pytest.mark.parametrize(("auth", "priv", "auth_name", "priv_name"), [
    (usmHMACMD5AuthProtocol, usmDESPrivProtocol, "md5", "des"),
    (usmHMACSHAAuthProtocol, usm3DESEDEPrivProtocol, "sha", "3des"),
    (usmHMAC384SHA512AuthProtocol, usmAesCfb192Protocol, "sha512", "aes192"),
    (usmHMAC128SHA224AuthProtocol, usmNoPrivProtocol, "sha224", None),
])
async def test_every_protocol_pair_opens_as_pysnmp_sealed_it(auth, priv, auth_name, priv_name) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        pysnmp_user = UsmUserData("noc", "auth-secret-1", "priv-secret-2" if priv_name else None,
                                  authProtocol=auth, privProtocol=priv)
        await v3_trap(receiver.getsockname()[1], "127.0.0.1", pysnmp_user, "80000009030011223344", if_index=9)
        datagram = receiver.recv(65535)
    message = ber.decode_v3_message(datagram)
    user = UsmUser("noc", auth_name, "auth-secret-1", priv_name, "priv-secret-2" if priv_name else None)
    notification = ber.decode_scoped_notification(Usm(time.time).open(message, datagram, user))
    assert ber.encode_oid(f"{IF_INDEX}.9") in [oid for oid, _, _ in notification.varbinds]
    with pytest.raises(UsmError, match="wrong digest"):
        Usm(time.time).open(message, datagram, replace(user, auth_key="another-secret"))


def test_a_replayed_trap_is_refused() -> None:
    now = [1000.0]
    usm = Usm(lambda: now[0])
    user = UsmUser("noc")  # noAuthNoPriv: timeliness needs authentication, so it is never checked
    message = ber.V3Message(1, 0, b"\x80\x00\x00\x00\x01", 5, 100, b"noc", b"", 0, b"", b"\x30\x00")
    assert usm.open(message, b"", user) == b"\x30\x00"
    usm._in_time(ber.V3Message(1, 1, b"e", 5, 1000, b"noc", b"", 0, b"", b""))
    now[0] += 10
    usm._in_time(ber.V3Message(1, 1, b"e", 5, 1005, b"noc", b"", 0, b"", b""))  # within the window
    with pytest.raises(UsmError, match="replay"):
        usm._in_time(ber.V3Message(1, 1, b"e", 4, 2000, b"noc", b"", 0, b"", b""))  # an earlier boot
    now[0] += 1000
    with pytest.raises(UsmError, match="replay"):
        usm._in_time(ber.V3Message(1, 1, b"e", 5, 1010, b"noc", b"", 0, b"", b""))  # 1000 s behind
