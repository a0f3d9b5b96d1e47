"""`vigie run` sets the cyclic garbage collector's thresholds of a long-running poller."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from agent import cli
from tests.agent.test_watchdog import write_config


def test_vigie_run_collects_young_garbage_less_often(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Python's (700, 10, 10) promote every poll in flight to the old generation and rescan the
    # whole heap every few seconds at a thousand switches (agent/cli.py RUN_GC_THRESHOLDS).
    applied: list[tuple[int, ...]] = []
    monkeypatch.setattr(gc, "set_threshold", lambda *thresholds: applied.append(thresholds))
    assert cli.main(["run", "--config", str(write_config(tmp_path)), "--duration", "0.5"]) == 0
    assert applied == [cli.RUN_GC_THRESHOLDS]
