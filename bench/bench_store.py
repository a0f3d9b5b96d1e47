"""Points per second into SqliteStore, as a ratio against bare SQLite measured in the same run; and
samples per second through the line-protocol encoder of the InfluxDB store, against the encoder of
the official client.

`python bench/bench_store.py [points] [batch]`

The SQLite peer is the straightforward layout on the same engine: the same points inserted with
`executemany` into one table keyed by (series text, field, timestamp), one transaction per batch,
same WAL mode and synchronous setting, no thread hop, no retention step. The ratio says whether
vigie's normalised schema (series and tag tables, integer series ids, numeric and string fields
apart) and its worker thread earn their keep.

The line-protocol peer is influxdb_client's `Point(...).tag(...).field(...).to_line_protocol()` on
the same samples: whether escaping every line break and backslash case (agent/stores/
line_protocol.py) costs more than the client's own escaping.
"""

import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from influxdb_client import Point, WritePrecision

from agent.api import Sample
from agent.stores.line_protocol import encode
from agent.stores.sqlite import SqliteStore

T0 = 1_700_000_000_000_000_000
FIELDS_PER_SAMPLE = 4


def workload(points: int) -> list[Sample]:
    return [
        Sample(
            "snmp_interface",
            {"client": f"c{i % 20}", "site": "s", "device": f"d{i % 500}", "if_name": f"ge{i % 48}"},
            {"in_bps": float(i), "out_bps": float(i), "errors": i, "oper_status": "up"},
            T0 + i * 1000,
        )
        for i in range(points // FIELDS_PER_SAMPLE)
    ]


async def vigie_store(path: Path, samples: list[Sample], batch: int) -> float:
    store = SqliteStore(path, clock_ns=lambda: T0)
    start = time.perf_counter()
    for i in range(0, len(samples), batch):
        await store.write(samples[i : i + batch])
    elapsed = time.perf_counter() - start
    await store.close()
    return elapsed


def series_key(sample: Sample) -> str:
    return sample.measurement + "," + ",".join(f"{k}={v}" for k, v in sorted(sample.tags.items()))


def bare_sqlite(path: Path, samples: list[Sample], batch: int) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE point (series TEXT, field TEXT, ts INTEGER, value, PRIMARY KEY (series, field, ts))")
    start = time.perf_counter()
    for i in range(0, len(samples), batch):
        rows = [
            (series_key(s), name, s.timestamp_ns, value)
            for s in samples[i : i + batch]
            for name, value in s.fields.items()
        ]
        db.execute("BEGIN")
        db.executemany("INSERT OR REPLACE INTO point VALUES (?, ?, ?, ?)", rows)
        db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return elapsed


def vigie_line_protocol(samples: list[Sample]) -> float:
    start = time.perf_counter()
    for sample in samples:
        encode(sample)
    return time.perf_counter() - start


def client_line_protocol(samples: list[Sample]) -> float:
    start = time.perf_counter()
    for sample in samples:
        point = Point(sample.measurement)
        for key, value in sample.tags.items():
            point.tag(key, value)
        for key, value in sample.fields.items():
            point.field(key, value)
        point.time(sample.timestamp_ns, WritePrecision.NS).to_line_protocol()
    return time.perf_counter() - start


async def main(points: int, batch: int) -> None:
    samples = workload(points)
    total = len(samples) * FIELDS_PER_SAMPLE
    with tempfile.TemporaryDirectory() as tmp:
        ours = await vigie_store(Path(tmp) / "vigie.sqlite", samples, batch)
        peer = bare_sqlite(Path(tmp) / "bare.sqlite", samples, batch)
    print(f"{total} points, batches of {batch} samples:")
    print(f"  vigie SqliteStore : {total / ours:>10,.0f} points/s")
    print(f"  bare SQLite (peer): {total / peer:>10,.0f} points/s")
    print(f"  ratio vigie / peer: x{peer / ours:.2f} points/s (>1: vigie writes faster)")
    ours, peer = vigie_line_protocol(samples), client_line_protocol(samples)
    print(f"{len(samples)} samples to line protocol ({len(samples[0].tags)} tags, {FIELDS_PER_SAMPLE} fields):")
    print(f"  vigie encode                : {len(samples) / ours:>10,.0f} samples/s")
    print(f"  influxdb_client Point (peer): {len(samples) / peer:>10,.0f} samples/s")
    print(f"  ratio vigie / peer: x{peer / ours:.2f} samples/s (>1: vigie encodes faster)")


if __name__ == "__main__":
    asyncio.run(
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 400_000, int(sys.argv[2]) if len(sys.argv) > 2 else 1000)
    )
