"""A device answering one request in three: bench/fastresp.py replays a Cisco 2960-X recording
behind a UDP relay that drops two datagrams of every three. `vigie collect` ends with one clear
status within its deadline (the client's retries may get the poll through, or the run ends
unreachable / timeout / partial), never a traceback, never a poll reported ok with no sample."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.helpers import ROOT

RECORDING = ROOT / "lab" / "snmprec" / "ios_2960x.snmprec"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OneInThree(asyncio.DatagramProtocol):
    """Relays to the responder one request in three, and its answers back."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.seen = 0
        self.last_client: tuple[str, int] | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.back: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.seen += 1
        if self.seen % 3:
            return
        self.last_client = addr
        assert self.back is not None
        self.back.sendto(data, self.upstream)


class Back(asyncio.DatagramProtocol):
    def __init__(self, front: OneInThree) -> None:
        self.front = front

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.front.transport is not None and self.front.last_client is not None
        self.front.transport.sendto(data, self.front.last_client)


async def test_a_device_answering_one_request_in_three_gets_one_clear_status(tmp_path: Path) -> None:
    responder_port, relay_port = free_udp_port(), free_udp_port()
    responder = subprocess.Popen([sys.executable, str(ROOT / "bench" / "fastresp.py"), "--snmprec", str(RECORDING),
                                  "--port", str(responder_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    loop = asyncio.get_running_loop()
    front = OneInThree(("127.0.0.1", responder_port))
    front_transport, _ = await loop.create_datagram_endpoint(lambda: front, local_addr=("127.0.0.1", relay_port))
    back_transport, _ = await loop.create_datagram_endpoint(lambda: Back(front), local_addr=("127.0.0.1", 0))
    front.back = back_transport
    try:
        started = time.monotonic()
        run = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "agent.cli", "collect", f"snmp://public@127.0.0.1:{relay_port}", "--json",
             "--timeout", "30"],
            cwd=ROOT, capture_output=True, text=True, timeout=90,
        )
        took = time.monotonic() - started
    finally:
        front_transport.close()
        back_transport.close()
        responder.terminate()
        responder.wait(10)
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    samples = [json.loads(line) for line in run.stdout.splitlines()]
    (collection,) = [s for s in samples if s["measurement"] == "collection"]
    status = collection["fields"]["status"]
    assert status in ("ok", "partial", "unreachable", "timeout"), collection
    assert front.seen > 0 and took < 60
    if status in ("ok", "partial"):
        assert collection["fields"]["samples"] > 0 and len(samples) > 1
    else:
        assert collection["fields"]["error"]
