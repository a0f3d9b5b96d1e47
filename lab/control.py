"""Where a running lab lives and how `vigie lab fault|clear|status` talk to it.

A running lab holds its runtime directory (``$VIGIE_LAB_RUNTIME_DIR``, or ``vigie-lab-<uid>`` in the
temporary directory) with an exclusive lock for its whole life, serves ``control.sock`` in it (a Unix
socket: one JSON request line, one JSON answer line) and removes the directory when it stops. A
directory whose lock nobody holds was left by a lab that was killed: the next one clears it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RUNTIME_ENV = "VIGIE_LAB_RUNTIME_DIR"
REQUEST_TIMEOUT_S = 30.0


class LabBusy(RuntimeError):
    pass


class NoLab(RuntimeError):
    pass


def default_runtime_dir(environ: Mapping[str, str]) -> Path:
    return Path(environ.get(RUNTIME_ENV) or Path(tempfile.gettempdir()) / f"vigie-lab-{os.getuid()}")


class RuntimeDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path / "lab.lock"
        self.info_path = path / "lab.json"
        self.control_path = path / "control.sock"
        self._lock_fd: int | None = None

    def claim(self) -> list[str]:
        """Take the directory for this lab; LabBusy naming the lab that holds it. Returns notes
        about what a killed lab had left behind (removed)."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(self.path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            raise LabBusy(f"{self.path}: not a directory of ours; set {RUNTIME_ENV} or --runtime-dir")
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise LabBusy(
                    f"a lab is already running in {self.path} ({self._holder()}): stop it, or give "
                    f"this one its own --runtime-dir"
                ) from None
            # The lab that held it may have removed the directory meanwhile: lock the file that is there.
            try:
                same = os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock_fd = fd
        notes = []
        leftovers = [p for p in self.path.iterdir() if p != self.lock_path]
        if leftovers:
            notes.append(f"removed what a lab that did not stop left in {self.path} ({self._holder()})")
            for item in leftovers:
                if item.is_dir() and not item.is_symlink():
                    shutil.rmtree(item)
                else:
                    item.unlink()
        return notes

    def write_info(self, info: Mapping[str, Any]) -> None:
        partial = self.info_path.with_suffix(".partial")
        partial.write_text(json.dumps(info, indent=1), encoding="utf-8")
        partial.replace(self.info_path)

    def release(self) -> None:
        """Remove the directory, then let go of the lock."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _holder(self) -> str:
        try:
            info = json.loads(self.info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return "no lab.json"
        return f"pid {info.get('pid')}, estate {info.get('estate')}"


def request(runtime_dir: Path, message: Mapping[str, Any]) -> dict[str, Any]:
    """Send one request to the lab running in ``runtime_dir``; its answer (``ok`` false: ``error``)."""
    path = runtime_dir / "control.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(REQUEST_TIMEOUT_S)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise NoLab(
                f"no lab running in {runtime_dir} (no one answers on {path}): start one with "
                f"`vigie lab up --estate NAME`, or give its --runtime-dir / ${RUNTIME_ENV}"
            ) from None
        sock.sendall(json.dumps(message).encode() + b"\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    if not answer:
        raise NoLab(f"the lab in {runtime_dir} closed the connection without answering")
    return json.loads(answer)
