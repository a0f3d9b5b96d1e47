"""What the vsphere tests share: the collector built as the agent builds it, one run through the
scheduler with the inventory's piggyback lookup, the real alert engine over the plugin's rules."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.api import CollectorContext, Sample, Target
from agent.inventory import Poll
from agent.scheduler import Scheduler
from alerting.engine import AlertEngine
from collectors.vsphere import PLUGIN, VsphereCollector, VsphereOptions

from .conftest import PASSWORD, PIGGYBACKED, USERNAME

TAGS = {"client": "acme", "site": "dc", "device": "vcenter"}


def collector(options: dict[str, Any], clock: Any = time.time) -> VsphereCollector:
    context = CollectorContext(client="acme", device="vcenter", state_dir=Path("/nonexistent/vigie-test"),
                               secret=lambda ref: "", clock=clock)
    return VsphereCollector(VsphereOptions.model_validate(options), context)


def _device_tags(client: str, name: str) -> dict[str, str] | None:
    if client == "acme" and name in PIGGYBACKED:
        return {"client": "acme", "site": "dc", "device": name}
    return None


async def run(vsphere: VsphereCollector, password: str = PASSWORD, timeout_s: float = 30) -> list[Sample]:
    """One run as the scheduler makes it: the samples, the `collection` sample last."""
    target = Target(name="vcenter", address="127.0.0.1", credentials={"username": USERNAME, "password": password},
                    tags=TAGS)
    poll = Poll(target=target, collector="vsphere", options=vsphere.options, interval_s=60, timeout_s=timeout_s,
                jitter_s=0)
    scheduler = Scheduler([poll], lambda _poll: vsphere, _discard, device_tags=_device_tags)
    return await scheduler.run_poll(poll)


async def _discard(_samples: Sequence[Sample]) -> None:
    return None


def of(samples: Sequence[Sample], measurement: str) -> list[Sample]:
    return [s for s in samples if s.measurement == measurement]


def status(samples: Sequence[Sample]) -> tuple[str, str | None]:
    (collection,) = of(samples, "collection")
    return collection.fields["status"], collection.fields.get("error")


def calls(samples: Sequence[Sample]) -> int:
    (vcenter,) = of(samples, "vsphere_vcenter")
    return vcenter.fields["api_calls"]


def engine(tmp_path: Path) -> AlertEngine:
    # samples are stamped with the wall clock (the scheduler's): the engine runs on it too
    return AlertEngine(str(tmp_path / "alerts.db"), PLUGIN.default_rules(), clock=time.time,
                       non_identifying_tags=PLUGIN.descriptive_tags)


def firing(engine_: AlertEngine) -> list[tuple[str, str, str]]:
    return sorted((a.rule, a.severity, a.summary) for a in engine_.firing())
