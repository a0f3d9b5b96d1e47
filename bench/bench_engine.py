"""How long one alert batch holds the event loop: the engine's evaluation called on the loop (as
the agent's alert lane did) against the same evaluation through `asyncio.to_thread` (as it does
now), same batches, same run.

`python bench/bench_engine.py [--devices 40] [--batches 15] [--rules 60]`

Workload: `--devices` switches, each batch 50 samples per device (46 `snmp_interface`, 2 PSU
`snmp_sensor`, 1 `snmp_cpu`, 1 `collection`: 2,000 samples at 40 devices) a minute apart; one
device in ten has its uplink down and a PSU failed, so alerts go pending, fire and are updated in
every batch. Rules: the SNMP plugin's shipped rules and the kernel's `device_unreachable`, padded
with interface error-rate rules to `--rules`.

While each batch is evaluated a heartbeat task on the loop wakes every millisecond; the longest
gap between its wake-ups (minus the millisecond it asked for) is how long the loop could not serve
anything else — the shared SNMP socket among them. Printed per mode: median and worst of that
stall over the batches, and the batch's wall time; then the ratio of the median stalls.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from agent.api import Rule, Sample
from agent.config import BUILTIN_RULES
from alerting.engine import AlertEngine
from collectors.snmp import default_rules

T0 = 1_800_000_000.0
TICK_S = 0.001


def rules(count: int) -> list[Rule]:
    shipped = [*BUILTIN_RULES, *default_rules()]
    padding = [
        Rule(name=f"interface_errors_{n}", measurement="snmp_interface", when=f"in_errors > {1000 + n}", for_s=300)
        for n in range(max(0, count - len(shipped)))
    ]
    return (shipped + padding)[:count]


def batch(devices: int, t: float) -> list[Sample]:
    ns = int(t * 1e9)
    samples = []
    for d in range(devices):
        faulty = d % 10 == 0
        base = {"client": "bench", "site": "s1", "device": f"sw-{d:04d}", "profile": "cisco_iosxe"}
        for port in range(1, 47):
            uplink = port == 1
            tags = {**base, "if_index": str(port), "if_name": f"Gi1/0/{port}", "role": "core",
                    "if_alias": "uplink to core" if uplink else f"user {port}"}  # fmt: skip
            oper = "down" if uplink and faulty else "up"
            fields = {"admin_status": "up", "oper_status": oper, "in_errors": port, "in_bps": 1e6 * port}
            samples.append(Sample("snmp_interface", tags, fields, ns))
        for psu in (1, 2):
            state = "crit" if faulty and psu == 2 else "ok"
            tags = {**base, "sensor": f"Switch 1 - Power Supply {psu}", "sensor_class": "power_supply"}
            samples.append(Sample("snmp_sensor", tags, {"state": state, "status": state}, ns))
        samples.append(Sample("snmp_cpu", {**base, "cpu": "0"}, {"usage_percent": 12.0}, ns))
        tags = {"client": "bench", "site": "s1", "device": f"sw-{d:04d}", "collector": "snmp"}
        samples.append(Sample("collection", tags, {"status": "ok", "duration_s": 0.4}, ns))
    return samples


class Heartbeat:
    """A task waking every TICK_S on the loop; ``stall`` is the longest it was kept waiting."""

    def __init__(self) -> None:
        self.stall = 0.0
        self._running = True
        self._task = asyncio.create_task(self._beat())

    async def _beat(self) -> None:
        last = time.perf_counter()
        while self._running:
            await asyncio.sleep(TICK_S)
            tick = time.perf_counter()
            self.stall = max(self.stall, tick - last - TICK_S)
            last = tick

    async def stop(self) -> float:
        await asyncio.sleep(TICK_S * 3)  # lets the last gap be recorded
        self._running = False
        await self._task
        return self.stall


async def measure(
    evaluate: Callable[[Sequence[Sample], float], object], batches: list[tuple[float, list[Sample]]], threaded: bool
) -> tuple[list[float], list[float]]:
    """(loop stall s, wall s) per batch."""
    stalls, walls = [], []
    for now, samples in batches:
        heartbeat = Heartbeat()
        await asyncio.sleep(TICK_S * 3)  # ticking before the batch starts
        start = time.perf_counter()
        if threaded:
            await asyncio.to_thread(evaluate, samples, now)
        else:
            evaluate(samples, now)
        walls.append(time.perf_counter() - start)
        stalls.append(await heartbeat.stop())
    return stalls, walls


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=40)
    parser.add_argument("--batches", type=int, default=15)
    parser.add_argument("--rules", type=int, default=60)
    args = parser.parse_args()
    ruleset = rules(args.rules)
    batches = [(T0 + 60 * i, batch(args.devices, T0 + 60 * i)) for i in range(args.batches)]
    print(f"{len(batches[0][1])} samples per batch, {len(ruleset)} rules, {args.batches} batches a minute apart")
    results = {}
    with tempfile.TemporaryDirectory(prefix="vigie-bench-engine-") as tmp:
        for mode, threaded in (("on the loop", False), ("to_thread", True)):
            engine = AlertEngine(str(Path(tmp) / f"{threaded}.sqlite"), ruleset, clock=lambda: T0)
            stalls, walls = await measure(engine.evaluate, batches, threaded)
            firing = len(engine.firing())
            engine.close()
            results[mode] = statistics.median(stalls)
            print(
                f"{mode:>12}: loop stall per batch median {statistics.median(stalls) * 1e3:7.2f} ms, "
                f"worst {max(stalls) * 1e3:7.2f} ms; batch wall time median {statistics.median(walls) * 1e3:7.2f} ms; "
                f"{firing} alerts firing at the end"
            )
    ratio = results["on the loop"] / max(results["to_thread"], 1e-6)
    print(f"loop stall, on the loop / to_thread: x{ratio:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
