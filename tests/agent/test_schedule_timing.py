"""When the scheduler runs each poll, on a clock the tests drive: phase, period, slots, overload.

The scheduler is stepped as its own loop would step it (`plan()`, then `step()` at each wake-up
time it returns), with the fake clock jumped straight to that time; collectors are fakes that never
wait unless a test holds them on an event. Nothing here sleeps or reads the real time.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest

from agent.api import Sink, Target, UnknownDevice, Unreachable
from agent.scheduler import (
    COLLECTION,
    NOT_RUN_STATUSES,
    CoreTimes,
    Scheduler,
    cpu_demand_s,
    phases,
    poll_key,
    saturation_between,
)
from tests.agent.helpers import Changes, FakeClock, Recorder
from tests.agent.test_scheduler import by_device, make_poll

# ----------------------------------------------------------------------------------------- fakes


class Stamped:
    """Answers at once and notes the clock (monotonic and wall, in s) at each start."""

    name = "fake"

    def __init__(self, clock: FakeClock, starts: list[tuple[str, float, float]]) -> None:
        self.clock, self.starts = clock, starts

    async def collect(self, target: Target, sink: Sink) -> None:
        self.starts.append((target.name, self.clock.mono, self.clock.now_ns / 1e9))
        sink.emit("fake_metric", {"value": 1.0})


class Held:
    """Its first run waits until released; later runs answer at once."""

    name = "fake"

    def __init__(self, changes: Changes, active: list[int]) -> None:
        self.changes, self.active = changes, active
        self.release = asyncio.Event()
        self.runs = 0

    async def collect(self, target: Target, sink: Sink) -> None:
        self.runs += 1
        self.active[0] += 1
        self.active[1] = max(self.active[1], self.active[0])
        self.changes.bump()
        try:
            if self.runs == 1:
                await self.release.wait()
        finally:
            self.active[0] -= 1
            self.changes.bump()


async def drive(sched: Scheduler, clock: FakeClock, until_mono: float) -> None:
    """Step the scheduler at each wake-up time it asks for, up to (not including) ``until_mono``."""
    wake = sched.step()
    await sched.drain()
    while wake is not None and wake < until_mono:
        clock.advance(wake - clock.mono)
        wake = sched.step()
        await sched.drain()


def step_until(sched: Scheduler, clock: FakeClock, done) -> None:
    """Step at each wake-up time until ``done()``, without waiting for any run (some are held)."""
    wake = sched.step()
    while not done():
        assert wake is not None, "nothing left to step to"
        clock.advance(wake - clock.mono)
        wake = sched.step()


def scheduler(polls, collectors, clock: FakeClock, recorder: Recorder | None = None, **options: Any) -> Scheduler:
    make = collectors if callable(collectors) else by_device(collectors)
    return Scheduler(
        polls, make, recorder or Recorder(), clock_ns=clock.time_ns, monotonic=clock.monotonic, **options
    )


def stamped(polls, clock: FakeClock, starts: list, **options: Any) -> Scheduler:
    return scheduler(polls, lambda poll: Stamped(clock, starts), clock, **options)


# ------------------------------------------------------------------------------- phase and period


async def test_each_interval_is_spread_evenly_over_it():
    clock = FakeClock()
    starts: list[tuple[str, float, float]] = []
    polls = [make_poll(f"sw-{i}", interval_s=60) for i in range(600)]
    sched = stamped(polls, clock, starts)
    begin = clock.mono
    sched.plan()

    await drive(sched, clock, begin + 60)

    assert Counter(name for name, _, _ in starts) == {p.target.name: 1 for p in polls}
    # 600 polls a minute: ten in every second, one every 100 ms.
    per_second = Counter(int(mono - begin) for _, mono, _ in starts)
    assert sorted(per_second) == list(range(60))
    assert set(per_second.values()) <= {9, 10, 11}  # a second's edge may fall between two polls
    walls = sorted(wall % 60 for _, _, wall in starts)
    gaps = [b - a for a, b in zip(walls, walls[1:], strict=False)]
    assert min(gaps) == pytest.approx(0.1, abs=1e-3) and max(gaps) == pytest.approx(0.1, abs=1e-3)


async def second_minute(inventory, now_ns: int) -> dict[str, float]:
    """Second of the minute (wall clock) of each poll's run in the second minute after a start at
    ``now_ns`` (the first minute holds the start-up turns)."""
    clock = FakeClock(now_ns)
    starts: list[tuple[str, float, float]] = []
    sched = stamped(inventory, clock, starts)
    begin = clock.mono
    sched.plan()
    await drive(sched, clock, begin + 120)
    later = [(name, wall) for name, mono, wall in starts if mono >= begin + 60]
    assert sorted(name for name, _ in later) == sorted(p.target.name for p in inventory)
    return {name: wall % 60 for name, wall in later}


async def test_phase_is_stable_across_restarts_and_barely_moves_when_a_device_is_added():
    polls = [make_poll(f"sw-{i}", interval_s=60) for i in range(50)]
    first = await second_minute(polls, 1_700_000_000_000_000_000)
    # A restart at an unrelated wall-clock time: every device at the same second of the minute.
    again = await second_minute(polls, 1_700_000_123_456_789_000)
    assert again == pytest.approx(first, abs=1e-3)
    # The documented phases, laid on the wall clock.
    expected = phases([poll_key(p) for p in polls], 60)
    assert first == pytest.approx({p.target.name: expected[poll_key(p)] for p in polls}, abs=1e-3)

    grown = await second_minute([*polls, make_poll("sw-new", interval_s=60)], 1_700_086_400_250_000_000)
    moved = {name: abs(grown[name] - second) for name, second in first.items()}
    assert max(moved.values()) < 60 / 50


async def test_mean_period_is_exactly_the_interval_without_drift():
    clock = FakeClock()
    starts: list[tuple[str, float, float]] = []
    intervals = {"fast": 30.0, "minute": 60.0, "five": 300.0}
    polls = [make_poll(f"{label}-{i}", interval_s=s) for label, s in intervals.items() for i in range(10)]
    sched = stamped(polls, clock, starts)
    begin = clock.mono
    sched.plan()

    await drive(sched, clock, begin + 6000)  # 200, 100 and 20 intervals

    by_poll: dict[str, list[float]] = {}
    for name, mono, _ in starts:
        by_poll.setdefault(name, []).append(mono)
    for poll in polls:
        first, *runs = by_poll[poll.target.name]
        # After the start-up turn, every run k intervals after the next one: no period is
        # stretched, nothing accumulates.
        assert len(runs) in (6000 / poll.interval_s, 6000 / poll.interval_s - 1), poll.target.name
        for k, started in enumerate(runs):
            assert started == pytest.approx(runs[0] + k * poll.interval_s, abs=1e-6)
        assert poll.interval_s / 2 <= runs[0] - first < 1.5 * poll.interval_s
    assert sched.counters.max_lag_s == 0.0  # every run started at its due time


async def test_first_turns_after_a_start_are_quick_for_a_few_devices_and_paced_for_many():
    clock = FakeClock()
    starts: list[tuple[str, float, float]] = []
    hourly = [make_poll(f"ups-{i}", interval_s=3600) for i in range(20)]
    sched = stamped(hourly, clock, starts)
    begin = clock.mono
    sched.plan()

    await drive(sched, clock, begin + 3600)

    first_of: dict[str, float] = {}
    for name, mono, _ in starts:
        first_of.setdefault(name, mono - begin)
    firsts = sorted(first_of.values())
    # Twenty first turns in two seconds (ten a second), evenly, not one hour of waiting...
    assert len(firsts) == 20
    assert firsts[-1] < 2.0
    gaps = [b - a for a, b in zip(firsts, firsts[1:], strict=False)]
    assert max(gaps) == pytest.approx(0.1, abs=1e-6) and min(gaps) == pytest.approx(0.1, abs=1e-6)
    # ...and then each at its phase: one run in the hour after its first, half an hour apart or more.
    for poll in hourly:
        runs = [mono for name, mono, _ in starts if name == poll.target.name]
        assert 1 <= len(runs) <= 2
        if len(runs) == 2:
            assert runs[1] - runs[0] >= 1800


# ------------------------------------------------------------------------------ slots and overload


async def test_polls_in_flight_are_bounded_and_the_others_wait_their_turn():
    clock = FakeClock()
    changes = Changes()
    recorder = Recorder(changes)
    active = [0, 0]  # in progress now, most ever
    held = {f"sw-{i}": Held(changes, active) for i in range(5)}
    polls = [make_poll(name, interval_s=60, timeout_s=10) for name in held]
    sched = scheduler(polls, held, clock, recorder, max_in_flight=2)
    begin = clock.mono
    sched.plan()

    step_until(sched, clock, lambda: sched.running + sched.queued == 5)  # every poll came due
    await changes.until(lambda: active[0] == 2)
    assert (sched.running, sched.queued) == (2, 3)
    health = sched.health_sample()
    assert (health.fields["in_flight"], health.fields["queued"]) == (2, 3)

    # Each release frees a slot; the next step starts the oldest waiting turn, within its budget.
    for released in range(1, 6):
        holder = next(h for h in held.values() if h.runs == 1 and active[0] and not h.release.is_set())
        holder.release.set()
        await changes.until(lambda n=released: len(recorder.collections()) == n)
        sched.step()
        await changes.until(lambda n=released: active[0] == min(2, 5 - n))

    assert active[1] == 2
    assert [h.runs for h in held.values()] == [1] * 5
    assert [s.fields["status"] for s in recorder.collections()] == ["ok"] * 5
    assert clock.mono < begin + 60  # all within the first interval: nobody waited a turn out


def one_running_one_waiting(clock: FakeClock, changes: Changes, recorder: Recorder):
    active = [0, 0]
    held = {"sw-a": Held(changes, active), "sw-b": Held(changes, active)}
    polls = [make_poll(name, interval_s=60, timeout_s=10) for name in held]
    sched = scheduler(polls, held, clock, recorder, max_in_flight=1)
    sched.plan()
    step_until(sched, clock, lambda: sched.queued == 1)  # one holds the only slot, the other waits
    return sched, held, active


async def test_a_turn_that_cannot_start_in_time_is_overloaded_not_run_late():
    clock = FakeClock()
    changes = Changes()
    recorder = Recorder(changes)
    begin = clock.mono
    sched, held, active = one_running_one_waiting(clock, changes, recorder)
    await changes.until(lambda: active[0] == 1)
    running = next(name for name, h in held.items() if h.runs)
    waiting = next(name for name in held if name != running)
    held[waiting].release.set()  # when it gets to run, it answers at once

    # The agent stays stuck past the waiting turn's lag budget (half the 60 s interval).
    clock.advance(31)
    sched.step()
    await recorder.until(lambda: recorder.collections(waiting))

    (overloaded,) = recorder.collections(waiting)
    assert overloaded.tags == {"client": "acme", "site": "paris", "device": waiting, "collector": "fake"}
    fields = dict(overloaded.fields)
    lag = fields.pop("lag_s")
    assert 31 <= lag < 60
    assert fields == {
        "status": "overloaded",
        "reachable": None,  # nothing is known about the device: the agent did not ask it
        "duration_s": None,
        "samples": 0,
        "error": f"agent behind by {lag:.1f} s: not run (1 poll(s) in flight, 0 waiting)",
        "focused": False,
    }
    assert overloaded.fields["status"] in NOT_RUN_STATUSES
    assert held[waiting].runs == 0, "a given-up turn is not run late"
    health = sched.health_sample()
    assert health.fields["overloaded"] == 1
    assert health.fields["behind_s"] == pytest.approx(lag)

    # Once the stuck run ends, the next turns run on time again.
    held[running].release.set()
    await sched.drain()
    await drive(sched, clock, begin + 180)
    later = recorder.collections(waiting)[1:]
    assert len(later) >= 2
    assert [s.fields["status"] for s in later] == ["ok"] * len(later)
    assert [s.fields["lag_s"] for s in later] == [0.0] * len(later)


async def test_time_spent_waiting_for_a_slot_is_not_counted_against_the_device():
    clock = FakeClock()
    changes = Changes()
    recorder = Recorder(changes)
    sched, held, active = one_running_one_waiting(clock, changes, recorder)
    await changes.until(lambda: active[0] == 1)
    running = next(name for name, h in held.items() if h.runs)
    waiting = next(name for name in held if name != running)
    held[waiting].release.set()

    # Waiting longer than its 10 s timeout, but within its 30 s lag budget.
    clock.advance(20)
    sched.step()
    assert sched.queued == 1, "still within its lag budget: it waits"
    held[running].release.set()
    await changes.until(lambda: sched.running == 0)
    sched.step()
    await sched.drain()

    (ran,) = recorder.collections(waiting)
    assert ran.fields["status"] == "ok"
    assert ran.fields["lag_s"] >= 20 > 10
    assert sched.counters.timeouts == 0


async def test_turns_missed_while_the_loop_itself_was_stuck_are_not_run_to_catch_up():
    clock = FakeClock()
    starts: list[tuple[str, float, float]] = []
    recorder = Recorder()
    polls = [make_poll(f"sw-{i}", interval_s=60) for i in range(20)]
    sched = scheduler(polls, lambda poll: Stamped(clock, starts), clock, recorder)
    sched.plan()
    await drive(sched, clock, clock.mono + 120)
    starts.clear()
    recorder.batches.clear()
    given_up_before = sched.counters.overloaded

    clock.advance(150)  # the event loop was blocked for 2.5 intervals
    sched.step()
    await sched.drain()

    # Every poll had at least two turns due more than 30 s ago: given up, not run. Its latest, if
    # under 30 s late, runs once; nothing is run twice to catch up.
    ran = Counter(name for name, _, _ in starts)
    assert set(ran.values()) <= {1}
    given_up = sched.counters.overloaded - given_up_before
    assert given_up >= 2 * len(polls)
    for poll in polls:
        name = poll.target.name
        statuses = [s.fields["status"] for s in recorder.collections(name)]
        # Turns not run that pile up before the pipeline takes them fold into the latest word.
        assert statuses == ["overloaded"] + ["ok"] * ran[name]


class Demand:
    """The agent's CPU demand as the test says: seconds per core, accumulated on the fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock, self.total = clock, 0.0

    def run(self, seconds: float, saturation: float) -> None:
        self.total += seconds * saturation
        self.clock.advance(seconds)

    def __call__(self) -> CoreTimes:
        return CoreTimes(self.total, 0.0, 0.0)


async def test_the_bound_grows_while_the_cores_have_room_and_turns_wait_and_is_cut_while_saturated():
    clock = FakeClock()
    changes = Changes()
    demand = Demand(clock)
    active = [0, 0]
    held = {f"sw-{i}": Held(changes, active) for i in range(40)}
    polls = [make_poll(name, interval_s=60, timeout_s=10) for name in held]
    sched = scheduler(polls, held, clock, Recorder(changes), max_in_flight=24, cpu_demand=demand)
    sched.plan()
    step_until(sched, clock, lambda: sched.running + sched.queued == 40)
    assert (sched.in_flight_limit, sched.running) == (4, 4)  # a few at first
    sched.observe_loop_lag(0.0)  # the first heartbeat only takes a reading

    # Cores not saturated while turns wait: a quarter more slots each second, up to max_in_flight.
    limits = []
    for _ in range(10):
        demand.run(1.0, saturation=0.5 if len(limits) % 2 else 0.85)
        sched.observe_loop_lag(0.001)
        sched.step()
        limits.append((sched.in_flight_limit, sched.running))
    assert limits[:6] == [(5, 5), (6, 6), (7, 7), (8, 8), (10, 10), (12, 12)]
    assert limits[-1] == (24, 24) and sched.queued == 16
    assert sched.health_sample().fields["saturation"] in (0.5, 0.85)

    # Saturated: a quarter less each second, never under MIN_IN_FLIGHT, whatever the loop's lag.
    cuts = []
    for _ in range(7):
        demand.run(1.0, saturation=0.97)
        sched.observe_loop_lag(0.001)
        cuts.append(sched.in_flight_limit)
    assert cuts == [18, 13, 9, 6, 4, 3, 2]
    # Runs already going are not stopped; new ones wait until fewer than the bound are in flight.
    sched.step()
    assert (sched.running, sched.queued) == (24, 16)
    await changes.until(lambda: active[0] == 24)
    for h in held.values():
        h.release.set()
    await changes.until(lambda: sched.running == 0)
    sched.step()
    assert sched.running == 2
    await sched.drain()


def test_saturation_counts_the_loops_wait_only_beyond_what_the_agents_own_threads_ran():
    start = CoreTimes(10.0, 2.0, 5.0)
    # Alone on its core: the loop ran 0.3 s and waited 0.35 s while the store and rollup threads
    # ran 0.4 s. The core was 70 % busy with the agent, not 105 %.
    assert saturation_between(start, CoreTimes(10.3, 2.35, 5.4), 1.0) == pytest.approx(0.7)
    # Another process holds the core: the loop waited 0.6 s, the agent's other threads ran 0.1 s.
    assert saturation_between(start, CoreTimes(10.3, 2.6, 5.1), 1.0) == pytest.approx(0.9)
    # Over two seconds, per second.
    assert saturation_between(start, CoreTimes(10.5, 2.0, 5.5), 2.0) == pytest.approx(0.5)


def test_the_core_times_are_read_from_this_process_threads():
    before = cpu_demand_s()
    deadline = time.thread_time() + 0.05
    while time.thread_time() < deadline:  # this (the calling) thread runs
        pass
    after = cpu_demand_s()
    cores = len(os.sched_getaffinity(0))
    assert after.loop_run_s - before.loop_run_s >= 0.05 / cores
    assert after.loop_wait_s >= before.loop_wait_s and after.others_run_s >= before.others_run_s


async def test_with_no_turn_waiting_the_bound_holds_however_idle_the_cores():
    clock = FakeClock()
    demand = Demand(clock)
    starts: list[tuple[str, float, float]] = []
    polls = [make_poll(f"sw-{i}", interval_s=60) for i in range(10)]
    idle = stamped(polls, clock, starts, max_in_flight=24, cpu_demand=demand)
    idle.plan()
    await drive(idle, clock, clock.mono + 60)
    idle.observe_loop_lag(0.0)
    for _ in range(5):
        demand.run(1.0, saturation=0.1)
        idle.observe_loop_lag(0.0)
    assert ({name for name, _, _ in starts}, idle.in_flight_limit) == ({p.target.name for p in polls}, 4)


class StallsThenFails:
    """The event loop stands still while it waits (the test says so), then the answer is missing."""

    name = "fake"

    def __init__(self, sched_box: list[Scheduler], stall_s: float, error: Exception) -> None:
        self.sched_box, self.stall_s, self.error = sched_box, stall_s, error

    async def collect(self, target: Target, sink: Sink) -> None:
        if self.stall_s:
            self.sched_box[0].observe_loop_lag(self.stall_s)
        raise self.error


@pytest.mark.parametrize(
    ("stall_s", "error", "status", "reachable"),
    [
        (1.5, Unreachable("192.0.2.1: no answer to SNMP GET"), "overloaded", None),
        (1.5, TimeoutError(), "overloaded", None),
        (0.3, Unreachable("192.0.2.1: no answer to SNMP GET"), "unreachable", False),  # late, not stalled
        (0.0, TimeoutError(), "timeout", False),
    ],
    ids=["unreachable-while-stalled", "timeout-while-stalled", "unreachable-while-late", "timeout"],
)
async def test_a_failure_on_time_while_the_loop_stalled_says_nothing_about_the_device(
    stall_s, error, status, reachable
):
    clock = FakeClock()
    box: list[Scheduler] = []
    poll = make_poll("sw-1")
    sched = scheduler([poll], {"sw-1": StallsThenFails(box, stall_s, error)}, clock)
    box.append(sched)
    sched.observe_loop_lag(5.0)  # a stall before the run began is not the run's
    clock.advance(1)

    (collection,) = await sched.run_poll(poll)

    assert collection.fields["status"] == status
    assert collection.fields["reachable"] is reachable
    if status == "overloaded":
        assert collection.fields["error"].endswith(f"but the agent itself stalled {stall_s:.1f} s meanwhile")
        assert (sched.counters.overloaded, sched.counters.unreachable, sched.counters.timeouts) == (1, 0, 0)
    assert sched.health_sample().fields["loop_lag_s"] == 5.0


# -------------------------------------------------------------------------- partial and for_device


class Partial:
    name = "fake"

    def __init__(self, then_raise: Exception | None = None) -> None:
        self.then_raise = then_raise

    async def collect(self, target: Target, sink: Sink) -> None:
        sink.emit("snmp_system", {"uptime_s": 12.0})
        sink.error("ifXTable: no answer after 1.3.6.1.2.1.31.1.1.1.6.12")
        sink.error("entPhysicalTable: tooBig")
        if self.then_raise is not None:
            raise self.then_raise


async def test_collection_with_errors_is_partial_and_keeps_its_samples():
    clock = FakeClock()
    poll = make_poll("sw-1")
    sched = scheduler([poll], {"sw-1": Partial()}, clock)

    samples = await sched.run_poll(poll)

    assert [s.measurement for s in samples] == ["snmp_system", COLLECTION]
    assert samples[-1].fields == {
        "status": "partial",
        "reachable": True,
        "duration_s": 0.0,
        "samples": 1,
        "error": "ifXTable: no answer after 1.3.6.1.2.1.31.1.1.1.6.12; entPhysicalTable: tooBig",
        "lag_s": None,
        "focused": False,
    }
    assert (sched.counters.partial, sched.counters.ok) == (1, 0)
    assert sched.health_sample().fields["partial"] == 1


async def test_a_failure_after_partial_errors_is_the_failure():
    clock = FakeClock()
    poll = make_poll("sw-1")
    sched = scheduler([poll], {"sw-1": Partial(Unreachable("192.0.2.1: no answer"))}, clock)

    (*_, collection) = await sched.run_poll(poll)

    assert collection.fields["status"] == "unreachable"
    assert collection.fields["error"] == "192.0.2.1: no answer"
    assert sched.counters.partial == 0


class Controller:
    """An organization-wide call: the controller reports itself and two of its access points."""

    name = "fake"

    def __init__(self) -> None:
        self.unknown: list[str] = []

    async def collect(self, target: Target, sink: Sink) -> None:
        sink.emit("ctl_status", {"aps": 2})
        for ap in ("ap-1", "ap-gone"):
            try:
                sink.for_device(ap).emit("ap_status", {"clients": 7})
            except UnknownDevice as exc:
                self.unknown.append(str(exc))


async def test_samples_for_other_devices_carry_their_tags_through_the_lookup():
    clock = FakeClock()
    asked: list[tuple[str, str]] = []
    inventory: Mapping[tuple[str, str], Mapping[str, str]] = {
        ("acme", "ap-1"): {"client": "acme", "site": "lyon", "device": "ap-1"},
    }

    def device_tags(client: str, name: str) -> Mapping[str, str] | None:
        asked.append((client, name))
        return inventory.get((client, name))

    poll = make_poll("ctl-1")
    controller = Controller()
    sched = scheduler([poll], {"ctl-1": controller}, clock, device_tags=device_tags)

    samples = await sched.run_poll(poll)

    assert [(s.measurement, s.tags["device"]) for s in samples] == [
        ("ctl_status", "ctl-1"),
        ("ap_status", "ap-1"),
        (COLLECTION, "ctl-1"),
    ]
    assert samples[1].tags == {"client": "acme", "site": "lyon", "device": "ap-1"}
    assert asked == [("acme", "ap-1"), ("acme", "ap-gone")]
    assert controller.unknown == ["no device 'ap-gone' in client 'acme'"]
    assert samples[-1].fields["samples"] == 2


async def test_without_a_lookup_no_other_device_is_known():
    clock = FakeClock()
    poll = make_poll("ctl-1")
    controller = Controller()
    sched = scheduler([poll], {"ctl-1": controller}, clock)

    samples = await sched.run_poll(poll)

    assert [s.measurement for s in samples] == ["ctl_status", COLLECTION]
    assert len(controller.unknown) == 2


# --------------------------------------------------------------------------------------- shutdown


class Hung:
    name = "fake"

    def __init__(self, changes: Changes, tally: dict[str, int]) -> None:
        self.changes, self.tally = changes, tally

    async def collect(self, target: Target, sink: Sink) -> None:
        self.tally["started"] += 1
        self.changes.bump()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.tally["cancelled"] += 1
            self.changes.bump()
            raise


async def test_stop_cancels_runs_and_drops_waiting_turns_without_waiting_for_them():
    clock = FakeClock()
    changes = Changes()
    tally = {"started": 0, "cancelled": 0}
    polls = [make_poll(f"sw-{i}", interval_s=60, timeout_s=30) for i in range(3)]
    sched = scheduler(polls, lambda poll: Hung(changes, tally), clock, Recorder(changes), max_in_flight=1)
    sched.plan()
    step_until(sched, clock, lambda: sched.queued == 2)
    await changes.until(lambda: tally["started"] == 1)

    sched.stop()  # synchronous: returns before anything it cancels has even unwound
    assert sched.queued == 0
    await changes.until(lambda: tally["cancelled"] == 1)
    await sched.drain()

    assert tally == {"started": 1, "cancelled": 1}
    assert (sched.counters.in_flight, sched.running) == (0, 0)
    assert sched.step() is None, "a stopped scheduler has nothing left to run"


# ------------------------------------------------------------------------------------- poll now


async def test_poll_now_runs_a_device_at_once_without_moving_its_phase():
    """A trap asks for the device's own word: its polls run now, once however often asked, and
    its scheduled turns stay where they were."""
    clock = FakeClock()
    starts: list[tuple[str, float, float]] = []
    polls = [make_poll(f"sw-{i}", interval_s=600) for i in range(20)]
    sched = stamped(polls, clock, starts)
    begin = clock.mono
    sched.plan()
    await drive(sched, clock, begin + 600)  # the start-up turns
    starts.clear()

    clock.advance(10)  # some way into the second interval
    asked = clock.mono
    assert sched.poll_now("acme", "sw-7") == 1
    assert sched.poll_now("acme", "sw-7") == 0  # already waiting: not asked twice
    assert sched.poll_now("acme", "sw-7", collector="other") == 0
    assert sched.poll_now("other-client", "sw-7") == 0
    await drive(sched, clock, asked + 0.001)
    assert [(name, mono) for name, mono, _ in starts] == [("sw-7", asked)]

    starts.clear()
    await drive(sched, clock, begin + 1200)
    (again,) = [wall for name, _, wall in starts if name == "sw-7"]
    phase = phases([poll_key(p) for p in polls], 600)[poll_key(polls[7])]
    assert again % 600 == pytest.approx(phase, abs=1e-3)  # its phase did not move


class Narrowing:
    """Reads one object when asked for an interface, refuses any other focus."""

    def __init__(self) -> None:
        self.runs: list[str] = []

    async def collect(self, target: Target, sink: Sink) -> None:
        self.runs.append("whole")
        sink.emit("fake_metric", {"value": 1.0})

    async def collect_focused(self, target: Target, sink: Sink, focus) -> bool:
        if focus.get("measurement") != "fake_interface":
            return False
        self.runs.append(f"focused {focus['if_index']}")
        sink.emit("fake_interface", {"oper_status": "down"}, {"if_index": focus["if_index"]})
        return True


async def test_poll_now_with_a_focus_reads_that_object_only_where_the_collector_can():
    clock = FakeClock()
    collector = Narrowing()
    recorder = Recorder()
    sched = scheduler([make_poll("sw-1", interval_s=600)], lambda poll: collector, clock, recorder)
    begin = clock.mono
    sched.plan()
    await drive(sched, clock, begin + 600)
    collector.runs.clear()
    recorder.batches.clear()

    interface = {"measurement": "fake_interface", "if_index": "3"}
    assert sched.poll_now("acme", "sw-1", focus=interface) == 1
    await drive(sched, clock, clock.mono + 0.001)
    assert collector.runs == ["focused 3"]
    (reading, collection) = recorder.samples
    assert reading.tags["if_index"] == "3" and collection.fields["focused"] is True
    assert collection.fields["status"] == "ok" and collection.fields["samples"] == 1

    # a focus the collector cannot narrow to: the whole device
    sched.poll_now("acme", "sw-1", focus={"measurement": "fake_sensor", "sensor": "PSU1"})
    await drive(sched, clock, clock.mono + 0.001)
    assert collector.runs[-1] == "whole" and recorder.samples[-1].fields["focused"] is False

    # asked for two objects before it ran: one whole turn, not two narrowed ones
    collector.runs.clear()
    assert sched.poll_now("acme", "sw-1", focus=interface) == 1
    assert sched.poll_now("acme", "sw-1", focus={"measurement": "fake_interface", "if_index": "4"}) == 0
    await drive(sched, clock, clock.mono + 0.001)
    assert collector.runs == ["whole"]
