"""A real OpenSSH server (Debian's openssh-server) on a loopback port, for the Linux collector's
tests: its own sshd_config, host key and authorized_keys in a temporary directory, key login only,
for the user running the tests (root here and on CI: `PermitRootLogin prohibit-password`).

The commands the collector runs are the host's own (cat /proc/..., df, nproc, pg_isready) except
where the real thing cannot run in this sandbox: there is no Docker daemon and systemd is not PID 1,
and `apt-get -s upgrade` depends on package lists nobody can refresh offline. For those three,
stand-ins that print recorded outputs (tests/ssh/fixtures/linux/, provenance in its README) come
first in the session's PATH (sshd's `SetEnv`), and the tests change what they print (a container
stopped) through the files they read.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
FIXTURES = Path(__file__).parent / "fixtures" / "linux"
STAND_INS = ("docker", "systemctl", "apt-get")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path, kind: str = "ed25519") -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "vigie-test", "-f", str(path)], check=True)
    return path


@dataclass
class Sshd:
    directory: Path
    port: int
    user: str
    client_key: Path  # private key; authorized
    process: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        """Where the stand-ins read what they print (copied from the fixtures; tests edit them)."""
        return self.directory / "data"

    def config(self, host_keys: list[Path]) -> str:
        bin_dir = self.directory / "bin"
        return "\n".join([
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            *(f"HostKey {key}" for key in host_keys),
            f"PidFile {self.directory / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.directory / 'authorized_keys'}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "UsePAM no",
            "StrictModes no",  # the files live under /tmp, not in a home directory
            f"AllowUsers {self.user}",
            f"SetEnv PATH={bin_dir}:/usr/local/bin:/usr/bin:/bin VIGIE_SSH_TEST_DATA={self.data}",
            "LogLevel ERROR",
            "",
        ])

    def start(self, host_key: Path) -> None:
        """(Re)start with ``host_key``: a new key is the host reinstalled, or someone in between."""
        self.start_with_keys([host_key])

    def start_with_keys(self, host_keys: list[Path]) -> None:
        self.stop()
        config = self.directory / "sshd_config"
        config.write_text(self.config(host_keys))
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
        log = (self.directory / "sshd.log").open("ab")
        self.process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.directory / 'sshd.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if s.recv(64).startswith(b"SSH-2.0-"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not listen within 10 s")

    def drop_connections(self) -> None:
        """Kill the per-connection sshd processes (the listener's children), as a reboot would."""
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        for pid in children:
            os.kill(int(pid), signal.SIGKILL)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


def make_sshd(directory: Path) -> tuple[Sshd, Path]:
    """A configured (not started) sshd and its first host key."""
    directory.mkdir(parents=True, exist_ok=True)
    host_key = keygen(directory / "host_ed25519")
    client_key = keygen(directory / "client_ed25519")
    (directory / "authorized_keys").write_text((directory / "client_ed25519.pub").read_text())
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    for name in STAND_INS:
        shutil.copy(FIXTURES / "bin" / name, bin_dir / name)
        (bin_dir / name).chmod(0o755)
    shutil.copytree(FIXTURES / "data", directory / "data")
    return Sshd(directory, free_port(), getpass.getuser(), client_key), host_key
