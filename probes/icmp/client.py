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

import asyncio
import itertools
import os
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import icmplib

SocketKind = Literal["datagram", "raw"]
PING_GROUP_RANGE = Path("/proc/sys/net/ipv4/ping_group_range")
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
    ``received == 0``, not an exception.

    The requests do not wait for each other's replies (icmplib's ``async_ping`` does: a silent
    host's run would take ``count x timeout_s``): each goes out on its own socket at its slot and is
    waited for there, so a run lasts at most ``(count - 1) x spacing_s + timeout_s`` and the fast
    path's verdict lands that much sooner."""
    sockets: list[icmplib.AsyncSocket] = []
    try:
        if icmplib.utils.is_hostname(address):
            address = (await icmplib.async_resolve(address))[0]
        family = icmplib.ICMPv6Socket if icmplib.utils.is_ipv6_address(address) else icmplib.ICMPv4Socket
        # opened before the first request, so that a socket we may not open fails the run at once
        sockets.extend(icmplib.AsyncSocket(family(privileged=socket == "raw")) for _ in range(count))
        replies = await asyncio.gather(*(
            _one_echo(sock, address, sequence, sequence * spacing_s, timeout_s)
            for sequence, sock in enumerate(sockets)
        ))
    except icmplib.SocketPermissionError:
        hint = (
            "raw ICMP sockets need CAP_NET_RAW" if socket == "raw"
            else "datagram ICMP sockets need a group in net.ipv4.ping_group_range"
        )
        raise EchoUnavailable(f"cannot open a {socket} ICMP socket: {hint}") from None
    except (icmplib.SocketAddressError, icmplib.SocketUnavailableError, icmplib.ICMPSocketError) as exc:
        raise EchoUnavailable(f"{socket} ICMP socket: {exc}") from None
    finally:
        for sock in sockets:
            sock.close()
    rtts = tuple(rtt for sent, rtt in replies if rtt is not None)
    return Echoes(
        sent=sum(sent for sent, _ in replies),
        received=len(rtts),
        rtts_s=rtts,
        # icmplib's definition: the mean gap between consecutive round trips
        jitter_s=statistics.fmean(abs(b - a) for a, b in itertools.pairwise(rtts)) if len(rtts) > 1 else None,
        socket=socket,
    )


async def _one_echo(
    sock: icmplib.AsyncSocket, address: str, sequence: int, delay_s: float, timeout_s: float,
) -> tuple[bool, float | None]:
    """One request at ``delay_s``: whether it went out, and its round trip in seconds (None: no
    good reply). A request the kernel refuses (no route) is not sent, as icmplib counts it."""
    await asyncio.sleep(delay_s)
    # a raw socket sees every echo reply of the host: its own identifier tells this one's (a
    # datagram socket's identifier is the kernel's, which icmplib reads back on send)
    request = icmplib.ICMPRequest(destination=address, id=next(_identifiers) & 0xFFFF, sequence=sequence)
    try:
        sock.send(request)
    except icmplib.ICMPLibError:
        return False, None
    try:
        reply = await sock.receive(request, timeout_s)
        reply.raise_for_status()
    except icmplib.ICMPLibError:  # no reply in time, an error reply (unreachable), a socket error
        return True, None
    return True, reply.time - request.time
