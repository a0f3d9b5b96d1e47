"""The IOS-XE device of the lab (lab/ios_device.py) on a loopback port, and the collector built
the way the agent builds it: a CollectorContext whose state directory is the test's."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.api import CollectorContext, Sample, Sink, Target
from collectors.cisco_cli import PLUGIN, CiscoCliCollector
from lab.ios_device import DeviceState, IosDevice

FIXTURES = Path(__file__).parent / "fixtures"
LOGIN = {"username": "vigie", "password": "lab-pass-2026", "enable_secret": "lab-enable-2026"}
BASE_TAGS = {"client": "acme", "site": "hq", "device": "sw-acme-01"}


@pytest.fixture
def device() -> Iterator[IosDevice]:
    fake = IosDevice(DeviceState("sw-acme-01", LOGIN["username"], LOGIN["password"], LOGIN["enable_secret"]))
    fake.start()
    yield fake
    fake.stop()


class Clock:
    """Wall-clock time the test moves: the backup schedule reads it."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def build(device: IosDevice, state_dir: Path, clock: Callable[[], float] = time.time, **options: Any) -> \
        CiscoCliCollector:
    assert device.address is not None
    context = CollectorContext("acme", "sw-acme-01", state_dir, secret=_no_secret, clock=clock)
    return PLUGIN.factory(PLUGIN.options.model_validate({"port": device.address[1], **options}), context)


def _no_secret(ref: Any) -> str:
    raise KeyError(ref)


def target(credentials: dict[str, str] | None = None) -> Target:
    return Target("sw-acme-01", "127.0.0.1", 1161, dict(LOGIN if credentials is None else credentials), BASE_TAGS)


async def collect(collector: CiscoCliCollector, credentials: dict[str, str] | None = None) -> Sink:
    sink = Sink(BASE_TAGS, time.time_ns)
    await collector.collect(target(credentials), sink)
    return sink


def of(samples: Sink | list[Sample], measurement: str) -> list[Sample]:
    return [s for s in samples if s.measurement == measurement]


async def run_poll(collector: CiscoCliCollector, credentials: dict[str, str] | None = None,
                   timeout_s: float = 30) -> list[Sample]:
    """One run through the scheduler's run_poll: the samples and the `collection` sample."""
    from agent.inventory import Poll
    from agent.scheduler import Scheduler

    poll = Poll(target=target(credentials), collector="cisco_cli", options=collector.options, interval_s=60,
                timeout_s=timeout_s, jitter_s=0)

    async def discard(_samples: Any) -> None:
        return None

    # samples stamped by the collector's clock, as the agent's are by its own
    clock_ns = lambda: int(collector.context.clock() * 1e9)  # noqa: E731
    return await Scheduler([poll], lambda _poll: collector, discard, clock_ns=clock_ns).run_poll(poll)


def status(samples: list[Sample]) -> dict[str, Any]:
    (collection,) = of(samples, "collection")
    return dict(collection.fields)
