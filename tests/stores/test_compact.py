"""The compact embedded store: the row store's contract (tags, fields, ranges, types, replays,
retention) on per-series chunks, plus rollups, crash safety and its size."""

import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import tracemalloc
from itertools import pairwise
from pathlib import Path

import pytest

from agent.api import Sample
from agent.config import load_config
from agent.runner import state_retention_days
from agent.stores import build_store
from agent.stores.codec import decode_chunk, segment_count
from agent.stores.compact import (
    FLUSH_STEP_MIN_ROWS,
    FORMAT_VERSION,
    NS_PER_DAY,
    RAW_WINDOW_NS,
    SEAL_GRACE_NS,
    SEAL_SPREAD_NS,
    CompactDB,
    CompactStore,
    Retention,
)
from agent.stores.plugins import CompactOptions
from agent.stores.sqlite import SeriesPoints
from tests.stores.helpers import float_bits

S = 1_000_000_000
MIN = 60 * S
# A week boundary: every window of every level starts here.
T0 = 1_700_000_000_000_000_000 - 1_700_000_000_000_000_000 % (7 * NS_PER_DAY)


def iface(device: str, ifname: str, ts: int, **fields) -> Sample:
    tags = {"client": "mairie", "site": "hdv", "device": device, "ifName": ifname}
    return Sample("snmp_interface", tags, fields, ts)


def store_at(path: Path, now: list[int], **retention) -> CompactStore:
    return CompactStore(path, Retention(**retention), clock_ns=lambda: now[0])


async def test_write_and_query_by_tags_fields_and_range(tmp_path):
    store = store_at(tmp_path / "c.sqlite", [T0])
    await store.write(
        [
            iface("sw1", "ge0", T0, in_bps=1.5, oper_status="up", errors=3, up=True),
            iface("sw1", "ge1", T0, in_bps=2.0, oper_status="down"),
            iface("sw2", "ge0", T0, in_bps=None, oper_status="up"),
            iface("sw1", "ge0", T0 + 60 * S, in_bps=1.0, oper_status="up"),
        ]
    )
    assert await store.series("snmp_interface", {"device": "sw1"}) == [
        {"client": "mairie", "device": "sw1", "ifName": "ge0", "site": "hdv"},
        {"client": "mairie", "device": "sw1", "ifName": "ge1", "site": "hdv"},
    ]
    assert len(await store.series("snmp_interface")) == 3
    points = await store.points("snmp_interface", "in_bps", {"device": "sw1", "ifName": "ge0"})
    assert points == [SeriesPoints(points[0].tags, [(T0, 1.5), (T0 + 60 * S, 1.0)])]
    assert await store.points("snmp_interface", "in_bps", {"device": "sw2"}) == []
    windowed = await store.points("snmp_interface", "oper_status", None, T0 + 1, T0 + 61 * S)
    assert [p.points for p in windowed] == [[(T0 + 60 * S, "up")]]
    assert (await store.points("snmp_interface", "errors"))[0].points == [(T0, 3)]
    assert type((await store.points("snmp_interface", "in_bps", {"ifName": "ge1"}))[0].points[0][1]) is float
    assert (await store.points("snmp_interface", "up"))[0].points == [(T0, 1)]
    assert await store.points("snmp_interface", "no_such_field") == []
    await store.close()


async def test_replays_out_of_order_and_duplicates_end_as_one_point_each(tmp_path):
    store = store_at(tmp_path / "c.sqlite", [T0 + 10 * MIN])
    await store.write([iface("sw1", "ge0", T0 + 2 * MIN, in_bps=2.0, oper_status="up")])
    # Older than the chunk's last row, a duplicate in the same batch, then a replay of the lot.
    batch = [
        iface("sw1", "ge0", T0 + 1 * MIN, in_bps=1.0),
        iface("sw1", "ge0", T0 + 3 * MIN, in_bps=3.0),
        iface("sw1", "ge0", T0 + 3 * MIN, in_bps=3.5),
        iface("sw1", "ge0", T0, in_bps=0.5),
    ]
    await store.write(batch)
    await store.write(batch[:2])
    points = (await store.points("snmp_interface", "in_bps"))[0].points
    assert points == [(T0, 0.5), (T0 + MIN, 1.0), (T0 + 2 * MIN, 2.0), (T0 + 3 * MIN, 3.0)]
    # Rewriting one field of a point leaves its other fields alone.
    assert (await store.points("snmp_interface", "oper_status"))[0].points == [(T0 + 2 * MIN, "up")]
    await store.close()


async def test_exact_values_hostile_strings_and_counters(tmp_path):
    hostile = ["", 'a"b\\c', "line\nbreak\r\t", "nul\x00byte", "\ud800 lone surrogate", "é€😀", "x" * 100_000, "up"]
    floats = [math.nan, -0.0, math.inf, -math.inf, 5e-324, 1.0, 0.1 + 0.2]
    store = store_at(tmp_path / "c.sqlite", [T0])
    samples = [
        Sample(
            "m",
            {"device": 'sw"1\n', "if": "é€ ,="},
            {"s": text, "f": floats[i % len(floats)], "c": 2**64 - 1 - i},
            T0 + i * S,
        )
        for i, text in enumerate(hostile)
    ]
    await store.write(samples)
    await store.close()
    again = store_at(tmp_path / "c.sqlite", [T0])
    assert [v for _, v in (await again.points("m", "s", {"if": "é€ ,="}))[0].points] == hostile
    got = [v for _, v in (await again.points("m", "f"))[0].points]
    assert [float_bits(v) for v in got] == [float_bits(floats[i % len(floats)]) for i in range(len(hostile))]
    assert [v for _, v in (await again.points("m", "c"))[0].points] == [2**64 - 1 - i for i in range(len(hostile))]
    await again.close()


async def test_an_open_window_survives_a_restart_and_keeps_growing(tmp_path):
    path = tmp_path / "c.sqlite"
    now = [T0]
    store = store_at(path, now)
    await store.write([iface("sw1", "ge0", T0, in_octets=10)])
    await store.close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again = store_at(path, now)
    await again.write([iface("sw1", "ge0", T0 + MIN, in_octets=20)])
    assert (await again.points("snmp_interface", "in_octets"))[0].points == [(T0, 10), (T0 + MIN, 20)]
    assert sqlite3.connect(path).execute("SELECT count(*) FROM open_chunk").fetchone()[0] == 1
    await again.close()


def raw_windows(path: Path) -> list[tuple[int, int]]:
    """(start, 1 if rolled up) of every raw window on disk."""
    conn = sqlite3.connect(path)
    finished = conn.execute("SELECT start_ns, 1 FROM chunk WHERE level = 0").fetchall()
    still_open = conn.execute("SELECT start_ns, 0 FROM open_chunk WHERE level = 0").fetchall()
    conn.close()
    return sorted(finished + still_open)


async def test_rollups_before_and_after_sealing_and_after_a_late_point(tmp_path):
    now = [T0]
    store = store_at(tmp_path / "c.sqlite", now)
    # 3 h of one sample a minute: in_octets = minute index; a float field too.
    for minute in range(180):
        now[0] = T0 + minute * MIN + 7
        await store.write([iface("sw1", "ge0", now[0], in_octets=minute, in_bps=minute / 2, oper_status="up")])
    before = await store.rollups("snmp_interface", "in_octets", "1h")
    hours = [(b.start_ns, b.min, b.max, b.avg, b.count) for b in before[0].buckets]
    assert hours == [(T0 + h * 60 * MIN, 60 * h, 60 * h + 59, 60 * h + 29.5, 60) for h in range(3)]
    fives = (await store.rollups("snmp_interface", "in_bps", "5m", None, T0 + 10 * MIN, T0 + 20 * MIN))[0].buckets
    assert [(b.start_ns, b.min, b.max, b.count) for b in fives] == [
        (T0 + 10 * MIN, 5.0, 7.0, 5),
        (T0 + 15 * MIN, 7.5, 9.5, 5),
    ]
    # The first window was sealed by the writes' own steps once past its grace, the second not yet.
    assert raw_windows(tmp_path / "c.sqlite") == [(T0, 1), (T0 + RAW_WINDOW_NS, 0)]
    now[0] = T0 + 2 * RAW_WINDOW_NS + SEAL_GRACE_NS + MIN
    assert await store.maintain(now[0]) == (1, 0)
    assert await store.rollups("snmp_interface", "in_octets", "1h") == before
    # A late point reopens the sealed window; the next step replaces its buckets.
    await store.write([iface("sw1", "ge0", T0 + 30 * S, in_octets=1000)])
    late = (await store.rollups("snmp_interface", "in_octets", "1h"))[0].buckets[0]
    assert (late.max, late.count) == (1000, 61)
    # That write's own step sealed it again: the buckets come from the rollup chunks now.
    assert raw_windows(tmp_path / "c.sqlite") == [(T0, 1), (T0 + RAW_WINDOW_NS, 1)]
    assert await store.maintain(now[0]) == (0, 0)
    assert (await store.rollups("snmp_interface", "in_octets", "1h"))[0].buckets[0] == late
    assert await store.rollups("snmp_interface", "oper_status", "1h") == []
    # Float statistics are kept to single precision (raw points stay exact); integers exactly.
    await store.write([iface("sw2", "ge0", now[0] - i * MIN, in_bps=0.1, in_octets=2**64 - 1) for i in range(3)])
    bucket = (await store.rollups("snmp_interface", "in_bps", "1h", {"device": "sw2"}))[0].buckets[0]
    assert (bucket.min, bucket.max, bucket.count) == (0.10000000149011612, 0.10000000149011612, 3)
    octets = (await store.rollups("snmp_interface", "in_octets", "1h", {"device": "sw2"}))[0].buckets[0]
    assert (octets.min, octets.max, octets.avg) == (2**64 - 1, 2**64 - 1, float(2**64 - 1))
    assert (await store.points("snmp_interface", "in_bps", {"device": "sw2"}))[0].points[0][1] == 0.1
    with pytest.raises(ValueError, match="resolution"):
        await store.rollups("snmp_interface", "in_octets", "1d")
    await store.close()


async def test_the_windows_due_together_are_sealed_a_share_at_each_write_over_the_spread(tmp_path):
    """Every series' raw window ends at the same moment: 2,000 of them rolled up by one write was
    6 s of a core at 1,500 switches. The writes seal them a share at a time, over SEAL_SPREAD_NS,
    and the rollups are those of the whole windows."""
    now = [T0]
    path = tmp_path / "c.sqlite"
    store = store_at(path, now)
    devices, ports = 20, 6

    async def poll(minute: int, device: int) -> None:
        now[0] = T0 + minute * MIN + device * MIN // devices
        await store.write([iface(f"sw{device}", f"ge{p}", now[0], in_octets=minute * p) for p in range(ports)])

    for minute in range(120):  # the first raw window, every series
        for device in range(devices):
            await poll(minute, device)
    sealed_by_minute = []
    start = 120 + SEAL_GRACE_NS // MIN
    for minute in range(120, start + SEAL_SPREAD_NS // MIN + 2):
        for device in range(devices):
            await poll(minute, device)
        sealed_by_minute.append(sum(sealed for window, sealed in raw_windows(path) if window == T0))
    windows = devices * ports
    assert set(sealed_by_minute[: start - 120]) == {0}  # within the grace
    during = [b - a for a, b in pairwise(sealed_by_minute[start - 120 :])]
    # about windows / 60 a minute (the share of an hour), never the whole lot at once
    assert max(during) <= windows * MIN // SEAL_SPREAD_NS + devices
    assert sealed_by_minute[-1] == windows
    hours = (await store.rollups("snmp_interface", "in_octets", "1h", {"device": "sw3", "ifName": "ge2"}))[0].buckets
    assert [(b.start_ns, b.min, b.max, b.count) for b in hours[:2]] == [(T0, 0, 118, 60), (T0 + 60 * MIN, 120, 238, 60)]
    await store.close()


async def test_retention_removes_whole_chunks_raw_first_then_rollups_then_series(tmp_path):
    now = [T0]
    path = tmp_path / "c.sqlite"
    store = store_at(path, now, raw_days=1, five_minute_days=8, days=8)
    await store.write([iface("old", "ge0", T0 + i * MIN, in_octets=i) for i in range(5)])
    # The next day: raw kept (inside 1 day + its window), sealed.
    now[0] = T0 + NS_PER_DAY
    await store.write([iface("new", "ge0", now[0], in_octets=1)])
    assert len((await store.points("snmp_interface", "in_octets", {"device": "old"}))[0].points) == 5
    # Two days on: the raw window is gone whole, its rollups stay.
    now[0] = T0 + 2 * NS_PER_DAY + RAW_WINDOW_NS
    await store.write([iface("new", "ge0", now[0], in_octets=2)])
    assert await store.points("snmp_interface", "in_octets", {"device": "old"}) == []
    kept = await store.rollups("snmp_interface", "in_octets", "5m", {"device": "old"})
    assert [(b.min, b.max, b.count) for b in kept[0].buckets] == [(0, 4, 5)]
    # A point older than the raw retention is refused: its window's rollups could not be redone.
    await store.write([iface("old", "ge0", T0 + 10 * MIN, in_octets=99)])
    assert await store.points("snmp_interface", "in_octets", {"device": "old"}) == []
    # Past the rollups' retention (8 days + the hourly window of 7): the series goes too.
    now[0] = T0 + 16 * NS_PER_DAY
    await store.write([iface("new", "ge0", now[0], in_octets=3)])
    await store.maintain(now[0])
    assert [tags["device"] for tags in await store.series("snmp_interface")] == ["new"]
    # Left: the open raw window of today (the flush its write started took its point along); every
    # older chunk of every level went whole.
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM chunk").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM recent_row").fetchone() == (0,)
    assert conn.execute("SELECT level, start_ns FROM open_chunk").fetchall() == [(0, now[0] - now[0] % RAW_WINDOW_NS)]
    await store.close()


async def test_a_reader_beside_the_writer_sees_committed_chunks(tmp_path):
    path = tmp_path / "c.sqlite"
    store = store_at(path, [T0])
    await store.write([iface("sw1", "ge0", T0, in_bps=1.0)])
    reader = CompactDB(path, read_only=True)
    await store.write([iface("sw1", "ge0", T0 + MIN, in_bps=2.0)])
    assert [v for _, v in reader.points("snmp_interface", "in_bps")[0].points] == [1.0, 2.0]
    with pytest.raises(sqlite3.OperationalError):
        reader._conn.execute("DELETE FROM chunk")
    reader.close()
    await store.close()


def switch_poll(ts: int, minute: int, ports: int = 48) -> list[Sample]:
    """One poll of a 48-port access switch: a third of the ports carry traffic."""
    samples = []
    for port in range(ports):
        active = port % 3 == 0
        octets = (minute * (port + 1) * 7_919_111 + minute * minute * 131) if active else 0
        samples.append(
            Sample(
                "snmp_interface",
                {"device": "sw1", "if_index": str(port), "if_name": f"Gi1/0/{port}"},
                {
                    "if_descr": f"GigabitEthernet1/0/{port}",
                    "admin_status": "up",
                    "oper_status": "up" if active else "down",
                    "speed_bps": 1_000_000_000,
                    "in_octets": octets,
                    "out_octets": octets // 3,
                    "in_bps": (port + 1) * 7_919_111 * 8 / 60 + minute * 17.5 if active else 0.0,
                    "out_bps": (port + 1) * 7_919_111 * 8 / 180 + minute * 5.25 if active else 0.0,
                    "in_errors_ps": 0.0,
                    "out_errors_ps": 0.0,
                    "in_discards_ps": 0.0,
                    "out_discards_ps": 0.0,
                },
                ts + port * 15_000,
            )
        )
    return samples


async def test_a_switch_day_costs_under_two_bytes_a_numeric_point(tmp_path):
    """The goal of the store, on 6 hours of a switch: raw points in under 2 bytes a numeric point
    (strings in the bytes, not in the count), with the pages' slack of the chunk tables charged pro
    rata, once the windows are finished (a month of raw points is 360 windows: the one being
    written, a run of small segments, and the last minutes' rows waiting in recent_row are not
    the month's cost). The rollups and the file's fixed cost (a page per table and index, the
    series) aside."""
    path = tmp_path / "c.sqlite"
    now = [T0]
    store = store_at(path, now)
    numeric = 0
    for minute in range(6 * 60):
        now[0] = T0 + minute * MIN + (minute * 7_654_321) % 9_000_000
        poll = switch_poll(now[0], minute)
        numeric += sum(1 for s in poll for v in s.fields.values() if not isinstance(v, str))
        await store.write(poll)
    await store.maintain(now[0] + RAW_WINDOW_NS + SEAL_GRACE_NS)
    await store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM recent_row").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM open_chunk WHERE level = 0").fetchone() == (0,)
    tables = "('chunk', 'open_chunk', 'sqlite_autoindex_chunk_1', 'sqlite_autoindex_open_chunk_1')"
    pages = conn.execute(f"SELECT sum(pgsize) FROM dbstat WHERE name IN {tables}").fetchone()[0]
    payload = dict(
        conn.execute(
            "SELECT level, sum(length(data)) FROM"
            " (SELECT level, data FROM chunk UNION ALL SELECT level, data FROM open_chunk) GROUP BY level"
        ).fetchall()
    )
    conn.close()
    raw_bytes = payload[0] * pages / sum(payload.values())
    assert raw_bytes / numeric < 2.0


CRASH_WRITER = textwrap.dedent(
    """
    import sys
    from agent.api import Sample
    from agent.stores.compact import CompactDB
    db = CompactDB(sys.argv[1])
    t0 = int(sys.argv[2])
    for batch in range(100_000):
        # 10 s apart: a flush of recent_row into chunks starts every 30 batches.
        ts = t0 + batch * 10_000_000_000
        fields = lambda p: {"v": batch * 10 + p, "s": f"b{batch // 7}"}
        db.write([Sample("m", {"port": str(p)}, fields(p), ts) for p in range(40)], ts)
        print(batch, flush=True)
    """
)


@pytest.mark.parametrize("after_batches", [3, 40, 170])
def test_a_sigkill_mid_write_loses_at_most_the_batch_being_written(tmp_path, after_batches):
    path = tmp_path / "c.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_WRITER, str(path), str(T0)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    acknowledged = -1
    assert proc.stdout is not None
    for line in proc.stdout:
        acknowledged = int(line)
        if acknowledged >= after_batches:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # What the writer acknowledged before it died, still in the pipe.
    for line in proc.stdout.read().splitlines():
        acknowledged = int(line)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    for (data,) in conn.execute("SELECT data FROM chunk UNION ALL SELECT data FROM open_chunk"):
        decode_chunk(data)  # every chunk on disk decodes
    conn.close()
    db = CompactDB(path)
    for port in (0, 39):
        points = db.points("m", "v", {"port": str(port)})[0].points
        written = len(points)
        # Every acknowledged batch is there, at most one more (committed, not yet printed).
        assert acknowledged + 1 <= written <= acknowledged + 2
        assert points == [(T0 + b * 10 * S, b * 10 + port) for b in range(written)]
        states = [v for _, v in db.points("m", "s", {"port": str(port)})[0].points]
        assert states == [f"b{b // 7}" for b in range(written)]
    # The store goes on from where it was killed.
    ts = T0 + written * 10 * S
    db.write([Sample("m", {"port": "0"}, {"v": -1}, ts)], ts)
    assert db.points("m", "v", {"port": "0"})[0].points[-1] == (ts, -1)
    db.close()


def test_rows_wait_in_recent_rows_then_become_segments_with_the_same_points(tmp_path):
    path = tmp_path / "c.sqlite"
    db = CompactDB(path)
    expected: dict[str, list[tuple[int, float]]] = {"ge0": [], "ge1": []}
    for minute in range(28):
        ts = T0 + minute * MIN + 1_234
        for port, points in expected.items():
            points.append((ts, minute + (0.5 if port == "ge1" else 0.0)))
        db.write(
            [iface("sw1", port, ts, in_bps=points[-1][1], oper_status="up") for port, points in expected.items()], ts
        )
        got = {p.tags["ifName"]: p.points for p in db.points("snmp_interface", "in_bps")}
        assert got == expected
    conn = sqlite3.connect(path)
    waiting = conn.execute("SELECT count(*) FROM recent_row").fetchone()[0]
    (container,) = conn.execute("SELECT data FROM open_chunk WHERE level = 0 LIMIT 1").fetchone()
    # A flush begins once the oldest row waiting is 5 minutes old and takes every row: at minutes
    # 5, 11, 17 and 23. The window is a run of 4 segments, minutes 24-27 still waiting.
    assert (waiting, segment_count(container)) == (2 * 4, 4)
    # A replay of a flushed point and of a waiting one: the later write wins, one point each.
    replayed = [(expected["ge0"][3][0], -3.0), (expected["ge0"][-1][0], -29.0)]
    db.write([iface("sw1", "ge0", ts, in_bps=v) for ts, v in replayed], T0 + 28 * MIN)
    for ts, v in replayed:
        index = expected["ge0"].index(next(p for p in expected["ge0"] if p[0] == ts))
        expected["ge0"][index] = (ts, v)
    assert {p.tags["ifName"]: p.points for p in db.points("snmp_interface", "in_bps")} == expected
    assert [v for _, v in db.points("snmp_interface", "oper_status", {"ifName": "ge0"})[0].points] == ["up"] * 28
    # Rolled up once the window is past its grace: the same points, 5 a bucket, no row counted twice.
    db.flush(T0 + 60 * MIN)
    db.seal(T0 + RAW_WINDOW_NS + SEAL_GRACE_NS + MIN)
    assert conn.execute("SELECT count(*) FROM recent_row").fetchone() == (0,)
    assert {p.tags["ifName"]: p.points for p in db.points("snmp_interface", "in_bps")} == expected
    buckets = db.rollups("snmp_interface", "in_bps", "5m", {"ifName": "ge0"})[0].buckets
    assert [b.count for b in buckets] == [5] * 5 + [3] and buckets[0].min == -3.0
    conn.close()
    db.close()


def test_a_flush_is_paced_like_the_writes_and_ends_before_the_next(tmp_path):
    """Each write moves at most twice its batch (at least FLUSH_STEP_MIN_ROWS) of the rows waiting:
    one step of thousands of rows a write made the 5-minute flush of 1,000 switches a 10 s burst
    of a whole core, and the polls due behind it late."""
    path = tmp_path / "c.sqlite"
    db = CompactDB(path)
    conn = sqlite3.connect(path)
    waiting = 0
    moved = []
    devices, ports = 40, 6
    for minute in range(16):
        for d in range(devices):  # each device's poll its own write, spread over the minute
            ts = T0 + minute * MIN + d * MIN // devices
            db.write([iface(f"sw{d}", f"ge{p}", ts, in_bps=float(minute * p)) for p in range(ports)], ts)
            now_waiting = conn.execute("SELECT count(*) FROM recent_row").fetchone()[0]
            moved.append(waiting + ports - now_waiting)
            waiting = now_waiting
        if minute in (9, 15):
            # The flush begun at minute 5 (5 minutes of rows: 1,200) ended within the 5 minutes
            # after it, before the next began: what waits is only what came since it began.
            assert waiting <= 5 * devices * ports
    assert max(moved) <= max(FLUSH_STEP_MIN_ROWS, 2 * ports)
    assert sum(moved) > 2 * 5 * devices * ports  # two flushes went through
    got = {p.tags["device"] + p.tags["ifName"]: len(p.points) for p in db.points("snmp_interface", "in_bps")}
    assert got == {f"sw{d}ge{p}": 16 for d in range(devices) for p in range(ports)}
    conn.close()
    db.close()


def test_a_write_and_its_flush_step_read_only_the_series_they_move(tmp_path):
    """Each statement of a write searches by series (or rowid), none by age nor a whole table: a
    flush step reading every series' open window through the (level, start_ns) index, 80,000 of
    them at 1,000 switches, cost a fifth of the agent's CPU."""
    path = tmp_path / "c.sqlite"
    db = CompactDB(path)
    statements: list[str] = []
    for minute in range(12):
        ts = T0 + minute * MIN
        if minute == 6:
            db._conn.set_trace_callback(statements.append)  # a flush began at minute 5
        for d in range(30):
            db.write([iface(f"sw{d}", f"ge{p}", ts, in_bps=float(p), oper_status="up") for p in range(4)], ts)
    db._conn.set_trace_callback(None)
    reads = {sql for sql in statements if sql.lstrip().upper().startswith(("SELECT", "DELETE"))}
    assert any("open_chunk" in sql for sql in reads)  # flush steps ran while traced
    conn = sqlite3.connect(path)
    for sql in reads:
        plan = " / ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
        assert "SCAN" not in plan and "_age" not in plan, (sql, plan)
    conn.close()
    db.close()


def test_a_clock_gone_back_does_not_hold_rows_in_recent_rows(tmp_path):
    db = CompactDB(tmp_path / "c.sqlite")
    db.write([iface("sw1", "ge0", T0, in_bps=1.0)], T0)
    # The clock goes back an hour: the row written "later" is flushed at the next write.
    db.write([iface("sw1", "ge0", T0 + MIN, in_bps=2.0)], T0 - 60 * MIN)
    conn = sqlite3.connect(tmp_path / "c.sqlite")
    assert conn.execute("SELECT count(*) FROM recent_row").fetchone() == (0,)
    assert db.points("snmp_interface", "in_bps")[0].points == [(T0, 1.0), (T0 + MIN, 2.0)]
    db.close()


def test_the_writer_keeps_no_state_per_series_in_memory(tmp_path):
    """A thousand switches are ~94,000 series: an encoder per open series (about 3 kB) was most of
    the agent's memory. What a series costs the writer now is its id in a cache, keyed by a digest
    of its tags rather than by the tags themselves (an interface's description and alias)."""
    db = CompactDB(tmp_path / "c.sqlite")

    def port_sample(port: int, poll: int) -> Sample:
        tags = {
            "client": "mairie",
            "site": "hdv",
            "device": "sw-hdv-etage2-01",
            "ifName": f"Gi1/0/{port}",
            "ifDescr": f"GigabitEthernet1/0/{port}",
            "ifAlias": f"Bureau {port} - poste agent accueil",
        }
        return Sample("snmp_interface", tags, {"in_bps": poll * 1.5 + port, "in_octets": poll * port}, T0 + poll * MIN)

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for poll in range(12):
            db.write([port_sample(port, poll) for port in range(2_000)], T0 + poll * MIN)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown / 2_000 < 400
    db.close()


def test_compact_is_the_default_store_and_its_options_are_checked(tmp_path):
    store = build_store({}, tmp_path)
    assert isinstance(store, CompactStore)
    assert store.path == tmp_path / "samples-compact.sqlite"
    assert store.retention == Retention(raw_days=30, five_minute_days=30, days=400)
    with pytest.raises(ValueError, match="raw_retention_days"):
        CompactOptions(raw_retention_days=60, retention_days=30)
    with pytest.raises(ValueError, match="five_minute_retention_days"):
        CompactOptions(five_minute_retention_days=500)
    options = CompactOptions(raw_retention_days=7, five_minute_retention_days=60, retention_days=800)
    built = build_store({"kind": "compact", **options.model_dump()}, tmp_path)
    assert built.retention == Retention(7, 60, 800)
    with pytest.raises(ValueError):
        CompactOptions(raw_retention=30)


def test_the_rollups_retention_is_the_state_dbs(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("agent: {store: {kind: compact, raw_retention_days: 10, retention_days: 200}}\nclients: []\n")
    assert state_retention_days(load_config(path, environ={})) == 200
    path.write_text("clients: []\n")
    config = load_config(path, environ={})
    assert config.agent.store.kind == "compact" and state_retention_days(config) == 400


async def test_an_open_rollup_window_merges_its_segments_and_loses_no_bucket(tmp_path):
    now = [T0]
    store = store_at(tmp_path / "c.sqlite", now)
    # A point every 10 min for 30 h: 15 raw windows rolled into the days' 5-minute chunks and the
    # week's hourly one (its segments merged past 12).
    for step in range(180):
        now[0] = T0 + step * 10 * MIN
        await store.write([iface("sw1", "ge0", now[0], in_octets=step)])
    await store.maintain(now[0] + RAW_WINDOW_NS + SEAL_GRACE_NS + MIN)
    conn = sqlite3.connect(tmp_path / "c.sqlite")
    (week,) = conn.execute("SELECT data FROM open_chunk WHERE level = 2 AND start_ns = ?", (T0,)).fetchone()
    conn.close()
    assert segment_count(week) < 15
    fives = (await store.rollups("snmp_interface", "in_octets", "5m"))[0].buckets
    assert [(b.start_ns, b.min, b.count) for b in fives] == [(T0 + s * 10 * MIN, s, 1) for s in range(180)]
    hours = (await store.rollups("snmp_interface", "in_octets", "1h"))[0].buckets
    assert [(b.min, b.max, b.count) for b in hours] == [(6 * h, 6 * h + 5, 6) for h in range(30)]
    await store.close()


COUNTERS = {("snmp_interface", "in_octets")}


async def test_a_counter_is_rolled_up_as_its_increase_across_windows_resets_and_sealing(tmp_path):
    now = [T0]
    store = CompactStore(tmp_path / "c.sqlite", clock_ns=lambda: now[0], counter_fields=COUNTERS)
    # 4 h of a point a minute: in_octets grows by 100 a minute, resets to 0 at minute 150 (a
    # reboot) and grows again; the raw windows end at minute 120 and 240.
    octets = [100 * m if m < 150 else 10 * (m - 150) for m in range(240)]
    for minute, value in enumerate(octets):
        now[0] = T0 + minute * MIN + 7
        await store.write([iface("sw1", "ge0", now[0], in_octets=value, in_bps=float(minute))])
    # Each step goes to its later point's bucket; the reset's bucket counts the value after it.
    expected = [(T0 + h * 60 * MIN, (59 if h == 0 else 60) * 100) for h in range(2)]
    expected += [(T0 + 120 * MIN, 30 * 100 + 0 + 29 * 10), (T0 + 180 * MIN, 60 * 10)]
    before = await store.rollups("snmp_interface", "in_octets", "1h")
    assert [(b.start_ns, b.increase) for b in before[0].buckets] == expected
    assert {(b.min, b.max, b.avg, b.count) for b in before[0].buckets} == {(None, None, None, 60)}
    fives = (await store.rollups("snmp_interface", "in_octets", "5m", None, T0 + 115 * MIN, T0 + 125 * MIN))[0]
    # The first bucket of the second raw window has the step from the first window's last point.
    assert [b.increase for b in fives.buckets] == [500, 500]
    # Sealed, from the rollup chunks: the same buckets.
    now[0] = T0 + 2 * RAW_WINDOW_NS + SEAL_GRACE_NS + MIN
    assert await store.maintain(now[0]) == (1, 0)
    assert await store.rollups("snmp_interface", "in_octets", "1h") == before
    # A gauge beside it keeps min/max/avg; only the statistics asked for are given.
    gauge = (await store.rollups("snmp_interface", "in_bps", "1h", statistics=("avg",)))[0].buckets[0]
    assert (gauge.min, gauge.max, gauge.avg, gauge.count, gauge.increase) == (None, None, 29.5, 60, None)
    full = (await store.rollups("snmp_interface", "in_bps", "1h"))[0].buckets[1]
    assert (full.min, full.max, full.avg) == (60.0, 119.0, 89.5)
    with pytest.raises(ValueError, match="statistic.*median"):
        await store.rollups("snmp_interface", "in_bps", "1h", statistics=("median",))
    await store.close()
    # A reader knows the file's counters without being told.
    reader = CompactDB(tmp_path / "c.sqlite", read_only=True)
    assert reader.rollups("snmp_interface", "in_octets", "1h") == before
    reader.close()


async def test_the_snmp_octet_counters_reach_the_store_through_the_plugin_api(tmp_path):
    from agent.api import StoreContext
    from agent.plugins import Plugins
    from agent.stores.plugins import build_compact

    counters = Plugins.discover().counter_fields()
    assert {("snmp_interface", "in_octets"), ("snmp_interface", "out_octets")} <= counters
    store = build_compact(CompactOptions(), StoreContext(tmp_path, lambda ref: "", counters))
    # The store runs on the wall clock: an hour of three hours ago, inside the raw retention.
    hour = time.time_ns() - 3 * 60 * MIN
    hour -= hour % (60 * MIN)
    await store.write(
        [iface("sw1", "ge0", hour + m * MIN, in_octets=5 * m, out_octets=7 * m, in_bps=1.0) for m in range(3)]
    )
    for field, step in (("in_octets", 5), ("out_octets", 7)):
        (bucket,) = (await store.rollups("snmp_interface", field, "1h"))[0].buckets
        assert (bucket.increase, bucket.max) == (2 * step, None)
    assert (await store.rollups("snmp_interface", "in_bps", "1h"))[0].buckets[0].max == 1.0
    await store.close()


FORMAT0 = Path(__file__).with_name("fixtures") / "compact-format0.sqlite"
F0_NEW = T0 + 8 * NS_PER_DAY


def _format0_copy(tmp_path: Path) -> Path:
    path = tmp_path / "samples-compact.sqlite"
    path.write_bytes(FORMAT0.read_bytes())
    return path


def _check_format0_contents(db: CompactDB) -> None:
    """What tests/stores/fixtures/make_compact_format0.py wrote, read back."""
    (old,) = db.rollups("snmp_interface", "in_octets", "1h", {"device": "old"})
    assert [(b.start_ns, b.min, b.max, b.avg, b.count) for b in old.buckets] == [(T0, 0, 59_000, 29_500.0, 60)]
    new = db.rollups("snmp_interface", "in_bps", "5m", {"device": "new"})[0].buckets
    assert len(new) == 60 and (new[0].min, new[0].max, new[0].count) == (0.0, 2.0, 5)
    assert (new[-1].start_ns, new[-1].max) == (F0_NEW + 295 * MIN, 149.5)
    points = db.points("snmp_interface", "in_octets", {"device": "new"}, None, F0_NEW + 300 * MIN)[0].points
    assert points == [(F0_NEW + m * MIN, 1000 * m) for m in range(300)]


def test_a_format0_file_reads_as_it_is_and_migrates_when_a_writer_opens_it(tmp_path):
    path = _format0_copy(tmp_path)
    # Read-only (a view on an older state dir, no agent running): read in its own layout.
    reader = CompactDB(path, read_only=True)
    _check_format0_contents(reader)
    reader.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone() == (0,)
    # A writer renumbers the rollup columns once; the buckets stay what they were.
    writer = CompactDB(path, counter_fields=COUNTERS)
    _check_format0_contents(writer)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone() == (FORMAT_VERSION,)
    # New windows of the counter get increases; the old buckets keep their min/max/avg.
    later = F0_NEW + 5 * 60 * MIN
    tags = {"client": "mairie", "site": "hdv", "device": "new", "ifName": "ge0"}
    grown = [Sample("snmp_interface", tags, {"in_octets": 300_000 + m * 1000}, later + m * MIN) for m in range(60)]
    writer.write(grown, later)
    writer.seal(later + RAW_WINDOW_NS + SEAL_GRACE_NS + 60 * MIN)
    hours = writer.rollups("snmp_interface", "in_octets", "1h", {"device": "new"})[0].buckets
    assert [(b.max, b.increase) for b in hours[:2]] == [(59_000, None), (119_000, None)]
    assert (hours[-1].start_ns, hours[-1].increase, hours[-1].count) == (later, 60_000, 60)
    writer.close()
    _check_format0_contents(CompactDB(path, read_only=True))


def test_a_file_of_a_newer_format_is_refused_naming_it(tmp_path):
    path = _format0_copy(tmp_path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 9")
    conn.commit()
    conn.close()
    with pytest.raises(ValueError, match="format 9.*newer vigie"):
        CompactDB(path, read_only=True)
