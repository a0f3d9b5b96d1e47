"""Test doubles of the store tests: time moved by hand, and a TSDB that accepts and never answers;
and a double's bits, to compare floats exactly (NaN payloads, -0.0)."""

from __future__ import annotations

import asyncio
import struct

from tests.agent.helpers import Changes


def float_bits(value: float) -> int:
    return struct.unpack(">Q", struct.pack(">d", value))[0]


def bits_float(bits: int) -> float:
    return struct.unpack(">d", struct.pack(">Q", bits))[0]


class ManualTime:
    """The spool's ``clock`` and ``sleep``: a sleeper wakes once the test has moved time past its end."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.changes = Changes()
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        wake = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + delay, wake))
        self.sleeps.append(delay)
        self.changes.bump()
        try:
            await wake
        finally:
            self._sleepers = [(end, other) for end, other in self._sleepers if other is not wake]

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for end, wake in self._sleepers:
            if end <= self.now and not wake.done():
                wake.set_result(None)


class HungServer:
    """Accepts TCP connections and reads what comes, but never answers: a TSDB stuck behind a live
    socket."""

    def __init__(self) -> None:
        self.connections = 0
        self.changes = Changes()
        self.url = ""
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        self.changes.bump()
        try:
            while await reader.read(1 << 16):
                pass
        except ConnectionError:
            pass
