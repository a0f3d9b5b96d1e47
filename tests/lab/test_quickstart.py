"""The README's quick start, followed as written, in a fresh directory (a new operator's first hour).

The shell block of README.md's "Quick start" section is run line by line from a temporary directory
holding a checkout's `lab/` and `.venv/` (links to this one), with three things a test must do
differently, and only those:

- `/etc/vigie` is `<tmp>/etc/vigie` (a test does not write /etc);
- `make demo` is not run (it builds the .venv this test runs in, then plays the demo) and
  `. .venv/bin/activate` is its effect on the environment (PATH, VIRTUAL_ENV);
- the lab and the agent read free ports (VIGIE_LAB_SNMP_PORT, VIGIE_VSGP_GLPI_URL) and the lab its
  own runtime directory from the environment, so that two test runs never meet.

A line ending in `&` runs in the background, as a job: the next line waits for what an operator
waits for (the lab's `ready` line, the agent's state directory), and `kill %N ...` stops those jobs
in order. Every wait polls for an outcome under a deadline; nothing asserts how long a step took.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .helpers import DEADLINE_S, ROOT, env

README = ROOT / "README.md"


def quick_start() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Quick start", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("\n```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Job:
    line: str
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("ready"):
                self.ready.set()
        self.ready.set()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Shell:
    """Runs the quick start's lines as an operator's shell would, and keeps what each did."""

    cwd: Path
    environ: dict[str, str]
    jobs: list[Job] = field(default_factory=list)
    ran: list[tuple[str, int, str]] = field(default_factory=list)  # (line, exit status, output)

    def run(self, line: str) -> None:
        command = re.sub(r"\s+#.*$", "", line).strip().replace("/etc/vigie", str(self.cwd / "etc" / "vigie"))
        if command == "make demo":
            return
        if command == ". .venv/bin/activate":
            venv = self.cwd / ".venv"
            self.environ.update(VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}{os.pathsep}{self.environ['PATH']}")
            return
        if kills := re.fullmatch(r"kill((?: %\d+)+)", command):
            for number in kills.group(1).split():
                self.stop(self.jobs[int(number[1:]) - 1])
            return
        if command.endswith("&"):
            self.background(command[:-1].strip())
            return
        result = subprocess.run(
            ["bash", "-c", command], cwd=self.cwd, env=self.environ, capture_output=True, text=True, timeout=DEADLINE_S
        )
        self.ran.append((line, result.returncode, result.stdout + result.stderr))

    def background(self, command: str) -> None:
        process = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=self.cwd,
            env=self.environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        job = Job(command, process)
        self.jobs.append(job)
        threading.Thread(target=job.read, daemon=True).start()
        if command.startswith("vigie lab up"):
            # The operator waits for the lab to say it is ready.
            assert job.ready.wait(DEADLINE_S) and process.poll() is None, f"{command}:\n{job.output}"
        elif command.startswith("vigie run"):
            # ... and for the agent to have started on its state directory.
            state = self.cwd / "var" / "vsgp"
            limit = time.monotonic() + DEADLINE_S
            while not (state / "alerts.sqlite").exists():
                assert process.poll() is None, f"{command} exited with {process.returncode}:\n{job.output}"
                assert time.monotonic() < limit, f"{command}: no {state / 'alerts.sqlite'}:\n{job.output}"
                time.sleep(0.1)

    def stop(self, job: Job) -> None:
        if job.process.poll() is None:
            job.process.send_signal(signal.SIGTERM)
        status = job.process.wait(DEADLINE_S)
        self.ran.append((f"kill %{self.jobs.index(job) + 1} ({job.line})", status, job.output))

    def stop_all(self) -> None:
        for job in reversed(self.jobs):
            if job.process.poll() is None:
                job.process.kill()
                job.process.wait()


def test_the_quick_start_works_as_written(tmp_path: Path) -> None:
    lines = quick_start()
    assert any(line.startswith("vigie lab up --estate vsgp &") for line in lines)
    for name in ("lab", ".venv"):
        (tmp_path / name).symlink_to(ROOT / name)
    glpi_port = free_port(socket.SOCK_STREAM)
    shell = Shell(
        tmp_path,
        env(
            {
                "VIGIE_LAB_SNMP_PORT": str(free_port(socket.SOCK_DGRAM)),
                "VIGIE_VSGP_GLPI_URL": f"http://127.0.0.1:{glpi_port}/apirest.php",
                "VIGIE_LAB_RUNTIME_DIR": str(tmp_path / "lab-runtime"),
            }
        ),
    )
    try:
        for line in lines:
            shell.run(line)
    finally:
        shell.stop_all()

    report = "\n\n".join(f"$ {line}\n[exit {status}]\n{output}" for line, status, output in shell.ran)
    assert [line for line, status, _ in shell.ran if status != 0] == [], report

    by_line = {line.split("  #")[0].strip(): output for line, _, output in shell.ran}
    collected = (
        by_line[
            "vigie collect --config /etc/vigie/vigie.yaml --secrets /etc/vigie/secrets.yaml "
            "--device vsgp/dist-siege --json"
        ]
        .strip()
        .splitlines()
    )
    last = json.loads(collected[-1])
    assert (last["measurement"], last["tags"]["device"], last["fields"]["status"]) == ("collection", "dist-siege", "ok")
    assert "faults: vsgp/dist-siege down" in by_line["vigie lab status"]
    assert "GLPI of vsgp: " in by_line["vigie lab status"] and f"127.0.0.1:{glpi_port}" in by_line["vigie lab status"]
    assert (
        f"vsgp: tickets in glpi:\n  http://127.0.0.1:{glpi_port}/apirest.php"
        in by_line["vigie tickets --config /etc/vigie/vigie.yaml"]
    )
    assert not (tmp_path / "lab-runtime").exists()  # `kill %1` stopped the lab cleanly
