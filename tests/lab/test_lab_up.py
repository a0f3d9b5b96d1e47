"""`vigie lab up`: what it prints, that every device answers at once, and that nothing outlives it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from collectors.snmp.client import SnmpAuth, SnmpClient
from lab.estate import Estate
from lab.walks import read_records, recording

from .helpers import DEADLINE_S, ROOT, RunningLab, children_of, lab, parent_of, wait_gone


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def walk_everything(port: int, devices: dict[str, str]) -> dict[str, int | str]:
    """Everything under 1.3 of every device, all walked at once: device -> OIDs received, or the error."""

    async def one(device: str) -> int | str:
        client = SnmpClient("127.0.0.1", port, SnmpAuth(version="2c", community=device), timeout_s=5, retries=2)
        try:
            return len(await client.walk("1.3"))
        except Exception as exc:  # noqa: BLE001 - the test counts failures, whatever they are
            return str(exc)

    results = await asyncio.gather(*(one(device) for device in devices))
    return dict(zip(devices, results, strict=True))


def test_every_vsgp_device_answers_its_whole_walk_when_all_are_walked_at_once(tmp_path: Path) -> None:
    """One snmpsim process left 47 switches unreachable in the first minutes of `vigie run`."""
    with RunningLab("vsgp", tmp_path / "rt") as running:
        walks = {d.key: d.walk for d in Estate.load("vsgp", environ={}, secrets_path=None).devices() if d.walk}
        received = asyncio.run(walk_everything(running.snmp_port, walks))
    expected = {
        device: len({oid for oid, _, _ in read_records(recording(walk)) if oid.startswith("1.3.")})
        for device, walk in walks.items()
    }
    assert len(received) == 173
    assert received == expected


def test_listing_says_what_listens_where_and_what_to_export(tmp_path: Path) -> None:
    with RunningLab("vsgp", tmp_path / "rt") as running:
        out = running.output
        port = running.snmp_port
        glpi = running.info["environment"]["VIGIE_VSGP_GLPI_URL"]["value"]
        assert f"udp 127.0.0.1:{port}  SNMPv2c, 173 devices" in out
        assert f"http {glpi}  fake GLPI of vsgp" in out
        assert f"  ... and {len(running.info['devices']) - 3} more: vigie lab status --devices" in out
        devices = lab("status", "--devices", runtime_dir=running.runtime_dir).stdout
        assert f"  vsgp/dist-siege{' ' * 25} snmp://vsgp%2Fdist-siege@127.0.0.1:{port}  (iosxe_c9300)" in devices
        assert f"export VIGIE_LAB_SNMP_PORT={port}   # snmp, NOT the estate's default" in out
        assert f"export VIGIE_VSGP_GLPI_URL={glpi}   # glpi, NOT the estate's default" in out
        assert "VIGIE_STATE_DIR: not the lab's; the agent reads 'var/vsgp'" in out
        # the cloud and API collectors' peers are lab services too: none of those devices is left unplayed
        unplayed = next((line for line in out.splitlines() if line.startswith("not played")), "")
        assert not any(name in unplayed for name in ("vsgp/vcenter", "vsgp/m365", "vsgp/meraki")), unplayed


def test_without_port_options_the_lab_reads_the_estate_variables_as_the_agent_will(tmp_path: Path) -> None:
    port = free_udp_port()
    with RunningLab("ofdt", tmp_path / "rt", extra=(), environ={"VIGIE_LAB_SNMP_PORT": str(port)}) as running:
        assert running.snmp_port == port
        assert f"export VIGIE_LAB_SNMP_PORT={port}   # snmp, NOT the estate's default" in running.output


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_stops_every_child_and_removes_the_runtime_dir(tmp_path: Path, signum: int) -> None:
    runtime = tmp_path / "rt"
    running = RunningLab("mlhg", runtime).start()
    children = children_of(running.pid)
    assert len(children) == 1, running.output  # the SNMP responder; the fake GLPI runs in the lab itself
    responder = children[0]
    assert parent_of(responder) == running.pid
    assert os.getpgid(responder) == responder  # its own process group: Ctrl-C reaches the lab alone
    running.signal(signum)
    assert running.wait() == 0, running.output
    # The lab reaps its children before it exits: nothing is left, not even re-parented to init.
    assert parent_of(responder) is None
    assert not runtime.exists()
    assert running.lines[-1] == "vigie lab: stopped"


def test_a_killed_lab_takes_its_children_along_and_the_next_one_cleans_up(tmp_path: Path) -> None:
    runtime = tmp_path / "rt"
    running = RunningLab("mlhg", runtime).start()
    (responder,) = children_of(running.pid)
    running.signal(signal.SIGKILL)
    running.wait()
    assert wait_gone(responder), "the responder outlived a SIGKILLed lab"
    assert (runtime / "lab.json").exists()  # a SIGKILL leaves the directory ...
    with RunningLab("mlhg", runtime) as again:  # ... which the next lab takes over
        assert f"removed what a lab that did not stop left in {runtime} (pid {running.pid}" in again.output


def test_a_child_that_dies_stops_the_lab(tmp_path: Path) -> None:
    runtime = tmp_path / "rt"
    running = RunningLab("mlhg", runtime).start()
    (responder,) = children_of(running.pid)
    os.kill(responder, signal.SIGKILL)
    assert running.wait() == 1
    assert "snmp: snmp responder exited with -9; stopping the lab" in running.output
    assert not runtime.exists()


def test_a_second_lab_on_the_same_runtime_dir_is_refused(tmp_path: Path) -> None:
    with RunningLab("mlhg", tmp_path / "rt") as first:
        second = RunningLab("ofdt", tmp_path / "rt")
        with pytest.raises(AssertionError):
            second.start()
        assert second.process is not None and second.process.returncode == 1
        assert f"a lab is already running in {tmp_path / 'rt'} (pid {first.pid}, estate mlhg)" in second.output


def test_a_device_off_loopback_is_refused(tmp_path: Path) -> None:
    estate = tmp_path / "estate.yaml"
    estate.write_text(
        "clients:\n  - name: acme\n    sites:\n      - name: hq\n        devices:\n"
        "          - {name: sw1, address: 192.0.2.1, port: 1161, x-lab: {walk: qnap}}\n"
    )
    running = RunningLab(str(estate), tmp_path / "rt")
    with pytest.raises(AssertionError):
        running.start()
    assert running.process is not None and running.process.returncode == 2
    assert "acme/sw1: address '192.0.2.1' is not loopback" in running.output
    assert not (tmp_path / "rt").exists() or not any((tmp_path / "rt").iterdir())


def test_a_port_in_use_is_named(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        running = RunningLab("mlhg", tmp_path / "rt", extra=("--snmp-port", str(port)))
        with pytest.raises(AssertionError):
            running.start()
    assert running.process is not None and running.process.returncode == 2
    assert f"udp 127.0.0.1:{port}: Address already in use" in running.output


def test_a_signal_while_starting_stops_what_had_started(tmp_path: Path) -> None:
    runtime = tmp_path / "rt"
    running = RunningLab("vsgp", runtime)
    running.process = subprocess.Popen(running.command, cwd=ROOT, env=running.environ, stdout=subprocess.DEVNULL)
    limit = time.monotonic() + DEADLINE_S
    while not children_of(running.pid):  # the responder is being started (loading its walks)
        assert running.process.poll() is None and time.monotonic() < limit
        time.sleep(0.01)
    (responder,) = children_of(running.pid)
    running.signal(signal.SIGTERM)
    assert running.wait() == 0
    assert parent_of(responder) is None
    assert not runtime.exists()
