"""A port an estate names can be taken between being found free and being bound (a parallel test,
another demo): the demo's lab is started again on an estate written with fresh ports."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from lab.demo_scenarios import PortTaken, free_tcp_port, start_lab


def _estate(path: Path, port: int) -> Path:
    path.write_text(
        "clients:\n"
        "  - name: ofdt\n"
        "    ticketing: {kind: log}\n"
        "    sites:\n"
        "      - name: siege\n"
        "        devices:\n"
        "          - {name: vm-acces-ssh, address: 127.0.0.1, credentials: {linux: lab-ofdt-vm-acces-ssh-ssh},\n"
        f"             collectors: {{linux: {{port: {port}}}}}, x-lab: {{ssh: linux}}}}\n",
        encoding="utf-8")
    return path


def test_a_port_taken_before_the_lab_binds_it_gets_a_fresh_estate(tmp_path: Path) -> None:
    with socket.socket() as taker:
        taker.bind(("127.0.0.1", 0))
        taker.listen()
        taken = taker.getsockname()[1]
        written: list[int] = []

        def write() -> Path:  # the first estate names the port somebody holds
            written.append(free_tcp_port() if written else taken)
            return _estate(tmp_path / "estate.yaml", written[-1])

        estate, lab = start_lab(write, tmp_path / "lab")
        try:
            assert len(written) == 2 and written[0] == taken, written
            assert f"port: {written[1]}" in estate.read_text(encoding="utf-8")
            assert lab.endpoints["ssh_hosts"] == [f"ssh 127.0.0.1:{written[1]}  ofdt/vm-acces-ssh (linux, linux)"]
        finally:
            lab.stop()


def test_a_port_that_stays_taken_is_named_after_the_last_attempt(tmp_path: Path) -> None:
    with socket.socket() as taker:
        taker.bind(("127.0.0.1", 0))
        taker.listen()
        taken = taker.getsockname()[1]
        with pytest.raises(PortTaken, match=f"127.0.0.1:{taken}: Address already in use"):
            start_lab(lambda: _estate(tmp_path / "estate.yaml", taken), tmp_path / "lab")
