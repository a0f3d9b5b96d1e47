"""An alert storm on one site through the ticket dispatcher, grouped against ungrouped, same run.

    python bench/bench_grouping.py [--alerts 150 1000] [--rounds 3]

N interface alerts of one site fire in one evaluation; the dispatcher (built-in ticket log, a
driven clock moved past group_wait) records them and its lane settles. Printed per size and mode:
tickets opened, wall time of record + settle (the SQLite work on the worker thread and the log's
writes), alternating grouped / ungrouped rounds; and the load average, the box being shared.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from agent.api.alerts import FIRING, Alert, AlertTransition, fingerprint
from alerting.notifier import Grouping, TicketDispatcher
from alerting.ticketing.log import TicketLog

T0 = 1_700_000_000.0


def storm(n: int) -> list[AlertTransition]:
    transitions = []
    for i in range(n):
        labels = {"alertname": "interface_down", "client": "vsgp", "site": "hdv", "device": f"sw-{i:04d}",
                  "if_name": "Gi0/1"}
        alert = Alert(fingerprint(labels), "interface_down", labels, "critical", f"sw-{i:04d} Gi0/1 down", FIRING,
                      started_at=T0 + i * 10 / n, fired_at=T0 + 60 + i * 10 / n)
        transitions.append(AlertTransition(alert, "pending", FIRING, alert.fired_at))
    return transitions


async def one_round(where: Path, n: int, grouping: Grouping | None) -> tuple[int, float]:
    now = [T0 + 70]
    log = TicketLog(str(where / "log.sqlite"), clock=lambda: now[0])
    disp = TicketDispatcher(str(where / "links.sqlite"), {"vsgp": log}, clock=lambda: now[0],
                            grouping_for=lambda client: grouping)
    await disp.start()
    try:
        started = time.perf_counter()
        await disp.record(storm(n), now[0])
        now[0] = T0 + 100  # past group_wait
        await disp.settle()
        elapsed = time.perf_counter() - started
        return len(log.list()), elapsed
    finally:
        await disp.stop()
        await log.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, nargs="+", default=[150, 1000])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    modes = {"grouped": Grouping(wait_s=30), "one per alert": None}
    for n in args.alerts:
        times: dict[str, list[float]] = {mode: [] for mode in modes}
        tickets: dict[str, int] = {}
        for _ in range(args.rounds):
            for mode, grouping in modes.items():  # alternated, so a load change hits both
                with tempfile.TemporaryDirectory() as tmp:
                    tickets[mode], elapsed = await one_round(Path(tmp), n, grouping)
                times[mode].append(elapsed)
        for mode in modes:
            print(f"{n:5d} alerts, {mode:13s}: {tickets[mode]:5d} ticket(s), record+settle median "
                  f"{statistics.median(times[mode]):.2f} s (rounds: {', '.join(f'{t:.2f}' for t in times[mode])})")
        ratio = statistics.median(times["one per alert"]) / statistics.median(times["grouped"])
        print(f"{n:5d} alerts: grouped is x{ratio:.1f} the speed of one ticket per alert")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    asyncio.run(main())
