"""An SSH server on loopback that behaves like a Catalyst switch on IOS-XE, for the ``cisco_cli``
collector and its tests (paramiko's server interface, one thread per session).

What it plays, as a terminal does: an interactive shell (pty) that echoes what is typed; the
prompts ``HOST>`` and, after ``enable`` and the enable secret, ``HOST#``; ``terminal length 0``
and ``terminal width 511``; ``show version``, ``show running-config`` (privileged only, as on IOS),
``show environment all``, ``show environment power all``, ``show interfaces status``, with IOS's
abbreviations (``sh run``); anything else is ``% Invalid input detected at '^' marker.`` under a
caret. Lines end in CR LF. The answers are recorded outputs (lab/ios_outputs.py) filled with the
device's state, which tests and lab faults change: a PSU, a fan, a port err-disabled, the running
configuration, the host key.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass, field

import paramiko

from lab import ios_outputs as out

log = logging.getLogger(__name__)

INVALID = "% Invalid input detected at '^' marker.\r\n"


@dataclass
class DeviceState:
    """What the device answers from; change it between commands (each answer reads it afresh)."""

    hostname: str
    username: str
    password: str
    enable_secret: str
    community: str = "vsgp-ro-2026"
    uplink_description: str = "UPLINK fed"
    changed_at: str = "08:01:57 CET Mon Nov 30 2026"
    changed_by: str = "admin"
    psus: list[out.Psu] = field(default_factory=out.recorded_psus)
    fans: list[out.Fan] = field(default_factory=out.recorded_fans)
    sensors: dict[int, list[out.Sensor]] = field(default_factory=out.recorded_sensors)
    ports: list[out.Port] = field(default_factory=out.access_ports)
    # a command -> the text it answers instead (a device whose output no parser knows)
    overrides: dict[str, str] = field(default_factory=dict)
    # commands that never finish (a device that hangs): the session prints nothing more
    stalled: set[str] = field(default_factory=set)

    def running_config(self) -> str:
        def fill(size: int) -> str:
            return out.RUNNING_CONFIG.format(
                size=size, hostname=self.hostname, changed_at=self.changed_at, changed_by=self.changed_by,
                community=self.community, uplink_description=self.uplink_description,
            )

        return fill(len(fill(0)))

    def psu(self, slot: str) -> out.Psu:
        for psu in self.psus:
            if psu.slot == slot:
                return psu
        raise KeyError(f"no PSU {slot!r} (the device has {', '.join(p.slot for p in self.psus)})")

    def port(self, name: str) -> out.Port:
        for port in self.ports:
            if port.name == name:
                return port
        raise KeyError(f"no port {name!r}")


# (words of the command, needs privileged mode, what it answers)
COMMANDS: tuple[tuple[tuple[str, ...], bool, str], ...] = (
    (("show", "version"), False, "version"),
    (("show", "running-config"), True, "running"),
    (("show", "environment", "all"), False, "environment"),
    (("show", "environment", "power", "all"), False, "power"),
    (("show", "interfaces", "status"), False, "interfaces"),
    (("terminal", "length", "0"), False, ""),
    (("terminal", "width", "511"), False, ""),
)


def _matches(typed: list[str], words: tuple[str, ...]) -> bool:
    """IOS abbreviations: each typed word a prefix of the command's word (``sh env pow a``)."""
    return len(typed) == len(words) and all(word.startswith(t) for t, word in zip(typed, words, strict=True))


class IosDevice:
    """One fake switch: ``start()`` listens on 127.0.0.1 (a free port unless given), ``stop()``."""

    def __init__(self, state: DeviceState, host_key: paramiko.PKey | None = None) -> None:
        self.state = state
        self.host_key = host_key or paramiko.ECDSAKey.generate()
        self.address: tuple[str, int] | None = None
        self.commands: list[str] = []  # every line typed, in order (what the tests look at)
        self.logins = 0
        self._sock: socket.socket | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._transports: list[paramiko.Transport] = []

    def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        sock = socket.create_server((host, port), reuse_port=False)
        sock.settimeout(0.2)
        self._sock = sock
        self.address = sock.getsockname()[:2]
        self._spawn(self._accept_loop)
        return self.address

    def stop(self) -> None:
        self._stopping.set()
        if self._sock is not None:
            self._sock.close()
        for transport in list(self._transports):
            transport.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def change_host_key(self) -> None:
        """A reinstalled device (or someone in the middle): new sessions show another key."""
        self.host_key = paramiko.ECDSAKey.generate()

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name=f"ios-{self.state.hostname}")
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._spawn(self._session, conn)

    def _session(self, conn: socket.socket) -> None:
        transport = paramiko.Transport(conn)
        self._transports.append(transport)
        try:
            transport.add_server_key(self.host_key)
            server = _Server(self.state)
            transport.start_server(server=server)
            channel = None
            deadline = time.monotonic() + 10
            while channel is None and transport.is_active() and not self._stopping.is_set():
                if time.monotonic() > deadline:
                    return
                channel = transport.accept(timeout=0.2)  # short waits: a stop is not held 10 s
            if channel is None or not server.shell.wait(10):
                return
            self.logins += 1
            _Shell(self, channel).run()
        except (paramiko.SSHException, EOFError, OSError) as exc:
            log.debug("%s: session ended: %s", self.state.hostname, exc)
        finally:
            transport.close()
            self._transports.remove(transport)



class _Server(paramiko.ServerInterface):
    def __init__(self, state: DeviceState) -> None:
        self.state = state
        self.shell = threading.Event()

    def get_allowed_auths(self, username: str) -> str:
        return "password"

    def check_auth_password(self, username: str, password: str) -> int:
        if username == self.state.username and password == self.state.password:
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_pty_request(self, channel, term, width, height, pixelwidth, pixelheight, modes) -> bool:
        return True

    def check_channel_window_change_request(self, channel, width, height, pixelwidth, pixelheight) -> bool:
        return True

    def check_channel_shell_request(self, channel) -> bool:
        self.shell.set()
        return True


class _Shell:
    """The EXEC of one session: user mode, then privileged after ``enable``."""

    def __init__(self, device: IosDevice, channel: paramiko.Channel) -> None:
        self.device = device
        self.channel = channel
        self.privileged = False
        self.awaiting_secret = False
        self.channel.settimeout(60)

    @property
    def prompt(self) -> str:
        return f"{self.device.state.hostname}{'#' if self.privileged else '>'}"

    def send(self, text: str) -> None:
        self.channel.sendall(text.replace("\r\n", "\n").replace("\n", "\r\n").encode())

    def run(self) -> None:
        self.send(f"\n{self.prompt}")
        line = bytearray()
        previous = b""
        while not self.device._stopping.is_set():
            data = self.channel.recv(4096)
            if not data:
                return
            for byte in data:
                char = bytes([byte])
                if char == b"\n" and previous == b"\r":
                    previous = char
                    continue  # CR LF is one end of line
                previous = char
                if char in (b"\r", b"\n"):
                    self.send("\n")
                    if not self.execute(line.decode(errors="replace")):
                        return
                    line.clear()
                elif char in (b"\x08", b"\x7f"):
                    del line[-1:]
                else:
                    line += char
                    if not self.awaiting_secret:
                        self.channel.sendall(char)  # the terminal echoes what is typed, not the secret

    def execute(self, line: str) -> bool:
        """Answer one line; False ends the session."""
        state = self.device.state
        if self.awaiting_secret:
            self.awaiting_secret = False
            if line == state.enable_secret:
                self.privileged = True
            else:
                self.send("% Access denied\n\n")
            self.send(self.prompt)
            return True
        self.device.commands.append(line)
        typed = line.split()
        if not typed:
            self.send(self.prompt)
            return True
        if _matches(typed, ("enable",)):
            if self.privileged:
                self.send(self.prompt)
            else:
                self.awaiting_secret = True
                self.send("Password: ")
            return True
        if _matches(typed, ("disable",)):
            self.privileged = False
            self.send(self.prompt)
            return True
        if typed[0] in ("exit", "logout", "quit"):
            return False
        self.send(self.answer(typed, line) + self.prompt)
        return True

    def answer(self, typed: list[str], line: str) -> str:
        state = self.device.state
        for words, privileged, what in COMMANDS:
            if _matches(typed, words) and (self.privileged or not privileged):
                command = " ".join(words)
                if command in state.stalled:
                    self.device._stopping.wait()
                    return ""
                if command in state.overrides:
                    return state.overrides[command]
                return self.render(what)
        # the caret sits under the first word IOS could not take
        column = len(self.prompt) + line.find(typed[-1] if len(typed) > 1 else typed[0])
        return " " * column + "^\n" + INVALID + "\n"

    def render(self, what: str) -> str:
        state = self.device.state
        if what == "version":
            return out.SHOW_VERSION.format(hostname=state.hostname) + "\n"
        if what == "running":
            return state.running_config() + "\n"
        if what == "environment":
            return out.environment_all(state.fans, state.sensors, state.psus) + "\n"
        if what == "power":
            return out.power_all(state.psus) + "\n"
        if what == "interfaces":
            return "\n" + out.interfaces_status(state.ports) + "\n"
        return ""
