"""One SSH connection to a host, through paramiko: connect, check the host key, log in, run commands
with a deadline each. Blocking (paramiko is): the collectors call it from a worker thread. No vigie
import: the host-key decision is a callable handed in.
"""

from __future__ import annotations

import io
import select
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import paramiko

# A command's output beyond this is refused, not buffered: a host answering megabytes is broken.
MAX_OUTPUT_BYTES = 8 * 1024 * 1024
KEY_CLASSES: tuple[type[paramiko.PKey], ...] = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)

# (key type, key wire bytes) -> None, or raises to refuse the host
HostKeyCheck = Callable[[str, bytes], object]
# a key's type as recorded (PKey.get_name()) -> the host-key algorithms that show it
KEY_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}


class SshError(Exception):
    """Base of what this module raises."""


class NoAnswer(SshError):
    """Nothing usable answered: refused, timeout, not an SSH server, the connection dropped."""


class LoginRefused(SshError):
    """The server answered and refused the login (or the key could not be read)."""


class OutputRefused(SshError):
    """A command answered more than this module keeps."""


class CommandTimeout(SshError):
    """A command did not finish within its deadline (its channel is closed; the connection stays)."""


@dataclass(frozen=True)
class Login:
    host: str
    port: int
    user: str
    password: str | None = None
    private_key: str | None = None  # the key's text (OpenSSH or PEM), as the secrets file holds it
    private_key_file: Path | None = None
    passphrase: str | None = None
    connect_timeout_s: float = 5.0


@dataclass(frozen=True)
class Result:
    exit_status: int
    stdout: str
    stderr: str
    elapsed_s: float


def load_key(login: Login) -> paramiko.PKey | None:
    """The login's private key, or None for a password login. The message never quotes the key."""
    if login.private_key is None and login.private_key_file is None:
        return None
    if login.private_key_file is not None:
        try:
            text = login.private_key_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise LoginRefused(f"private_key_file {login.private_key_file}: {exc.strerror}") from None
    else:
        text = login.private_key or ""
    for cls in KEY_CLASSES:
        try:
            return cls.from_private_key(io.StringIO(text), password=login.passphrase)
        except paramiko.PasswordRequiredException:
            raise LoginRefused("private key: encrypted, and no passphrase given") from None
        except (paramiko.SSHException, ValueError):
            continue
    raise LoginRefused("private key: not an Ed25519, ECDSA or RSA key paramiko can read (or a wrong passphrase)")


class Session:
    """A logged-in connection. ``run`` may be called again and again while ``alive``."""

    def __init__(
        self, login: Login, check_host_key: HostKeyCheck, known_key_types: Callable[[], Sequence[str]] = tuple
    ) -> None:
        self.login = login
        self.check_host_key = check_host_key
        self.known_key_types = known_key_types  # asked for first, so the server shows the recorded key
        self.transport: paramiko.Transport | None = None
        self.host_key: paramiko.PKey | None = None

    @property
    def alive(self) -> bool:
        return self.transport is not None and self.transport.is_active() and self.transport.is_authenticated()

    def open(self) -> None:
        login = self.login
        key = load_key(login)  # before any packet: a bad key is the operator's, not the host's
        try:
            sock = socket.create_connection((login.host, login.port), timeout=login.connect_timeout_s)
        except OSError as exc:
            raise NoAnswer(f"tcp {login.host}:{login.port}: {exc.strerror or exc}") from None
        transport = paramiko.Transport(sock)
        transport.banner_timeout = login.connect_timeout_s
        transport.auth_timeout = login.connect_timeout_s
        transport.handshake_timeout = login.connect_timeout_s
        known = self.known_key_types()
        if known:
            options = transport.get_security_options()
            wanted = [a for t in known for a in KEY_ALGORITHMS.get(t, (t,)) if a in options.key_types]
            options.key_types = [*wanted, *(a for a in options.key_types if a not in wanted)]
        self.transport = transport
        try:
            try:
                transport.start_client(timeout=login.connect_timeout_s)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                reason = str(exc) or type(exc).__name__
                raise NoAnswer(f"ssh {login.host}:{login.port}: no SSH handshake ({reason})") from None
            self.host_key = transport.get_remote_server_key()
            # raises to refuse: nothing (no password) is sent to a host whose key is not the known one
            self.check_host_key(self.host_key.get_name(), self.host_key.asbytes())
            try:
                if key is not None:
                    transport.auth_publickey(login.user, key)
                else:
                    transport.auth_password(login.user, login.password or "")
            except paramiko.AuthenticationException:
                method = "key" if key is not None else "password"
                where = f"ssh {login.host}:{login.port}"
                raise LoginRefused(f"{where}: login as {login.user!r} refused ({method})") from None
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise NoAnswer(f"ssh {login.host}:{login.port}: connection lost while logging in ({exc})") from None
        except BaseException:
            self.close()
            raise

    def run(self, command: str, timeout_s: float) -> Result:
        """Run ``command`` (exec request), wait for its exit status at most ``timeout_s``."""
        if self.transport is None:
            raise NoAnswer("not connected")
        started = time.monotonic()
        deadline = started + timeout_s
        try:
            channel = self.transport.open_session(timeout=timeout_s)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self.close()
            raise NoAnswer(f"ssh {self.login.host}:{self.login.port}: cannot open a channel ({exc})") from None
        out, err = bytearray(), bytearray()
        try:
            channel.settimeout(timeout_s)
            channel.exec_command(command)
            while True:
                while channel.recv_ready():
                    out += channel.recv(65536)
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                if len(out) + len(err) > MAX_OUTPUT_BYTES:
                    raise OutputRefused(f"more than {MAX_OUTPUT_BYTES} bytes of output: refused")
                drained = not channel.recv_ready() and not channel.recv_stderr_ready()
                if drained and channel.exit_status_ready():
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CommandTimeout(f"no exit status within {timeout_s:g} s")
                if drained and channel.eof_received:
                    # all output read; the exit status is the next message (it sets no fileno)
                    channel.status_event.wait(remaining)
                    continue
                if not self.transport.is_active():
                    self.close()
                    raise NoAnswer(f"ssh {self.login.host}:{self.login.port}: connection lost during the command")
                # the channel's fileno is readable on data, stderr data and close
                select.select([channel], [], [], min(remaining, 0.5))
            status = channel.recv_exit_status()
        except TimeoutError:
            raise CommandTimeout(f"no exit status within {timeout_s:g} s") from None
        except paramiko.SSHException as exc:
            raise NoAnswer(f"ssh {self.login.host}:{self.login.port}: {exc}") from None
        finally:
            channel.close()
        elapsed = time.monotonic() - started
        return Result(status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), elapsed)

    def close(self) -> None:
        """Drop the connection; safe from another thread (a blocked ``run`` then returns at once)."""
        transport, self.transport = self.transport, None
        if transport is not None:
            transport.close()
