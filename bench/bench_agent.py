"""The whole agent on one core against simulated 48-port switches: does every device get its poll
every minute, and does an agent past its capacity say so instead of paging for devices that are fine?

    python bench/bench_agent.py [--sizes 500,1000,2000] [--minutes 3.5] [--warmup-s 60]

For each size N, in this order and each in fresh processes:

- fastresp (bench/fastresp.py) serves a 48-port switch on N loopback ports, pinned to the second
  core. The walk is the Cisco 2960X recording of lab/snmprec cut down to its first stack member:
  52 ports + 2 VLANs + 1 port-channel = 55 interfaces, everything else as recorded, and every
  port operationally as administered (a switch that is fine).
- the agent (agent.runner.Agent, exactly what `vigie run` starts) is pinned to the first core,
  with a generated config of N SNMP devices (60 s interval, 10 s timeout, profile auto), the
  embedded SQLite store, the built-in ticket log and the shipped default rules, in a temporary
  state directory. Its `collection` samples are observed through `Agent.sample_listeners`.

Printed per size, over the measured window (the run, less ``--warmup-s`` at the start and the
last 40 s, where a turn due may not have ended when the agent stops): polls completed per
device-minute (goal 1.00), poll duration p50/p99, schedule drift p99 (run start - due time, from
the `lag_s` field; goal < 5 s), the agent's CPU and RSS, what it said about itself (turns given up
as `overloaded`, the largest `behind_s` of its health samples) and the false alerts and tickets:
every simulated device is fine, so any device alert or ticket is false (goal 0 at every size).
The agent's own `vigie_agent` alerts are counted apart: past capacity they are the right answer.

Other load on the box changes the figures: before each size, a busy loop pinned to the agent's
core measures how much of it is free, printed beside the results with the load average.

The "before" column is issue 6's measurement of the APScheduler scheduler on this kind of machine
(it is not re-run: that scheduler no longer exists in the tree). Loopback only; every process
started is stopped at the end, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SOURCE_WALK = REPO / "lab/snmprec/ios_2960x.snmprec"
# ifTable and ifXTable rows are kept only for these ifIndexes: stack member 1's 52 ports, Vlan1,
# Vlan99 and Port-channel1.
INTERFACE_TABLES = ("1.3.6.1.2.1.2.2.1.", "1.3.6.1.2.1.31.1.1.1.")
KEPT_INTERFACES = frozenset({1, 99, 5001, *range(10101, 10153)})
IF_ADMIN_STATUS, IF_OPER_STATUS = "1.3.6.1.2.1.2.2.1.7.", "1.3.6.1.2.1.2.2.1.8."
COMMUNITY = "public"
INTERVAL_S = 60
TIMEOUT_S = 10
AGENT_CORE, RESPONDER_CORE = 0, 1
COMPLETED = ("ok", "partial")
# A turn ends at most this long after it is due: given up at its 30 s lag budget, or run within its
# timeout.
TAIL_S = 30 + TIMEOUT_S
# Issue 6, measured with the APScheduler scheduler (same kind of 2-core machine, same workload).
BEFORE = {
    500: "passed",
    1000: "33 % of polls completed, 1,065 false tickets in 7.5 min",
    2000: "never recovered: 333 polls in flight, none completing",
}


# --------------------------------------------------------------------------------- set-up pieces
def switch_walk(dest: Path) -> Path:
    """The 48-port switch recording (see the module docstring), made a fine switch: every port
    is operationally as its administrator set it (the recording has uplinks admin up and oper
    down, which the shipped interface_down rule rightly pages for)."""
    rows = []
    with SOURCE_WALK.open(encoding="utf-8", errors="surrogateescape") as source:
        for line in source:
            oid = line.split("|", 1)[0]
            if oid.startswith(INTERFACE_TABLES) and int(oid.rsplit(".", 1)[1]) not in KEPT_INTERFACES:
                continue
            rows.append(line)
    admin: dict[str, str] = {}
    for line in rows:
        if line.startswith(IF_ADMIN_STATUS):
            oid, _, value = line.rstrip("\n").split("|")
            admin[oid.removeprefix(IF_ADMIN_STATUS)] = value
    fine = []
    for line in rows:
        if line.startswith(IF_OPER_STATUS):
            oid = line.split("|", 1)[0]
            line = f"{oid}|2|{admin[oid.removeprefix(IF_OPER_STATUS)]}\n"
        fine.append(line)
    path = dest / "switch48.snmprec"
    path.write_text("".join(fine), encoding="utf-8", errors="surrogateescape")
    return path


def free_udp_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def write_estate(dest: Path, ports: list[int], store: str = "sqlite") -> tuple[Path, Path]:
    """config.yaml and secrets.yaml (mode 0600) for one client, one site, a switch per port, the
    agent's samples in the embedded store ``store`` (``sqlite`` rows are counted by SQL here)."""
    devices = "".join(
        f"          - {{name: sw-{i:05d}, address: 127.0.0.1, port: {port}, collectors: {{snmp: {{}}}}}}\n"
        for i, port in enumerate(ports)
    )
    config = dest / "config.yaml"
    config.write_text(
        f"""agent:
  state_dir: {dest / "state"}
  store: {{kind: {store}}}
defaults:
  interval_s: {INTERVAL_S}
  timeout_s: {TIMEOUT_S}
  credentials: bench-switches
  collectors:
    snmp: {{profile: auto}}
clients:
  - name: bench
    display_name: Bench
    sites:
      - name: lab
        devices:
{devices}""",
        encoding="utf-8",
    )
    secrets = dest / "secrets.yaml"
    secrets.write_text(f"bench-switches: {{community: {COMMUNITY}}}\n", encoding="utf-8")
    secrets.chmod(0o600)
    return config, secrets


def pinned(core: int):
    def pin() -> None:
        if hasattr(os, "sched_setaffinity") and core in os.sched_getaffinity(0):
            os.sched_setaffinity(0, {core})

    return pin


class Responder:
    """fastresp on ``ports``, started on enter and stopped on exit (also on failure)."""

    def __init__(self, walk: Path, ports: list[int]) -> None:
        self.walk, self.ports = walk, ports
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Responder:
        args = [sys.executable, str(HERE / "fastresp.py"), "--snmprec", str(self.walk), "--community", COMMUNITY]
        for port in self.ports:
            args += ["--port", str(port)]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, preexec_fn=pinned(RESPONDER_CORE)
        )
        assert self.proc.stdout is not None
        if not self.proc.stdout.readline().startswith("fastresp"):  # printed once every port is bound
            self.__exit__()
            raise SystemExit("fastresp did not start")
        return self

    def cpu_s(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __exit__(self, *_exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ------------------------------------------------------------------------------- child: the agent
class Observed:
    """What the agent's samples said, kept small: one tuple per `collection` sample."""

    def __init__(self) -> None:
        # (due time, status, duration, lag, samples of the run), times in epoch seconds
        self.collections: list[tuple[float, str, float | None, float | None, int]] = []
        self.health: list[tuple[float, dict]] = []
        self.samples = 0
        self.points = 0  # known field values: what a store writes

    def __call__(self, samples) -> None:
        self.samples += len(samples)
        for s in samples:
            self.points += sum(value is not None for value in s.fields.values())
            if s.measurement == "collection":
                f = s.fields
                # Stamped when the run ended: its due time places it in a minute exactly.
                due = s.timestamp_ns / 1e9 - (f.get("duration_s") or 0) - (f.get("lag_s") or 0)
                self.collections.append((due, f["status"], f.get("duration_s"), f.get("lag_s"), f.get("samples") or 0))
            elif s.measurement == "vigie_agent":
                self.health.append((s.timestamp_ns / 1e9, dict(s.fields)))


def memory_mib() -> dict[str, float]:
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            found[key] = int(value.split()[0]) / 1024
    return found


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def alerts_and_tickets(state_dir: Path) -> dict[str, Counter]:
    """Alerts that fired, alerts that went pending without firing (near misses) and tickets
    opened, by rule, from whichever state files hold them."""
    fired: Counter = Counter()
    pending: Counter = Counter()
    tickets: Counter = Counter()
    for path in sorted(state_dir.glob("*.sqlite")):
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "alerts" in tables:
                for rule, has_fired in conn.execute("SELECT rule, fired_at IS NOT NULL FROM alerts"):
                    (fired if has_fired else pending)[rule] += 1
            if "tickets" in tables:
                tickets.update(alert for (alert,) in conn.execute("SELECT alert FROM tickets"))
        finally:
            conn.close()
    return {"fired": fired, "pending": pending, "tickets": tickets}


def child(args: argparse.Namespace) -> None:
    pinned(AGENT_CORE)()
    started = time.time()
    from agent.config import load_config
    from agent.runner import Agent

    config = load_config(args.config, secrets_path=args.secrets)
    agent = Agent(config, state_dir=args.state_dir, health_interval_s=10.0)
    built_s = time.time() - started
    observed = Observed()
    agent.sample_listeners.append(observed)
    window: dict[str, float] = {}

    async def run() -> None:
        task = asyncio.create_task(agent.run_forever(duration_s=args.warmup_s + args.seconds))
        await asyncio.sleep(args.warmup_s)
        window.update(start=time.time(), cpu0=time.process_time(), samples0=observed.samples,
                      points0=observed.points)
        await asyncio.sleep(args.seconds)
        window.update(end=time.time(), cpu1=time.process_time(), samples1=observed.samples,
                      points1=observed.points, **memory_mib())
        stop_at = time.monotonic()
        await task
        window["stop_s"] = time.monotonic() - stop_at

    asyncio.run(run())
    w0, w1 = window["start"], window["end"]
    # Turns due in the window but its last TAIL_S: a turn due then may still be running, or waiting
    # to be given up, when the agent stops.
    w1 -= TAIL_S
    inside = [c for c in observed.collections if w0 <= c[0] < w1]
    completed = [c for c in inside if c[1] in COMPLETED]
    # Drift of the runs that started in the window (their sample is stamped when they end).
    lags = [c[3] for c in inside if c[3] is not None and c[1] not in ("overloaded", "skipped")]
    health = [h for t, h in observed.health if t >= w0]
    found = alerts_and_tickets(Path(args.state_dir))
    result = {
        "devices": args.devices,
        "built_s": built_s,
        "window_s": w1 - w0,
        "statuses": Counter(c[1] for c in inside),
        "completed_per_device_minute": len(completed) / args.devices / ((w1 - w0) / 60),
        "duration_p50_s": percentile([c[2] for c in completed], 50),
        "duration_p99_s": percentile([c[2] for c in completed], 99),
        "drift_p99_s": percentile(lags, 99),
        "drift_max_s": max(lags, default=None),
        "samples_per_poll": statistics.mean(c[4] for c in completed) if completed else None,
        # every point stored over the window, per poll completed: the polls' own and their share of
        # `collection` and health samples
        "points_per_poll": (
            (window["points1"] - window["points0"]) / (window["end"] - w0) * (w1 - w0) / len(completed)
            if completed
            else None
        ),
        "samples_per_s": (window["samples1"] - window["samples0"]) / (window["end"] - w0),
        "points_per_s": (window["points1"] - window["points0"]) / (window["end"] - w0),
        "cpu_percent": 100 * (window["cpu1"] - window["cpu0"]) / (window["end"] - w0),
        "rss_mib": window.get("VmRSS"),
        "peak_rss_mib": window.get("VmHWM"),
        "behind_max_s": max((h.get("behind_s") or 0 for h in health), default=None),
        "loop_lag_max_s": max((h.get("loop_lag_s") or 0 for h in health), default=None),
        "in_flight_limits": [h["in_flight_limit"] for h in health if "in_flight_limit" in h],
        "saturations": [h["saturation"] for h in health if h.get("saturation") is not None],
        "queued_max": max((h.get("queued") or 0 for h in health), default=None),
        "stop_s": window["stop_s"],
        "fired": found["fired"],
        "pending": found["pending"],
        "tickets": found["tickets"],
    }
    Path(args.result).write_text(json.dumps(result), encoding="utf-8")


# ---------------------------------------------------------------------------------- parent: sizes
def core_share(core: int, seconds: float = 1.0) -> float:
    """How much of ``core`` a busy loop gets now (1.0 on a quiet box): other load on the machine."""
    probe = (
        "import os, time\n"
        f"os.sched_setaffinity(0, {{{core}}}) if hasattr(os, 'sched_setaffinity') else None\n"
        f"end = time.monotonic() + {seconds}\n"
        "while time.monotonic() < end: pass\n"
        f"print(time.process_time() / {seconds})\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return float(done.stdout)


def run_size(devices: int, walk: Path, work: Path, args: argparse.Namespace) -> dict:
    work.mkdir()
    share = core_share(AGENT_CORE)
    ports = free_udp_ports(devices)
    config, secrets = write_estate(work, ports)
    result = work / "result.json"
    with Responder(walk, ports) as responder:
        cpu0, t0 = responder.cpu_s(), time.monotonic()
        agent = subprocess.Popen(
            [sys.executable, __file__, "--child", "--config", str(config), "--secrets", str(secrets),
             "--state-dir", str(work / "state"), "--devices", str(devices), "--result", str(result),
             "--warmup-s", str(args.warmup_s), "--seconds", str(args.minutes * 60 - args.warmup_s)],
            stdout=subprocess.DEVNULL, stderr=(work / "agent.log").open("w"), start_new_session=True,
        )
        try:
            code = agent.wait(args.minutes * 60 + 300)
        except subprocess.TimeoutExpired:
            os.killpg(agent.pid, signal.SIGKILL)
            agent.wait()
            raise SystemExit(f"{devices} devices: the agent did not stop; see {work / 'agent.log'}") from None
        finally:
            if agent.poll() is None:
                os.killpg(agent.pid, signal.SIGKILL)
                agent.wait()
        responder_cpu = 100 * (responder.cpu_s() - cpu0) / (time.monotonic() - t0)
    if code != 0:
        raise SystemExit(f"{devices} devices: agent exited {code}:\n{(work / 'agent.log').read_text()[-3000:]}")
    measured = json.loads(result.read_text())
    measured["responder_cpu_percent"] = responder_cpu
    measured["core_share"] = share
    measured["load"] = os.getloadavg()
    return measured


def device_rules(counts: dict[str, int]) -> int:
    return sum(n for rule, n in counts.items() if not rule.startswith("agent_"))


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def spread(values: list[float], spec: str = ".0f") -> str:
    """min-median-max of the health samples' values."""
    if not values:
        return "-"
    return "-".join(format(v, spec) for v in (min(values), statistics.median(values), max(values)))


def report(results: list[dict], args: argparse.Namespace) -> None:
    print()
    print("| switches | polls/device-min | ok / partial / timeout / unreach. / overloaded / skipped | "
          "duration p50 / p99 | drift p99 (max) | agent CPU | RSS (peak) | behind_s max | false alerts | "
          "false tickets | before (issue 6) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        s = r["statuses"]
        false_alerts = device_rules(r["fired"])
        false_tickets = device_rules(r["tickets"])
        print(
            f"| {r['devices']:,} | {r['completed_per_device_minute']:.2f} | "
            f"{s.get('ok', 0)} / {s.get('partial', 0)} / {s.get('timeout', 0)} / {s.get('unreachable', 0)} / "
            f"{s.get('overloaded', 0)} / {s.get('skipped', 0)} | "
            f"{fmt(r['duration_p50_s'], '.3f')} / {fmt(r['duration_p99_s'], '.3f')} s | "
            f"{fmt(r['drift_p99_s'], '.3f')} ({fmt(r['drift_max_s'], '.1f')}) s | {r['cpu_percent']:.0f} % | "
            f"{fmt(r['rss_mib'], '.0f')} ({fmt(r['peak_rss_mib'], '.0f')}) MiB | {fmt(r['behind_max_s'], '.1f')} s | "
            f"{false_alerts} | {false_tickets} | {BEFORE.get(r['devices'], '-')} |"
        )
    print()
    for r in results:
        agent_alerts = {rule: n for rule, n in r["fired"].items() if rule.startswith("agent_")}
        print(
            f"{r['devices']:,} switches: core {AGENT_CORE} free for {100 * r['core_share']:.0f} % before the run, "
            f"load after {r['load'][0]:.1f}; {fmt(r['samples_per_poll'], '.0f')} samples "
            f"({fmt(r['points_per_poll'], '.0f')} points) a poll, {r['samples_per_s']:,.0f} samples/s "
            f"({r['points_per_s']:,.0f} points/s), polls built in {r['built_s']:.1f} s, stop {r['stop_s']:.1f} s, "
            f"fastresp {r['responder_cpu_percent']:.0f} % of its core, queued max {r['queued_max']}, "
            f"in-flight bound {spread(r['in_flight_limits'])}, saturation {spread(r['saturations'], '.2f')}, "
            f"loop lag max {fmt(r['loop_lag_max_s'], '.2f')} s, "
            f"alerts fired {dict(r['fired']) or 'none'}, pending only {dict(r['pending']) or 'none'}, "
            f"tickets {dict(r['tickets']) or 'none'}"
            + (f", the agent's own alerts {agent_alerts}" if agent_alerts else "")
        )
    print(
        "goals: 1.00 polls per device-minute, drift p99 < 5 s, 0 false alerts and tickets at every size; "
        "past capacity: turns given up as `overloaded` and behind_s reported, never device tickets"
    )
    failed = [r["devices"] for r in results if device_rules(r["tickets"]) or device_rules(r["fired"])]
    if failed:
        raise SystemExit(f"FALSE ALERTS OR TICKETS at {failed} switches")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="500,1000,2000", help="comma-separated fleet sizes (default 500,1000,2000)")
    ap.add_argument("--minutes", type=float, default=3.5, help="agent run per size, warm-up included (default 3.5)")
    ap.add_argument("--warmup-s", type=float, default=60.0, help="not measured: start-up turns (default 60)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name in ("--config", "--secrets", "--state-dir", "--result"):
        ap.add_argument(name, help=argparse.SUPPRESS)
    ap.add_argument("--devices", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    if args.minutes * 60 <= args.warmup_s + TAIL_S:
        ap.error(f"--minutes must leave a measured window after --warmup-s and the last {TAIL_S} s")
    sizes = [int(n) for n in args.sizes.split(",")]
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    print(
        f"bench_agent: {platform.node()}, {os.cpu_count()} CPU(s), Python {platform.python_version()}; "
        f"agent pinned to core {AGENT_CORE}, fastresp to core {RESPONDER_CORE} (usable: {cores}); "
        f"{args.minutes:g} min per size, the first {args.warmup_s:g} s not measured; load {os.getloadavg()}"
    )
    with tempfile.TemporaryDirectory(prefix="vigie-bench-agent-") as tmp:
        walk = switch_walk(Path(tmp))
        results = []
        for devices in sizes:
            results.append(run_size(devices, walk, Path(tmp) / f"n{devices}", args))
            r = results[-1]
            print(f"  {devices:,} switches: {r['completed_per_device_minute']:.2f} polls/device-min, "
                  f"statuses {dict(r['statuses'])}, tickets {dict(r['tickets']) or 'none'}", flush=True)
    report(results, args)


if __name__ == "__main__":
    main()
