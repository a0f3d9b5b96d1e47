"""The SSH collectors' peers on loopback: a real OpenSSH server (tests/ssh/sshd.py) for the Linux
collector, the lab's fake Windows OpenSSH server (lab/ssh_hosts.py) for Hyper-V and Windows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .sshd import SSHD, Sshd, make_sshd


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    if not SSHD.exists():
        pytest.fail(f"{SSHD} missing: install Debian's openssh-server (the Makefile's APT_PACKAGES)")
    server, host_key = make_sshd(tmp_path / "sshd")
    server.start(host_key)
    try:
        yield server
    finally:
        server.stop()
