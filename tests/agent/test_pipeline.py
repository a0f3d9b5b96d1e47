"""Pipeline: every batch reaches every consumer, each on its own lane; failures are counted, not fatal.

Waits are on events (consumers announce what they saw), never on elapsed time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

from agent.api import Sample
from agent.pipeline import Pipeline
from tests.agent.helpers import SAFETY_S, Changes, Recorder


def batch(n: int, device: str = "sw-1") -> list[Sample]:
    return [Sample("fake_metric", {"device": device}, {"value": float(n)}, 1_700_000_000_000_000_000 + n)]


def values(batches: Sequence[Sequence[Sample]]) -> list[float]:
    return [s.fields["value"] for b in batches for s in b]


class Gated:
    """A consumer that blocks on each batch until released; announces what it has started."""

    def __init__(self, changes: Changes) -> None:
        self.changes = changes
        self.release = asyncio.Event()
        self.started: list[Sequence[Sample]] = []
        self.done: list[Sequence[Sample]] = []

    async def __call__(self, samples: Sequence[Sample]) -> None:
        self.started.append(samples)
        self.changes.bump()
        await self.release.wait()
        self.done.append(samples)
        self.changes.bump()


class FailsOn:
    """Raises on the listed batch values, records the others."""

    def __init__(self, changes: Changes, bad: set[float]) -> None:
        self.changes, self.bad = changes, bad
        self.seen: list[Sequence[Sample]] = []
        self.attempts = 0

    async def __call__(self, samples: Sequence[Sample]) -> None:
        self.attempts += 1
        self.changes.bump()
        if any(s.fields["value"] in self.bad for s in samples):
            raise RuntimeError("store rejected the batch")
        self.seen.append(samples)


class Started:
    def __init__(self) -> None:
        self.pipelines: list[Pipeline] = []
        self.gates: list[Gated] = []

    def __call__(self, consumers: dict, **kwargs) -> Pipeline:
        pipeline = Pipeline(consumers, **kwargs)
        self.pipelines.append(pipeline)
        self.gates.extend(c for c in consumers.values() if isinstance(c, Gated))
        pipeline.start()
        return pipeline


@pytest.fixture
async def started():
    """Builds and starts pipelines; at teardown opens every gate and stops them, even after a failure."""
    tracker = Started()
    yield tracker
    for gate in tracker.gates:
        gate.release.set()
    for pipeline in tracker.pipelines:
        async with asyncio.timeout(SAFETY_S):
            await pipeline.stop()


async def test_every_batch_reaches_every_consumer_in_order(started):
    changes = Changes()
    store, alerts = Recorder(changes), Recorder(changes)
    pipeline = started({"store": store, "alerts": alerts})

    for n in range(5):
        await pipeline.submit(batch(n))
    await pipeline.submit([])  # nothing to deliver: no empty batch downstream
    async with asyncio.timeout(SAFETY_S):
        await pipeline.drain()

    assert values(store.batches) == values(alerts.batches) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert pipeline.depths() == {"store": 0, "alerts": 0}
    assert pipeline.failures() == {"store": 0, "alerts": 0}


async def test_consumers_get_an_immutable_copy_of_the_batch(started):
    changes = Changes()
    store = Recorder(changes)
    pipeline = started({"store": store})

    submitted = batch(1)
    await pipeline.submit(submitted)
    submitted.append(batch(2)[0])  # the caller reuses its list
    async with asyncio.timeout(SAFETY_S):
        await pipeline.drain()

    (received,) = store.batches
    assert isinstance(received, tuple)
    assert values([received]) == [1.0]


async def test_failing_consumer_is_counted_and_neither_stops_itself_nor_the_others(started, caplog):
    changes = Changes()
    flaky = FailsOn(changes, bad={1.0, 3.0})
    alerts = Recorder(changes)
    pipeline = started({"store": flaky, "alerts": alerts})

    with caplog.at_level(logging.ERROR, logger="agent.pipeline"):
        for n in range(5):
            await pipeline.submit(batch(n))
        async with asyncio.timeout(SAFETY_S):
            await pipeline.drain()

    assert values(alerts.batches) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert flaky.attempts == 5
    assert values(flaky.seen) == [0.0, 2.0, 4.0]
    assert pipeline.failures() == {"store": 2, "alerts": 0}
    assert sum("pipeline consumer store failed" in r.getMessage() for r in caplog.records) == 2


async def test_slow_consumer_does_not_delay_another_lane(started):
    changes = Changes()
    slow, alerts = Gated(changes), Recorder(changes)
    pipeline = started({"store": slow, "alerts": alerts})

    for n in range(3):
        await pipeline.submit(batch(n))
    await changes.until(lambda: len(alerts.batches) == 3 and len(slow.started) == 1)

    assert values(alerts.batches) == [0.0, 1.0, 2.0]
    assert slow.done == []
    assert pipeline.depths() == {"store": 2, "alerts": 0}

    slow.release.set()
    async with asyncio.timeout(SAFETY_S):
        await pipeline.drain()
    assert values(slow.done) == [0.0, 1.0, 2.0]
    assert pipeline.depths() == {"store": 0, "alerts": 0}


async def test_full_lane_applies_back_pressure_without_holding_back_other_lanes(started):
    changes = Changes()
    slow, alerts = Gated(changes), Recorder(changes)
    pipeline = started({"store": slow, "alerts": alerts}, max_batches=1)

    await pipeline.submit(batch(0))
    await changes.until(lambda: len(slow.started) == 1)  # batch 0 taken by the stuck worker
    await pipeline.submit(batch(1))  # fills the store lane's queue
    blocked = asyncio.create_task(pipeline.submit(batch(2)))
    await changes.until(lambda: len(alerts.batches) == 3)

    assert values(alerts.batches) == [0.0, 1.0, 2.0], "alerts must not wait behind a full store lane"
    assert not blocked.done(), "a full lane must push back on the producer, not grow without bound"
    assert pipeline.depths()["store"] == 1

    slow.release.set()
    async with asyncio.timeout(SAFETY_S):
        await blocked
        await pipeline.drain()
    assert values(slow.done) == [0.0, 1.0, 2.0]


async def test_drain_waits_for_batches_in_progress():
    changes = Changes()
    slow = Gated(changes)
    pipeline = Pipeline({"store": slow})
    pipeline.start()
    await pipeline.submit(batch(0))
    await pipeline.submit(batch(1))

    draining = asyncio.create_task(pipeline.drain())
    await changes.until(lambda: len(slow.started) == 1)
    assert not draining.done()

    slow.release.set()
    async with asyncio.timeout(SAFETY_S):
        await draining
        assert values(slow.done) == [0.0, 1.0]
        await pipeline.stop()


async def test_stop_consumes_what_was_queued_then_ends_every_worker():
    changes = Changes()
    store, alerts = Gated(changes), Recorder(changes)
    pipeline = Pipeline({"store": store, "alerts": alerts})
    pipeline.start()
    for n in range(3):
        await pipeline.submit(batch(n))

    stopping = asyncio.create_task(pipeline.stop())
    await changes.until(lambda: len(store.started) == 1)
    assert not stopping.done()
    store.release.set()
    async with asyncio.timeout(SAFETY_S):
        await stopping

    assert values(store.done) == values(alerts.batches) == [0.0, 1.0, 2.0]
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("pipeline-")]  # all workers ended
    assert pipeline.depths() == {"store": 0, "alerts": 0}
