"""Test doubles shared by the scheduler and pipeline tests: waiting on *events*, never on time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from agent.api import Sample

# Upper bound on how long a test waits for something that should happen promptly. It only turns a
# hang into a failure; no assertion depends on it.
SAFETY_S = 10.0


class Changes:
    """Wakes waiters whenever something they may be waiting on has changed."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def bump(self) -> None:
        self._event.set()

    async def until(self, predicate: Callable[[], bool], safety_s: float = SAFETY_S) -> None:
        async with asyncio.timeout(safety_s):
            while not predicate():
                self._event.clear()
                await self._event.wait()


class FakeClock:
    """Wall clock (ns) and monotonic clock the tests drive by hand."""

    def __init__(self, now_ns: int = 1_700_000_000_000_000_000) -> None:
        self.now_ns = now_ns
        self.mono = 1000.0

    def time_ns(self) -> int:
        return self.now_ns

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.now_ns += int(seconds * 1e9)


class Recorder:
    """A `deliver` / consumer that keeps every batch and never suspends."""

    def __init__(self, changes: Changes | None = None) -> None:
        self.changes = changes or Changes()
        self.batches: list[Sequence[Sample]] = []

    async def __call__(self, samples: Sequence[Sample]) -> None:
        self.batches.append(samples)
        self.changes.bump()

    @property
    def samples(self) -> list[Sample]:
        return [s for batch in self.batches for s in batch]

    def collections(self, device: str | None = None, status: str | None = None) -> list[Sample]:
        return [
            s
            for s in self.samples
            if s.measurement == "collection"
            and (device is None or s.tags.get("device") == device)
            and (status is None or s.fields["status"] == status)
        ]

    async def until(self, predicate: Callable[[], bool]) -> None:
        await self.changes.until(predicate)
