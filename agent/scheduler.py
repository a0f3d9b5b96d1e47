"""Runs every (device, collector) poll on its own interval, with jitter and a hard timeout.

Why each poll is its own APScheduler job rather than one loop over devices: a slow or dead switch
must never delay the others (Telegraf's SNMP input serialises agents and one dead one stalls a whole
gather). Each run is bounded by `asyncio.timeout`; a run still going when its next turn comes is
skipped and counted (APScheduler's `max_instances=1`), never stacked.

Blocking libraries are run by collectors through ``asyncio.to_thread``; `start()` installs a bounded
thread pool (``workers`` threads) as the loop's default executor so a burst of blocking calls queues
instead of spawning a thread per device. A thread cannot be cancelled: after a hard timeout the run
ends, but a blocking call without its own socket timeout keeps its worker busy until it returns.

Every run ends in exactly one `collection` sample, so a device that does not answer shows up as an
explicit `unreachable`/`timeout` status and never as silence.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from agent.inventory import Poll
from agent.api import Sample, Sink
from agent.api import CollectError, Collector, Unreachable

log = logging.getLogger(__name__)

Deliver = Callable[[Sequence[Sample]], Awaitable[None]]
CollectorFactory = Callable[[Poll], Collector]

COLLECTION = "collection"
AGENT_HEALTH = "vigie_agent"
BLOCKING_THREAD_PREFIX = "vigie-blocking"


def poll_key(poll: Poll) -> str:
    client = poll.target.tags.get("client", "")
    return f"{client}/{poll.target.name}/{poll.collector}"


@dataclass
class Counters:
    """Cumulative since start: what the agent's health samples report."""

    runs: int = 0
    ok: int = 0
    errors: int = 0
    unreachable: int = 0
    timeouts: int = 0
    overruns: int = 0
    in_flight: int = 0
    latencies: list[float] = field(default_factory=list)

    def drain_latencies(self) -> list[float]:
        taken, self.latencies = self.latencies, []
        return taken


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
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.polls: dict[str, Poll] = {}
        for p in polls:
            key = poll_key(p)
            if key in self.polls:  # two polls sharing a job id: one would silently never run
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
        self.counters = Counters()
        self._aps: AsyncIOScheduler | None = None
        self._executor: ThreadPoolExecutor | None = None
        # Fire-and-forget deliveries (skipped samples) are kept referenced until done, or the event
        # loop may garbage-collect them mid-flight.
        self._background: set[asyncio.Task[None]] = set()

    async def run_poll(self, poll: Poll) -> list[Sample]:
        """One collection of one poll, bounded by its timeout; always ends in a `collection` sample."""
        collector = self._collectors[poll_key(poll)]
        sink = Sink(poll.target.tags, self._clock_ns)
        started = self._monotonic()
        status, error = "ok", None
        bug = False
        self.counters.runs += 1
        self.counters.in_flight += 1
        deadline = asyncio.timeout(poll.timeout_s)
        try:
            async with deadline:
                await collector.collect(poll.target, sink)
        except TimeoutError as exc:
            status = "timeout"
            if deadline.expired():
                error = f"no complete answer within {poll.timeout_s:g} s"
            else:  # the collector's own timeout (a socket's, say) leaked out as TimeoutError
                error = f"TimeoutError: {exc}" if str(exc) else "TimeoutError"
            self.counters.timeouts += 1
        except Unreachable as exc:
            status, error = "unreachable", str(exc)
            self.counters.unreachable += 1
        except CollectError as exc:
            status, error = "error", str(exc)
            self.counters.errors += 1
        except Exception as exc:  # a collector bug must not stop the agent; it is reported as a sample
            log.exception("collector %s failed on %s", poll.collector, poll.target.name)
            status, error = "error", f"{type(exc).__name__}: {exc}"
            bug = True
            self.counters.errors += 1
        finally:
            self.counters.in_flight -= 1
        duration = self._monotonic() - started
        if status == "ok":
            self.counters.ok += 1
        self.counters.latencies.append(duration)
        produced = len(sink.samples)
        sink.emit(
            COLLECTION,
            {
                "status": status,
                # answered at all, whatever it said; unknown (None) when the collector itself crashed
                "reachable": None if bug else status in ("ok", "error"),
                "duration_s": round(duration, 6),
                "samples": produced,
                "error": error,
            },
            tags={"collector": poll.collector},
        )
        return sink.samples

    async def _job(self, key: str) -> None:
        try:
            samples = await self.run_poll(self.polls[key])
            await self._deliver(samples)
        except asyncio.CancelledError:
            # `stop()` cancels runs in progress; APScheduler would log that as a job failure.
            log.debug("%s: run cancelled by shutdown", key)

    def _on_overrun(self, event: JobEvent) -> None:
        poll = self.polls.get(event.job_id)
        if poll is None:
            return
        self.counters.overruns += 1
        log.warning("%s: previous run still going after %g s, this run skipped", event.job_id, poll.interval_s)
        sink = Sink(poll.target.tags, self._clock_ns)
        sink.emit(
            COLLECTION,
            {
                "status": "skipped",
                "reachable": None,
                "duration_s": None,
                "samples": 0,
                "error": "previous run overran its interval",
            },
            tags={"collector": poll.collector},
        )
        task = asyncio.get_running_loop().create_task(self._deliver_skipped(event.job_id, sink.samples))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _deliver_skipped(self, key: str, samples: Sequence[Sample]) -> None:
        try:
            await self._deliver(samples)
        except Exception:
            log.exception("%s: could not deliver the skipped-run sample", key)

    def health_sample(self) -> Sample:
        latencies = self.counters.drain_latencies()
        fields: dict[str, float | int | None] = {
            "polls": len(self.polls),
            "runs": self.counters.runs,
            "ok": self.counters.ok,
            "errors": self.counters.errors,
            "unreachable": self.counters.unreachable,
            "timeouts": self.counters.timeouts,
            "overruns": self.counters.overruns,
            "in_flight": self.counters.in_flight,
            "latency_avg_s": round(sum(latencies) / len(latencies), 6) if latencies else None,
            "latency_max_s": round(max(latencies), 6) if latencies else None,
        }
        for name, depth in self._queue_depths().items():
            fields[f"queue_{name}"] = depth
        return Sample(AGENT_HEALTH, {"agent": self._agent_name}, fields, self._clock_ns())

    async def _health_job(self) -> None:
        await self._deliver([self.health_sample()])

    def start(self) -> None:
        """Schedule every poll on the running event loop (call from inside it)."""
        loop = asyncio.get_running_loop()
        if self._executor is None:
            # Bounds asyncio.to_thread / run_in_executor(None, ...) for every blocking collector.
            self._executor = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix=BLOCKING_THREAD_PREFIX)
            loop.set_default_executor(self._executor)
        aps = AsyncIOScheduler(event_loop=loop)
        aps.add_listener(self._on_overrun, EVENT_JOB_MAX_INSTANCES)
        now = time.time()
        for key, poll in self.polls.items():
            # Spread first runs over the jitter window so a restart does not burst every device at once.
            first = now + random.uniform(0, poll.jitter_s) if poll.jitter_s else now
            aps.add_job(
                self._job,
                IntervalTrigger(seconds=poll.interval_s, jitter=poll.jitter_s or None),
                args=[key],
                id=key,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(poll.interval_s)),
                next_run_time=datetime.fromtimestamp(first, UTC),
            )
        aps.add_job(
            self._health_job,
            IntervalTrigger(seconds=self._health_interval_s),
            id="__health__",
            max_instances=1,
            coalesce=True,
        )
        aps.start()
        self._aps = aps

    def stop(self) -> None:
        """Stop scheduling; runs in progress are cancelled. The thread pool stays the loop's default
        executor (stores may still need it while the pipeline drains); the loop shuts it down."""
        if self._aps is not None:
            self._aps.shutdown(wait=False)
            self._aps = None
