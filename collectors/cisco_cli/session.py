"""One netmiko session with an IOS / IOS-XE device: log in, ``enable``, run commands. Blocking:
the collector runs it in a worker thread. No vigie import.

Host keys: netmiko's own choices are "accept any key" or "refuse every key not already in a
file". Neither is trust on first use, so the session loads no host key file at all
(``system_host_keys=False``, ``alt_host_keys=False``) and gives paramiko a policy that asks
``check_host_key(key_type, key_bytes)`` about every key the device shows: that callable records a
first key and raises on a changed one, and the connection is closed before anything is sent.

Timeouts: ``connect_timeout_s`` bounds the TCP connection, the SSH banner and the login; each
command has ``command_timeout_s`` to print its output and the prompt. A command that timed out
leaves the channel in an unknown state (its output may still arrive): the session ends there and
the commands after it are reported as not run.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paramiko
from netmiko import NetmikoAuthenticationException, NetmikoTimeoutException, ReadException, ReadTimeout
from netmiko.cisco import CiscoIosSSH
from netmiko.exceptions import NetmikoBaseException

# paramiko says "Connected" and "Authentication successful" at INFO for every session: two lines
# per switch per poll in the agent's log. Quieted unless the operator configured that logger.
_TRANSPORT_LOG = logging.getLogger("paramiko.transport")
if _TRANSPORT_LOG.level == logging.NOTSET:
    _TRANSPORT_LOG.setLevel(logging.WARNING)

HostKeyCheck = Callable[[str, bytes], object]  # (key type, key bytes); raises when refused

# IOS's refusals, printed instead of an output
REFUSED = re.compile(r"^% (?:Invalid input detected|Incomplete command|Ambiguous command|Unknown command|"
                     r"Authorization failed|Bad IP address|Permission denied)", re.MULTILINE)


class SessionError(Exception):
    """The session could not be opened or went away; ``unreachable`` when nothing answered."""

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


class CommandFailed(Exception):
    """One command was refused by the device or did not finish in time."""

    def __init__(self, command: str, reason: str, session_lost: bool = False) -> None:
        super().__init__(f"{command}: {reason}")
        self.command = command
        self.session_lost = session_lost


@dataclass(frozen=True)
class Login:
    host: str
    port: int
    username: str
    password: str
    enable_secret: str | None


class _TrustOnFirstUse(paramiko.MissingHostKeyPolicy):
    def __init__(self, check: HostKeyCheck) -> None:
        self.check = check

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        try:
            self.check(key.get_name(), key.asbytes())
        except BaseException:
            client.close()  # refused: nothing more goes over this connection
            raise


class _IosSession(CiscoIosSSH):
    """netmiko's IOS driver with the host key policy above (netmiko builds its SSH client in
    ``_build_ssh_client``: the policy is set there, after netmiko set its own)."""

    def __init__(self, *, check_host_key: HostKeyCheck, **kwargs: Any) -> None:
        self._policy = _TrustOnFirstUse(check_host_key)
        super().__init__(**kwargs)

    def _build_ssh_client(self) -> paramiko.SSHClient:
        client = super()._build_ssh_client()
        client.set_missing_host_key_policy(self._policy)
        return client


class CliSession:
    """``with CliSession(login, check, ...) as session: session.run("show version")``."""

    def __init__(
        self, login: Login, check_host_key: HostKeyCheck, connect_timeout_s: float, command_timeout_s: float,
    ) -> None:
        self.login = login
        self.check_host_key = check_host_key
        self.connect_timeout_s = connect_timeout_s
        self.command_timeout_s = command_timeout_s
        self._conn: _IosSession | None = None

    def __enter__(self) -> CliSession:
        where = f"{self.login.host}:{self.login.port}"
        try:
            conn = _IosSession(
                check_host_key=self.check_host_key,
                host=self.login.host, port=self.login.port,
                username=self.login.username, password=self.login.password,
                secret=self.login.enable_secret or "",
                use_keys=False, allow_agent=False,
                ssh_strict=True, system_host_keys=False, alt_host_keys=False,
                conn_timeout=self.connect_timeout_s, auth_timeout=self.connect_timeout_s,
                banner_timeout=self.connect_timeout_s, timeout=self.command_timeout_s,
                read_timeout_override=self.command_timeout_s,
                fast_cli=True,
            )
        except NetmikoAuthenticationException:
            raise SessionError(f"{where}: SSH login refused for user {self.login.username!r}") from None
        except NetmikoTimeoutException as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no answer"
            raise SessionError(f"{where}: {first}", unreachable=True) from None
        except (ReadTimeout, ReadException, NetmikoBaseException, paramiko.SSHException, EOFError) as exc:
            raise SessionError(f"{where}: SSH session failed: {_first_line(exc)}") from None
        except OSError as exc:  # TimeoutError, ConnectionError included
            raise SessionError(f"{where}: {exc.strerror or exc or 'no answer'}", unreachable=True) from None
        self._conn = conn
        try:
            if not conn.check_enable_mode():
                if not self.login.enable_secret:
                    raise SessionError(
                        f"{where}: {self.login.username!r} logs in unprivileged and the credentials give no "
                        "enable_secret (show running-config needs privilege 15)"
                    )
                conn.enable()
        except (ReadTimeout, ReadException, ValueError) as exc:
            self.close()
            raise SessionError(f"{where}: enable refused: {_first_line(exc)}") from None
        except SessionError:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.disconnect()
            except (OSError, EOFError, paramiko.SSHException, NetmikoBaseException):
                pass  # the outputs are read; how the device hangs up changes nothing
            self._conn = None

    def run(self, command: str) -> str:
        if self._conn is None:
            raise CommandFailed(command, "not run: the session ended before it", session_lost=True)
        try:
            output = self._conn.send_command(command, read_timeout=self.command_timeout_s)
        except ReadTimeout:
            self.close()
            raise CommandFailed(command, f"no prompt within {self.command_timeout_s:g} s", session_lost=True) \
                from None
        except (OSError, EOFError, paramiko.SSHException, ReadException) as exc:
            self.close()
            raise CommandFailed(command, f"session lost: {_first_line(exc)}", session_lost=True) from None
        assert isinstance(output, str)
        refused = REFUSED.search(output)
        if refused:
            line = output[refused.start():].splitlines()[0]
            raise CommandFailed(command, f"refused by the device: {line}")
        return output


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
