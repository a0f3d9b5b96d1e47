"""Trap -> alert -> ticket latency of the real agent: is a trap-driven interface down a ticket within
5 s (issue 11's acceptance, p99)? With ``--syslog``, the same for Cisco %LINK-3-UPDOWN lines (the
issue's goal there: the event within 2 s).

    python bench/bench_traps.py [--traps 300] [--rate 50] [--devices 10] [--syslog]

The agent (agent.runner.Agent, what `vigie run` starts) runs in this process with the snmp_traps
service on a loopback port, the embedded SQLite store, the built-in ticket log and the shipped
rules; its inventory is ``--devices`` core switches on 127.0.0.2... whose uplinks were polled once
(an snmp_interface sample per port, alias "Uplink ..."). A sender thread sends ``--traps`` SNMPv2c
linkDown traps (collectors/snmp/ber.py), each for another (device, ifIndex), from the device's own
address, ``--rate`` per second in all (within the per-sender token bucket). Each one must fire
`snmp_trap_uplink_down` and open a ticket. ``--syslog``: the syslog service instead, sent RFC 3164
Cisco lines over UDP, each firing `syslog_uplink_down`.

Printed: trap -> firing (send time to the engine's transition, seen by an `Agent.listeners`
callback) and trap -> ticket (send time to the ticket's `opened_at` in the outbox), p50 / p99 /
max, and how many of the traps made an alert and a ticket, against the 5 s goal. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.api import Sample  # noqa: E402
from agent.config import load_config  # noqa: E402
from agent.plugins import Plugins  # noqa: E402
from agent.runner import Agent  # noqa: E402
from collectors.snmp import ber  # noqa: E402

GOAL_S = 5.0
PORTS_PER_DEVICE = 48
LINK_DOWN = "1.3.6.1.6.3.1.1.5.3"
SERVICES = {
    "trap": "snmp_traps: {{address: 127.0.0.1, port: {port}, rate_per_source: 100, burst_per_source: 500}}",
    "syslog": "syslog: {{address: 127.0.0.1, udp_port: {port}, tcp_port: null, rate_per_source: 100, "
              "burst_per_source: 500}}",
}
RULES = {"trap": "snmp_trap_uplink_down", "syslog": "syslog_uplink_down"}


def config_text(kind: str, port: int, devices: int) -> str:
    lines = "\n".join(
        f"          - {{name: core-{n}, address: 127.0.0.{n + 2}, tags: {{role: core}}}}" for n in range(devices)
    )
    return textwrap.dedent(f"""
        agent:
          services:
            {SERVICES[kind].format(port=port)}
        clients:
          - name: bench
            display_name: Bench
            sites:
              - name: hq
                devices:
        """) + lines + "\n"


def link_down(if_index: int) -> bytes:
    varbinds = [
        (ber.encode_oid("1.3.6.1.2.1.1.3.0"), ber.TIMETICKS, 12345),
        (ber.encode_oid("1.3.6.1.6.3.1.1.4.1.0"), ber.OBJECT_IDENTIFIER, ber.encode_oid(LINK_DOWN)),
        (ber.encode_oid(f"1.3.6.1.2.1.2.2.1.1.{if_index}"), ber.INTEGER, if_index),
        (ber.encode_oid(f"1.3.6.1.2.1.2.2.1.7.{if_index}"), ber.INTEGER, 1),
        (ber.encode_oid(f"1.3.6.1.2.1.2.2.1.8.{if_index}"), ber.INTEGER, 2),
    ]
    return ber.encode_pdu(ber.VERSION_2C, b"public", ber.TRAP_V2, if_index, varbinds)


def cisco_line(if_index: int) -> bytes:
    return (f"<187>{if_index}: *Mar 21 14:31:27.339: %LINK-3-UPDOWN: Interface GigabitEthernet1/0/{if_index}, "
            "changed state to down").encode()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def line(name: str, values: list[float]) -> str:
    if not values:
        return f"{name:<18} none"
    p99 = percentile(values, 0.99)
    verdict = "PASS" if p99 <= GOAL_S else "FAIL"
    return (f"{name:<18} p50 {statistics.median(values) * 1000:7.1f} ms   p99 {p99 * 1000:7.1f} ms   "
            f"max {max(values) * 1000:7.1f} ms   ({verdict} against the {GOAL_S:g} s goal at p99)")


async def run(kind: str, traps: int, rate: float, devices: int) -> None:
    port = free_udp_port()
    with tempfile.TemporaryDirectory(prefix="vigie-bench-traps-") as tmp:
        root = Path(tmp)
        (root / "vigie.yaml").write_text(config_text(kind, port, devices))
        (root / "secrets.yaml").write_text("{}\n")
        (root / "secrets.yaml").chmod(0o600)
        plugins = Plugins.discover()
        config = load_config(root / "vigie.yaml", root / "secrets.yaml", environ={}, plugins=plugins)
        agent = Agent(config, state_dir=root / "state", plugins=plugins, health_interval_s=3600)
        fired: dict[tuple[str, str], float] = {}

        def listener(transitions, _done) -> None:
            now = time.time()
            for transition in transitions:
                alert = transition.alert
                if transition.state == "firing" and alert.rule == RULES[kind]:
                    fired.setdefault((alert.device, alert.labels["if_index"]), now)

        agent.listeners.append(listener)
        await agent.start()
        try:
            now = time.time()
            polled = [
                Sample("snmp_interface", {"client": "bench", "site": "hq", "device": f"core-{d}", "role": "core",
                                          "if_index": str(i), "if_name": f"Gi1/0/{i}", "if_alias": f"Uplink {i}"},
                       {"admin_status": "up", "oper_status": "up", "if_descr": f"GigabitEthernet1/0/{i}"},
                       int(now * 1e9))
                for d in range(devices) for i in range(1, PORTS_PER_DEVICE + 1)
            ]
            await agent.pipeline.submit(polled)
            await agent.pipeline.drain()
            plan = [(n % devices, n // devices + 1) for n in range(traps)]
            if max(i for _, i in plan) > PORTS_PER_DEVICE:
                raise SystemExit(f"at most {devices * PORTS_PER_DEVICE} traps with {devices} devices")
            sent: dict[tuple[str, str], float] = {}

            def sender() -> None:
                sockets = {d: socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for d in range(devices)}
                for d, sock in sockets.items():
                    sock.bind((f"127.0.0.{d + 2}", 0))
                start = time.monotonic()
                for n, (d, if_index) in enumerate(plan):
                    delay = start + n / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    sent[(f"core-{d}", str(if_index))] = time.time()
                    message = link_down(if_index) if kind == "trap" else cisco_line(if_index)
                    sockets[d].sendto(message, ("127.0.0.1", port))
                for sock in sockets.values():
                    sock.close()

            thread = threading.Thread(target=sender, name="trap-sender")
            thread.start()
            deadline = time.monotonic() + traps / rate + 30
            while time.monotonic() < deadline:
                opened = agent.dispatcher.links(states=["open"])
                if len(fired) >= traps and len(opened) >= traps:
                    break
                await asyncio.sleep(0.1)
            thread.join()
            by_fingerprint = {a.fingerprint: (a.device, a.labels["if_index"]) for a in agent.engine.alerts()}
            ticketed = {by_fingerprint[link.fingerprint]: link.opened_at for link in agent.dispatcher.links()
                        if link.opened_at is not None and link.fingerprint in by_fingerprint}
        finally:
            await agent.stop()
    to_fire = [fired[k] - sent[k] for k in sent if k in fired]
    to_ticket = [ticketed[k] - sent[k] for k in sent if k in ticketed]
    what = "linkDown traps" if kind == "trap" else "Cisco %LINK-3-UPDOWN syslog lines"
    print(f"{traps} {what}, {rate:g}/s from {devices} devices, each an uplink of a core switch")
    print(f"alerts fired: {len(to_fire)}/{traps}   tickets opened: {len(to_ticket)}/{traps} (built-in ticket log)")
    print(line(f"{kind} -> firing", to_fire))
    print(line(f"{kind} -> ticket", to_ticket))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traps", type=int, default=300)
    parser.add_argument("--rate", type=float, default=50.0, help="traps per second, all senders together")
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--syslog", action="store_true", help="syslog lines to the syslog service instead")
    args = parser.parse_args()
    asyncio.run(run("syslog" if args.syslog else "trap", args.traps, args.rate, args.devices))


if __name__ == "__main__":
    main()
