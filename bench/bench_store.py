"""Points per second into SqliteStore: `python bench/bench_store.py [points] [batch]`."""

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from agent.samples import Sample
from agent.stores.sqlite import SqliteStore

T0 = 1_700_000_000_000_000_000


async def main(points: int, batch: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "bench.sqlite", clock_ns=lambda: T0)
        fields_per_sample = 4
        samples = [
            Sample(
                "snmp_interface",
                {"client": f"c{i % 20}", "site": "s", "device": f"d{i % 500}", "ifName": f"ge{i % 48}"},
                {"in_bps": float(i), "out_bps": float(i), "errors": i, "oper_status": "up"},
                T0 + i * 1000,
            )
            for i in range(points // fields_per_sample)
        ]
        start = time.perf_counter()
        for i in range(0, len(samples), batch):
            await store.write(samples[i : i + batch])
        elapsed = time.perf_counter() - start
        await store.close()
        print(
            f"{len(samples) * fields_per_sample} points in {elapsed:.2f}s: "
            f"{len(samples) * fields_per_sample / elapsed:,.0f} points/s (batch {batch} samples)"
        )


if __name__ == "__main__":
    asyncio.run(
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 400_000, int(sys.argv[2]) if len(sys.argv) > 2 else 1000)
    )
