"""A disk that fills: `vigie run` with its state directory on a 4 MiB tmpfs the test mounts, filled to
the last byte while the agent polls, then freed. The agent keeps running, says what failed, and
its SQLite files pass `PRAGMA integrity_check` afterwards; it polls on once there is room again.
Not yet: an alert or a ticket of its own for the full disk (the agent only logs it)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.e2e.helpers import AgentProcess, collections, device, eventually, write_estate


@pytest.fixture
def small_disk(tmp_path: Path):
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): needs root / CAP_SYS_ADMIN")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory: Path) -> Path:
    filler = directory / "zz-filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
                os.fsync(out.fileno())
        except OSError:
            pass
    return filler


@pytest.mark.timeout(200)
async def test_a_full_disk_does_not_stop_the_agent_nor_corrupt_its_state(tmp_path: Path, small_disk: Path) -> None:
    config, secrets = write_estate(tmp_path, {"c": [device("sw", 9, interval_s=1, timeout_s=1)]}, [])
    raw = yaml.safe_load(config.read_text())
    raw["agent"]["store"] = {"kind": "sqlite"}
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    state = small_disk  # the agent's log goes beside it, on the test's own disk
    agent = AgentProcess(config, secrets, state)
    try:
        agent.start()
        await eventually(lambda: collections(state, "c", "sw"), "the first polls stored", agents=[agent])
        filler = fill(small_disk)
        await asyncio.sleep(6)  # polls go on while nothing can be written
        assert agent.alive, agent.log_text()
        said = agent.log_text(tail=200_000)
        assert "disk is full" in said or "No space left on device" in said, said[-3000:]
        filler.unlink()
        stored = len(collections(state, "c", "sw"))
        await eventually(lambda: len(collections(state, "c", "sw")) > stored + 2, "polls stored again",
                         agents=[agent], deadline_s=60)
        assert await agent.terminate() == 0
    finally:
        agent.ensure_stopped()
    for path in sorted(state.glob("*.sqlite")):
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",), path
