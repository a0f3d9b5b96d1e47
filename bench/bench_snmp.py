"""SNMP polling cost of vigie against a peer measured in the same run (ratios, never thresholds).

    python bench/bench_snmp.py [--devices 100] [--seconds 6] [--peer auto|exporter|pysnmp]
                               [--transport ber|pysnmp ...]

fastresp (bench/fastresp.py, its own process) replays the Cisco 2960X walk on one loopback port per
simulated device. Every poll walks sysUpTime + 12 IF-MIB columns = 1,709 varbinds (the workload of
/work/shared/bench/README.md). Each vigie phase runs in a fresh child process, so its CPU time
(time.process_time) and peak RSS (ru_maxrss) are the poller's alone.

- vigie SnmpClient: walks at 1, 10 and 100 polls in flight, once per transport (``--transport``,
  repeatable; default both): ``ber`` (collectors/snmp/ber.py on one shared socket, what SNMPv1/v2c
  use) and ``pysnmp`` (what SNMPv3 uses). Varbinds are counted per request (SnmpClient._request is
  wrapped in the child), so a window cut mid-poll is still exact.
- peer: Debian's prometheus-snmp-exporter (0.21 snmp.yml, same walks, metrics for every column)
  scraped over HTTP at the same concurrency, its CPU read from /proc/<pid>/stat. If the exporter is
  not installed (and cannot be: not root / no apt), or with ``--peer pysnmp``, the peer is vigie's
  own pysnmp transport (then measured only as the peer) and the output says so: the ratios are then
  BER / pysnmp, vigie against itself, not against an outside poller.
- vigie SnmpCollector.collect with the cisco_ios profile on the same endpoints (SNMPv2c, so the
  BER transport): CPU per device poll.

Drops: `sock drops` is the kernel's drop counter of the poller's own UDP sockets (/proc/net/udp);
`RcvbufErrors` the system-wide UDP counter over the phase (includes fastresp's sockets).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SNMPREC_CANDIDATES = (REPO / "lab/snmprec/ios_2960x.snmprec", Path("/work/shared/snmprec/ios_2960x.snmprec"))

SYS_UPTIME = "1.3.6.1.2.1.1.3"
# (name, oid, snmp_exporter type); 146*6 + 140*4 + 136*2 = 1,708 rows on the 2960X, + sysUpTime.0.
COLUMNS = (
    ("ifDescr", "1.3.6.1.2.1.2.2.1.2", "DisplayString"),
    ("ifType", "1.3.6.1.2.1.2.2.1.3", "gauge"),
    ("ifAdminStatus", "1.3.6.1.2.1.2.2.1.7", "gauge"),
    ("ifOperStatus", "1.3.6.1.2.1.2.2.1.8", "gauge"),
    ("ifInDiscards", "1.3.6.1.2.1.2.2.1.13", "counter"),
    ("ifInErrors", "1.3.6.1.2.1.2.2.1.14", "counter"),
    ("ifOutDiscards", "1.3.6.1.2.1.2.2.1.19", "counter"),
    ("ifOutErrors", "1.3.6.1.2.1.2.2.1.20", "counter"),
    ("ifName", "1.3.6.1.2.1.31.1.1.1.1", "DisplayString"),
    ("ifHCInOctets", "1.3.6.1.2.1.31.1.1.1.6", "counter"),
    ("ifHCOutOctets", "1.3.6.1.2.1.31.1.1.1.10", "counter"),
    ("ifHighSpeed", "1.3.6.1.2.1.31.1.1.1.15", "gauge"),
)
WALKS = (SYS_UPTIME, *(oid for _, oid, _ in COLUMNS))
VARBINDS_PER_POLL = 1709
INFLIGHT = (1, 10, 100)
MAX_REPETITIONS = 25  # vigie's default and snmp_exporter's
TIMEOUT_S = 2.0
RETRIES = 1
RAMP_S = 1.0  # load before the measured window opens
EXPORTER = "prometheus-snmp-exporter"
TRANSPORTS = ("ber", "pysnmp")
PEER_TRANSPORT = "pysnmp"  # the peer when snmp_exporter is absent or --peer pysnmp


# ----------------------------------------------------------------------------------- /proc helpers
def udp_counters() -> dict[str, int]:
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
    return dict(zip(lines[0][1:], map(int, lines[1][1:]), strict=True))


def own_socket_drops() -> int:
    """Kernel drops (full receive buffer) summed over this process's UDP sockets."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    drops = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[9] in inodes:
                drops += int(cols[-1])
    return drops


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def proc_peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_ports(n: int, kind: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, kind)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# ------------------------------------------------------------------------------- child: the pollers
class Window:
    """Counts work done between ``open`` and ``close`` (requests finishing inside the window)."""

    def __init__(self) -> None:
        self.open = False
        self.varbinds = self.polls = self.timeouts = self.errors = self.short = 0

    def add_varbinds(self, n: int) -> None:
        if self.open:
            self.varbinds += n


async def drive(poll_one, ports: list[int], inflight: int, seconds: float, window: Window) -> dict:
    """``inflight`` workers poll the devices round-robin; measure a window after a ramp-up."""
    stop = asyncio.Event()

    async def worker(start: int) -> None:
        k = start
        while not stop.is_set():
            port = ports[k % len(ports)]
            k += inflight
            try:
                n = await poll_one(port, window)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a bench counts failures, it does not stop
                if window.open:
                    if type(exc).__name__ == "Unreachable" or isinstance(exc, TimeoutError):
                        window.timeouts += 1
                    else:
                        window.errors += 1
                continue
            if window.open:
                window.polls += 1
                if n is not None and n != VARBINDS_PER_POLL:
                    window.short += 1

    tasks = [asyncio.create_task(worker(i)) for i in range(inflight)]
    await asyncio.sleep(RAMP_S)
    drops0, udp0 = own_socket_drops(), udp_counters()
    cpu0, t0 = time.process_time(), time.perf_counter()
    window.open = True
    await asyncio.sleep(seconds)
    window.open = False
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    drops, udp = own_socket_drops() - drops0, udp_counters()
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "inflight": inflight,
        "wall_s": wall,
        "cpu_s": cpu,
        "varbinds": window.varbinds,
        "polls": window.polls,
        "timeouts": window.timeouts,
        "errors": window.errors,
        "short": window.short,
        "sock_drops": drops,
        "rcvbuf_errors": udp["RcvbufErrors"] - udp0["RcvbufErrors"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def count_requests(window: Window):
    """Wrap SnmpClient._request (in this child process only) so every varbind is counted."""
    from collectors.snmp.client import SnmpClient

    original = SnmpClient._request

    async def counted(self, op, oids):
        var_binds = await original(self, op, oids)
        window.add_varbinds(len(var_binds))
        return var_binds

    SnmpClient._request = counted


def pysnmp_receive_buffer() -> int | None:
    """SO_RCVBUF of the loop's pysnmp engine socket (the BER one is receive_buffer_bytes())."""
    from pysnmp.carrier.asyncio.dgram import udp

    from collectors.snmp.client import shared_engine

    dispatcher = shared_engine().transport_dispatcher
    transport = dispatcher.get_transport(udp.DOMAIN_NAME) if dispatcher is not None else None
    sock = transport.transport.get_extra_info("socket") if transport and transport.transport else None
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) if sock is not None else None


async def child_client(ports: list[int], inflight: int, seconds: float, transport: str) -> dict:
    from collectors.snmp.client import SnmpClient, receive_buffer_bytes

    window = Window()
    count_requests(window)
    clients = {
        p: SnmpClient("127.0.0.1", p, timeout_s=TIMEOUT_S, retries=RETRIES, max_repetitions=MAX_REPETITIONS,
                      transport=transport)
        for p in ports
    }
    # Warm-up: one GET per device opens the transport; then one full poll checks the workload.
    await asyncio.gather(*(c.get([SYS_UPTIME + ".0"]) for c in clients.values()))
    sizes = [len(await clients[ports[0]].walk(oid)) for oid in WALKS]

    async def poll_one(port: int, _window: Window) -> int:
        client = clients[port]
        n = 0
        for oid in WALKS:
            n += len(await client.walk(oid))
        return n

    result = await drive(poll_one, ports, inflight, seconds, window)
    result["varbinds_per_poll"] = sum(sizes)
    result["so_rcvbuf"] = receive_buffer_bytes() if transport == "ber" else pysnmp_receive_buffer()
    result["transport"] = transport
    return result


async def child_collector(ports: list[int], inflight: int, seconds: float, transport: str) -> dict:
    from agent.api import Sink, Target
    from collectors.snmp import SnmpCollector
    from collectors.snmp.profile import ProfileSet

    window = Window()
    count_requests(window)
    profiles = ProfileSet.load()
    options = {"profile": "cisco_ios", "timeout_s": TIMEOUT_S, "retries": RETRIES, "max_repetitions": MAX_REPETITIONS}
    devices = {
        p: (SnmpCollector(options, profiles=profiles), Target(name=f"dev{p}", address="127.0.0.1", port=p,
            credentials={"community": "public"}))
        for p in ports
    }
    samples = [0]
    # Per-device cost, alone (1 in flight): poll one device 4 times, average the last 3 (with rates).
    collector, target = devices[ports[0]]
    await collector.collect(target, Sink({}, time.time_ns))
    window.open = True
    cpu0 = time.process_time()
    solo = 3
    for _ in range(solo):
        sink = Sink({"client": "bench", "site": "lab", "device": target.name}, time.time_ns)
        await collector.collect(target, sink)
    solo_cpu = (time.process_time() - cpu0) / solo
    solo_vbs, solo_samples = window.varbinds / solo, len(sink.samples)
    window.open, window.varbinds = False, 0

    async def poll_one(port: int, window: Window) -> None:
        collector, target = devices[port]
        sink = Sink({"client": "bench", "site": "lab", "device": target.name}, time.time_ns)
        await collector.collect(target, sink)
        if window.open:
            samples[0] += len(sink.samples)

    result = await drive(poll_one, ports, inflight, seconds, window)
    result["samples"] = samples[0]
    result.update(solo_cpu_s=solo_cpu, solo_varbinds=solo_vbs, solo_samples=solo_samples)
    return result


CHILDREN = {"client": child_client, "collector": child_collector}


# ------------------------------------------------------------------------------ parent: orchestration
def run_child(kind: str, ports: list[int], inflight: int, seconds: float, responder_pid: int,
              transport: str = "ber") -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--inflight", str(inflight), "--seconds", str(seconds),
           "--ports", ",".join(map(str, ports)), "--child-transport", transport]
    r0 = proc_cpu_s(responder_pid)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=seconds + 120)
    if out.returncode != 0:
        raise SystemExit(f"bench child {kind} failed:\n{out.stderr}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # fastresp also serves the warm-up; this is an upper bound of its load during the window.
    result["responder_core"] = (proc_cpu_s(responder_pid) - r0) / (time.perf_counter() - t0)
    return result


def exporter_config(path: Path) -> None:
    lines = ["bench:", f"  walk: [{', '.join(WALKS)}]", "  version: 2",
             f"  max_repetitions: {MAX_REPETITIONS}", f"  retries: {RETRIES}", f"  timeout: {TIMEOUT_S:g}s",
             "  auth:", "    community: public", "  metrics:",
             f"  - {{name: sysUpTime, oid: {SYS_UPTIME}, type: gauge, help: sysUpTime}}"]
    for name, oid, kind in COLUMNS:
        lines.append(f"  - {{name: {name}, oid: {oid}, type: {kind}, help: {name}, "
                     "indexes: [{labelname: ifIndex, type: gauge}]}")
    path.write_text("\n".join(lines) + "\n")


def find_exporter() -> tuple[str | None, str]:
    found = shutil.which(EXPORTER)
    if found:
        return found, ""
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {EXPORTER} (apt-get)...", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        r = subprocess.run(["apt-get", "install", "-y", "-qq", EXPORTER], capture_output=True, text=True, env=env)
        found = shutil.which(EXPORTER)
        if found:
            return found, ""
        return None, f"apt-get install {EXPORTER} failed: {r.stderr.strip().splitlines()[-1:]}"
    return None, f"{EXPORTER} not installed and not root (cannot apt-get)"


async def scrape(url_host: str, port: int, path: str) -> tuple[int, int]:
    """One HTTP scrape -> (pdus returned, packets retried); raises on HTTP or SNMP failure."""
    reader, writer = await asyncio.open_connection(url_host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {url_host}\r\nConnection: close\r\n\r\n".encode())
    body = await reader.read()
    writer.close()
    if not body.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(body[:200].decode(errors="replace"))
    pdus = retried = -1
    for name in (b"\nsnmp_scrape_pdus_returned ", b"\nsnmp_scrape_packets_retried "):
        i = body.find(name)
        if i >= 0:
            value = int(float(body[i + len(name) : body.index(b"\n", i + 1)]))
            if name.startswith(b"\nsnmp_scrape_pdus"):
                pdus = value
            else:
                retried = value
    return pdus, retried


async def exporter_phase(http_port: int, pid: int, ports: list[int], inflight: int, seconds: float,
                         responder_pid: int) -> dict:
    retried = [0]

    async def poll_one(port: int, window: Window) -> int:
        pdus, again = await asyncio.wait_for(
            scrape("127.0.0.1", http_port, f"/snmp?module=bench&target=127.0.0.1:{port}"), 30)
        window.add_varbinds(pdus)
        if window.open:
            retried[0] += again
        if pdus != VARBINDS_PER_POLL:
            raise TimeoutError(f"{pdus} pdus")  # the exporter logs a failed walk, answers partially
        return pdus

    r0 = proc_cpu_s(responder_pid)
    t_start = time.perf_counter()
    # drive() measures the parent's CPU; the exporter's is read from /proc around the same window.
    marks: dict[str, float] = {}

    class Marking(Window):
        def __setattr__(self, key, value):
            if key == "open" and "open" in self.__dict__:
                marks["cpu0" if value else "cpu1"] = proc_cpu_s(pid)
            super().__setattr__(key, value)

    window = Marking()
    result = await drive(poll_one, ports, inflight, seconds, window)
    result["scraper_cpu_s"] = result["cpu_s"]  # this process: HTTP client, not counted
    result["cpu_s"] = marks["cpu1"] - marks["cpu0"]
    result["peak_rss_mib"] = proc_peak_rss_mib(pid)
    result["sock_drops"] = None  # the exporter's sockets are not ours to read
    result["retried"] = retried[0]
    result["responder_core"] = (proc_cpu_s(responder_pid) - r0) / (time.perf_counter() - t_start)
    return result


async def wait_http(port: int, deadline_s: float = 10.0) -> None:
    t_end = time.monotonic() + deadline_s
    while time.monotonic() < t_end:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise SystemExit(f"{EXPORTER} did not listen on 127.0.0.1:{port}")


def start_exporter(binary: str, tmp: Path) -> tuple[subprocess.Popen, int, str]:
    config = tmp / "snmp.yml"
    exporter_config(config)
    http_port = free_ports(1, socket.SOCK_STREAM)[0]
    log = open(tmp / "exporter.log", "w")  # noqa: SIM115 - lives as long as the exporter
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{http_port}",
                             "--log.level=warn"], stdout=log, stderr=subprocess.STDOUT)
    asyncio.run(wait_http(http_port))
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stderr.split("(")[0]
    label = version.replace("snmp_exporter, version", "snmp_exporter").strip() or "snmp_exporter"
    return proc, http_port, f"{label} (Debian)"


def fmt_row(name: str, r: dict) -> str:
    vbs = r["varbinds"] / r["wall_s"]
    us = r["cpu_s"] / r["varbinds"] * 1e6 if r["varbinds"] else float("nan")
    drops = "-" if r.get("sock_drops") is None else str(r["sock_drops"])
    return (f"{name:<28} {r['inflight']:>4} {vbs / VARBINDS_PER_POLL:>8.1f} {vbs:>10,.0f} {us:>8.1f} "
            f"{r['cpu_s'] / r['wall_s'] * 100:>6.0f}% {r['peak_rss_mib']:>7.1f} {r['polls']:>6} "
            f"{r['timeouts']:>5} {r['errors'] + r['short']:>4} {drops:>6} {r['rcvbuf_errors']:>6} "
            f"{r['responder_core'] * 100:>5.0f}%")


def times(ratio: float) -> str:
    """x15.9, x1.0, x0.72, x0.063: two significant digits below 1 (BER / pysnmp is ~x0.06)."""
    return f"x{ratio:#.2g}" if ratio < 0.95 else f"x{ratio:.1f}"


def cpu_per_vb(r: dict) -> float:
    return r["cpu_s"] / r["varbinds"] if r["varbinds"] else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=100, help="simulated devices = fastresp ports (default 100)")
    ap.add_argument("--seconds", type=float, default=6.0, help="measured window per phase (default 6)")
    ap.add_argument("--peer", choices=("auto", "exporter", "pysnmp"), default="auto",
                    help="auto: snmp_exporter if installed or installable, else vigie's pysnmp transport")
    ap.add_argument("--transport", action="append", choices=TRANSPORTS,
                    help="vigie SnmpClient transport(s) to measure, repeatable (default: both)")
    ap.add_argument("--collector-inflight", type=int, default=10)
    ap.add_argument("--snmprec", type=Path, default=next((p for p in SNMPREC_CANDIDATES if p.exists()), None))
    ap.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    ap.add_argument("--inflight", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--ports", help=argparse.SUPPRESS)
    ap.add_argument("--child-transport", default="ber", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        ports = [int(p) for p in args.ports.split(",")]
        print(json.dumps(asyncio.run(CHILDREN[args.child](ports, args.inflight, args.seconds, args.child_transport))))
        return
    transports = list(dict.fromkeys(args.transport or TRANSPORTS))
    if args.snmprec is None:
        raise SystemExit("no ios_2960x.snmprec found (lab/snmprec or /work/shared/snmprec)")

    started = time.perf_counter()
    ports = free_ports(args.devices, socket.SOCK_DGRAM)
    responder = subprocess.Popen(
        [sys.executable, str(HERE / "fastresp.py"), "--snmprec", str(args.snmprec),
         *(a for p in ports for a in ("--port", str(p)))],
        stdout=subprocess.PIPE, text=True)
    try:
        first = responder.stdout.readline()
        if not first.startswith("fastresp"):
            raise SystemExit("fastresp did not start")
        print(f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"{args.devices} devices on loopback (fastresp pid {responder.pid}), {args.snmprec.name}, "
              f"{args.seconds:g}s window per phase, net.core.rmem_max "
              f"{Path('/proc/sys/net/core/rmem_max').read_text().strip()}, load average {os.getloadavg()[0]:.1f}",
              flush=True)

        note = ""
        binary = None
        if args.peer in ("auto", "exporter"):
            binary, note = find_exporter()
            if binary is None and args.peer == "exporter":
                raise SystemExit(note)
        if not binary:
            # No outside poller: vigie's pysnmp transport is the peer, measured once (as the peer).
            note = f"PEER IS vigie's pysnmp transport: {note or '--peer pysnmp'}"
            transports = [t for t in transports if t != PEER_TRANSPORT]
            if not transports:
                raise SystemExit(f"{note}; --transport {PEER_TRANSPORT} alone would be compared with itself")
            print(note, flush=True)
        # vigie and the peer alternate at each in-flight level, so a busy neighbour on the box
        # weighs on both sides of a ratio alike.
        vigie: dict[str, list[dict]] = {t: [] for t in transports}
        peer: list[dict] = []
        with tempfile.TemporaryDirectory() as tmp:
            exporter = None
            try:
                if binary:
                    exporter, http_port, peer_name = start_exporter(binary, Path(tmp))
                else:
                    peer_name = f"PEER vigie ({PEER_TRANSPORT})"
                for c in INFLIGHT:
                    for transport in transports:
                        vigie[transport].append(run_child("client", ports, c, args.seconds, responder.pid, transport))
                    if exporter:
                        peer.append(asyncio.run(
                            exporter_phase(http_port, exporter.pid, ports, c, args.seconds, responder.pid)))
                    else:
                        peer.append(run_child("client", ports, c, args.seconds, responder.pid, PEER_TRANSPORT))
                    print(f"  {c} in flight done ({time.perf_counter() - started:.0f}s)", flush=True)
            finally:
                if exporter:
                    exporter.terminate()
                    exporter.wait(10)
        clients = dict(vigie) if binary else {**vigie, f"{PEER_TRANSPORT}, the peer": peer}
        for transport, runs in clients.items():
            print(f"vigie ({transport}): {runs[0]['varbinds_per_poll']} varbinds per poll; SO_RCVBUF granted "
                  f"{runs[0]['so_rcvbuf']} bytes (getsockopt, doubled by the kernel)", flush=True)

        coll = run_child("collector", ports, args.collector_inflight, args.seconds, responder.pid)
    finally:
        responder.terminate()
        responder.wait(10)

    print()
    print(f"{'poller':<28} {'fly':>4} {'polls/s':>8} {'varbind/s':>10} {'CPU µs/vb':>8} {'CPU':>7} "
          f"{'RSS MiB':>7} {'polls':>6} {'t/o':>5} {'err':>4} {'sockdr':>6} {'rcvbuf':>6} {'fresp':>6}")
    for transport, runs in vigie.items():
        for r in runs:
            print(fmt_row(f"vigie SnmpClient ({transport})", r))
    for r in peer:
        print(fmt_row(peer_name[:28], r))
    print("polls/s = varbinds/s / 1709; polls = polls completed in the window; t/o = timeouts; "
          "err = errors + short polls; sockdr = drops on the poller's sockets; rcvbuf = system UDP "
          "RcvbufErrors; fresp = fastresp's share of one core")
    if binary:
        print(f"peer retried packets (snmp_scrape_packets_retried): {[r['retried'] for r in peer]}")
    if note:
        print(note)

    if binary:
        print("\nratios vigie / peer, same run (CPU per varbind: >1 = vigie costs more; throughput: <1 = slower)")
    else:
        print(f"\nratios vigie / peer = vigie / vigie's own {PEER_TRANSPORT} transport (no outside poller), same run "
              "(CPU per varbind: >1 = costs more than pysnmp; throughput: <1 = slower)")
    best_p = max(p["varbinds"] / p["wall_s"] for p in peer)
    for transport, runs in vigie.items():
        print(f"  vigie {transport}:")
        for v, p in zip(runs, peer, strict=True):
            tput = (v["varbinds"] / v["wall_s"]) / (p["varbinds"] / p["wall_s"]) if p["varbinds"] else float("nan")
            print(f"    {v['inflight']:>3} in flight: CPU/varbind {times(cpu_per_vb(v) / cpu_per_vb(p))}, "
                  f"throughput x{tput:.2f}")
        best_v = max(v["varbinds"] / v["wall_s"] for v in runs)
        print(f"    best throughput: vigie {best_v:,.0f} vs peer {best_p:,.0f} varbinds/s -> x{best_v / best_p:.2f}")
    pysnmp_runs = vigie.get("pysnmp") or (peer if not binary else None)
    if "ber" in vigie and pysnmp_runs:
        print("  vigie pysnmp / vigie ber, CPU per varbind: " + ", ".join(
            f"x{cpu_per_vb(s) / cpu_per_vb(f):.1f} at {f['inflight']}"
            for f, s in zip(vigie["ber"], pysnmp_runs, strict=True)))

    if binary:
        print(f"scraper (this process, not counted) CPU share: "
              f"{[round(r['scraper_cpu_s'] / r['wall_s'] * 100) for r in peer]} %")
    polls = coll["polls"]
    raw = vigie.get("ber") or next(iter(vigie.values()))
    raw_transport = "ber" if "ber" in vigie else transports[0]
    raw_ms = statistics_min([cpu_per_vb(v) for v in raw]) * VARBINDS_PER_POLL * 1e3
    peer_ms = statistics_min([cpu_per_vb(p) for p in peer]) * VARBINDS_PER_POLL * 1e3
    solo_ms = coll["solo_cpu_s"] * 1e3
    print(f"\nSnmpCollector.collect, cisco_ios profile, one device alone: {solo_ms:.0f} ms CPU per device poll "
          f"({coll['solo_varbinds']:.0f} varbinds, {coll['solo_samples']} samples; "
          f"{coll['solo_cpu_s'] / coll['solo_varbinds'] * 1e6:.0f} µs/varbind)")
    print(f"  {coll['inflight']} devices in flight: {coll['varbinds'] / coll['wall_s']:,.0f} varbinds/s = "
          f"{coll['varbinds'] / coll['wall_s'] / coll['solo_varbinds']:.2f} device polls/s, "
          f"{cpu_per_vb(coll) * 1e6:.0f} µs CPU/varbind, {polls} polls completed, peak RSS "
          f"{coll['peak_rss_mib']:.0f} MiB, timeouts {coll['timeouts']}, errors {coll['errors']}, "
          f"sock drops {coll['sock_drops']}")
    print(f"  per device poll: collector {solo_ms:.0f} ms vs the bare 1,709-varbind IF-MIB walk {raw_ms:.0f} ms "
          f"(vigie client, {raw_transport}) and {peer_ms:.1f} ms ({peer_name}), best in-flight level; "
          f"collector / peer {times(solo_ms / peer_ms)} for "
          f"{coll['solo_varbinds'] / VARBINDS_PER_POLL:.1f}x the varbinds")
    print(f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          "(other work on the box inflates wall time and throughput gaps, not CPU per varbind)")
    print(f"\n{datetime.date.today()} total {time.perf_counter() - started:.0f}s")


def statistics_min(values: list[float]) -> float:
    finite = [v for v in values if v == v]
    return min(finite) if finite else float("nan")


if __name__ == "__main__":
    main()
