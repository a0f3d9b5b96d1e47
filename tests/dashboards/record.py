"""Record what the agent emits against the lab: `python -m tests.dashboards.record [ESTATE ...]`.

For each estate (default: every lab estate), `vigie lab up` runs on free ports, the real agent runs
on that estate at a quick pace (every poll each `PACE_S`, so counters give rates by the second
poll) for `RUN_S`, and every sample its pipeline saw is written, with its timestamp made relative
to the end of the run, to `fixtures/lab_samples.jsonl.gz`. The dashboards' test replays them into
a real VictoriaMetrics through vigie's InfluxStore (tests/dashboards/test_victoria.py).

Faults (`FAULTS`) are set while the agent runs so that the "problems now" panels have something to
count: a switch down, a vCenter alarm, a Microsoft 365 incident, traps and syslog lines (the
receivers are added to the estate: the lab's estates configure none), a changed SSH host key. The
estate also gets a heartbeat directory (`vigie_heartbeat`).

What is kept is thinned (`thin`): the test needs a value for each kind of series, not an hour of
every one of them, and the vsgp estate alone writes tens of thousands of samples a minute.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import yaml

from agent.api import Sample
from agent.config import load_config
from agent.runner import Agent
from lab.estate import ESTATES_DIR, LAB_SECRETS
from lab.snmpsim import free_udp_port
from tests.lab.helpers import RunningLab, lab

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "lab_samples.jsonl.gz"
ESTATES = ("vsgp", "ofdt", "mlhg")
PACE_S = 15.0
RUN_S = 50.0
KEEP_PER_SERIES = 2
SERIES_PER_DEVICE = 12
FAULTS = {
    "vsgp": [
        ("vsgp/sw-antony-conservatoire-03", "down"),
        ("vsgp/vcenter", "vsphere-alarm", "esx-siege-1", "Host connection and power state", "red"),
        ("vsgp/vcenter", "vsphere-snapshot", "vm-siege-04", "100"),
        ("vsgp/m365", "m365-incident"),
        ("vsgp/sw-siege-03", "ios-port-err-disabled"),
    ],
}
# Once the agent runs: its receivers listen, its first SSH contact has recorded the host's key.
EVENTS = {
    "vsgp": [("vsgp/ups-siege-1", "trap", "ups-on-battery"), ("vsgp/sw-siege-03", "syslog", "restart")],
    "ofdt": [("ofdt/vm-apps-docker", "ssh-host-key-changed")],
}

# The lab's devices share 127.0.0.1: a sender of events needs an address of its own (the lab sends from it).
SOURCES = {"vsgp": {"127.0.10.1": "vsgp/ups-siege-1", "127.0.10.2": "vsgp/sw-siege-03"}}


def with_receivers(estate: str, work: Path) -> Path:
    """The estate, with the trap and syslog receivers on free loopback ports (the lab sends to them)
    and a heartbeat directory."""
    raw = yaml.safe_load((ESTATES_DIR / f"{estate}.yaml").read_text(encoding="utf-8"))
    raw["agent"].setdefault("services", {}).update({
        "snmp_traps": {"address": "127.0.0.1", "port": free_udp_port(), "health_interval_s": PACE_S,
                       "sources": SOURCES.get(estate, {})},
        "syslog": {"address": "127.0.0.1", "udp_port": free_udp_port(), "tcp_port": None,
                   "health_interval_s": PACE_S, "sources": SOURCES.get(estate, {})},
    })
    raw["agent"]["heartbeat_dir"] = str(work / "heartbeat")  # vigie_heartbeat: the agent's own beat
    path = work / f"{estate}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _fault(runtime: Path, target: str, kind: str, *args: str) -> None:
    done = lab("fault", target, kind, *args, runtime_dir=runtime)
    if done.returncode:
        raise RuntimeError(f"vigie lab fault {target} {kind}: {done.stderr or done.stdout}")


async def _run_agent(estate: Path, environ: dict[str, str], work: Path, runtime: Path) -> list[Sample]:
    secrets = work / "secrets.yaml"
    shutil.copy(LAB_SECRETS, secrets)
    secrets.chmod(0o600)
    environ = {**environ, "VIGIE_STATE_DIR": str(work / "state")}
    config = load_config(estate, secrets_path=secrets, environ=environ)
    agent = Agent(config, state_dir=work / "state", health_interval_s=PACE_S)
    agent.polls = [replace(p, interval_s=PACE_S, timeout_s=PACE_S - 1, jitter_s=1.0) for p in agent.polls]
    seen: list[Sample] = []
    agent.sample_listeners.append(seen.extend)
    await agent.start()
    try:
        await asyncio.sleep(PACE_S)
        for event in EVENTS.get(estate.stem, []):
            await asyncio.to_thread(_fault, runtime, *event)
        await asyncio.sleep(RUN_S - PACE_S)
    finally:
        await agent.stop()
    return seen


def record(estate: str) -> list[Sample]:
    with tempfile.TemporaryDirectory(prefix=f"vigie-record-{estate}-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # snmpsim runs as `nobody` under root
        path = with_receivers(estate, work)
        with RunningLab(str(path), work / "lab") as running:
            for fault in FAULTS.get(estate, []):
                _fault(running.runtime_dir, *fault)
            environ = {name: str(v["value"]) for name, v in running.info["environment"].items()}
            return asyncio.run(_run_agent(path, environ, work, running.runtime_dir))


def rows_of(samples: list[Sample]) -> list[dict[str, object]]:
    end_ns = max(s.timestamp_ns for s in samples)
    return [{"measurement": s.measurement, "tags": dict(s.tags), "fields": dict(s.fields),
             "age_ns": end_ns - s.timestamp_ns} for s in samples]


def _kinds(rows: list[dict[str, object]]) -> set[tuple[str, object]]:
    """What a series shows: each field it has a value for, and each boolean value it takes."""
    return {(name, value if isinstance(value, bool) else "set")
            for row in rows for name, value in row["fields"].items() if value is not None}  # type: ignore[attr-defined]


def thin(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """The newest `KEEP_PER_SERIES` rows of each series, and of a measurement's series on one device
    the first `SERIES_PER_DEVICE` and those showing what the kept ones do not (a port err-disabled
    among 48 connected, the one VM with a snapshot): a panel is fed no better by 52 interfaces."""
    series: dict[tuple[object, ...], list[dict[str, object]]] = {}
    for row in rows:
        key = (row["measurement"], tuple(sorted(row["tags"].items())))  # type: ignore[attr-defined]
        series.setdefault(key, []).append(row)
    seen: dict[tuple[object, ...], tuple[int, set[tuple[str, object]]]] = {}
    kept = []
    for (measurement, tags), of_series in sorted(series.items(), key=lambda item: str(item[0])):
        newest = sorted(of_series, key=lambda r: -r["age_ns"])[-KEEP_PER_SERIES:]  # type: ignore[operator]
        device = (measurement, dict(tags).get("client"), dict(tags).get("device"))
        count, shown = seen.get(device, (0, set()))
        kinds = _kinds(newest)
        if count < SERIES_PER_DEVICE or not kinds <= shown:
            kept += newest
            seen[device] = (count + 1, shown | kinds)
    return kept


def main(argv: list[str]) -> int:
    rows: list[dict[str, object]] = []
    for estate in argv or ESTATES:
        started = time.monotonic()
        samples = record(estate)
        kept = thin(rows_of(samples))
        rows += kept
        print(f"{estate}: {len(samples)} samples, {len(kept)} kept, {time.monotonic() - started:.0f} s")
    with gzip.open(FIXTURE, "wt", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
    print(f"{FIXTURE}: {len(rows)} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
