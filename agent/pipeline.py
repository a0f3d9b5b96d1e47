"""Fans every batch of samples out to its consumers: the store, the state rollups, the alert engine.

Each consumer has its own bounded queue and worker, so a slow remote store (or its spool) never
delays alert evaluation: the 5-minute critical-alert contract depends on alerts not waiting behind
time-series writes. A consumer that raises loses nothing the others see; the failure is logged and
counted, and the agent keeps running.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from agent.api import Sample

log = logging.getLogger(__name__)

Consume = Callable[[Sequence[Sample]], Awaitable[None]]


@dataclass
class _Lane:
    name: str
    consume: Consume
    queue: asyncio.Queue[Sequence[Sample] | None]
    failures: int = 0
    task: asyncio.Task[None] | None = None


class Pipeline:
    def __init__(self, consumers: dict[str, Consume], max_batches: int = 10_000) -> None:
        self._lanes = [_Lane(name, fn, asyncio.Queue(max_batches)) for name, fn in consumers.items()]

    def start(self) -> None:
        for lane in self._lanes:
            lane.task = asyncio.get_running_loop().create_task(self._work(lane), name=f"pipeline-{lane.name}")

    async def submit(self, samples: Sequence[Sample]) -> None:
        if not samples:
            return
        # One immutable batch shared by every lane: a consumer cannot change what another one sees.
        batch = tuple(samples)
        full = []
        for lane in self._lanes:
            try:
                lane.queue.put_nowait(batch)
            except asyncio.QueueFull:
                full.append(lane)
        # Lanes with room get the batch at once; only then wait for the full ones. Back-pressure
        # instead of unbounded memory: a stuck consumer slows polling down, but never holds a batch
        # back from the other lanes.
        for lane in full:
            await lane.queue.put(batch)

    def depths(self) -> dict[str, int]:
        return {lane.name: lane.queue.qsize() for lane in self._lanes}

    def failures(self) -> dict[str, int]:
        return {lane.name: lane.failures for lane in self._lanes}

    async def drain(self) -> None:
        """Wait until everything submitted so far has been consumed."""
        for lane in self._lanes:
            await lane.queue.join()

    async def stop(self) -> None:
        for lane in self._lanes:
            await lane.queue.put(None)
        for lane in self._lanes:
            if lane.task is not None:
                await lane.task

    async def _work(self, lane: _Lane) -> None:
        while True:
            batch = await lane.queue.get()
            try:
                if batch is None:
                    return
                await lane.consume(batch)
            except Exception:
                lane.failures += 1
                log.exception("pipeline consumer %s failed on a batch of %d samples", lane.name, len(batch or ()))
            finally:
                lane.queue.task_done()
