"""What the SSH collectors' tests share: a collector built as the agent builds it, one run the way
the scheduler runs it (with its `collection` sample), and the real alert engine."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.api import CollectorContext, PluginSpec, Sample, Sink, Target
from agent.inventory import Poll
from agent.scheduler import Scheduler

T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC: every test's "now"
BASE_TAGS = {"client": "ofdt", "site": "siege", "device": "host"}


def target(port: int, credentials: dict[str, Any], address: str = "127.0.0.1") -> Target:
    return Target(name="host", address=address, port=port, credentials=credentials, tags=BASE_TAGS)


def build(spec: PluginSpec, options: dict[str, Any], state_dir: Path, clock: Callable[[], float] = lambda: T0) -> Any:
    context = CollectorContext(client="ofdt", device="host", state_dir=state_dir, secret=_no_secret, clock=clock)
    return spec.factory(spec.options.model_validate(options), context)


def _no_secret(ref: Any) -> str:
    raise KeyError(ref)


async def run(spec: PluginSpec, collector: Any, tgt: Target, timeout_s: float = 20, at: float = T0) -> list[Sample]:
    """One run through the scheduler's run_poll at ``at``, with the collector given (so it keeps
    its connection between runs, as in the agent)."""
    poll = Poll(target=tgt, collector=spec.name, options=collector.options, interval_s=60, timeout_s=timeout_s,
                jitter_s=0)
    scheduler = Scheduler([poll], lambda _poll: collector, _discard, clock_ns=lambda: int(at * 1e9))
    return await scheduler.run_poll(poll)


async def _discard(_samples: Sequence[Sample]) -> None:
    return None


def status(samples: Sequence[Sample]) -> dict[str, Any]:
    (collection,) = [s for s in samples if s.measurement == "collection"]
    return dict(collection.fields)


def of(samples: Sequence[Sample], measurement: str) -> list[Sample]:
    return [s for s in samples if s.measurement == measurement]


def sink() -> Sink:
    return Sink(BASE_TAGS, lambda: int(T0 * 1e9))
