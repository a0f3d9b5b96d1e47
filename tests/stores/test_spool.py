"""SpooledStore: disk first, background sending, outage and replay against a real line-protocol server,
restart, bound, backoff, refused lines isolated and quarantined, a hung TSDB.

Waits are on events (fakes announce what they saw, the manual clock announces its sleepers), never
on elapsed time; ``SAFETY_S`` only turns a hang into a failure.
"""

import asyncio
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence

import pytest
from aiohttp import web

from agent.api import Sample
from agent.stores import StoreError, build_store
from agent.stores.influx import InfluxStore
from agent.stores.line_protocol import encode
from agent.stores.spool import QUARANTINE_FILE, SpoolDepth, SpooledStore
from tests.agent.helpers import SAFETY_S, Changes
from tests.stores.helpers import ManualTime

MS = 1_000_000
T0 = 1_700_000_000_000 * MS


def sample(i: int, device: str = "d") -> Sample:
    # VictoriaMetrics keeps milliseconds: one point per millisecond keeps them all distinct.
    return Sample("spooltest", {"client": "c", "device": device}, {"seq": float(i)}, T0 + i * MS)


def seq_of(line: str) -> float:
    return float(line.split("seq=")[1].split(" ")[0])


def seqs(lines: Sequence[str]) -> list[float]:
    return [seq_of(line) for line in lines]


class LineFake(ABC):
    """A line-protocol remote store (``encode_lines`` and ``write_lines``); ``write``, which the spool
    uses for the JSON segments of an older version, goes through the same lines."""

    def encode_lines(self, samples: Sequence[Sample]) -> list[str]:
        return [line for line in (encode(s).text for s in samples) if line is not None]

    async def write(self, samples: Sequence[Sample]) -> None:
        await self.write_lines(self.encode_lines(samples))

    @abstractmethod
    async def write_lines(self, lines: Sequence[str]) -> None:
        """What this fake store does with a batch of lines."""

    async def close(self) -> None:  # noqa: B027 - a fake with nothing to release, unless it says
        return None


class Recording(LineFake):
    """Passes batches to the real store and records what it accepted, in the order it answered."""

    def __init__(self, inner):
        self.inner = inner
        self.attempts = 0
        self.sent: list[float] = []
        self.closed = False
        self.changes = Changes()

    def encode_lines(self, samples: Sequence[Sample]) -> list[str]:
        return self.inner.encode_lines(samples)

    async def write_lines(self, lines: Sequence[str]) -> None:
        self.attempts += 1
        try:
            await self.inner.write_lines(lines)
        finally:
            self.changes.bump()
        self.sent += seqs(lines)

    async def close(self) -> None:
        self.closed = True
        await self.inner.close()


async def no_sleep(delay: float) -> None:
    """InfluxStore's own retries are not under test here."""


def influx(url: str) -> Recording:
    return Recording(InfluxStore(url, "org", "vigie", "", max_retries=0, sleep=no_sleep))


def stored_seq(victoria) -> list[float]:
    rows = victoria.export('{__name__="spooltest_seq"}')
    assert len(rows) <= 1
    return rows[0][2] if rows else []


async def test_outage_is_spooled_and_replayed_in_order(tmp_path, victoria):
    time = ManualTime()
    remote = influx(victoria.url)
    store = SpooledStore(remote, tmp_path / "spool", batch_size=7, retry_min_s=5, clock=time.clock, sleep=time.sleep)
    await store.write([sample(i) for i in range(10)])
    await remote.changes.until(lambda: len(remote.sent) == 10)  # sent in the background
    assert await store.flush() is True and store.depth() == SpoolDepth(0, 0)

    victoria.stop()
    await store.write([sample(i) for i in range(10, 20)])  # no exception for the caller
    await time.changes.until(lambda: time.sleeps == [5])  # the sender failed and backs off
    assert store.last_error is not None and victoria.url in store.last_error
    assert store.depth().points == 10
    # Within the backoff, writes only spool: no connection attempt per poll.
    attempts = remote.attempts
    await store.write([sample(i) for i in range(20, 30)])
    assert store.depth().points == 20 and remote.attempts == attempts

    victoria.start()
    time.advance(5)
    await remote.changes.until(lambda: len(remote.sent) == 30)
    await store.write([sample(i) for i in range(30, 35)])
    await remote.changes.until(lambda: len(remote.sent) == 35)
    assert sorted(remote.sent) == [float(i) for i in range(35)]  # chunks in flight together land in any order
    assert await store.flush() is True
    assert store.depth() == SpoolDepth(0, 0) and store.last_error is None
    await store.close()
    assert remote.closed
    assert stored_seq(victoria) == [float(i) for i in range(35)]
    assert list((tmp_path / "spool").glob("*.lp")) == []


async def test_spool_left_by_a_previous_process_is_replayed_first(tmp_path, victoria):
    spool = tmp_path / "spool"
    victoria.stop()
    first = SpooledStore(influx(victoria.url), spool, batch_size=4)
    await first.write([sample(i) for i in range(10)])
    await first.close()  # the agent stops during the outage

    victoria.start()
    remote = influx(victoria.url)
    second = SpooledStore(remote, spool, batch_size=4)
    assert second.depth().points == 10
    await second.write([sample(i) for i in range(10, 13)])
    await second.close()
    assert sorted(remote.sent) == [float(i) for i in range(13)]
    assert stored_seq(victoria) == [float(i) for i in range(13)]


class Down(LineFake):
    def __init__(self):
        self.calls = 0
        self.changes = Changes()

    async def write_lines(self, lines):
        self.calls += 1
        self.changes.bump()
        raise StoreError("http://tsdb:8086", "connection refused")


class RefusesData(LineFake):
    """Refuses, as data, any batch holding one of the ``bad`` points; ``down_on_calls`` fail as an
    outage, and so does any batch holding one of the ``down_for`` points (once each)."""

    def __init__(
        self, bad: set[float], down_on_calls: frozenset[int] = frozenset(), down_for: frozenset[float] = frozenset()
    ):
        self.bad = bad
        self.down_on_calls = down_on_calls
        self.down_for = set(down_for)
        self.calls = 0
        self.taken: list[str] = []
        self.batches: list[list[float]] = []

    async def write_lines(self, lines):
        self.calls += 1
        batch = seqs(lines)
        if self.calls in self.down_on_calls or self.down_for.intersection(batch):
            self.down_for.difference_update(batch)
            raise StoreError("http://tsdb:8086", "connection refused")
        if self.bad.intersection(batch):
            raise StoreError("http://tsdb:8086", "unable to parse", status=400, retryable=False, data_rejected=True)
        self.taken += lines
        self.batches.append(batch)

    @property
    def sent(self) -> list[float]:
        return [seq for batch in self.batches for seq in batch]


def quarantined(spool_dir) -> list[dict]:
    path = spool_dir / QUARANTINE_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_bound_drops_oldest_segments_and_counts_them(tmp_path):
    time = ManualTime()
    store = SpooledStore(
        Down(), tmp_path / "spool", max_bytes=4000, segment_bytes=1000, clock=time.clock, sleep=time.sleep
    )
    for i in range(0, 100, 5):
        await store.write([sample(j) for j in range(i, i + 5)])
    depth = store.depth()
    assert depth.bytes <= 4000
    assert store.dropped_points > 0
    assert depth.points + store.dropped_points == 100
    await store.close()

    # What survived is the newest points, still in order, after a restart.
    survivor = RefusesData(set())
    again = SpooledStore(survivor, tmp_path / "spool")
    assert await again.flush() is True
    assert survivor.sent == [float(i) for i in range(store.dropped_points, 100)]
    await again.close()


async def test_backoff_grows_and_only_flush_bypasses_it(tmp_path):
    time = ManualTime()
    down = Down()
    store = SpooledStore(down, tmp_path / "spool", retry_min_s=5, retry_max_s=12, clock=time.clock, sleep=time.sleep)
    await store.write([sample(0)])
    await time.changes.until(lambda: time.sleeps == [5])
    assert down.calls == 1
    time.advance(4.9)
    await store.write([sample(1)])
    assert down.calls == 1  # the sender still sleeps: a write does not cut the backoff short
    time.advance(0.1)
    await time.changes.until(lambda: time.sleeps == [5, 10])  # tried again at 5 s, next in 10 s
    assert down.calls == 2
    time.advance(9.9)
    await store.write([sample(2)])
    assert down.calls == 2
    assert await store.flush() is False
    assert down.calls == 3 and store.depth().points == 3
    time.advance(0.1)
    # The sender wakes at 15 s; the flush's failure at 14.9 s put the next try at 26.9 s (capped at 12).
    await time.changes.until(lambda: len(time.sleeps) == 3)
    assert time.sleeps[2] == pytest.approx(11.9) and down.calls == 3
    await store.close()


async def test_refused_lines_are_isolated_and_quarantined_and_every_good_point_delivered(tmp_path):
    remote = RefusesData({3.0, 9.0})
    store = SpooledStore(remote, tmp_path / "spool", batch_size=4, max_in_flight=1, wall_clock_ns=lambda: 42)
    await store.write([sample(i) for i in range(10)])
    assert await store.flush() is True
    # Chunks [0-3] [4-7] [8-9]: the refused ones are halved down to the lines at fault.
    assert remote.batches == [[0.0, 1.0], [2.0], [4.0, 5.0, 6.0, 7.0], [8.0]]
    assert store.quarantined_lines == 2 and store.depth() == SpoolDepth(0, 0)
    records = quarantined(tmp_path / "spool")
    assert [seq_of(r["line"]) for r in records] == [3.0, 9.0]
    assert records[0] == {
        "quarantined_at_ns": 42,
        "status": 400,
        "error": "unable to parse",
        "url": "http://tsdb:8086",
        "line": encode(sample(3)).text,
    }
    assert store.stats() == {"spool_points": 0, "spool_bytes": 0, "spool_dropped_points": 0, "quarantined_lines": 2}
    await store.close()


async def test_an_outage_in_the_middle_of_a_split_resends_only_what_was_not_delivered(tmp_path):
    # Call 1: the chunk is refused; 2: its first half is taken; 3: the server is down, and still is
    # for the last try of close (4).
    remote = RefusesData({5.0}, down_on_calls=frozenset({3, 4}))
    time = ManualTime()
    store = SpooledStore(remote, tmp_path / "spool", batch_size=8, clock=time.clock, sleep=time.sleep)
    await store.write([sample(i) for i in range(8)])
    assert await store.flush() is False
    assert remote.sent == [0.0, 1.0, 2.0, 3.0] and store.depth().points == 4
    await store.close()
    assert store.depth().points == 4

    again = SpooledStore(remote, tmp_path / "spool", batch_size=8)
    assert await again.flush() is True
    assert remote.sent == [0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 7.0]
    assert again.quarantined_lines == 1 and [seq_of(r["line"]) for r in quarantined(tmp_path / "spool")] == [5.0]
    await again.close()


async def test_quarantine_file_is_bounded_but_every_refused_line_counted(tmp_path):
    remote = RefusesData({float(i) for i in range(10)})
    store = SpooledStore(remote, tmp_path / "spool", batch_size=10, quarantine_max_bytes=600)
    await store.write([sample(i) for i in range(10)])
    assert await store.flush() is True
    assert store.quarantined_lines == 10 and remote.sent == []
    assert 0 < len(quarantined(tmp_path / "spool")) < 10
    assert (tmp_path / "spool" / QUARANTINE_FILE).stat().st_size <= 600
    await store.close()


class FakeInflux2:
    """An InfluxDB 2 write endpoint that refuses, as InfluxDB 2 does, any batch with a poisoned line."""

    POISON = "poison"

    def __init__(self):
        self.taken: list[str] = []
        self.requests = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        lines = (await request.read()).decode().split("\n")
        for line in lines:
            if self.POISON in line:
                message = f"unable to parse '{line}': invalid field format"
                return web.json_response({"code": "invalid", "message": message}, status=400)
        self.taken += lines
        return web.Response(status=204)


@pytest.fixture
async def fake_influx2():
    fake = FakeInflux2()
    app = web.Application()
    app.router.add_post("/api/v2/write", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield fake, f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_influxdb2_refusing_a_batch_loses_only_the_refused_lines(tmp_path, fake_influx2):
    fake, url = fake_influx2
    store = SpooledStore(InfluxStore(url, "org", "vigie", "tok", max_retries=0), tmp_path / "spool", batch_size=500)
    points = [sample(i, device=FakeInflux2.POISON if i in (17, 401, 402) else "d") for i in range(1000)]
    await store.write(points)
    assert await store.flush() is True
    await store.close()
    taken = sorted(float(line.split("seq=")[1].split(" ")[0]) for line in fake.taken)
    assert taken == [float(i) for i in range(1000) if i not in (17, 401, 402)]
    assert store.quarantined_lines == 3
    records = quarantined(tmp_path / "spool")
    assert [seq_of(r["line"]) for r in records] == [17.0, 401.0, 402.0]
    assert records[0]["status"] == 400 and records[0]["url"].startswith(url)
    assert records[0]["error"].startswith("unable to parse 'spooltest,client=c,device=poison seq=17.0")
    # Bisecting 2 chunks of 500 to 3 lines: far fewer requests than one per line.
    assert fake.requests < 60


def write_json_spool(spool_dir, samples: Sequence[Sample], sent: int = 0) -> None:
    """A spool as versions before 2026-12-02 left it: JSON samples, ``sent`` lines past the cursor."""
    spool_dir.mkdir(parents=True, exist_ok=True)
    lines = [(s.to_json() if isinstance(s, Sample) else s) + "\n" for s in samples]
    (spool_dir / f"{0:016d}.seg").write_bytes("".join(lines).encode("utf-8", "surrogatepass"))
    offset = len("".join(lines[:sent]).encode("utf-8", "surrogatepass"))
    (spool_dir / "cursor").write_text(json.dumps({"segment": 0, "offset": offset}))


async def test_a_spool_left_by_the_json_version_is_delivered_first_and_once(tmp_path, victoria):
    spool = tmp_path / "spool"
    hostile = Sample("spooltest", {"client": "c", "device": "d", "alias": 'a,b=c "d"\nghost v=1'}, {"seq": 100.0}, T0)
    surrogate = Sample(
        "spooltest", {"client": "c", "device": b"caf\xe9".decode("utf-8", "surrogateescape")}, {"seq": 5.0}, T0
    )
    write_json_spool(spool, [*(sample(i) for i in range(5)), surrogate, hostile], sent=2)
    remote = influx(victoria.url)
    store = SpooledStore(remote, spool, batch_size=2)
    assert store.depth().points == 5
    await store.write([sample(i) for i in range(6, 9)])  # after the old ones, in a segment of line protocol
    assert await store.flush() is True
    await store.close()
    # The cursor's two points are not sent again; each of the others once.
    assert sorted(remote.sent) == [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 100.0]
    assert sorted(v for _, _, values in victoria.export('{__name__="spooltest_seq"}') for v in values) == sorted(
        remote.sent
    )
    labels = {tuple(sorted(row[0].items())) for row in victoria.series('{__name__="spooltest_seq"}')}
    assert (
        ("__name__", "spooltest_seq"),
        ("alias", 'a,b=c "d"\\nghost v=1'),
        ("client", "c"),
        ("device", "d"),
    ) in labels
    assert [row[2] for row in victoria.series('{device="caf\ufffd"}')] == [[5.0]]
    assert list(spool.glob("*.seg")) == [] and store.depth() == SpoolDepth(0, 0)


async def test_a_json_spool_line_that_cannot_be_read_back_is_quarantined_not_a_stuck_sender(tmp_path):
    lines = [sample(i).to_json() for i in range(4)]
    lines[1] = '{"measurement": "spooltest"}'
    write_json_spool(tmp_path / "spool", lines)
    remote = RefusesData(set())
    again = SpooledStore(remote, tmp_path / "spool")
    assert await again.flush() is True
    assert remote.sent == [0.0, 2.0, 3.0] and again.quarantined_lines == 1
    (record,) = quarantined(tmp_path / "spool")
    assert record["sample"] == {"measurement": "spooltest"} and "unreadable spool line" in record["error"]
    await again.close()


async def test_chunks_taken_while_an_older_one_failed_are_not_sent_again(tmp_path):
    # Four chunks in flight: the oldest meets an outage, the three others are taken.
    remote = RefusesData(set(), down_for=frozenset({0.0}))
    time = ManualTime()
    store = SpooledStore(remote, tmp_path / "spool", batch_size=2, max_in_flight=4, clock=time.clock, sleep=time.sleep)
    await store.write([sample(i) for i in range(8)])
    assert await store.flush() is False
    assert sorted(remote.sent) == [2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    assert store.depth().points == 8  # the cursor only moves past the oldest unsent point
    assert await store.flush() is True
    assert remote.batches[-1] == [0.0, 1.0] and sorted(remote.sent) == [float(i) for i in range(8)]
    assert store.depth() == SpoolDepth(0, 0)
    await store.close()


async def test_lone_surrogates_in_a_spooled_point_are_written_as_replacement_characters(tmp_path):
    text = b"caf\xe9".decode("utf-8", "surrogateescape")
    odd = Sample("spooltest", {"device": text}, {"seq": 0.0}, T0)
    first = SpooledStore(Down(), tmp_path / "spool", close_timeout_s=0)
    await first.write([odd])
    await first.close()

    remote = RefusesData(set())
    again = SpooledStore(remote, tmp_path / "spool")
    assert await again.flush() is True
    assert remote.taken == [f"spooltest,device=caf\ufffd seq=0.0 {T0}"]
    await again.close()


@pytest.mark.timeout(120)
async def test_a_hung_tsdb_holds_neither_writes_nor_close_and_loses_nothing(tmp_path, hung_tsdb, victoria):
    spool = tmp_path / "spool"
    # The request deadline is far off: the send is certainly still in flight while the test runs.
    hung = SpooledStore(
        InfluxStore(hung_tsdb.url, "org", "vigie", "", max_retries=0),
        spool,
        batch_size=100,
        request_timeout_s=3600,
        close_timeout_s=0.5,
    )
    await hung.write([sample(i) for i in range(250)])
    await hung_tsdb.changes.until(lambda: hung_tsdb.connections >= 1)
    async with asyncio.timeout(SAFETY_S):
        for start in range(250, 1000, 250):
            await hung.write([sample(i) for i in range(start, start + 250)])
        assert hung.depth().points == 1000  # on disk, not in memory
        await hung.close()
    assert hung.depth().points == 1000

    remote = influx(victoria.url)
    again = SpooledStore(remote, spool, batch_size=100)
    assert await again.flush() is True
    await again.close()
    assert sorted(remote.sent) == [float(i) for i in range(1000)]
    assert stored_seq(victoria) == [float(i) for i in range(1000)]  # each point once


async def test_a_request_past_its_deadline_is_a_failure_that_keeps_the_points(tmp_path, hung_tsdb):
    time = ManualTime()
    store = SpooledStore(
        InfluxStore(hung_tsdb.url, "org", "vigie", "", max_retries=0),
        tmp_path / "spool",
        request_timeout_s=0.2,
        close_timeout_s=0.2,
        clock=time.clock,
        sleep=time.sleep,
    )
    await store.write([sample(0), sample(1)])
    await time.changes.until(lambda: time.sleeps == [5])
    assert store.last_error == f"{store.inner!r}: no answer within 0.2s"
    assert store.depth().points == 2
    async with asyncio.timeout(SAFETY_S):
        await store.close()
    assert store.depth().points == 2


def test_build_store_influxdb_is_spooled(tmp_path):
    store = build_store(
        {"kind": "influxdb", "url": "http://tsdb:8086", "org": "o", "bucket": "b", "token": "t", "batch_size": 100},
        tmp_path,
        secrets=None,
    )
    assert isinstance(store, SpooledStore) and isinstance(store.inner, InfluxStore)
    assert store.spool_dir == tmp_path / "spool" and store.batch_size == 100 and store.inner.batch_size == 100
    # The spool retries on its own backoff, one try per request under its deadline.
    assert store.inner.max_retries == 0 and store.request_timeout_s == 10 and store.close_timeout_s == 5
