"""Line-protocol throughput of vigie's InfluxStore (influxdb-client's async write service, gzip'd
batches, a few in flight) into Debian's victoria-metrics at /api/v2/write, from one process, against
issue 14's goal of >= 100k points/s; and the agent's own cost per point, against the floor measured
in the same run.

    python bench/bench_line_protocol.py [--points 400000] [--batch 5000] [--in-flight 4] [--rounds 1]

A point is one line: a `snmp_interface`-shaped sample (5 tags, 4 fields: two floats, an int, a
string). Every phase gets the same samples and a fresh VictoriaMetrics on loopback:

- floor: the lines encoded and gzip'd (level 1) beforehand, POSTed by a bare aiohttp session, one
  batch after the other, then ``--in-flight`` at a time (what HTTP and the server cost, no vigie code);
- client floor: the same bodies through influxdb-client's async write service, ``--in-flight`` at a
  time (whether the client costs more than aiohttp);
- vigie: ``InfluxStore.write(samples)`` as shipped (encoding, batching, gzip level 1, ``--in-flight``
  batches in flight), then with the levers off (one batch at a time, gzip level 9: the client's own);
- spooled: behind the disk spool the agent puts in front of it (``build_store``): encode, append,
  fsync, read back, send.

Printed: points/s (wall) against the floor and the goal, CPU µs/point of this process, the load
average before and after. ``--rounds`` repeats the phases in turn (A/B/A/B) on a noisy machine.
Every point is counted back through /api/v1/export (the run fails if one is missing or doubled).
Loopback only; the servers are stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gzip
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
from influxdb_client import WritePrecision  # noqa: E402
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync  # noqa: E402
from influxdb_client.service.write_service import WriteService  # noqa: E402

from agent.api import Sample  # noqa: E402
from agent.stores import build_store  # noqa: E402
from agent.stores.influx import InfluxStore  # noqa: E402
from agent.stores.line_protocol import encode  # noqa: E402
from tests.stores.conftest import VictoriaMetrics  # noqa: E402

GOAL_POINTS_S = 100_000
T0 = 1_764_000_000_000_000_000
SERIES = 2_000  # 40 switches x 50 ports


def workload(points: int) -> list[Sample]:
    return [
        Sample(
            "snmp_interface",
            {"client": f"c{i % 4}", "site": "siege", "device": f"sw{i % SERIES // 50}", "if_name": f"Gi1/0/{i % 50}",
             "if_alias": "Uplink vers cœur"},
            {"in_bps": i * 1.5, "out_bps": i * 0.5, "in_errors": i % 7, "oper_status": "up"},
            T0 + (i // SERIES) * 60_000_000_000,  # one point per series per minute
        )
        for i in range(points)
    ]


def gzip_bodies(samples: list[Sample], batch: int, level: int) -> list[bytes]:
    return [gzip.compress("\n".join(encode(s).text for s in samples[i : i + batch]).encode(), level)
            for i in range(0, len(samples), batch)]


async def in_flight(sends, limit: int) -> None:
    slots = asyncio.Semaphore(limit)

    async def one(send):
        async with slots:
            await send()

    await asyncio.gather(*(one(send) for send in sends))


async def floor(vm: VictoriaMetrics, bodies: list[bytes], limit: int) -> None:
    headers = {"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"}
    url = f"{vm.url}/api/v2/write?org=noc&bucket=vigie&precision=ns"
    async with aiohttp.ClientSession() as session:
        async def post(body: bytes) -> None:
            async with session.post(url, data=body, headers=headers) as resp:
                assert resp.status == 204, resp.status

        await in_flight([functools.partial(post, body) for body in bodies], limit)


async def client_floor(vm: VictoriaMetrics, bodies: list[bytes], limit: int) -> None:
    async with InfluxDBClientAsync(url=vm.url, token="", org="noc") as client:
        service = WriteService(client.api_client)
        await in_flight([functools.partial(service.post_write_async, org="noc", bucket="vigie", body=body,
                                           precision=WritePrecision.NS, content_encoding="gzip",
                                           content_type="text/plain; charset=utf-8") for body in bodies], limit)


async def vigie(vm: VictoriaMetrics, samples: list[Sample], batch: int, limit: int, level: int) -> None:
    store = InfluxStore(vm.url, org="noc", bucket="vigie", token="", batch_size=batch, max_in_flight=limit,
                        gzip_level=level)
    try:
        await store.write(samples)
    finally:
        await store.close()


async def spooled(vm: VictoriaMetrics, samples: list[Sample], batch: int, spool_dir: Path) -> None:
    store = build_store({"kind": "influxdb", "url": vm.url, "org": "noc", "bucket": "vigie", "token": "",
                         "batch_size": batch}, spool_dir)
    try:
        for i in range(0, len(samples), batch):  # as the pipeline hands them over: a batch at a time
            await store.write(samples[i : i + batch])
        assert await store.flush() is True, "the spool did not drain"
    finally:
        await store.close()


def stored(vm: VictoriaMetrics, expected: int) -> int:
    # Each line carries 3 numeric fields (the string field is not a VictoriaMetrics sample). A
    # server under load can take a moment to make the last rows searchable: bounded polling.
    deadline = time.monotonic() + 30
    while True:
        count = sum(len(ts) for _, ts, _ in vm.export('{__name__="snmp_interface_in_bps"}'))
        if count >= expected or time.monotonic() > deadline:
            return count
        time.sleep(0.5)


def measure(name: str, run, samples: list[Sample], data_dir: Path) -> tuple[float, float]:
    vm = VictoriaMetrics(data_dir / name.replace(" ", "_"))
    vm.start()
    try:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        asyncio.run(run(vm))
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        count = stored(vm, len(samples))
    finally:
        vm.stop()
        shutil.rmtree(data_dir / name.replace(" ", "_"), ignore_errors=True)
    if count != len(samples):
        sys.exit(f"{name}: {count} points stored of {len(samples)} sent")
    return len(samples) / wall, cpu / len(samples) * 1e6


def cpu_us(func, count: int) -> float:
    cpu0 = time.process_time()
    func()
    return (time.process_time() - cpu0) / count * 1e6


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=400_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    samples = workload(args.points)
    n, limit = args.in_flight, args.in_flight
    print(f"load average at the start: {load()} on {os.cpu_count()} cores")
    results: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="vigie-bench-lp-") as tmp:
        data = Path(tmp)
        bodies = gzip_bodies(samples, args.batch, 1)  # encoded and compressed outside the measured window
        phases = {
            "floor: bare aiohttp, 1 in flight": lambda vm: floor(vm, bodies, 1),
            f"floor: bare aiohttp, {n} in flight": lambda vm: floor(vm, bodies, limit),
            f"client floor: influxdb-client, {n} in flight": lambda vm: client_floor(vm, bodies, limit),
            f"vigie InfluxStore ({n} in flight, gzip 1)": lambda vm: vigie(vm, samples, args.batch, limit, 1),
            "vigie InfluxStore (1 in flight, gzip 9)": lambda vm: vigie(vm, samples, args.batch, 1, 9),
            "vigie spool + InfluxStore": lambda vm: spooled(vm, samples, args.batch, data / "spool"),
        }
        for _ in range(args.rounds):
            for name, run in phases.items():
                results.setdefault(name, []).append(measure(name, run, samples, data))
    print(f"load average at the end: {load()} on {os.cpu_count()} cores")
    print(f"{args.points:,} points (lines of 5 tags, 4 fields), batches of {args.batch:,}, into victoria-metrics,"
          f" best of {args.rounds} round(s)")
    best = {name: max(runs) for name, runs in results.items()}
    floor_rate, floor_cpu = best[f"floor: bare aiohttp, {n} in flight"]
    for name, (rate, cpu) in best.items():
        print(f"  {name:44s} {rate:>9,.0f} points/s  x{rate / floor_rate:4.2f} of floor  x{rate / GOAL_POINTS_S:4.2f}"
              f" of goal   CPU {cpu:5.2f} µs/point (+{cpu - floor_cpu:5.2f} over floor)")
    lines = [encode(s).text for s in samples]
    body = "\n".join(lines).encode()
    encode_us = cpu_us(lambda: [encode(s).text for s in samples], len(samples))
    gzip1_us = cpu_us(lambda: gzip.compress(body, 1), len(samples))
    gzip9_us = cpu_us(lambda: gzip.compress(body, 9), len(samples))
    shipped = best[f"vigie InfluxStore ({n} in flight, gzip 1)"]
    print(f"  of which vigie's encoder {encode_us:.2f} µs/point; gzip level 1 {gzip1_us:.2f}, level 9 {gzip9_us:.2f}"
          f" µs/point; one core at vigie's cost tops out near {1e6 / shipped[1]:,.0f} points/s")
    verdict = "PASS" if shipped[0] >= GOAL_POINTS_S else "FAIL"
    print(f"goal: InfluxStore >= {GOAL_POINTS_S:,} points/s from one process: {shipped[0]:,.0f} -> {verdict}")
    spool = best["vigie spool + InfluxStore"][0]
    print(f"      spool + InfluxStore (the agent's path): {spool:,.0f} points/s"
          f" -> {'PASS' if spool >= GOAL_POINTS_S else 'FAIL'}")


if __name__ == "__main__":
    main()
