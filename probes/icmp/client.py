"""ICMP echo through icmplib, with the socket kind chosen and said. No vigie import.

Linux offers two ways to send echo requests. A *datagram* ICMP socket (``SOCK_DGRAM``,
``IPPROTO_ICMP``) needs no privilege, but only for the groups ``net.ipv4.ping_group_range`` lists
(many systems ship ``1 0``: nobody; systemd sets ``0 2147483647``); the kernel fills in the
identifier and hands each socket its own replies. A *raw* socket needs CAP_NET_RAW (root, or
``setcap cap_net_raw+ep`` / systemd ``AmbientCapabilities=CAP_NET_RAW``). ``auto`` takes datagram
sockets where the range admits one of the process's groups, raw ones otherwise. The range is per
network namespace; IPv6 uses the same sysctl.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import icmplib

SocketKind = Literal["datagram", "raw"]
PING_GROUP_RANGE = Path("/proc/sys/net/ipv4/ping_group_range")
# Raw sockets see every echo reply of the host: each run gets its own identifier to tell its own.
_identifiers = itertools.count(os.getpid() & 0xFFFF)


class EchoUnavailable(Exception):
    """No socket could send an echo request (no privilege, no such address family)."""


@dataclass(frozen=True)
class Echoes:
    sent: int
    received: int
    rtts_s: tuple[float, ...]  # one per reply received
    jitter_s: float | None
    socket: SocketKind


def datagram_allowed(range_text: str, groups: Iterable[int]) -> bool:
    """Whether ``ping_group_range`` (``"LOW HIGH"``) admits one of ``groups``."""
    try:
        low, high = (int(part) for part in range_text.split())
    except ValueError:
        return False
    return any(low <= group <= high for group in groups)


def choose_socket(wanted: Literal["auto", "datagram", "raw"], range_text: str | None) -> SocketKind:
    if wanted != "auto":
        return wanted
    groups = {os.getegid(), *os.getgroups()}
    return "datagram" if range_text is not None and datagram_allowed(range_text, groups) else "raw"


def read_ping_group_range(path: Path = PING_GROUP_RANGE) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except OSError:
        return None


async def echo(address: str, count: int, spacing_s: float, timeout_s: float, socket: SocketKind) -> Echoes:
    """``count`` echo requests ``spacing_s`` apart, each waited for ``timeout_s``. A silent host is
    ``received == 0``, not an exception."""
    try:
        host = await icmplib.async_ping(
            address,
            count=count,
            interval=spacing_s,
            timeout=timeout_s,
            id=next(_identifiers) & 0xFFFF,
            privileged=socket == "raw",
        )
    except icmplib.SocketPermissionError:
        hint = (
            "raw ICMP sockets need CAP_NET_RAW" if socket == "raw"
            else "datagram ICMP sockets need a group in net.ipv4.ping_group_range"
        )
        raise EchoUnavailable(f"cannot open a {socket} ICMP socket: {hint}") from None
    except (icmplib.SocketAddressError, icmplib.SocketUnavailableError, icmplib.ICMPSocketError) as exc:
        raise EchoUnavailable(f"{socket} ICMP socket: {exc}") from None
    rtts = tuple(rtt / 1000 for rtt in host.rtts)  # icmplib speaks milliseconds
    return Echoes(
        sent=host.packets_sent,
        received=host.packets_received,
        rtts_s=rtts,
        jitter_s=host.jitter / 1000 if len(rtts) > 1 else None,
        socket=socket,
    )
