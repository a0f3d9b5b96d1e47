"""The store-outage drill, shared by tests/drills/test_store_outage.py (a short outage) and
bench/bench_drills.py (the issue's 10 minutes).

victoria-metrics takes points from the agent (tests/drills/outage_agent.py, InfluxDB store behind
its disk spool), is stopped for ``outage_s`` under load, the agent is SIGTERMed and started again in
the middle of the outage, the server comes back on the same port and data: every point handed to
the agent must be there exactly once, hostile tags as they were sent (counted through
/api/v1/export).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.drills import outage_agent
from tests.e2e.helpers import ROOT, device, eventually
from tests.stores.conftest import VictoriaMetrics


@dataclass
class OutageResult:
    sent: int
    stored: int
    duplicates: int
    missing: list[int]
    wrong_tags: list[dict[str, str]]
    sent_during_outage: int
    recovered_in_s: float


def write_config(tmp: Path, url: str) -> tuple[Path, Path]:
    secrets = tmp / "secrets.yaml"
    secrets.write_text(yaml.safe_dump({"influx-token": "drill", "lab-drill-sw": {"community": "public"}}))
    secrets.chmod(0o600)
    sw = device("sw", 9, interval_s=60)  # a device nobody answers: the agent needs one poll
    sw["credentials"] = "lab-drill-sw"
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump({
        "agent": {"state_dir": str(tmp / "state"),
                  "store": {"kind": "influxdb", "url": url, "org": "noc", "bucket": "vigie",
                            "token": {"secret": "influx-token"}}},
        "clients": [{"name": "drill", "display_name": "Drill", "sites": [{"name": "hq", "devices": [sw]}]}],
    }, sort_keys=False))
    return config, secrets


class DrillAgent:
    def __init__(self, config: Path, secrets: Path, progress: Path, base_ms: int, total: int, rate: float) -> None:
        self.args = [sys.executable, "-m", "tests.drills.outage_agent", "--config", str(config), "--secrets",
                     str(secrets), "--progress", str(progress), "--base-ms", str(base_ms), "--total", str(total),
                     "--rate", str(rate)]
        self.progress = progress
        self.log = progress.with_name("agent.log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    @property
    def sent(self) -> int:
        return outage_agent.read_progress(self.progress)

    async def terminate(self) -> None:
        assert self.proc is not None
        self.proc.terminate()
        code = await asyncio.to_thread(self.proc.wait, 60)
        assert code == 0, f"agent exited {code}\n{self.log.read_text()[-4000:]}"

    def ensure_stopped(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def count(vm: VictoriaMetrics, total: int, base_ms: int) -> OutageResult:
    seen: dict[int, int] = {}
    wrong_tags = []
    # line breaks and tabs travel as visible escapes (agent/stores/line_protocol.py)
    expected = [{k: v.replace("\n", "\\n").replace("\t", "\\t") for k, v in tags.items()}
                for tags in outage_agent.HOSTILE_TAGS]
    for labels, timestamps, values in vm.series(f'{{__name__="{outage_agent.MEASUREMENT}_seq"}}'):
        tags = {k: v for k, v in labels.items() if k not in ("__name__", "db")}
        if tags not in expected:
            wrong_tags.append(tags)
        for at, value in zip(timestamps, values, strict=True):
            seq = int(value)
            # a point at another time than it was sent is not that point
            seen[seq] = seen.get(seq, 0) + (1 if at == base_ms + seq else 1_000_000)
    return OutageResult(
        sent=total, stored=sum(seen.values()), duplicates=sum(n - 1 for n in seen.values() if n > 1),
        missing=[seq for seq in range(total) if seq not in seen], wrong_tags=wrong_tags,
        sent_during_outage=0, recovered_in_s=0.0,
    )


async def drill(tmp: Path, outage_s: float, rate: float, settle_s: float = 120.0) -> OutageResult:
    """Before the outage ``rate`` points/s for a few seconds; the outage; then until the total."""
    vm = VictoriaMetrics(tmp / "vm-data")
    vm.start()
    config, secrets = write_config(tmp, vm.url)
    total = int(rate * (outage_s + 8))
    base_ms = int(time.time() * 1000) - 3_600_000
    agent = DrillAgent(config, secrets, tmp / "progress", base_ms, total, rate)
    try:
        agent.start()
        await eventually(lambda: agent.sent >= rate * 2, "points before the outage")
        vm.stop()
        down_at, before = time.monotonic(), agent.sent
        await asyncio.sleep(outage_s / 2)
        await agent.terminate()  # SIGTERM in the middle of the outage
        agent.start()
        await asyncio.sleep(max(0.0, down_at + outage_s - time.monotonic()))
        during = agent.sent - before
        vm.start()
        back_at = time.monotonic()
        await eventually(lambda: agent.sent >= total, "every point handed to the agent", deadline_s=settle_s)
        await eventually(lambda: count(vm, total, base_ms).stored >= total, "every point in victoria-metrics",
                         deadline_s=settle_s)
        recovered = time.monotonic() - back_at
        await agent.terminate()
        result = count(vm, total, base_ms)
        result.sent_during_outage, result.recovered_in_s = during, recovered
        return result
    finally:
        agent.ensure_stopped()
        vm.stop()
