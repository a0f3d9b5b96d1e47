"""`vigie lab` as an operator runs it: a lab in a subprocess, its listing, its children.

The commands run as ``python -m lab.cli lab ...``: the parser `vigie lab` loads through its
``vigie.commands`` entry point, tested here without depending on vigie's loader (the quick start
test goes through `vigie` itself). Every wait polls for an outcome with a generous deadline;
nothing asserts how long a step took.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LAB = [sys.executable, "-m", "lab.cli", "lab"]
DEADLINE_S = 60.0


def free_ports() -> list[str]:
    """``--X-port 0`` for every port option of the installed lab services: labs of several tests
    at once (pytest-xdist) never race for a fixed port."""
    from lab.services import ServiceRegistry

    parser = argparse.ArgumentParser()
    for service in ServiceRegistry.installed().services.values():
        service.add_options(parser)
    options = [o for action in parser._actions for o in action.option_strings if o.endswith("-port")]
    return [arg for option in options for arg in (option, "0")]


def env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    # The lab reads VIGIE_* like the agent: the tests' own environment must not leak into it.
    out = {k: v for k, v in os.environ.items() if not k.startswith("VIGIE_")}
    out["PYTHONUNBUFFERED"] = "1"
    out.update(extra or {})
    return out


def lab(*args: str, runtime_dir: Path, timeout: float = DEADLINE_S) -> subprocess.CompletedProcess[str]:
    """One `vigie lab` command (fault, clear, status), run to completion."""
    return subprocess.run(
        [*LAB, *args, "--runtime-dir", str(runtime_dir)],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class RunningLab:
    """`vigie lab up` in a subprocess, on free ports, in its own runtime directory."""

    def __init__(
        self,
        estate: str,
        runtime_dir: Path,
        extra: Sequence[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ):
        self.runtime_dir = runtime_dir
        self.environ = env(environ)
        extra = free_ports() if extra is None else extra
        self.command = [*LAB, "up", "--estate", estate, "--runtime-dir", str(runtime_dir), *extra]
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.process: subprocess.Popen[str] | None = None
        self.info: dict[str, Any] = {}

    def start(self) -> RunningLab:
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, env=self.environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(DEADLINE_S) or not self.ready:
            self.stop()
            raise AssertionError("the lab did not come up:\n" + self.output)
        self.info = json.loads((self.runtime_dir / "lab.json").read_text())
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("ready"):
                self._ready.set()
        self._ready.set()  # EOF: the lab exited

    @property
    def ready(self) -> bool:
        return any(line.startswith("ready") for line in self.lines)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def snmp_port(self) -> int:
        return int(self.info["environment"]["VIGIE_LAB_SNMP_PORT"]["value"])

    def url(self, device: str) -> str:
        return str(self.info["devices"][device].split()[0])

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait(self, timeout: float = DEADLINE_S) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.signal(signal.SIGTERM)
        return self.wait()

    def __enter__(self) -> RunningLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def parent_of(pid: int) -> int | None:
    """PPID from /proc (None once the process is gone, zombie included)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None
    return None if fields[0] == "Z" else int(fields[1])


def wait_gone(pid: int, deadline_s: float = DEADLINE_S) -> bool:
    """Poll until ``pid`` no longer runs (gone or a zombie); False after the deadline."""
    limit = time.monotonic() + deadline_s
    while parent_of(pid) is not None:
        if time.monotonic() > limit:
            return False
        time.sleep(0.05)
    return True
