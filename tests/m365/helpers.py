"""What the m365 tests share: the collector's options against a fake, one run through the
scheduler (the collection sample says how it ended), waits recorded instead of slept."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.api import CollectorContext, Sample, Target
from agent.inventory import Poll
from agent.scheduler import Scheduler
from collectors.m365 import M365Collector, M365Options
from lab.graph_fake import GraphFake

from .conftest import CLIENT_ID, CLIENT_SECRET, TENANT_ID

TAGS = {"client": "vsgp", "site": "cloud", "device": "m365"}


def options(fake: GraphFake, ca_file: Path, **extra: Any) -> M365Options:
    return M365Options.model_validate({
        "tenant_id": TENANT_ID, "client_id": CLIENT_ID, "authority_url": fake.url, "graph_url": fake.url,
        "ca_bundle": str(ca_file), **extra,
    })


class Waits:
    """The collector's ``sleep``: records what Retry-After asked, waits nothing."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)


def collector(opts: M365Options, waits: Waits | None = None, clock: Callable[[], float] = time.time) -> M365Collector:
    context = CollectorContext(client="vsgp", device="m365", state_dir=Path("/nonexistent/vigie-test"),
                               secret=lambda ref: "", clock=clock)
    return M365Collector(opts, context, sleep=waits or Waits())


async def run(m365: M365Collector, secret: str = CLIENT_SECRET, timeout_s: float = 30) -> list[Sample]:
    """One run as the scheduler makes it: the samples, the `collection` sample last."""
    target = Target(name="m365", address="127.0.0.1", credentials={"client_secret": secret}, tags=TAGS)
    poll = Poll(target=target, collector="m365", options=m365.options, interval_s=60, timeout_s=timeout_s,
                jitter_s=0)
    return await Scheduler([poll], lambda _poll: m365, _discard).run_poll(poll)


async def _discard(_samples: Sequence[Sample]) -> None:
    return None


def status(samples: Sequence[Sample]) -> tuple[str, str | None]:
    (collection,) = [s for s in samples if s.measurement == "collection"]
    return collection.fields["status"], collection.fields["error"]


def of(samples: Sequence[Sample], measurement: str) -> list[Sample]:
    return [s for s in samples if s.measurement == measurement]
