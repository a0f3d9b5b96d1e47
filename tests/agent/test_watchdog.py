"""systemd's notifications from a real agent: READY=1, WATCHDOG=1 from the event loop, STOPPING=1.

The test plays systemd: a unix datagram socket it binds is the agent's $NOTIFY_SOCKET. A datagram
is in the receiver's queue when the sender's sendto returns, so "nothing arrived while the loop was
blocked" is read from the socket itself, with no timing guess.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from agent.config import load_config
from agent.runner import Agent
from agent.watchdog import Watchdog, socket_address, watchdog_interval_s

ROOT = Path(__file__).resolve().parents[2]
PING_USEC = 100_000  # WatchdogSec=0.1s: a ping every 50 ms
BLOCKED_S = 1.0  # twenty ping periods with the loop held


def write_config(directory: Path) -> Path:
    """One client, one TCP probe on a closed loopback port (refused: the poll runs, fast)."""
    config = {
        "agent": {"state_dir": str(directory / "state"), "store": {"kind": "sqlite"}},
        "clients": [{
            "name": "acme",
            "display_name": "ACME",
            "sites": [{"name": "hq", "devices": [{
                "name": "gw", "address": "127.0.0.1", "collectors": {"tcp": {"ports": [9]}},
                "interval_s": 1, "timeout_s": 1, "jitter_s": 0,
            }]}],
        }],
    }
    path = directory / "vigie.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket and its $NOTIFY_SOCKET value (a short path: sun_path holds 108 bytes)."""
    directory = tempfile.mkdtemp(prefix="vigie-wd-")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    try:
        yield sock, path
    finally:
        sock.close()
        os.unlink(path)
        os.rmdir(directory)


def drain(sock: socket.socket) -> list[str]:
    sock.setblocking(False)
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


class Listener:
    """Reads every datagram as it comes (systemd does: the socket's queue holds only ~10)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.messages: list[str] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        self.sock.settimeout(0.05)
        while not self._done.is_set():
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue

    def __enter__(self) -> Listener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.messages += drain(self.sock)


def test_socket_address_abstract_names() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@vigie/notify") == b"\0vigie/notify"


def test_watchdog_interval_is_half_the_period_for_this_process_only() -> None:
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}, pid=42) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, pid=42) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, pid=42) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}, pid=42) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "soon"}, pid=42) is None
    assert watchdog_interval_s({}, pid=42) is None


async def test_without_notify_socket_nothing_is_sent() -> None:
    watchdog = Watchdog({"WATCHDOG_USEC": str(PING_USEC)})
    assert not watchdog.enabled
    assert watchdog.notify("READY=1") is False
    watchdog.ready("polling")
    assert watchdog._pings is None
    await watchdog.stopping()


async def test_a_blocked_loop_stops_the_pings(notify_socket: tuple[socket.socket, str], tmp_path: Path) -> None:
    sock, path = notify_socket
    sock.setblocking(False)
    loop = asyncio.get_running_loop()

    async def receive() -> str:
        return (await asyncio.wait_for(loop.sock_recv(sock, 4096), 30)).decode()

    config = load_config(write_config(tmp_path))
    watchdog = Watchdog({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": str(PING_USEC), "WATCHDOG_PID": str(os.getpid())})
    agent = Agent(config, watchdog=watchdog)
    run = asyncio.create_task(agent.run_forever(duration_s=2 + BLOCKED_S))

    ready = await receive()
    assert ready.splitlines()[0] == "READY=1"
    assert ready.splitlines()[1].startswith("STATUS=polling 1 poll(s)")
    assert [await receive(), await receive()] == ["WATCHDOG=1", "WATCHDOG=1"]

    # The loop hangs: whatever was sent before is queued; nothing more may come while it is held.
    drain(sock)
    sock.setblocking(True)
    sock.settimeout(BLOCKED_S)
    held_from = time.monotonic()
    with pytest.raises(TimeoutError):
        sock.recv(4096)
    assert time.monotonic() - held_from >= BLOCKED_S * 0.9
    sock.setblocking(False)

    # Released, the loop pings again.
    assert await receive() == "WATCHDOG=1"
    with Listener(sock) as listener:
        await asyncio.wait_for(run, 30)
    assert listener.messages[-1] == "STOPPING=1"
    assert set(listener.messages[:-1]) <= {"WATCHDOG=1"}


def test_vigie_run_notifies_an_abstract_socket(tmp_path: Path) -> None:
    """`vigie run` as systemd starts it: $NOTIFY_SOCKET names an abstract socket (`@...`)."""
    name = f"vigie-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        env = {**os.environ, "NOTIFY_SOCKET": f"@{name}", "WATCHDOG_USEC": str(PING_USEC)}
        with Listener(sock) as listener:
            done = subprocess.run(
                [sys.executable, "-m", "agent.cli", "run", "--config", str(write_config(tmp_path)), "--duration", "1"],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
            )
        assert done.returncode == 0, done.stderr
        messages = listener.messages
    assert messages[0].startswith("READY=1\nSTATUS=polling 1 poll(s) of client(s) acme")
    assert messages[-1] == "STOPPING=1"
    pings = messages[1:-1]
    assert len(pings) >= 5 and set(pings) == {"WATCHDOG=1"}, messages
    assert "systemd watchdog: a ping every 0.1 s" in done.stderr


async def test_no_pings_for_another_process(notify_socket: tuple[socket.socket, str]) -> None:
    """WATCHDOG_PID names the process systemd watches: a child that inherited the variables is not it."""
    sock, path = notify_socket
    watchdog = Watchdog({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": str(PING_USEC), "WATCHDOG_PID": "1"}, pid=42)
    watchdog.ready("polling")
    await asyncio.sleep(3 * PING_USEC / 1e6)
    await watchdog.stopping()
    watchdog.close()
    assert drain(sock) == ["READY=1\nSTATUS=polling", "STOPPING=1"]
