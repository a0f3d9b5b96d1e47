"""Runs every (device, collector) poll on its own interval, at a stable phase, with a hard timeout
and a bound on polls in flight.

Timing. Each poll runs at ``anchor + k * interval`` on the monotonic clock: the mean period is
exactly the configured interval and nothing accumulates (a random delay added to every period, as
APScheduler's ``jitter`` does, made a 60 s poll with 5 s of jitter run every 62.5 s on average).
The anchor is a phase in [0, interval) laid on the wall clock: the polls sharing an interval are
ordered by a hash of their keys and spaced evenly over it (see `phases`), so a restart keeps every
device at the same second of the minute and adding a device barely moves the others (Prometheus
offsets its scrapes by a hash of the target the same way, without the even spacing).

Load. A bounded number of runs go at once; a turn that comes due while every slot is taken
waits in a queue, oldest first. Why a bound: with no bound a saturated core shares itself between
every poll in flight, each takes longer, more pile up, and all of them reach their timeout (1,000
switches on one core: a third of the polls completed, a thousand false device-down tickets). The
bound adapts, between `MIN_IN_FLIGHT` and ``max_in_flight``: every second it is cut by a quarter
while the agent keeps its cores saturated (its threads running, or its event loop waiting for a
core that other processes share), and grown by a quarter while they do not and turns are waiting. On loopback,
where a poll costs CPU and almost no waiting, two or three runs at once keep the core busy and each
run short; over a WAN, where a poll mostly waits for answers, the bound grows until the core is
busy.

Lateness. A turn that cannot start within its lag budget (half its interval, at most
``max_lag_s``) is not run late: it ends in a `collection` sample with status ``overloaded`` saying
how far behind the agent is, which the alert engine reads as "observed nothing", never as a device
that is down. A run that fails on time (``timeout``, ``unreachable``) while the event loop stood
still for `LOOP_STALLED_S` or more is ``overloaded`` too: its answers may have sat unread, and the
agent cannot tell whether the device or itself was slow. A run's hard timeout starts when it
starts, so waiting for a slot never turns into a device timeout. A turn that comes while the
previous run of the same poll is still going is ``skipped`` (counted, never stacked). The
``vigie_agent`` health sample says how far behind the agent is (``behind_s``, ``loop_lag_s``), so
a rule can alert on the agent itself.

Why one timer loop rather than a task or job per poll: a slow or dead switch must still never delay
the others (Telegraf's SNMP input serialises agents and one dead one stalls a whole gather), and the
loop only starts runs; each run is its own task.

Blocking libraries are run by collectors through ``asyncio.to_thread``; `start()` installs a bounded
thread pool (``workers`` threads) as the loop's default executor so a burst of blocking calls queues
instead of spawning a thread per device. A thread cannot be cancelled: after a hard timeout the run
ends, but a blocking call without its own socket timeout keeps its worker busy until it returns.

Every run ends in exactly one `collection` sample (``ok``, ``partial``, ``error``, ``unreachable``,
``timeout``, or ``overloaded``) and every turn not run in a ``skipped`` or ``overloaded`` one, so
a device that does not answer shows up as an explicit status and never as silence. (Turns of one
poll given up while the pipeline has not yet taken the previous one's sample fold into the
latest; the counters count each.)
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

from agent.api import CollectError, Collector, Sample, Sink, Unreachable, stable_fraction
from agent.inventory import Poll

log = logging.getLogger(__name__)

Deliver = Callable[[Sequence[Sample]], Awaitable[None]]
CollectorFactory = Callable[[Poll], Collector]
# (client, device name) -> that device's base tags, or None when the client has no such device.
DeviceTags = Callable[[str, str], Mapping[str, str] | None]

COLLECTION = "collection"
AGENT_HEALTH = "vigie_agent"
BLOCKING_THREAD_PREFIX = "vigie-blocking"
# Statuses of turns that were not run: they say nothing about the device.
NOT_RUN_STATUSES = frozenset({"skipped", "overloaded"})
DEFAULT_MAX_IN_FLIGHT = 64
DEFAULT_MAX_LAG_S = 30.0
# The adaptive bound on runs in flight (see the module docstring): where it starts, how low it goes.
START_IN_FLIGHT = 4
MIN_IN_FLIGHT = 2
STEER_EVERY_S = 1.0  # a change shows only once runs in flight end: look again no sooner
SATURATED = 0.9  # of the usable cores' time the agent used or could not get (saturation_between): cut; under: grow
HEARTBEAT_S = 0.1
LOOP_STALLED_S = 1.0  # a heartbeat this late while a run went: its failure on time is not the device's
# The pace of the first turns after a start, per interval (see `Scheduler.plan`).
STARTUP_POLLS_PER_S = 10.0


# The counter of each run outcome.
_COUNTER = {
    "ok": "ok",
    "partial": "partial",
    "error": "errors",
    "unreachable": "unreachable",
    "timeout": "timeouts",
    "overloaded": "overloaded",
}


class CoreTimes(NamedTuple):
    """Seconds per usable core since the agent's threads started: how long the event loop's thread
    ran and waited to run (runnable, the core busy elsewhere), how long the other threads ran."""

    loop_run_s: float
    loop_wait_s: float
    others_run_s: float


def saturation_between(before: CoreTimes, after: CoreTimes, elapsed_s: float) -> float:
    """Of the usable cores' time over ``elapsed_s``, the share the agent used or could not get.

    The loop's own demand is what it ran plus what it waited; the others' is what they ran (their
    waits are mostly for the agent's own threads, handing the GIL back and forth on the same core).
    The loop's wait counts only beyond the others' run: alone on its core, the loop waits while its
    own rollup, store and engine threads run, which is time already counted (750 switches on one
    otherwise idle core: "saturated" at 1.37 while the process used 64 % of it, the bound held at
    its floor of 2 and drift p99 6 s); on a core other processes hold, the loop waits longer than
    they let the agent's threads run, and that excess is what says the core is taken."""
    loop_run = after.loop_run_s - before.loop_run_s
    loop_wait = after.loop_wait_s - before.loop_wait_s
    others_run = after.others_run_s - before.others_run_s
    return (loop_run + max(others_run, loop_wait)) / elapsed_s


def cpu_demand_s() -> CoreTimes:
    """The agent's CoreTimes, read by the event loop's thread (the caller). Linux keeps run and
    wait times per thread (/proc/<pid>/task/*/schedstat); elsewhere the process's CPU time is
    counted as the loop's run."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        tasks = list(os.scandir("/proc/self/task"))
    except OSError:
        return CoreTimes(time.process_time() / cores, 0.0, 0.0)
    caller = str(threading.get_native_id())
    loop_run_ns = loop_wait_ns = others_ns = 0
    for task in tasks:
        try:
            with open(os.path.join(task.path, "schedstat"), encoding="ascii") as stat:
                run_ns, wait_ns, _slices = stat.read().split()
        except (OSError, ValueError):  # a thread that just ended
            continue
        if task.name == caller:
            loop_run_ns, loop_wait_ns = int(run_ns), int(wait_ns)
        else:
            others_ns += int(run_ns)
    return CoreTimes(loop_run_ns / 1e9 / cores, loop_wait_ns / 1e9 / cores, others_ns / 1e9 / cores)


def poll_key(poll: Poll) -> str:
    client = poll.target.tags.get("client", "")
    return f"{client}/{poll.target.name}/{poll.collector}"


def phases(keys: Collection[str], interval_s: float) -> dict[str, float]:
    """Each poll's offset in [0, interval) on the wall clock, for the polls sharing one interval.

    The keys are ordered by a hash and given one equal slice of the interval each, so the polls
    come evenly spaced (hashed offsets alone bunch up: 600 polls a minute gave 3 to 19 in a second)
    and devices of one site do not come one after the other. The same inventory gets the same
    phases on every start; adding or removing one poll moves each other one by less than
    ``interval_s / len(keys)``.
    """
    ordered = sorted(keys, key=lambda key: (stable_fraction(key), key))
    return {key: (rank + 0.5) / len(ordered) * interval_s for rank, key in enumerate(ordered)}


@dataclass
class Counters:
    """Cumulative since start: what the agent's health samples report."""

    runs: int = 0
    ok: int = 0
    partial: int = 0
    errors: int = 0
    unreachable: int = 0
    timeouts: int = 0
    overruns: int = 0
    overloaded: int = 0
    in_flight: int = 0
    latencies: list[float] = field(default_factory=list)
    # The largest lag (start, or give-up, minus due time) of the turns due since the last
    # health sample, in seconds.
    max_lag_s: float | None = None
    # The latest the event loop ran the heartbeat since the last health sample, in seconds.
    max_loop_lag_s: float | None = None
    # Of the usable cores' time, the share the agent used or could not get, lately (saturation_between).
    saturation: float | None = None

    def drain_latencies(self) -> list[float]:
        taken, self.latencies = self.latencies, []
        return taken

    def lagged(self, lag_s: float) -> None:
        self.max_lag_s = lag_s if self.max_lag_s is None else max(self.max_lag_s, lag_s)

    def drain_max_lag(self) -> float | None:
        taken, self.max_lag_s = self.max_lag_s, None
        return taken

    def loop_lagged(self, lag_s: float) -> None:
        self.max_loop_lag_s = lag_s if self.max_loop_lag_s is None else max(self.max_loop_lag_s, lag_s)

    def drain_max_loop_lag(self) -> float | None:
        taken, self.max_loop_lag_s = self.max_loop_lag_s, None
        return taken


@dataclass
class _Schedule:
    """One poll's place in time: its turns are due at ``anchor + k * interval_s``."""

    key: str
    poll: Poll
    anchor: float
    lag_budget_s: float
    turn: int = 0

    @property
    def due(self) -> float:
        return self.anchor + self.turn * self.poll.interval_s


@dataclass
class _Turn:
    """A turn that came due and waits for a slot."""

    schedule: _Schedule
    due: float
    given_up: bool = False
    started: bool = False
    # poll_now's narrowed ask (one object of the device), None for a whole turn
    focus: Mapping[str, str] | None = None


class Scheduler:
    def __init__(
        self,
        polls: Sequence[Poll],
        make_collector: CollectorFactory,
        deliver: Deliver,
        *,
        health_interval_s: float = 60.0,
        queue_depths: Callable[[], dict[str, int]] = dict,
        agent_name: str | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], float] = time.monotonic,
        workers: int = 16,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_lag_s: float = DEFAULT_MAX_LAG_S,
        device_tags: DeviceTags | None = None,
        cpu_demand: Callable[[], CoreTimes] = cpu_demand_s,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        if not max_lag_s > 0:
            raise ValueError(f"max_lag_s must be positive, not {max_lag_s}")
        self.polls: dict[str, Poll] = {}
        for p in polls:
            key = poll_key(p)
            if key in self.polls:  # two polls sharing a key: one would silently never run
                raise ValueError(f"duplicate poll {key!r}")
            self.polls[key] = p
        self._collectors = {key: make_collector(p) for key, p in self.polls.items()}
        self._deliver = deliver
        self._health_interval_s = health_interval_s
        self._queue_depths = queue_depths
        self._agent_name = agent_name or socket.gethostname()
        self._clock_ns = clock_ns
        self._monotonic = monotonic
        self._workers = workers
        self._max_in_flight = max_in_flight
        self._limit = min(START_IN_FLIGHT, max_in_flight)
        self._cpu_demand = cpu_demand
        self._steered: tuple[float, CoreTimes] | None = None  # (monotonic, core times) when last steered
        self._stalls: deque[tuple[float, float]] = deque()  # (monotonic, lag) of stalled heartbeats
        # Stalls are kept as long as a run can last (a blocked thread may outlast its timeout).
        self._longest_run_s = 2 * max((p.timeout_s for p in polls), default=0.0)
        self._max_lag_s = max_lag_s
        self._device_tags = device_tags
        self.counters = Counters()
        self._executor: ThreadPoolExecutor | None = None
        self._schedules: dict[str, _Schedule] = {}
        self._timeline: list[tuple[float, str]] = []  # (due, key): each poll's next turn
        self._waiting: deque[_Turn] = deque()  # oldest due first
        self._expiries: list[tuple[float, int, _Turn]] = []  # (due + lag budget, tie-break, turn)
        self._queued = 0
        self._holding: set[str] = set()  # keys of the polls whose run holds a slot
        self._runs: set[asyncio.Task[None]] = set()
        # Samples of turns that were not run, delivered by one task: a pipeline that pushes back
        # must not pile up one pending delivery per turn given up. One per poll is enough (the
        # latest), and the counters keep the full count.
        self._notices: dict[str, Sample] = {}
        self._notice_task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- one run -------------------------------------------------------------------------------

    async def run_poll(
        self, poll: Poll, lag_s: float | None = None, focus: Mapping[str, str] | None = None
    ) -> list[Sample]:
        """One collection of one poll, bounded by its timeout; always ends in a `collection` sample.

        ``lag_s``: how long after its due time the scheduler started it (None when run by hand).
        ``focus``: only that object, when the collector can narrow its run (``collect_focused``
        returns True); the `collection` sample then says ``focused: true``.
        """
        collector = self._collectors[poll_key(poll)]
        sink = self._sink(poll)
        started = self._monotonic()
        status, error = "ok", None
        bug = focused = False
        self.counters.runs += 1
        self.counters.in_flight += 1
        deadline = asyncio.timeout(poll.timeout_s)  # from now: time spent queued is not the device's
        try:
            async with deadline:
                narrow = getattr(collector, "collect_focused", None) if focus else None
                focused = narrow is not None and await narrow(poll.target, sink, focus)
                if not focused:
                    await collector.collect(poll.target, sink)
        except TimeoutError as exc:
            status = "timeout"
            if deadline.expired():
                error = f"no complete answer within {poll.timeout_s:g} s"
            else:  # the collector's own timeout (a socket's, say) leaked out as TimeoutError
                error = f"TimeoutError: {exc}" if str(exc) else "TimeoutError"
        except Unreachable as exc:
            status, error = "unreachable", str(exc)
        except CollectError as exc:
            status, error = "error", str(exc)
        except Exception as exc:  # a collector bug must not stop the agent; it is reported as a sample
            log.exception("collector %s failed on %s", poll.collector, poll.target.name)
            status, error = "error", f"{type(exc).__name__}: {exc}"
            bug = True
        finally:
            self.counters.in_flight -= 1
        stall = self._stall_since(started)
        if status in ("timeout", "unreachable") and stall is not None:
            # Its answers may have sat unread while the loop stood still: nothing is known of the device.
            status, error = "overloaded", f"{error}, but the agent itself stalled {stall:.1f} s meanwhile"
        elif status == "ok" and sink.errors:
            status, error = "partial", "; ".join(sink.errors)
        setattr(self.counters, _COUNTER[status], getattr(self.counters, _COUNTER[status]) + 1)
        duration = self._monotonic() - started
        self.counters.latencies.append(duration)
        produced = len(sink.samples)
        sink.emit(
            COLLECTION,
            {
                "status": status,
                # answered at all, whatever it said; unknown (None) when the collector itself crashed
                # or the agent was too stalled to tell
                "reachable": None if bug or status == "overloaded" else status in ("ok", "partial", "error"),
                "duration_s": round(duration, 6),
                "samples": produced,
                "error": error,
                "lag_s": None if lag_s is None else round(lag_s, 6),
                "focused": focused,
            },
            tags={"collector": poll.collector},
        )
        return sink.samples

    def _sink(self, poll: Poll) -> Sink:
        if self._device_tags is None:
            return Sink(poll.target.tags, self._clock_ns)
        client = poll.target.tags.get("client", "")
        return Sink(poll.target.tags, self._clock_ns, device_tags=partial(self._device_tags, client))

    def _not_run(self, schedule: _Schedule, status: str, error: str, lag_s: float | None) -> None:
        """A turn that was not run still ends in its `collection` sample."""
        sample = Sample(
            COLLECTION,
            {**schedule.poll.target.tags, "collector": schedule.poll.collector},
            {
                "status": status,
                "reachable": None,
                "duration_s": None,
                "samples": 0,
                "error": error,
                "lag_s": None if lag_s is None else round(lag_s, 6),
                "focused": False,
            },
            self._clock_ns(),
        )
        self._notices[schedule.key] = sample
        if self._notice_task is None or self._notice_task.done():
            self._notice_task = asyncio.get_running_loop().create_task(self._deliver_notices())

    async def _deliver_notices(self) -> None:
        while self._notices:
            batch = list(self._notices.values())
            self._notices.clear()
            try:
                await self._deliver(batch)
            except Exception:
                log.exception("could not deliver %d sample(s) of turns not run", len(batch))

    # -- the timeline --------------------------------------------------------------------------

    def plan(self) -> None:
        """Lay every poll's phase on the wall clock from now, and its first turn. Called by
        `start()`; a test driving the clock calls it, then `step()`.

        First turns: waiting for its phase would leave an hourly check unseen for up to an hour
        after a restart, and running every poll at once is the burst the phases avoid. So the
        first turns of the polls sharing an interval come in phase order, evenly, no faster than
        `STARTUP_POLLS_PER_S` and never later than their phase: a few devices are polled within
        seconds, a fleet large enough to fill its interval at that rate starts on its phases.
        """
        now = self._monotonic()
        wall = self._clock_ns() / 1e9
        self._schedules.clear()
        self._timeline.clear()
        by_interval: dict[float, list[str]] = {}
        for key, poll in self.polls.items():
            by_interval.setdefault(poll.interval_s, []).append(key)
        for interval_s, keys in by_interval.items():
            squeeze = min(1.0, len(keys) / STARTUP_POLLS_PER_S / interval_s)
            for key, phase in phases(keys, interval_s).items():
                # The next wall-clock instant congruent to the poll's phase, on the monotonic clock.
                anchor = now + (phase - wall) % interval_s
                first = now + (anchor - now) * squeeze
                schedule = _Schedule(key, self.polls[key], anchor, min(interval_s / 2, self._max_lag_s))
                # The phase's own turn follows the first one, unless it is under half an interval
                # away: then the one after it does.
                schedule.turn = -1 if anchor - first >= interval_s / 2 else 0
                self._schedules[key] = schedule
                self._timeline.append((first, key))
        heapq.heapify(self._timeline)

    def step(self) -> float | None:
        """Start what is due now, give up turns waiting past their lag budget; returns when to
        step again (monotonic), or None when nothing is scheduled. Never waits."""
        now = self._monotonic()
        while self._timeline and self._timeline[0][0] <= now:
            due, key = heapq.heappop(self._timeline)
            schedule = self._schedules[key]
            schedule.turn += 1
            heapq.heappush(self._timeline, (schedule.due, key))
            self._come_due(schedule, due, now)
        while self._expiries and self._expiries[0][0] <= now:
            turn = heapq.heappop(self._expiries)[2]
            if not turn.started:
                self._give_up(turn, now)
        while self._waiting and len(self._holding) < self._limit:
            turn = self._waiting.popleft()
            if not turn.given_up:
                self._queued -= 1
                self._start(turn)
        wake = [self._timeline[0][0]] if self._timeline else []
        while self._expiries and (self._expiries[0][2].started or self._expiries[0][2].given_up):
            heapq.heappop(self._expiries)
        if self._expiries:
            wake.append(self._expiries[0][0])
        return min(wake, default=None)

    def poll_now(
        self, client: str, device: str, collector: str | None = None, focus: Mapping[str, str] | None = None
    ) -> int:
        """Run the polls of one device (or one of its collectors) now, ahead of the waiting
        turns, without moving their phase: a trap asks the device to confirm what it reported.
        ``focus`` (``{"measurement": M, TAG: VALUE}``) narrows the run to that object where the
        collector can (``collect_focused``). A poll already running or waiting is not asked
        twice; a waiting narrowed one asked for something else becomes a whole turn. Returns how
        many turns were added."""
        added = 0
        now = self._monotonic()
        for schedule in self._schedules.values():
            poll = schedule.poll
            if poll.target.tags.get("client") != client or poll.target.name != device:
                continue
            if collector is not None and poll.collector != collector:
                continue
            waiting = [t for t in self._waiting if t.schedule is schedule and not (t.given_up or t.started)]
            for turn in waiting:
                if turn.focus is not None and turn.focus != focus:
                    turn.focus = None
            if schedule.key in self._holding or waiting:
                continue
            turn = _Turn(schedule, now, focus=dict(focus) if focus else None)
            self._waiting.appendleft(turn)
            self._queued += 1
            heapq.heappush(self._expiries, (now + schedule.lag_budget_s, id(turn), turn))
            added += 1
        if added and self._wakeup is not None:
            self._wakeup.set()
        return added

    def _come_due(self, schedule: _Schedule, due: float, now: float) -> None:
        if schedule.key in self._holding:
            self.counters.overruns += 1
            log.warning("%s: previous run still going after %g s, this turn skipped", schedule.key,
                        schedule.poll.interval_s)
            self._not_run(schedule, "skipped", "previous run overran its interval", None)
            return
        turn = _Turn(schedule, due)
        self._waiting.append(turn)
        self._queued += 1
        heapq.heappush(self._expiries, (due + schedule.lag_budget_s, id(turn), turn))

    def _give_up(self, turn: _Turn, now: float) -> None:
        turn.given_up = True
        self._queued -= 1
        lag = now - turn.due
        self.counters.overloaded += 1
        self.counters.lagged(lag)
        error = (
            f"agent behind by {lag:.1f} s: not run ({len(self._holding)} poll(s) in flight, "
            f"{self._queued} waiting)"
        )
        self._not_run(turn.schedule, "overloaded", error, lag)

    def _start(self, turn: _Turn) -> None:
        turn.started = True
        key = turn.schedule.key
        self._holding.add(key)
        task = asyncio.get_running_loop().create_task(self._run_turn(turn), name=f"poll {key}")
        self._runs.add(task)
        task.add_done_callback(partial(self._run_done, key))

    async def _run_turn(self, turn: _Turn) -> None:
        lag = self._monotonic() - turn.due
        self.counters.lagged(lag)
        try:
            samples = await self.run_poll(turn.schedule.poll, lag_s=lag, focus=turn.focus)
            # The slot is held until the pipeline takes the samples: a pipeline that pushes back
            # slows polling down, and turns it cannot absorb are given up as overloaded.
            await self._deliver(samples)
        except Exception:
            log.exception("%s: could not deliver the run's samples", turn.schedule.key)
        finally:
            self._release(turn.schedule.key)

    def _run_done(self, key: str, task: asyncio.Task[None]) -> None:
        self._runs.discard(task)
        self._release(key)  # a run cancelled before it began never reached its `finally`

    def _release(self, key: str) -> None:
        if key in self._holding:
            self._holding.discard(key)
            if self._wakeup is not None:
                self._wakeup.set()  # a slot is free

    # -- the bound on runs in flight ------------------------------------------------------------

    def observe_loop_lag(self, lag_s: float) -> None:
        """How late the event loop ran the heartbeat (`start()` measures it every `HEARTBEAT_S`);
        once every `STEER_EVERY_S`, also the time to steer the bound on runs in flight."""
        now = self._monotonic()
        self.counters.loop_lagged(lag_s)
        if lag_s >= LOOP_STALLED_S:
            self._stalls.append((now, lag_s))
        while self._stalls and now - self._stalls[0][0] > self._longest_run_s:
            self._stalls.popleft()
        if self._steered is None:
            self._steered = (now, self._cpu_demand())
        elif now - self._steered[0] >= STEER_EVERY_S:
            demand = self._cpu_demand()
            self._steer(saturation_between(self._steered[1], demand, now - self._steered[0]))
            self._steered = (now, demand)

    def _steer(self, saturation: float) -> None:
        """Cut the bound by a quarter while the cores are saturated; grow it by a quarter while
        they are not and turns wait for a slot. Why saturation and not how late callbacks run:
        a saturated loop still runs each callback soon, as each is short, while every run takes
        as many times longer as there are runs in flight, up to its timeout."""
        self.counters.saturation = saturation
        if saturation >= SATURATED:
            self._limit = max(min(MIN_IN_FLIGHT, self._max_in_flight), self._limit * 3 // 4)
        elif self._queued and len(self._holding) >= self._limit:
            # No band between the two: held in one, a bound cut by a burst of load stayed low
            # while turns waited (1,000 switches: drift p99 3 s at 80 % of the core).
            self._limit = min(self._max_in_flight, self._limit + max(1, self._limit // 4))
            if self._wakeup is not None:
                self._wakeup.set()

    def _stall_since(self, started: float) -> float | None:
        """The longest stall of the event loop seen since ``started`` (monotonic), if any."""
        return max((lag for at, lag in self._stalls if at >= started), default=None)

    @property
    def in_flight_limit(self) -> int:
        """How many runs may go at once now."""
        return self._limit

    async def _heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + HEARTBEAT_S
            await asyncio.sleep(HEARTBEAT_S)
            self.observe_loop_lag(max(0.0, loop.time() - expected))

    @property
    def queued(self) -> int:
        """Turns due and waiting for a slot."""
        return self._queued

    @property
    def running(self) -> int:
        """Runs holding a slot (collecting, or handing their samples to the pipeline)."""
        return len(self._holding)

    async def drain(self) -> None:
        """Wait until the runs started so far, and the turns not run, have delivered their samples."""
        while pending := {t for t in (*self._runs, self._notice_task) if t is not None and not t.done()}:
            await asyncio.wait(pending)

    async def _loop(self) -> None:
        assert self._wakeup is not None
        while True:
            self._wakeup.clear()
            wake = self.step()
            delay = None if wake is None else max(0.0, wake - self._monotonic())
            try:
                async with asyncio.timeout(delay):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    # -- health --------------------------------------------------------------------------------

    def health_sample(self) -> Sample:
        latencies = self.counters.drain_latencies()
        behind = self.counters.drain_max_lag()
        loop_lag = self.counters.drain_max_loop_lag()
        fields: dict[str, float | int | None] = {
            "polls": len(self.polls),
            "runs": self.counters.runs,
            "ok": self.counters.ok,
            "partial": self.counters.partial,
            "errors": self.counters.errors,
            "unreachable": self.counters.unreachable,
            "timeouts": self.counters.timeouts,
            "overruns": self.counters.overruns,
            "overloaded": self.counters.overloaded,
            "in_flight": self.counters.in_flight,
            "in_flight_limit": self._limit,
            "saturation": None if self.counters.saturation is None else round(self.counters.saturation, 3),
            "queued": self.queued,
            "latency_avg_s": round(sum(latencies) / len(latencies), 6) if latencies else None,
            "latency_max_s": round(max(latencies), 6) if latencies else None,
            # The largest lag of the turns due since the last health sample (given-up ones included).
            "behind_s": None if behind is None else round(behind, 6),
            # How late the event loop ran a callback at worst since the last health sample.
            "loop_lag_s": None if loop_lag is None else round(loop_lag, 6),
        }
        for name, depth in self._queue_depths().items():
            fields[f"queue_{name}"] = depth
        return Sample(AGENT_HEALTH, {"agent": self._agent_name}, fields, self._clock_ns())

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self._health_interval_s)
            try:
                await self._deliver([self.health_sample()])
            except Exception:
                log.exception("could not deliver the agent's health sample")

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Plan every poll and run the timeline on the running event loop (call from inside it)."""
        loop = asyncio.get_running_loop()
        if self._executor is None:
            # Bounds asyncio.to_thread / run_in_executor(None, ...) for every blocking collector.
            self._executor = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix=BLOCKING_THREAD_PREFIX)
            loop.set_default_executor(self._executor)
        self._wakeup = asyncio.Event()
        self.plan()
        self._tasks = [
            loop.create_task(self._loop(), name="scheduler"),
            loop.create_task(self._health_loop(), name="scheduler-health"),
            loop.create_task(self._heartbeat(), name="scheduler-heartbeat"),
        ]
        for task in self._tasks:
            task.add_done_callback(_report_crash)

    def stop(self) -> None:
        """Stop at once: runs in progress are cancelled, waiting turns dropped (nothing is waited
        for). The thread pool stays the loop's default executor (stores may still need it while
        the pipeline drains); the loop shuts it down."""
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        for task in list(self._runs):
            task.cancel()
        if self._notice_task is not None:
            self._notice_task.cancel()
        self._waiting.clear()
        self._expiries.clear()
        self._queued = 0
        self._timeline.clear()


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.critical("%s stopped: no poll runs any more", task.get_name(), exc_info=task.exception())

