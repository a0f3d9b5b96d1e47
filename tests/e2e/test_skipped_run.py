"""A skipped run (the previous one overran its interval) is no news about the device: it must not
resolve a firing device_unreachable alert nor solve its ticket.

Found by test_unreachable.py: with `timeout_s == interval_s` (a legal config) a dead device's run
and its next turn race, the scheduler emits `collection status=skipped`, and the rule
`status in ('unreachable', 'timeout')` read it as a recovery. Here the `Agent` runs in process and
the skipped sample goes in through the pipeline, the scheduler's own path, so the race is not needed.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from pathlib import Path

from agent.api import Sample
from agent.api.alerts import AlertTransition
from agent.config import load_config
from agent.runner import Agent
from alerting.notifier import DispatchResult

from .helpers import device, eventually, ticket_links, unreachable_rule, write_estate


async def test_skipped_run_keeps_device_unreachable_firing(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config, secrets = write_estate(
        tmp_path, {"acme": [device("dead", port, interval_s=3600, timeout_s=10)]}, [unreachable_rule(for_s=0)]
    )
    agent = Agent(load_config(config, secrets_path=secrets), state_dir=tmp_path / "state")
    state = tmp_path / "state"
    seen_skipped: list[Sample] = []
    after_skipped: list[Sequence[AlertTransition]] = []

    def on_samples(samples: Sequence[Sample]) -> None:
        seen_skipped.extend(s for s in samples if s.fields.get("status") == "skipped")

    def on_alerts(transitions: Sequence[AlertTransition], _result: DispatchResult) -> None:
        if seen_skipped:
            after_skipped.append(transitions)

    agent.sample_listeners.append(on_samples)
    agent.listeners.append(on_alerts)
    await agent.start()
    try:
        await eventually(lambda: agent.engine.firing(), "device_unreachable to fire on the first poll")
        await eventually(lambda: [r for r in ticket_links(state) if r[1] == "open"], "its ticket")
        skipped = Sample(
            "collection",
            {"client": "acme", "site": "hq", "device": "dead", "collector": "snmp"},
            {"status": "skipped", "reachable": None, "duration_s": None, "samples": 0,
             "error": "previous run overran its interval"},
            time.time_ns(),
        )
        await agent.pipeline.submit([skipped])
        await eventually(lambda: after_skipped, "the alert lane to take the skipped sample")
        assert after_skipped == [[]]  # no transition
        assert [a.rule for a in agent.engine.firing()] == ["device_unreachable"]
        assert [(rule, st) for rule, st, _, _ in ticket_links(state)] == [("device_unreachable", "open")]
    finally:
        await agent.stop()
