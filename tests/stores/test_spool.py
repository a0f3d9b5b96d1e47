"""SpooledStore: outage and replay against a real line-protocol server, restart, bound."""

from collections.abc import Sequence

from agent.api import Sample
from agent.stores import StoreError, build_store
from agent.stores.influx import InfluxStore
from agent.stores.spool import SpoolDepth, SpooledStore

MS = 1_000_000
T0 = 1_700_000_000_000 * MS


def sample(i: int) -> Sample:
    # VictoriaMetrics keeps milliseconds: one point per millisecond keeps them all distinct.
    return Sample("spooltest", {"client": "c", "device": "d"}, {"seq": float(i)}, T0 + i * MS)


class Recording:
    """Passes batches to the real store and records what it accepted, in order."""

    def __init__(self, inner):
        self.inner = inner
        self.sent: list[float] = []
        self.closed = False

    async def write(self, samples: Sequence[Sample]) -> None:
        await self.inner.write(samples)
        self.sent += [s.fields["seq"] for s in samples]

    async def close(self) -> None:
        self.closed = True
        await self.inner.close()


async def no_sleep(delay: float) -> None:
    """InfluxStore's own retries are not under test here."""


def influx(url: str) -> Recording:
    return Recording(InfluxStore(url, "org", "vigie", "", max_retries=1, sleep=no_sleep))


def stored_seq(victoria) -> list[float]:
    rows = victoria.export('{__name__="spooltest_seq"}')
    assert len(rows) <= 1
    return rows[0][2] if rows else []


async def test_outage_is_spooled_and_replayed_in_order(tmp_path, victoria):
    now = [0.0]
    remote = influx(victoria.url)
    store = SpooledStore(remote, tmp_path / "spool", batch_size=7, retry_min_s=5, clock=lambda: now[0])
    await store.write([sample(i) for i in range(10)])
    assert store.depth() == SpoolDepth(0, 0)

    victoria.stop()
    await store.write([sample(i) for i in range(10, 20)])  # no exception for the caller
    assert store.last_error is not None and victoria.url in store.last_error
    assert store.depth().points == 10
    # Within the backoff, writes only spool: no connection attempt per poll.
    await store.write([sample(i) for i in range(20, 30)])
    assert store.depth().points == 20

    victoria.start()
    now[0] += 5
    await store.write([sample(i) for i in range(30, 35)])
    assert store.depth() == SpoolDepth(0, 0) and store.last_error is None
    assert remote.sent == [float(i) for i in range(35)]
    assert await store.flush() is True
    await store.close()
    assert remote.closed
    assert stored_seq(victoria) == [float(i) for i in range(35)]
    assert list((tmp_path / "spool").glob("*.seg")) == []


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
    assert remote.sent == [float(i) for i in range(13)]
    assert stored_seq(victoria) == [float(i) for i in range(13)]


class Down:
    def __init__(self):
        self.calls = 0

    async def write(self, samples):
        self.calls += 1
        raise StoreError("http://tsdb:8086", "connection refused")

    async def close(self):
        pass


class RefusesData:
    def __init__(self, bad: set[int]):
        self.bad = bad
        self.sent: list[float] = []

    async def write(self, samples):
        if any(s.fields["seq"] in self.bad for s in samples):
            raise StoreError("http://tsdb:8086", "unable to parse", status=400, retryable=False, data_rejected=True)
        self.sent += [s.fields["seq"] for s in samples]

    async def close(self):
        pass


async def test_bound_drops_oldest_segments_and_counts_them(tmp_path):
    store = SpooledStore(Down(), tmp_path / "spool", max_bytes=4000, segment_bytes=1000, clock=lambda: 0.0)
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
    now = [0.0]
    down = Down()
    store = SpooledStore(down, tmp_path / "spool", retry_min_s=5, retry_max_s=12, clock=lambda: now[0])
    await store.write([sample(0)])
    now[0] = 4.9
    await store.write([sample(1)])
    assert down.calls == 1
    now[0] = 5.0
    await store.write([sample(2)])
    assert down.calls == 2  # next try 10 s later
    now[0] = 14.9
    await store.write([sample(3)])
    assert down.calls == 2
    assert await store.flush() is False
    assert down.calls == 3 and store.depth().points == 4
    await store.close()


async def test_data_rejected_by_the_server_is_skipped_and_counted(tmp_path):
    remote = RefusesData({3.0})
    store = SpooledStore(remote, tmp_path / "spool", batch_size=2)
    await store.write([sample(i) for i in range(6)])
    assert remote.sent == [0.0, 1.0, 4.0, 5.0]
    assert store.rejected_points == 2 and store.depth().points == 0
    await store.close()


async def test_torn_last_line_is_dropped_on_recovery(tmp_path):
    store = SpooledStore(Down(), tmp_path / "spool")
    await store.write([sample(0), sample(1)])
    await store.close()
    (segment,) = (tmp_path / "spool").glob("*.seg")
    with segment.open("ab") as f:
        f.write(b'{"measurement": "spooltest", "ta')
    remote = RefusesData(set())
    again = SpooledStore(remote, tmp_path / "spool")
    assert again.depth().points == 2
    assert await again.flush() is True
    assert remote.sent == [0.0, 1.0]
    await again.close()


def test_build_store_influxdb_is_spooled(tmp_path):
    store = build_store(
        {"kind": "influxdb", "url": "http://tsdb:8086", "org": "o", "bucket": "b", "token": "t", "batch_size": 100},
        tmp_path,
        secrets=None,
    )
    assert isinstance(store, SpooledStore) and isinstance(store.inner, InfluxStore)
    assert store.spool_dir == tmp_path / "spool" and store.batch_size == 100 and store.inner.batch_size == 100
