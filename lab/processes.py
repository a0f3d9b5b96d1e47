"""Child processes of the lab that cannot outlive it (Linux).

Each child leads its own process group, so Ctrl-C in the terminal reaches the lab alone (which then
stops its children in order) and a stop reaches whatever the child forked. The kernel sends the
child SIGTERM when the lab dies, SIGKILL included (``PR_SET_PDEATHSIG``). That signal follows the
*thread* that forked: start children from a thread that lives as long as they do (the main
thread, or the event loop's). It is also cleared when the child changes its user (snmpsim drops
to nobody when started as root): such a Python child takes a *lifeline* instead, a pipe whose
other end the lab holds, and calls :func:`watch_lifeline` before dropping privileges; the pipe
closes with the lab however the lab ends, and the child exits.

    child = Child("snmp", [sys.executable, "-m", "lab.snmp_responder", ...], log=runtime / "snmp.log")
    child.start()
    ...
    child.stop()          # SIGTERM to the group, SIGKILL after the grace period, reaped
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import select
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

PR_SET_PDEATHSIG = 1
LIFELINE_ENV = "VIGIE_LAB_LIFELINE_FD"
_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl


class ChildError(RuntimeError):
    pass


def _die_with(parent: int) -> None:
    """Runs in the child between fork and exec: nothing that could take a lock."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the prctl: nobody would signal us
        os._exit(1)


def watch_lifeline() -> None:
    """In a child started with ``lifeline=True``: exit as soon as the lab is gone."""
    fd = os.environ.get(LIFELINE_ENV)
    if fd is None:
        return

    def watch() -> None:
        os.read(int(fd), 1)  # returns at EOF: the lab's end of the pipe closed
        os._exit(1)

    threading.Thread(target=watch, name="lab lifeline", daemon=True).start()


class Child:
    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        log: Path,
        pass_fds: Sequence[int] = (),
        env: Mapping[str, str] | None = None,
        stdout_pipe: bool = False,
        lifeline: bool = False,
    ) -> None:
        # stdout_pipe: the child prints one line when it is ready (read_line) and nothing more on
        # stdout, which nobody drains afterwards.
        self.name = name
        self.command = list(command)
        self.log = log
        self.pass_fds = tuple(pass_fds)
        self.env = dict(env) if env is not None else None
        self.stdout_pipe = stdout_pipe
        self.lifeline = lifeline
        self.process: subprocess.Popen[bytes] | None = None
        self._pidfd: int | None = None
        self._lifeline_fd: int | None = None  # the lab's end

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ChildError(f"{self.name}: not started")
        return self.process.pid

    def start(self) -> None:
        parent = os.getpid()
        pass_fds, env = self.pass_fds, self.env
        if self.lifeline:
            child_end, self._lifeline_fd = os.pipe()
            pass_fds = (*pass_fds, child_end)
            env = {**(env if env is not None else os.environ), LIFELINE_ENV: str(child_end)}
        try:
            with open(self.log, "ab") as log:
                self.process = subprocess.Popen(
                    self.command,
                    stdin=subprocess.DEVNULL,
                    # stdout as a pipe when the parent waits for a "ready" line; stderr always to the log
                    stdout=subprocess.PIPE if self.stdout_pipe else log,
                    stderr=log,
                    pass_fds=pass_fds,
                    env=env,
                    process_group=0,
                    preexec_fn=lambda: _die_with(parent),
                )
        finally:
            if self.lifeline:
                os.close(child_end)
        self._pidfd = os.pidfd_open(self.process.pid)

    def read_line(self, timeout_s: float) -> str:
        """The next line the child prints (``stdout_pipe``); ChildError if it exits or stays
        silent for ``timeout_s``."""
        assert self.process is not None and self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout, self._pidfd], [], [], timeout_s)
        if self.process.stdout in ready:
            line = self.process.stdout.readline().decode(errors="replace")
            if line:
                return line.rstrip("\n")
        if ready:
            self.process.wait()
            raise ChildError(f"{self.name} exited with {self.process.returncode}: {self.log_tail()}")
        raise ChildError(f"{self.name} said nothing within {timeout_s:g} s: {self.log_tail()}")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def exited(self) -> int:
        """Wait (without polling) until the child exits; its return code."""
        assert self.process is not None and self._pidfd is not None
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        loop.add_reader(self._pidfd, lambda: done.done() or done.set_result(None))
        try:
            await done
        finally:
            loop.remove_reader(self._pidfd)
        return self.process.wait()

    def stop(self, grace_s: float = 5.0) -> int | None:
        """SIGTERM to the child's process group, SIGKILL to what is left after ``grace_s``; reaped.
        Returns the child's return code (None if it was never started)."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            self._signal_group(signal.SIGTERM)
            select.select([self._pidfd], [], [], grace_s)
            # The leader is a zombie until reaped, so its group id cannot be reused yet: what it
            # forked is killed without any risk of signalling a stranger.
            self._signal_group(signal.SIGKILL)
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        for fd in (self._pidfd, self._lifeline_fd):
            if fd is not None:
                os.close(fd)
        self._pidfd = self._lifeline_fd = None
        return self.process.returncode

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            pass
