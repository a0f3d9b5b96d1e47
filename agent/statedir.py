"""The agent's state directory: the one place that names its files, and the lock that keeps a
second agent off it.

Two agents writing one state directory would interleave alert transitions and open tickets
twice; ``StateDir.lock()`` refuses the second, naming the holder (pid and host).
"""

from __future__ import annotations

import fcntl
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import IO


class StateDirLocked(RuntimeError):
    pass


@dataclass(frozen=True)
class StateDir:
    path: Path

    @property
    def state_db(self) -> Path:
        """Rollups: latest values, state intervals, daily aggregates (agent/state.py)."""
        return self.path / "state.sqlite"

    @property
    def alerts_db(self) -> Path:
        return self.path / "alerts.sqlite"

    @property
    def outbox_db(self) -> Path:
        """The ticket outbox and alert <-> ticket links (alerting/notifier.py)."""
        return self.path / "ticket-outbox.sqlite"

    @property
    def notifications_db(self) -> Path:
        """What was sent to people: escalations, on-call, the client's perimeter (alerting/contacts.py)."""
        return self.path / "notifications.sqlite"

    @property
    def maintenance_file(self) -> Path:
        """Maintenance windows added by `vigie maintenance add` (the config has its own)."""
        return self.path / "maintenance.json"

    @property
    def lock_file(self) -> Path:
        return self.path / "agent.lock"

    def create(self) -> StateDir:
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def lock(self) -> IO[str]:
        """Hold the directory for this process until the returned file is closed (or the process
        dies: the kernel releases a flock with its holder, so a SIGKILL leaves no stale lock)."""
        self.create()
        handle = open(self.lock_file, "a+", encoding="utf-8")  # noqa: SIM115 - held for the agent's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise StateDirLocked(
                f"{self.path}: state directory in use by {holder}; give this agent its own --state-dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        return handle
