"""`python -m lab.snmpsim serve` (snmpsim for SET, SNMPv3 and variation modules) leaves nothing behind."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from .helpers import DEADLINE_S, ROOT, children_of, env, parent_of, wait_gone


def serve() -> tuple[subprocess.Popen[str], int, Path]:
    """The serving process, its snmpsim child and the runtime directory it announced."""
    process = subprocess.Popen(
        [sys.executable, "-m", "lab.snmpsim", "serve", "--devices", "nas=qnap"],
        cwd=ROOT,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    match = re.search(r"\(runtime (.+)\)$", first.strip())
    assert match, first
    (child,) = children_of(process.pid)
    return process, child, Path(match.group(1))


def test_sigterm_stops_snmpsim_and_removes_its_runtime_dir() -> None:
    process, snmpsim, runtime = serve()
    assert parent_of(snmpsim) == process.pid
    process.send_signal(signal.SIGTERM)
    assert process.wait(DEADLINE_S) == 0
    assert parent_of(snmpsim) is None  # stopped and reaped, not re-parented to init
    assert not runtime.exists()


def test_snmpsim_dies_with_a_killed_parent() -> None:
    process, snmpsim, runtime = serve()
    process.send_signal(signal.SIGKILL)
    process.wait(DEADLINE_S)
    try:
        assert wait_gone(snmpsim), "snmpsim outlived its SIGKILLed parent"
    finally:
        shutil.rmtree(runtime, ignore_errors=True)  # only a clean stop can remove it
