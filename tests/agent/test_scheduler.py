"""Scheduler: one `collection` sample per run, hard timeouts, independent devices, overruns, health.

Collectors here are plain fakes implementing the collector contract. Tests that run the real timer
loop use short intervals but assert only on counts and ordering observed through events ("the fast
device ran N times while the slow one was stuck"), never on elapsed wall-clock time. The timing
properties (phase, period, lag, overload) are tested on a driven clock, stepping the scheduler as
its loop would: see tests/agent/test_schedule_timing.py.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest

from agent.api import CollectError, Sink, Target, Unreachable
from agent.inventory import Poll
from agent.pipeline import Pipeline
from agent.scheduler import AGENT_HEALTH, BLOCKING_THREAD_PREFIX, COLLECTION, NOT_RUN_STATUSES, Scheduler
from tests.agent.helpers import SAFETY_S, Changes, FakeClock, Recorder

# --------------------------------------------------------------------------------------- fakes


class FastCollector:
    """Answers at once with one metric; may advance a fake clock to simulate how long it took."""

    name = "fake"

    def __init__(
        self,
        options: Mapping[str, Any] | None = None,
        *,
        clock: FakeClock | None = None,
        takes_s: float = 0.0,
        changes: Changes | None = None,
        log: list[str] | None = None,
    ) -> None:
        self.clock, self.takes_s, self.changes, self.log = clock, takes_s, changes, log
        self.runs = 0

    async def collect(self, target: Target, sink: Sink) -> None:
        self.runs += 1
        if self.clock:
            self.clock.advance(self.takes_s)
        sink.emit("fake_metric", {"value": float(self.runs)})
        sink.emit("fake_metric", {"value": None}, tags={"index": "2"})
        if self.log is not None:
            self.log.append(f"{target.name}:done")
        if self.changes:
            self.changes.bump()


class SlowCollector:
    """Hangs on an event that never fires; records whether it was cancelled by the hard timeout."""

    name = "fake"

    def __init__(
        self, *, changes: Changes | None = None, log: list[str] | None = None, emit_first: bool = False
    ) -> None:
        self.never = asyncio.Event()
        self.changes, self.log, self.emit_first = changes, log, emit_first
        self.started = 0
        self.cancelled = 0

    async def collect(self, target: Target, sink: Sink) -> None:
        self.started += 1
        if self.emit_first:
            sink.emit("fake_metric", {"value": 1.0})
        if self.log is not None:
            self.log.append(f"{target.name}:start")
        if self.changes:
            self.changes.bump()
        try:
            await self.never.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            if self.log is not None:
                self.log.append(f"{target.name}:cancelled")
            if self.changes:
                self.changes.bump()
            raise


class DeadCollector:
    name = "fake"

    def __init__(self, *, clock: FakeClock | None = None, takes_s: float = 0.0) -> None:
        self.clock, self.takes_s = clock, takes_s
        self.runs = 0

    async def collect(self, target: Target, sink: Sink) -> None:
        self.runs += 1
        if self.clock:
            self.clock.advance(self.takes_s)
        raise Unreachable(f"{target.address}: no answer to SNMP GET")


class GarbageCollector:
    """The target answered something unusable."""

    name = "fake"

    async def collect(self, target: Target, sink: Sink) -> None:
        raise CollectError("sysObjectID is not an OID")


class BuggyCollector:
    name = "fake"

    def __init__(self) -> None:
        self.runs = 0

    async def collect(self, target: Target, sink: Sink) -> None:
        self.runs += 1
        raise RuntimeError("boom")


class LeakyTimeoutCollector:
    """Lets its own socket timeout escape instead of raising Unreachable."""

    name = "fake"

    async def collect(self, target: Target, sink: Sink) -> None:
        raise TimeoutError("timed out")


class GatedCollector:
    """First run blocks until released; tracks how many of its runs are in progress at once."""

    name = "fake"

    def __init__(self, changes: Changes) -> None:
        self.changes = changes
        self.release = asyncio.Event()
        self.runs = 0
        self.active = 0
        self.max_active = 0

    async def collect(self, target: Target, sink: Sink) -> None:
        self.runs += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.changes.bump()
        try:
            if self.runs == 1:
                await self.release.wait()
        finally:
            self.active -= 1
            self.changes.bump()


def make_poll(
    device: str,
    *,
    interval_s: float = 3600.0,
    timeout_s: float = 30.0,
    jitter_s: float = 0.0,
    collector: str = "fake",
    client: str = "acme",
) -> Poll:
    target = Target(
        name=device,
        address=f"192.0.2.{abs(hash(device)) % 250 + 1}",
        tags={"client": client, "site": "paris", "device": device},
    )
    return Poll(target, collector, {}, interval_s, timeout_s, jitter_s)


def by_device(collectors: Mapping[str, Any]):
    return lambda poll: collectors[poll.target.name]


@contextmanager
def running(scheduler: Scheduler) -> Iterator[Scheduler]:
    scheduler.start()
    try:
        yield scheduler
    finally:
        scheduler.stop()


def only_collection(samples) -> Any:
    found = [s for s in samples if s.measurement == COLLECTION]
    assert len(found) == 1, f"expected exactly one collection sample, got {found}"
    return found[0]


# ---------------------------------------------------------------------------- run_poll statuses


async def test_ok_run_returns_collector_samples_then_one_collection_sample():
    clock = FakeClock()
    poll = make_poll("sw-core-1")
    sched = Scheduler(
        [poll],
        by_device({"sw-core-1": FastCollector(clock=clock, takes_s=0.25)}),
        Recorder(),
        clock_ns=clock.time_ns,
        monotonic=clock.monotonic,
    )

    samples = await sched.run_poll(poll)

    assert [s.measurement for s in samples] == ["fake_metric", "fake_metric", COLLECTION]
    collection = samples[-1]
    assert collection.tags == {"client": "acme", "site": "paris", "device": "sw-core-1", "collector": "fake"}
    assert collection.fields == {
        "status": "ok",
        "reachable": True,
        "duration_s": 0.25,
        "samples": 2,
        "error": None,
        "lag_s": None,  # run by hand, not on the schedule
        "focused": False,
    }
    assert collection.timestamp_ns == clock.now_ns
    assert (sched.counters.runs, sched.counters.ok, sched.counters.in_flight) == (1, 1, 0)


@pytest.mark.parametrize(
    ("collector", "status", "reachable", "error", "counter"),
    [
        (DeadCollector(), "unreachable", False, "no answer to SNMP GET", "unreachable"),
        (GarbageCollector(), "error", True, "sysObjectID is not an OID", "errors"),
        # A collector bug says nothing about the device: reachability is unknown, not a guess.
        (BuggyCollector(), "error", None, "RuntimeError: boom", "errors"),
        (LeakyTimeoutCollector(), "timeout", False, "TimeoutError: timed out", "timeouts"),
    ],
    ids=["dead", "garbage", "buggy", "leaked-timeout"],
)
async def test_failed_run_ends_in_one_explicit_collection_sample(collector, status, reachable, error, counter):
    poll = make_poll("printer-3f")
    sched = Scheduler([poll], by_device({"printer-3f": collector}), Recorder())

    collection = only_collection(await sched.run_poll(poll))

    assert collection.fields["status"] == status
    assert collection.fields["reachable"] is reachable
    assert error in collection.fields["error"]
    assert collection.fields["samples"] == 0
    assert collection.tags["collector"] == "fake"
    assert getattr(sched.counters, counter) == 1
    assert (sched.counters.runs, sched.counters.ok, sched.counters.in_flight) == (1, 0, 0)


async def test_hung_collector_is_cancelled_at_its_hard_timeout():
    slow = SlowCollector(emit_first=True)
    poll = make_poll("sw-dead", timeout_s=0.01)
    sched = Scheduler([poll], by_device({"sw-dead": slow}), Recorder())

    async with asyncio.timeout(SAFETY_S):  # a missing hard timeout fails here instead of hanging
        samples = await sched.run_poll(poll)

    collection = only_collection(samples)
    assert collection.fields["status"] == "timeout"
    assert collection.fields["reachable"] is False
    assert collection.fields["error"] == "no complete answer within 0.01 s"
    # What it did collect before hanging is kept and counted.
    assert collection.fields["samples"] == 1
    assert [s.measurement for s in samples] == ["fake_metric", COLLECTION]
    assert slow.cancelled == 1, "the hung collection must really be cancelled, not left running"
    assert (sched.counters.timeouts, sched.counters.in_flight) == (1, 0)


async def test_one_collector_instance_per_poll_kept_across_runs():
    made: list[Poll] = []

    def factory(poll: Poll) -> FastCollector:
        made.append(poll)
        return FastCollector()

    polls = [make_poll("sw-1"), make_poll("sw-2")]
    sched = Scheduler(polls, factory, Recorder())
    for _ in range(3):
        for poll in polls:
            await sched.run_poll(poll)

    assert made == polls
    values = [s.fields["value"] for s in (await sched.run_poll(polls[0])) if s.measurement == "fake_metric"]
    assert values[0] == 4.0  # the same instance saw all four runs of sw-1


def test_duplicate_polls_are_rejected_rather_than_silently_dropped():
    with pytest.raises(ValueError, match="acme/sw-1/fake"):
        Scheduler([make_poll("sw-1"), make_poll("sw-1")], lambda p: FastCollector(), Recorder())


@pytest.mark.parametrize(
    ("option", "value"), [("workers", 0), ("max_in_flight", 0), ("max_lag_s", 0.0)]
)
def test_bounds_must_be_positive(option, value):
    with pytest.raises(ValueError, match=option):
        Scheduler([], lambda p: FastCollector(), Recorder(), **{option: value})


# -------------------------------------------------------------------------------- health sample


async def test_health_sample_reports_counters_latency_and_queue_depths():
    clock = FakeClock()
    polls = [make_poll("sw-ok"), make_poll("sw-dead"), make_poll("sw-hung", timeout_s=30)]
    slow = SlowCollector(changes=Changes())
    collectors = {
        "sw-ok": FastCollector(clock=clock, takes_s=0.2),
        "sw-dead": DeadCollector(clock=clock, takes_s=0.4),
        "sw-hung": slow,
    }
    depths = {"store": 3, "alerts": 0}
    sched = Scheduler(
        polls,
        by_device(collectors),
        Recorder(),
        queue_depths=lambda: depths,
        agent_name="vigie-test",
        clock_ns=clock.time_ns,
        monotonic=clock.monotonic,
    )

    await sched.run_poll(polls[0])
    await sched.run_poll(polls[1])
    hung = asyncio.create_task(sched.run_poll(polls[2]))
    await slow.changes.until(lambda: slow.started == 1)

    health = sched.health_sample()

    assert health.measurement == AGENT_HEALTH
    assert health.tags == {"agent": "vigie-test"}
    assert health.timestamp_ns == clock.now_ns
    assert health.fields == {
        "polls": 3,
        "runs": 3,
        "ok": 1,
        "partial": 0,
        "errors": 0,
        "unreachable": 1,
        "timeouts": 0,
        "overruns": 0,
        "overloaded": 0,
        "in_flight": 1,
        "in_flight_limit": 4,
        "saturation": None,  # not started: never steered
        "queued": 0,
        "latency_avg_s": pytest.approx(0.3),
        "latency_max_s": pytest.approx(0.4),
        "behind_s": None,  # runs by hand are on no schedule
        "loop_lag_s": None,  # not started: no heartbeat
        "queue_store": 3,
        "queue_alerts": 0,
    }

    hung.cancel()
    with pytest.raises(asyncio.CancelledError):
        await hung
    # Counters are cumulative; latencies are per health interval (drained by each health sample).
    again = sched.health_sample()
    assert (again.fields["runs"], again.fields["ok"], again.fields["in_flight"]) == (3, 1, 0)
    assert again.fields["latency_avg_s"] is None and again.fields["latency_max_s"] is None


async def test_started_scheduler_emits_health_samples_with_pipeline_depths():
    recorder = Recorder()
    pipeline = Pipeline({"store": recorder})
    sched = Scheduler(
        [],
        lambda p: FastCollector(),
        pipeline.submit,
        health_interval_s=0.05,
        queue_depths=pipeline.depths,
        agent_name="vigie-test",
    )
    pipeline.start()
    try:
        with running(sched):
            await recorder.until(lambda: any(s.measurement == AGENT_HEALTH for s in recorder.samples))
    finally:
        await pipeline.stop()

    health = next(s for s in recorder.samples if s.measurement == AGENT_HEALTH)
    assert health.tags == {"agent": "vigie-test"}
    assert health.fields["queue_store"] == 0
    assert health.fields["polls"] == 0


# -------------------------------------------------------------------- the timer loop, real time


async def test_hung_device_times_out_while_the_others_keep_their_schedule():
    changes = Changes()
    log: list[str] = []
    recorder = Recorder(changes)
    slow = SlowCollector(changes=changes, log=log)
    fast = FastCollector(changes=changes, log=log)
    dead, buggy = DeadCollector(), BuggyCollector()
    polls = [
        make_poll("sw-hung", interval_s=0.5, timeout_s=0.25),
        make_poll("sw-fast", interval_s=0.02, timeout_s=1.0),
        make_poll("sw-dead", interval_s=0.05, timeout_s=1.0),
        make_poll("srv-buggy", interval_s=0.05, timeout_s=1.0),
    ]
    collectors = {"sw-hung": slow, "sw-fast": fast, "sw-dead": dead, "srv-buggy": buggy}
    sched = Scheduler(polls, by_device(collectors), recorder)

    with running(sched):
        await recorder.until(lambda: recorder.collections("sw-hung", "timeout"))
        # Every fast run is atomic (no suspension point), so at any observation every run started
        # has delivered its sample.
        assert fast.runs == len(recorder.collections("sw-fast", "ok"))
        await recorder.until(lambda: recorder.collections("sw-dead") and recorder.collections("srv-buggy"))

    hung, *_ = recorder.collections("sw-hung")
    assert hung.fields["status"] == "timeout" and hung.fields["reachable"] is False
    assert slow.cancelled >= len(recorder.collections("sw-hung", "timeout")) >= 1
    stuck = log[log.index("sw-hung:start") : log.index("sw-hung:cancelled")]
    assert stuck.count("sw-fast:done") >= 3, f"fast device starved while the slow one hung: {log}"
    # At 50 ms intervals a busy test box can leave a turn past its 25 ms lag budget: not run, and
    # said so (overloaded), which is no outcome of the device.
    assert {s.fields["status"] for s in recorder.collections("sw-dead")} - NOT_RUN_STATUSES == {"unreachable"}
    assert {s.fields["status"] for s in recorder.collections("srv-buggy")} - NOT_RUN_STATUSES == {"error"}


async def test_overrunning_run_is_skipped_counted_and_never_stacked():
    changes = Changes()
    recorder = Recorder(changes)
    gated = GatedCollector(changes)
    poll = make_poll("sw-overrun", interval_s=0.05, timeout_s=30)
    sched = Scheduler([poll], by_device({"sw-overrun": gated}), recorder)

    with running(sched):
        # Two turns come while the first run is still going.
        await changes.until(
            lambda: (
                len(recorder.collections(status="skipped")) >= 2
                and len(recorder.collections(status="skipped")) == sched.counters.overruns
            )
        )
        assert (gated.runs, gated.active) == (1, 1), "a skipped turn must not start a second run"
        skipped = len(recorder.collections(status="skipped"))

        gated.release.set()
        await changes.until(lambda: len(recorder.collections(status="ok")) >= 2)

    assert gated.max_active == 1
    assert sched.counters.overruns >= skipped >= 2
    assert sched.counters.runs == gated.runs
    for sample in recorder.collections(status="skipped"):
        assert sample.tags == {"client": "acme", "site": "paris", "device": "sw-overrun", "collector": "fake"}
        assert sample.fields == {
            "status": "skipped",
            "reachable": None,
            "duration_s": None,
            "samples": 0,
            "error": "previous run overran its interval",
            "lag_s": None,
            "focused": False,
        }
    # Skipped turns are not runs: no run outcome is counted for them.
    assert sched.counters.ok == len(recorder.collections(status="ok"))


async def test_stop_cancels_runs_in_progress():
    changes = Changes()
    slow = SlowCollector(changes=changes)
    sched = Scheduler(
        [make_poll("sw-hung", interval_s=0.05, timeout_s=30)], by_device({"sw-hung": slow}), Recorder(changes)
    )
    sched.start()
    await changes.until(lambda: slow.started == 1)
    sched.stop()
    await changes.until(lambda: slow.cancelled == 1)
    assert sched.counters.in_flight == 0


# -------------------------------------------------------------------------- bounded thread pool


async def test_blocking_collectors_run_in_a_bounded_pool():
    loop = asyncio.get_running_loop()
    changes = Changes()
    recorder = Recorder(changes)
    release = threading.Event()
    lock = threading.Lock()
    state = {"submitted": 0, "active": 0, "max_active": 0}
    threads: set[str] = set()

    def blocking_call() -> None:
        with lock:
            state["active"] += 1
            state["max_active"] = max(state["max_active"], state["active"])
            threads.add(threading.current_thread().name)
        loop.call_soon_threadsafe(changes.bump)
        try:
            release.wait(SAFETY_S)
        finally:
            with lock:
                state["active"] -= 1

    class BlockingCollector:
        name = "fake"

        async def collect(self, target: Target, sink: Sink) -> None:
            state["submitted"] += 1
            changes.bump()
            await asyncio.to_thread(blocking_call)
            sink.emit("fake_metric", {"value": 1.0})

    # Three blocking polls and a fast one: the scheduler's first bound on runs in flight (four)
    # lets them all go at once, so what holds the third blocking call back is the pool.
    blocking = [make_poll(f"legacy-{i}", interval_s=0.2) for i in range(3)]
    fast = FastCollector(changes=changes)
    polls = [*blocking, make_poll("sw-fast", interval_s=0.02)]
    collectors: dict[str, Any] = {p.target.name: BlockingCollector() for p in blocking} | {"sw-fast": fast}
    sched = Scheduler(polls, by_device(collectors), recorder, workers=2)

    try:
        with running(sched):
            # All three blocking calls submitted, two running: the third waits in the pool queue.
            await changes.until(lambda: state["submitted"] == 3 and state["active"] == 2)
            with lock:
                assert state["active"] == 2
            # A saturated pool does not stall the event loop: asyncio devices go on.
            runs_at_saturation = fast.runs
            await changes.until(lambda: fast.runs >= runs_at_saturation + 3)
            release.set()
            await recorder.until(lambda: all(recorder.collections(p.target.name, "ok") for p in blocking))
    finally:
        release.set()

    assert state["max_active"] == 2
    assert threads and all(name.startswith(BLOCKING_THREAD_PREFIX) for name in threads)
