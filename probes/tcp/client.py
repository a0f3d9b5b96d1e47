"""TCP connect checks: open a connection to each port, time it, close it. No vigie import.

A port is ``open`` (the handshake completed), ``refused`` (the host answered with a reset: it is
there, the service is not), or ``silent`` (no answer within the timeout, or no route: the host or
a firewall dropped it). Only the last says nothing about the host itself.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["open", "refused", "silent"]
# errno values meaning "nothing answered": the host (or a route to it) is not there.
_SILENT = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT, errno.EHOSTDOWN}


@dataclass(frozen=True)
class PortResult:
    port: int
    outcome: Outcome
    connect_s: float | None  # the handshake's duration; None unless open
    error: str | None


async def connect(
    host: str, port: int, timeout_s: float, monotonic: Callable[[], float] = time.perf_counter
) -> PortResult:
    started = monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return PortResult(port, "silent", None, f"no answer within {timeout_s:g} s")
    except ConnectionRefusedError:
        return PortResult(port, "refused", None, "connection refused")
    except socket.gaierror:
        raise  # the name does not resolve: no port was tried, the caller says so once
    except OSError as exc:
        outcome: Outcome = "silent" if exc.errno in _SILENT or exc.errno is None else "refused"
        return PortResult(port, outcome, None, exc.strerror or str(exc))
    elapsed = monotonic() - started
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass  # a reset on close says nothing more: the handshake completed
    return PortResult(port, "open", elapsed, None)


async def connect_all(
    host: str, ports: Sequence[int], timeout_s: float, monotonic: Callable[[], float] = time.perf_counter
) -> list[PortResult]:
    """Every port at once, in the order given."""
    return list(await asyncio.gather(*(connect(host, port, timeout_s, monotonic) for port in ports)))
