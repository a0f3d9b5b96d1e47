"""How many simulated 48-port switches one `vigie run` process polls every 60 s on one core.

    python bench/bench_scale.py [--sizes 1000,2000,3000,5000] [--minutes 14] [--warmup-s 480]

For each size N, smallest first, each in fresh processes:

- fastresp (bench/fastresp.py) serves the 48-port switch walk of bench_agent.py (55 interfaces, every
  port fine) on N loopback ports, pinned to the second core;
- ``taskset -c 0 vigie run --config ... --duration ...``: the real command, pinned to the first core,
  N SNMP devices at 60 s (10 s timeout, profile auto), the embedded store as shipped (``--store
  compact``, the default; ``--store sqlite`` for the row store), the built-in ticket log and the
  shipped rules.

Measured over the window (the run less ``--warmup-s`` at the start and the last 40 s, where a turn
due may still be running when the agent stops): the agent as it runs for hours, not its start-up,
whose first minute walks every device's static columns (twice a poll's CPU: a fleet near the core's
capacity starts behind and catches up in the next minutes); the start-up is printed apart (drift
max before the window, until when it was over the goal, turns given up). The window (by default
minutes 8 to 13.3) holds one whole cycle of the compact store: every 5 minutes it moves the rows
written since into its chunks, over the next 2-3 minutes, which costs several times a write (the
first flush, at 5 minutes, costs less: no chunk is open yet). A window before 10 minutes misses
that and overstates what a core holds. From outside the process: CPU % of the agent
(``/proc/<pid>/stat``), its RSS (sampled every 2 s, the largest kept), and, read back from the
store once the agent has stopped, every ``collection`` point: polls completed (``ok``/``partial``)
per device-minute, how many devices missed a minute, schedule drift p99 (``lag_s``), CPU ms per
completed poll, samples and points stored per second.

A size **holds** when every device was polled each minute of the window (no device with fewer
completed polls than whole minutes in it), drift p99 < 5 s and RSS < 500 MB. Sizes step up until
one fails (``--keep-going`` runs them all); the largest that held is printed beside the goal
(5,000). Past it the answer is several agents, each serving some clients (``agent.shard`` or
``vigie run --clients``), not one agent run past its capacity.

Other load on the box changes the figures: a busy loop pinned to the agent's core before each size
says how much of it was free, printed with the load average. Loopback only; every process started
is stopped at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_agent import (  # noqa: E402  (the same switch, estate and responder as bench_agent.py)
    AGENT_CORE,
    COMMUNITY,
    INTERVAL_S,
    TAIL_S,
    Responder,
    core_share,
    free_udp_ports,
    percentile,
    switch_walk,
    write_estate,
)

GOAL_DEVICES = 5000
DRIFT_GOAL_S = 5.0
RSS_GOAL_MIB = 500
VIGIE = Path(sys.executable).with_name("vigie")
PY_SPY = Path(sys.executable).with_name("py-spy")


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loop_thread_s(pid: int) -> tuple[float, float]:
    """Seconds the agent's main thread (its event loop) ran and waited for a core (schedstat)."""
    run_ns, wait_ns, _slices = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()
    return int(run_ns) / 1e9, int(wait_ns) / 1e9


def proc_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# queue_<lane>: poll batches waiting in the pipeline's lanes, held in memory (a lane behind is RSS)
HEALTH_FIELDS = ("in_flight_limit", "saturation", "behind_s", "queued", "queue_store", "queue_state", "queue_alerts")


def stored(state_dir: Path, kind: str, started: float, w0: float, w1: float, devices: int) -> dict:
    """What the store holds of the window: the polls (from their `collection` points) and the
    samples and points written; and how the start-up before it went."""
    read = stored_compact if kind == "compact" else stored_rows
    rows, samples, points, health = read(state_dir, int(w0 * 1e9), int(w1 * 1e9))
    return window_figures(rows, samples, points, health, started, w0, w1, devices)


def stored_compact(state_dir: Path, lo: int, hi: int) -> tuple[list, int, int, dict]:
    """The compact store's file read back through its own queries; samples and points counted
    from the raw chunks' rows in the window and the rows waiting to go into them."""
    from agent.stores.codec import decode_chunk
    from agent.stores.compact import RAW, TABLES, CompactDB

    path = state_dir / "samples-compact.sqlite"
    db = CompactDB(path, read_only=True)
    try:
        def by_device(field: str) -> dict[tuple[str, int], object]:
            return {(series.tags["device"], ts): value for series in db.points("collection", field)
                    for ts, value in series.points if "device" in series.tags}

        lags, durations = by_device("lag_s"), by_device("duration_s")
        rows = [(device, ts, status, lags.get((device, ts)), durations.get((device, ts)))
                for (device, ts), status in by_device("status").items()]
        health = {name: [value for series in db.points("vigie_agent", name, start_ns=lo, end_ns=hi)
                         for _, value in series.points]
                  for name in HEALTH_FIELDS}
    finally:
        db.close()
    samples = points = 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        for table in TABLES:
            for (data,) in conn.execute(f"SELECT data FROM {table} WHERE level = ?", (RAW,)):
                timestamps, columns = decode_chunk(data)
                inside = [i for i, ts in enumerate(timestamps) if lo <= ts < hi]
                samples += len(inside)
                points += sum(column[i] is not None for column in columns.values() for i in inside)
        # and the samples still waiting in recent_row for their flush (the last minutes of the run):
        # each row's data is [field id, value, ...] of its known fields
        for (data,) in conn.execute("SELECT data FROM recent_row WHERE ts_ns >= ? AND ts_ns < ?", (lo, hi)):
            samples += 1
            points += len(json.loads(data)) // 2
    finally:
        conn.close()
    return rows, samples, points, health


def stored_rows(state_dir: Path, lo: int, hi: int) -> tuple[list, int, int, dict]:
    conn = sqlite3.connect(f"file:{state_dir / 'samples.sqlite'}?mode=ro", uri=True)
    try:
        fields = dict(conn.execute("SELECT name, id FROM field"))
        rows = conn.execute(
            "SELECT st.value, s.ts, s.value, l.value, d.value FROM series sr"
            " JOIN series_tag st ON st.series_id = sr.id AND st.key = 'device'"
            " JOIN point_str s ON s.series_id = sr.id AND s.field_id = ?"
            " LEFT JOIN point_num l ON l.series_id = sr.id AND l.field_id = ? AND l.ts = s.ts"
            " LEFT JOIN point_num d ON d.series_id = sr.id AND d.field_id = ? AND d.ts = s.ts"
            " WHERE sr.measurement = 'collection'",
            (fields["status"], fields.get("lag_s", -1), fields.get("duration_s", -1)),
        ).fetchall()
        points = sum(
            conn.execute(f"SELECT count(*) FROM {table} WHERE ts >= ? AND ts < ?", (lo, hi)).fetchone()[0]
            for table in ("point_num", "point_str")
        )
        health = {
            name: [v for (v,) in conn.execute(
                "SELECT p.value FROM series sr JOIN point_num p ON p.series_id = sr.id"
                " WHERE sr.measurement = 'vigie_agent' AND p.field_id = ? AND p.ts >= ? AND p.ts < ?",
                (fields.get(name, -1), lo, hi))]
            for name in HEALTH_FIELDS
        }
        samples = conn.execute(
            "SELECT count(*) FROM (SELECT DISTINCT series_id, ts FROM point_num WHERE ts >= ? AND ts < ?"
            " UNION SELECT DISTINCT series_id, ts FROM point_str WHERE ts >= ? AND ts < ?)",
            (lo, hi, lo, hi),
        ).fetchone()[0]
    finally:
        conn.close()
    return rows, samples, points, health


def window_figures(rows: list, samples: int, points: int, health: dict, started: float, w0: float, w1: float,
                   devices: int) -> dict:
    inside, before = [], []
    for device, ts, status, lag, duration in rows:
        due = ts / 1e9 - (duration or 0) - (lag or 0)  # stamped when the run ended
        if w0 <= due < w1 - TAIL_S:
            inside.append((device, status, lag))
        elif due < w0:
            before.append((due - started, status, lag))
    # The start-up, before the window: each device's first poll also walks its static columns (a
    # full walk, about twice a poll's CPU), so a fleet near the core's capacity starts behind.
    late = [(at, lag) for at, status, lag in before if lag is not None and status not in ("overloaded", "skipped")]
    completed = Counter(d for d, status, _ in inside if status in ("ok", "partial"))
    minutes = int((w1 - TAIL_S - w0) // INTERVAL_S)
    lags = [lag for _, status, lag in inside if lag is not None and status not in ("overloaded", "skipped")]
    return {
        "statuses": Counter(status for _, status, _ in inside),
        "completed": sum(completed.values()),
        "per_device_minute": sum(completed.values()) / devices / ((w1 - TAIL_S - w0) / INTERVAL_S),
        "devices_missing_a_minute": sum(1 for i in range(devices) if completed.get(f"sw-{i:05d}", 0) < minutes),
        "drift_p99_s": percentile(lags, 99),
        "drift_max_s": max(lags, default=None),
        "samples_per_s": samples / (w1 - w0),
        "points_per_s": points / (w1 - w0),
        "startup_drift_max_s": max((lag for _, lag in late), default=None),
        "startup_late_until_s": max((at for at, lag in late if lag >= DRIFT_GOAL_S), default=None),
        "startup_overloaded": sum(1 for _, status, _ in before if status == "overloaded"),
        # the agent's own health samples over the window: the bound on runs in flight and why
        "health": {name: (percentile(values, 10), percentile(values, 50), max(values, default=None))
                   for name, values in health.items()},
    }


def run_size(devices: int, walk: Path, work: Path, args: argparse.Namespace) -> dict:
    work.mkdir()
    share = core_share(AGENT_CORE)
    ports = free_udp_ports(devices)
    config, secrets = write_estate(work, ports, args.store)
    duration = args.minutes * 60
    log = (work / "agent.log").open("w")
    with Responder(walk, ports):
        started = time.time()
        profiler = None
        agent = subprocess.Popen(
            ["taskset", "-c", str(AGENT_CORE), str(VIGIE), "run", "--config", str(config), "--secrets", str(secrets),
             "--duration", str(duration)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        rss_max, window, rss_by_minute = 0.0, {}, {}
        try:
            while agent.poll() is None and time.time() < started + duration + 300:
                now = time.time()
                try:
                    rss = proc_rss_mib(agent.pid)
                    rss_max = max(rss_max, rss)
                    minute = int((now - started) // 60)
                    rss_by_minute[minute] = max(rss, rss_by_minute.get(minute, 0.0))
                    if "w0" not in window and now >= started + args.warmup_s and args.profile:
                        # py-spy over the window, sampling the agent (a child of taskset's exec: same pid)
                        profiler = subprocess.Popen(
                            [str(PY_SPY), "record", "--nonblocking", "-r", "50", "-f", "raw", "-o",
                             f"{args.profile}-{devices}.folded", "-d", str(int(duration - args.warmup_s - TAIL_S)),
                             "--pid", str(agent.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
                    if "w0" not in window and now >= started + args.warmup_s:
                        window.update(w0=now, cpu0=proc_cpu_s(agent.pid), loop0=loop_thread_s(agent.pid))
                        rss_max = proc_rss_mib(agent.pid)
                    if "w0" in window and "w1" not in window and now >= started + duration:
                        window.update(w1=now, cpu1=proc_cpu_s(agent.pid), loop1=loop_thread_s(agent.pid))
                except FileNotFoundError:
                    break
                time.sleep(2)
        finally:
            if agent.poll() is None:
                os.killpg(agent.pid, signal.SIGTERM)
                try:
                    agent.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(agent.pid, signal.SIGKILL)
                    agent.wait()
            log.close()
            if profiler is not None:
                try:
                    profiler.wait(30)
                except subprocess.TimeoutExpired:
                    profiler.kill()
                    profiler.wait()
    if agent.returncode != 0 or "w1" not in window:
        tail = (work / "agent.log").read_text()[-3000:]
        raise SystemExit(f"{devices} devices: vigie run exited {agent.returncode} before the window ended:\n{tail}")
    w0, w1 = window["w0"], window["w1"]
    result = stored(work / "state", args.store, started, w0, w1, devices)
    cpu_s = window["cpu1"] - window["cpu0"]
    result.update(
        devices=devices,
        cpu_percent=100 * cpu_s / (w1 - w0),
        # the window's CPU over the polls run in it (polls due in the tail included: they ran in it)
        cpu_ms_per_poll=1000 * cpu_s / max(1, result["completed"] * (w1 - w0) / (w1 - w0 - TAIL_S)),
        rss_max_mib=rss_max,
        rss_by_minute=[rss_by_minute[m] for m in sorted(rss_by_minute)],
        # of the window, how long the event loop's thread ran / waited for the core: ran + waited
        # near 100 % = the loop always had work (CPU-bound, at whatever share of the core it got)
        loop_ran=(window["loop1"][0] - window["loop0"][0]) / (w1 - w0),
        loop_waited=(window["loop1"][1] - window["loop0"][1]) / (w1 - w0),
        core_share=share,
        load=os.getloadavg(),
    )
    result["holds"] = (
        result["devices_missing_a_minute"] == 0
        and result["drift_p99_s"] is not None
        and result["drift_p99_s"] < DRIFT_GOAL_S
        and rss_max < RSS_GOAL_MIB
    )
    return result


# ---------------------------------------------------------------------- --poll-cost: CPU per poll
def poll_cost_child(ports: list[int], rounds: int, smart: bool) -> None:
    """CPU of one poll, in this process: SnmpCollector.collect (SNMP and profile evaluation) and
    StateDB.update of its samples, each device polled in turn (nothing else runs here, so
    ``process_time`` is theirs alone). Printed in ms: the median and the 10th percentile of the
    polls (other load on the core inflates CPU time too; the low percentile is the least
    disturbed)."""
    import asyncio
    import tempfile as tmp

    from agent.api import Sink, Target
    from agent.state import STATE_FIELDS, StateDB
    from collectors.snmp import PLUGIN, SnmpCollector

    collectors = [SnmpCollector({"profile": "auto"}) for _ in ports]
    targets = [Target(f"sw-{i:05d}", "127.0.0.1", port, {"community": COMMUNITY}, {"device": f"sw-{i:05d}"})
               for i, port in enumerate(ports)]
    with tmp.TemporaryDirectory() as state_dir:
        state = StateDB(Path(state_dir) / "state.sqlite", state_fields=STATE_FIELDS | PLUGIN.state_fields)

        polls: list[tuple[float, float]] = []  # (collect, update) CPU seconds of each poll
        points = 0

        async def one_round() -> None:
            nonlocal points
            for collector, target in zip(collectors, targets, strict=True):
                sink = Sink(target.tags, time.time_ns)
                t0 = time.process_time()
                await collector.collect(target, sink)
                t1 = time.process_time()
                state.update(sink.samples, time.time_ns())
                polls.append((t1 - t0, time.process_time() - t1))
                points = sum(len(s.fields) for s in sink.samples)
                if not smart and hasattr(collector, "statics"):  # (a tree before smart polling has none)
                    collector.statics.rediscover_after_s = 0.0  # every poll a discovery: a full walk

        asyncio.run(one_round())  # detection, first rows, first rates
        polls.clear()
        for _ in range(rounds):
            asyncio.run(one_round())
        state.close()
    cost = {"points": points}
    for name, values in (("collect", [c for c, _ in polls]), ("update", [u for _, u in polls]),
                         ("total", [c + u for c, u in polls])):
        cost[f"{name}_p50_ms"] = 1000 * percentile(values, 50)
        cost[f"{name}_p10_ms"] = 1000 * percentile(values, 10)
    print(json.dumps(cost))


def poll_cost(walk: Path, args: argparse.Namespace) -> None:
    ports = free_udp_ports(args.cost_devices)
    with Responder(walk, ports):
        for smart in (False, True):
            done = subprocess.run(
                ["taskset", "-c", str(AGENT_CORE), sys.executable, __file__, "--poll-cost-child",
                 "--ports", ",".join(map(str, ports)), "--rounds", str(args.rounds), *(["--smart"] if smart else [])],
                capture_output=True, text=True, timeout=600,
            )
            if done.returncode != 0:
                raise SystemExit(f"poll cost child failed:\n{done.stderr[-3000:]}")
            cost = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"CPU per poll, {'smart polling' if smart else 'full walk every poll'} (p50 / p10): collect "
                  f"{cost['collect_p50_ms']:.1f} / {cost['collect_p10_ms']:.1f} ms, StateDB.update "
                  f"{cost['update_p50_ms']:.1f} / {cost['update_p10_ms']:.1f} ms, both "
                  f"{cost['total_p50_ms']:.1f} / {cost['total_p10_ms']:.1f} ms ({cost['points']} points a poll; "
                  f"{args.cost_devices} devices x {args.rounds} rounds; load {os.getloadavg()[0]:.1f})", flush=True)


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_row(r: dict) -> None:
    s = r["statuses"]
    print(
        f"| {r['devices']:,} | {r['per_device_minute']:.2f} | {r['devices_missing_a_minute']} | "
        f"{s.get('ok', 0)} / {s.get('partial', 0)} / {s.get('timeout', 0) + s.get('unreachable', 0)} / "
        f"{s.get('overloaded', 0) + s.get('skipped', 0)} | "
        f"{fmt(r['drift_p99_s'], '.3f')} s ({fmt(r['drift_max_s'], '.1f')}) | {r['cpu_percent']:.0f} % | "
        f"{r['cpu_ms_per_poll']:.1f} | {r['rss_max_mib']:.0f} MiB | {r['samples_per_s']:,.0f} / "
        f"{r['points_per_s']:,.0f} | {r['core_share']:.2f}, {r['load'][0]:.1f} | "
        f"{'**holds**' if r['holds'] else 'fails'} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,2000,3000,5000")
    parser.add_argument("--minutes", type=float, default=14.0, help="run length per size (default 14)")
    parser.add_argument("--warmup-s", type=float, default=480.0,
                        help="left out of the window: the start-up and the first flush (default 480, printed apart)")
    parser.add_argument("--store", choices=("compact", "sqlite"), default="compact",
                        help="the agent's embedded store (default compact, as shipped)")
    parser.add_argument("--keep-going", action="store_true", help="run every size, also past a failure")
    parser.add_argument("--profile", metavar="PREFIX",
                        help="py-spy the agent over each window into PREFIX-<size>.folded (needs py-spy in the venv)")
    parser.add_argument("--poll-cost", action="store_true", help="only the CPU per poll, full walk and smart")
    parser.add_argument("--cost-devices", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--poll-cost-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ports", help=argparse.SUPPRESS)
    parser.add_argument("--smart", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.poll_cost_child:
        poll_cost_child([int(p) for p in args.ports.split(",")], args.rounds, args.smart)
        return
    if shutil.which("taskset") is None:
        raise SystemExit("taskset (util-linux) is needed to pin the agent to one core")
    if args.profile and not PY_SPY.exists():
        raise SystemExit(f"--profile needs py-spy at {PY_SPY} (pip install py-spy)")
    if args.minutes * 60 - args.warmup_s < TAIL_S + INTERVAL_S:
        raise SystemExit("--minutes too short: the window must hold a whole minute after the tail")
    print(f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{args.minutes} min per size, {args.warmup_s:.0f} s warm-up; goal {GOAL_DEVICES:,} switches, "
          f"drift p99 < {DRIFT_GOAL_S:.0f} s, RSS < {RSS_GOAL_MIB} MB")
    largest, health = None, []
    with tempfile.TemporaryDirectory(prefix="vigie-bench-scale-") as tmp:
        walk = switch_walk(Path(tmp))
        poll_cost(walk, args)
        if args.poll_cost:
            return
        print()
        print("| switches | polls/device-min | devices missing a minute | ok / partial / timeout+unreach. / "
          "overloaded+skipped | drift p99 (max) | CPU | CPU ms/poll | RSS max | samples / points stored per s | "
          "core free, load | |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for devices in sorted(int(n) for n in args.sizes.split(",")):
            result = run_size(devices, walk, Path(tmp) / f"n{devices}", args)
            print_row(result)
            health.append(f"{devices:,} switches: start-up (before the window): drift max "
                          f"{fmt(result['startup_drift_max_s'], '.1f')} s, over the {DRIFT_GOAL_S:.0f} s goal until "
                          f"{fmt(result['startup_late_until_s'], '.0f')} s after the start, "
                          f"{result['startup_overloaded']} turns overloaded"
                          + (" (past the warm-up: --warmup-s longer)"
                             if (result["startup_late_until_s"] or 0) > args.warmup_s else ""))
            health.append(f"{devices:,} switches: event loop thread ran {100 * result['loop_ran']:.0f} % and waited"
                          f" for the core {100 * result['loop_waited']:.0f} % of the window;"
                          " the agent's health samples over it (p10 / p50 / max): "
                          + ", ".join(f"{name} {' / '.join(fmt(v, '.2f') for v in values)}"
                                      for name, values in result["health"].items()))
            health.append(f"{devices:,} switches: RSS max each minute of the run (MiB): "
                          + " ".join(f"{rss:.0f}" for rss in result["rss_by_minute"]))
            if result["holds"]:
                largest = devices
            elif not args.keep_going:
                break
    print()
    print("\n".join(health))
    verdict = "meets" if largest is not None and largest >= GOAL_DEVICES else "below"
    print(f"largest fleet that holds on one core: {fmt(largest, ',')} switches (goal {GOAL_DEVICES:,}: {verdict})")
    if verdict == "below":
        print("past it: several agents, each `vigie run --clients ...` (or agent.shard) on its own core")


if __name__ == "__main__":
    main()
