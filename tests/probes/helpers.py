"""What the probe tests share: a sink like the scheduler's, a probe run the way the agent runs it,
the real alert engine with a plugin's default rules, and `vigie collect` as a subprocess."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.api import CollectorContext, PluginSpec, Sample, Sink, Target
from agent.inventory import Poll
from agent.plugins import Plugins
from agent.runner import CollectorFactory
from agent.scheduler import Scheduler
from alerting.engine import AlertEngine

ROOT = Path(__file__).resolve().parents[2]
VIGIE = [sys.executable, "-m", "agent.cli"]
BASE_TAGS = {"client": "acme", "site": "hq", "device": "probe-target"}
T0 = 1_800_000_000.0  # 2027-01-15: every test's "now"


def target(address: str = "127.0.0.1", credentials: dict[str, Any] | None = None) -> Target:
    return Target(name="probe-target", address=address, credentials=credentials or {}, tags=BASE_TAGS)


def context(state_dir: Path | None = None, clock: Callable[[], float] = lambda: T0) -> CollectorContext:
    """What the agent builds a probe with; a probe that writes nothing needs no real directory."""
    return CollectorContext(
        client="acme", device="probe-target", state_dir=state_dir or Path("/nonexistent/vigie-test"),
        secret=_no_secret, clock=clock,
    )


def _no_secret(ref: Any) -> str:
    raise KeyError(ref)


def sink(now: float = T0) -> Sink:
    return Sink(BASE_TAGS, lambda: int(now * 1e9))


async def run_poll(spec: PluginSpec, options: Any, tgt: Target, timeout_s: float = 20) -> list[Sample]:
    """One run through the scheduler's run_poll: the samples and the `collection` sample."""
    validated = spec.options.model_validate(options) if isinstance(options, dict) else options
    poll = Poll(target=tgt, collector=spec.name, options=validated, interval_s=60, timeout_s=timeout_s, jitter_s=0)
    make_collector = CollectorFactory(Plugins([spec]), Path("/nonexistent/vigie-test"), _no_secret)
    scheduler = Scheduler([poll], make_collector, _discard)
    return await scheduler.run_poll(poll)


async def _discard(_samples: Sequence[Sample]) -> None:
    return None


def status(samples: Sequence[Sample]) -> dict[str, Any]:
    (collection,) = [s for s in samples if s.measurement == "collection"]
    return dict(collection.fields)


def of(samples: Sequence[Sample], measurement: str) -> list[Sample]:
    return [s for s in samples if s.measurement == measurement]


def engine(tmp_path: Path, spec: PluginSpec) -> AlertEngine:
    """The real alert engine with the plugin's default rules only."""
    return AlertEngine(str(tmp_path / "alerts.db"), spec.default_rules(), clock=lambda: T0)


def firing(engine_: AlertEngine) -> list[tuple[str, str, str]]:
    return sorted((a.rule, a.severity, a.summary) for a in engine_.firing())


def vigie_collect(*args: str, prefix: Sequence[str] = (), timeout_s: float = 60) -> tuple[int, list[dict], str]:
    """`vigie collect ARGS --json` in a subprocess: exit status, the JSON lines, stderr."""
    done = subprocess.run(
        [*prefix, *VIGIE, "collect", *args, "--json"], capture_output=True, text=True, timeout=timeout_s, cwd=ROOT
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return done.returncode, lines, done.stderr


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
