"""The syslog receiver in a real agent, fed over UDP and TCP on loopback from the addresses of the
inventory devices (Linux answers for all of 127.0.0.0/8). The agent's clock is driven by the test;
waits are for an observable state, with a bound."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.runner import Agent
from collectors.syslog.receiver import compile_patterns
from collectors.syslog.store import MessageStore
from tests.receivers import Clock, firing, free_port, latest_fields, running_agent, submit_poll, until

CONFIG = """
agent:
  services:
    syslog:
      address: 127.0.0.1
      udp_port: {udp}
      tcp_port: {tcp}
      rate_per_source: 1
      burst_per_source: 20
      confirm_interval_s: 0.05
      health_interval_s: 0.05
clients:
  - name: acme
    display_name: Acme
    sites:
      - name: hq
        devices:
          - {{name: sw-1, address: 127.0.0.2, tags: {{role: core}}}}
          - {{name: web-1, address: 127.0.0.3}}
          - {{name: fw-1, address: 127.0.0.4}}
          - {{name: twin-a, address: 127.0.0.5}}
          - {{name: twin-b, address: 127.0.0.5}}
"""
LINK_DOWN = "<187>158: *Mar 21 14:31:27.339: %LINK-3-UPDOWN: Interface GigabitEthernet1/0/3, changed state to down"
LINK_UP = "<189>159: *Mar 21 14:32:01.101: %LINK-3-UPDOWN: Interface GigabitEthernet1/0/3, changed state to up"


class Ports:
    def __init__(self) -> None:
        self.udp = free_port(socket.SOCK_DGRAM)
        self.tcp = free_port(socket.SOCK_STREAM)

    def udp_send(self, line: str, source: str) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.bind((source, 0))
            sender.sendto(line.encode(), ("127.0.0.1", self.udp))

    async def tcp_send(self, payload: bytes, source: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.tcp, local_addr=(source, 0))
        writer.write(payload)
        await writer.drain()
        writer.close()
        await writer.wait_closed()


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[Agent, Ports, Clock]]:
    ports = Ports()
    async with running_agent(tmp_path, CONFIG.format(udp=ports.udp, tcp=ports.tcp)) as (agent, clock):
        yield agent, ports, clock


def health(agent: Agent) -> dict[str, Any]:
    return latest_fields(agent, "syslog_receiver")


def events(agent: Agent, event: str) -> dict[str, Any]:
    return latest_fields(agent, "syslog_event", {"event": event})


async def poll(agent: Agent, measurement: str, device: str, tags: dict[str, str], fields: dict[str, Any],
               at: float) -> None:
    base = {"client": "acme", "site": "hq", "device": device, **({"role": "core"} if device == "sw-1" else {})}
    await submit_poll(agent, measurement, {**base, **tags}, fields, at)


async def test_a_cisco_link_down_line_fires_on_the_polled_interface_and_only_a_poll_resolves_it(running, tmp_path):
    agent, ports, clock = running
    uplink = {"if_index": "3", "if_name": "Gi1/0/3", "if_alias": "Uplink to core"}
    await poll(agent, "snmp_interface", "sw-1", uplink,
               {"if_descr": "GigabitEthernet1/0/3", "oper_status": "up", "admin_status": "up"}, clock.now - 60)
    ports.udp_send(LINK_DOWN, "127.0.0.2")
    (alert,) = await until(lambda: firing(agent, "syslog_uplink_down"), "the uplink alert")
    assert (alert.labels["if_index"], alert.labels["if_name"]) == ("3", "Gi1/0/3")
    assert alert.summary == "sw-1 (hq) uplink Gi1/0/3 down (syslog)"
    await agent.pipeline.drain()
    assert events(agent, "link_down")["interface"] == "GigabitEthernet1/0/3"

    ports.udp_send(LINK_UP, "127.0.0.2")
    await until(lambda: events(agent, "link_up"), "the link-up event")
    clock.now += 60
    rounds = health(agent).get("confirmation_rounds", 0)
    await until(lambda: health(agent).get("confirmation_rounds", 0) >= rounds + 3, "confirmation rounds")
    assert firing(agent, "syslog_uplink_down"), "a message never resolves an alert"
    await poll(agent, "snmp_interface", "sw-1", uplink, {"oper_status": "up", "admin_status": "up"}, clock.now)
    await until(lambda: not firing(agent, "syslog_uplink_down"), "resolution by the poll")

    store = MessageStore(tmp_path / "state" / "syslog.db", clock, keep_s=86400, max_messages=100)
    kept = store.recent("acme", "sw-1")
    assert [m.event for m in kept] == ["link_up", "link_down"] and kept[1].text.endswith("changed state to down")
    store.close()


async def test_tcp_octet_counted_and_newline_framed_a_disk_error_until_a_quiet_day(running) -> None:
    agent, ports, clock = running
    disk = "<3>Jan  5 10:00:01 web-1 kernel: blk_update_request: I/O error, dev sdb, sector 123456 op 0x0:(READ)"
    framed = f"{len(disk.encode())} {disk}".encode() + b"<6>Jan  5 10:00:02 web-1 systemd[1]: Started x.\n"
    await ports.tcp_send(framed, "127.0.0.3")
    (alert,) = await until(lambda: firing(agent, "syslog_disk_error"), "the disk alert")
    assert alert.labels["disk"] == "sdb" and alert.severity == "major"
    await until(lambda: health(agent).get("stored_messages") == 2, "both messages kept")
    clock.now += 86400
    await until(lambda: not firing(agent, "syslog_disk_error"), "resolution after a quiet day")
    assert events(agent, "disk_error")["cleared_by"] == "quiet"


async def test_failed_logins_alert_as_a_burst_and_end_when_quiet(running) -> None:
    agent, ports, clock = running
    line = "<38>Jan  5 10:00:01 web-1 sshd[99]: Failed password for invalid user admin from 192.0.2.7 port 4 ssh2"
    for _ in range(9):
        ports.udp_send(line, "127.0.0.3")
        clock.now += 1
    await until(lambda: events(agent, "auth_failure").get("count") == 9, "nine failures seen")
    await agent.pipeline.drain()
    assert not firing(agent, "syslog_auth_failure_burst")
    ports.udp_send(line, "127.0.0.3")
    (alert,) = await until(lambda: firing(agent, "syslog_auth_failure_burst"), "the burst alert")
    assert alert.summary == "web-1: 10 failed logins within 300.0 s (last user admin, syslog)"
    clock.now += 301
    await until(lambda: not firing(agent, "syslog_auth_failure_burst"), "the end of the burst")


async def test_a_sophos_failover_and_the_hostname_telling_devices_on_one_address_apart(running) -> None:
    agent, ports, _ = running
    ports.udp_send('<30>device="SFW" date=2026-01-05 time=10:00:00 log_type="Event" log_component="HA" '
                   'log_subtype="System" status="Successful" message="HA: Auxiliary became primary, failover '
                   'completed"', "127.0.0.4")
    (alert,) = await until(lambda: firing(agent, "syslog_failover"), "the failover alert")
    assert alert.device == "fw-1"
    ports.udp_send("<13>1 2026-01-05T10:00:00Z twin-b.example.org app - - - disk I/O error, dev sda, sector 9",
                   "127.0.0.5")
    ports.udp_send("<13>Jan  5 10:00:00 twin-c app: I/O error, dev sda, sector 9", "127.0.0.5")
    (disk,) = await until(lambda: firing(agent, "syslog_disk_error"), "the disk alert of twin-b")
    assert disk.device == "twin-b"
    await until(lambda: health(agent).get("ambiguous_source") == 1, "twin-c counted")


async def test_bad_input_unknown_senders_and_a_flood_are_counted_and_dropped(running) -> None:
    agent, ports, clock = running
    ports.udp_send("<999>not a priority", "127.0.0.3")
    ports.udp_send("<13>hello from nowhere", "127.0.0.77")
    for n in range(100):
        ports.udp_send(f"<14>Jan  5 10:00:00 web-1 app: line {n}", "127.0.0.3")
    await ports.tcp_send(b"999999 <13>far too long a frame", "127.0.0.2")
    counts = await until(lambda: (h := health(agent)).get("received", 0) >= 101 and h.get("malformed") == 2 and h,
                         "every message counted")
    assert (counts["unknown_source"], counts["rate_limited"]) == (1, 81)  # the bad PRI took a token
    await until(lambda: health(agent).get("stored_messages") == 19, "what passed is kept")
    clock.now += 30
    ports.udp_send(LINK_DOWN, "127.0.0.3")
    await until(lambda: events(agent, "link_down"), "the receiver goes on")


@pytest.mark.parametrize(("line", "event", "wanted"), [
    (LINK_DOWN, "link_down", {"interface": "GigabitEthernet1/0/3"}),
    ("<189>12: Mar 1 00:00:10: %SYS-5-RESTART: System restarted --", "restart", {"detail": "System restarted --"}),
    ("<188>%SEC_LOGIN-4-LOGIN_FAILED: Login failed [user: bob] [Source: 10.1.1.1] [localport: 22] [Reason: Login "
     "Authentication Failed]", "auth_failure", {"user": "bob", "remote": "10.1.1.1"}),
    ("<161>%ASA-1-104001: (Secondary) Switching to ACTIVE - Other unit wants me Active.", "failover",
     {"unit": "Secondary", "role": "ACTIVE"}),
    ('<30>device="SFW" log_component="Admin" log_subtype="Authentication" status="Failed" user_name="admin" '
     'message="User admin failed to login"', "auth_failure", {"user": "admin"}),
    ("<3>kernel: Buffer I/O error on dev sdc1, logical block 0", "disk_error", {"disk": "sdc1"}),
    ("<3>kernel: EXT4-fs error (device dm-0): ext4_find_entry:1455: inode #2: comm ls", "disk_error", {}),
    ("<3>kernel: XFS (sdd1): metadata I/O error in xfs_trans_read_buf", "disk_error", {"disk": "sdd1"}),
    ("<86>Jan  5 sshd[7]: pam_unix(sshd:auth): authentication failure; logname= uid=0 rhost=198.51.100.4",
     "auth_failure", {"rhost": "198.51.100.4"}),
])
def test_the_built_in_patterns_on_lines_as_devices_write_them(line: str, event: str, wanted: dict[str, str]) -> None:
    text = line.split(">", 1)[1]
    (pattern, found) = next((p, m) for p in compile_patterns([]) if (m := p.regex.search(text)))
    assert pattern.spec.event == event
    assert {k: v for k, v in found.groupdict().items() if k in wanted} == wanted


async def test_the_raw_lines_are_shown_beside_the_device_alerts(running, tmp_path) -> None:
    agent, ports, clock = running
    uplink = {"if_index": "3", "if_name": "Gi1/0/3", "if_alias": "Uplink to core"}
    await poll(agent, "snmp_interface", "sw-1", uplink,
               {"if_descr": "GigabitEthernet1/0/3", "oper_status": "up", "admin_status": "up"}, clock.now - 60)
    ports.udp_send(LINK_DOWN, "127.0.0.2")
    await until(lambda: firing(agent, "syslog_uplink_down"), "the uplink alert")
    await until(lambda: health(agent).get("stored_messages") == 1, "the line kept")
    # `vigie alerts --device`, read-only beside the live agent, as the NOC types it
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "agent.cli", "alerts", "--state-dir", str(tmp_path / "state"), "--device", "acme/sw-1",
         "--json"], capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    alert, message = [json.loads(line) for line in done.stdout.splitlines()]
    assert (alert["device"], alert["rule"]) == ("sw-1", "syslog_uplink_down")
    assert (message["origin"], message["source"], message["event"]) == ("syslog", "127.0.0.2", "link_down")
    assert message["text"].endswith("changed state to down")
    text = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "agent.cli", "alerts", "--state-dir", str(tmp_path / "state"),
                         "--device", "sw-1"], capture_output=True, text=True, timeout=60,
    )
    assert text.returncode == 64 and "give CLIENT/DEVICE" in text.stderr  # EX_USAGE
