"""systemd's service notifications (sd_notify) and its watchdog, with the standard library only.

Under ``Type=notify`` systemd passes ``$NOTIFY_SOCKET``: a unix datagram socket, a path or an
abstract name written ``@name``. The agent sends ``READY=1`` once it polls, ``STOPPING=1`` when it
begins to stop, and — when the unit sets ``WatchdogSec=`` (systemd then passes ``$WATCHDOG_USEC``,
and ``$WATCHDOG_PID`` naming the process it watches) — ``WATCHDOG=1`` every half of that period.
The pings come from a task on the agent's event loop: a loop that hangs (a blocking call, a busy
callback) stops them, and systemd kills and restarts the service after ``WatchdogSec``.

Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op. A notification that cannot be sent
is logged, never raised: the agent keeps polling when its supervisor is gone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


def socket_address(value: str) -> str | bytes:
    """The ``sendto`` address of a ``$NOTIFY_SOCKET`` value: ``@name`` is the abstract ``\\0name``."""
    return b"\0" + value[1:].encode() if value.startswith("@") else value


def watchdog_interval_s(environ: Mapping[str, str], pid: int) -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds (systemd's advice), or None when no watchdog is asked
    of this process: unset, not a positive integer, or ``$WATCHDOG_PID`` naming another process."""
    usec = environ.get("WATCHDOG_USEC", "")
    watched_pid = environ.get("WATCHDOG_PID", "")
    if watched_pid and watched_pid != str(pid):
        return None
    if not usec.isdigit() or int(usec) == 0:
        if usec:
            log.warning("WATCHDOG_USEC=%r is not a positive number of microseconds: no watchdog pings", usec)
        return None
    return int(usec) / 2e6


class Watchdog:
    """The agent's side of systemd's notification protocol (see the module's docstring)."""

    def __init__(self, environ: Mapping[str, str] = os.environ, pid: int | None = None) -> None:
        self.address = socket_address(environ["NOTIFY_SOCKET"]) if environ.get("NOTIFY_SOCKET") else None
        self.interval_s = watchdog_interval_s(environ, os.getpid() if pid is None else pid)
        self._socket: socket.socket | None = None
        self._pings: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines in one datagram; True when it went out."""
        if self.address is None:
            return False
        if self._socket is None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # never block the loop on a full queue of a supervisor that stopped reading
            self._socket.setblocking(False)
        try:
            self._socket.sendto("\n".join(assignments).encode(), self.address)
        except OSError as exc:
            log.warning("systemd notification %s not sent to %s: %s", assignments[0], self.address, exc)
            return False
        return True

    def ready(self, status: str) -> None:
        """The agent polls: READY=1 (systemd's start-up is complete), then the watchdog's pings."""
        if self.address is None:
            return
        self.notify("READY=1", f"STATUS={status}")
        if self.interval_s is not None and self._pings is None:
            log.info("systemd watchdog: a ping every %.1f s", self.interval_s)
            self._pings = asyncio.get_running_loop().create_task(self._ping_forever(), name="systemd-watchdog")

    async def _ping_forever(self) -> None:
        assert self.interval_s is not None
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(self.interval_s)

    async def stopping(self) -> None:
        """STOPPING=1, and no more pings (the unit's TimeoutStopSec bounds the stop instead)."""
        if self._pings is not None:
            self._pings.cancel()
            await asyncio.gather(self._pings, return_exceptions=True)
            self._pings = None
        self.notify("STOPPING=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
