"""Fake SSH hosts on loopback (paramiko's server side): Windows OpenSSH servers answering the
PowerShell of the ``hyperv`` and ``windows`` collectors, and Debian hosts answering the ``linux``
collector's commands, from the recordings in lab/ssh_recordings/ (README there: provenance).

A Windows host reads what OpenSSH hands ``cmd.exe``: ``powershell.exe ... -EncodedCommand B64``.
It decodes the script and answers as the cmdlet it runs would, in the recording's PowerShell
version (5.1: enums as numbers, ``\\/Date(ms)\\/``; 7.x: ISO dates); a command it does not know
gets cmd.exe's or PowerShell's own "not recognized" error. Faults change what it answers
(:class:`HostFaults`): access denied for the Hyper-V cmdlets, a VM in Saved state, a replication
in Critical health, a stopped service, a stopped container, PostgreSQL refusing, another host key.

Keys are derived from names (:func:`seeded_key`), so a lab restarted shows the same host keys and
the lab's secrets file (lab/estates/generate.py) holds the login key the Debian hosts accept.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from collectors.ssh.powershell import script_of

RECORDINGS = Path(__file__).parent / "ssh_recordings"
TRANSPORT_LOG = "lab.ssh_hosts.transport"
logging.getLogger(TRANSPORT_LOG).setLevel(logging.CRITICAL)
LAB_USER = "vigie"
LAB_LOGIN_KEY_SEED = "vigie-lab-linux-login"
# the order matters: Get-VMReplication and Get-VMHost before Get-VM
POWERSHELL_MARKERS = (
    ("Get-VMReplication", "Get-VMReplication"), ("Get-VMHost", "Get-VMHost"), ("Get-VM |", "Get-VM"),
    ("Win32_LogicalDisk", "Win32_LogicalDisk"), ("Get-Service", "Get-Service"), ("RebootPending", "RebootPending"),
    ("Get-HotFix", "Get-HotFix"), ("Get-ADReplicationFailure", "Get-ADReplicationFailure"), ("w32tm", "w32tm"),
    ("Get-WinEvent", "Get-WinEvent"),
)
HYPERV_CMDLETS = ("Get-VMReplication", "Get-VMHost", "Get-VM")
LINUX_COMMANDS = (
    ("cat /proc/loadavg", "loadavg"), ("cat /proc/meminfo", "meminfo"), ("df ", "df"), ("systemctl ", "systemctl"),
    ("apt-get ", "apt-get"), ("docker ps", "docker"), ("pg_isready", "pg_isready"),
)


def seeded_key_pem(seed: str) -> str:
    """A P-256 key derived from ``seed``, as PEM ("EC PRIVATE KEY"): the same text every time."""
    scalar = int.from_bytes(hashlib.sha256(seed.encode()).digest(), "big") % (2**256 - 2**224 - 1) or 1
    private = ec.derive_private_key(scalar, ec.SECP256R1())
    return private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()


def seeded_key(seed: str) -> paramiko.ECDSAKey:
    return paramiko.ECDSAKey.from_private_key(io.StringIO(seeded_key_pem(seed)))


def lab_login_key_pem() -> str:
    """The private key of the lab's Debian hosts' login (the lab secrets' ``private_key``)."""
    return seeded_key_pem(LAB_LOGIN_KEY_SEED)


@dataclass
class HostFaults:
    access_denied: bool = False
    saved_vms: set[str] = field(default_factory=set)
    critical_replications: set[str] = field(default_factory=set)
    stopped_services: set[str] = field(default_factory=set)
    stopped_containers: set[str] = field(default_factory=set)
    postgresql_refusing: bool = False
    host_key_changed: bool = False


@dataclass(frozen=True)
class Login:
    user: str
    password: str | None = None  # Windows hosts: a password login
    public_key: str | None = None  # Debian hosts: the base64 of the one key accepted


def load_recording(name: str) -> dict[str, Any]:
    path = RECORDINGS / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8"))


class SshHostFake:
    """One host: one listening socket, any number of connections, each command answered from
    the recording with the faults applied."""

    def __init__(
        self, name: str, recording: dict[str, Any], login: Login, now: Callable[[], dt.datetime] | None = None
    ) -> None:
        self.name = name
        self.recording = recording
        self.login = login
        self.faults = HostFaults()
        self.now = now or (lambda: dt.datetime.now(dt.UTC))
        self.commands: list[str] = []  # every command received, for the tests
        self.connections = 0
        self._listener: socket.socket | None = None
        self._transports: list[paramiko.Transport] = []
        self._lock = threading.Lock()
        self.port: int | None = None

    # -- keys and faults ------------------------------------------------------------------------

    @property
    def host_key(self) -> paramiko.ECDSAKey:
        return seeded_key(f"vigie-lab-host:{self.name}" + (":reinstalled" if self.faults.host_key_changed else ""))

    def set_faults(self, faults: HostFaults) -> None:
        key_changed = faults.host_key_changed != self.faults.host_key_changed
        self.faults = faults
        if key_changed:  # a reinstalled host: its connections are gone with it
            self.drop_connections()

    # -- serving --------------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(16)
        self._listener = listener
        self.port = listener.getsockname()[1]
        threading.Thread(target=self._accept, args=(listener,), name=f"ssh-fake-{self.name}", daemon=True).start()
        return self.port

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return  # closed by stop()
            transport = paramiko.Transport(sock)
            transport.local_version = "SSH-2.0-OpenSSH_for_Windows_8.1" if self.kind != "linux" else (
                "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3")
            transport.add_server_key(self.host_key)
            # a client dropping its connection is a reset here, which paramiko logs as an ERROR
            transport.set_log_channel(TRANSPORT_LOG)
            with self._lock:
                self._transports.append(transport)
                self.connections += 1
            try:
                transport.start_server(server=_Server(self))
            except (paramiko.SSHException, EOFError, OSError):
                transport.close()

    def drop_connections(self) -> None:
        with self._lock:
            transports, self._transports = self._transports, []
        for transport in transports:
            transport.close()

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.drop_connections()

    # -- answers --------------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        return str(self.recording["kind"])

    def answer(self, command: str) -> tuple[int, str, str]:
        """(exit status, stdout, stderr) of ``command``."""
        self.commands.append(command)
        if self.kind == "linux":
            return self._linux(command)
        match = re.match(r"^(powershell|pwsh)\.exe .*-EncodedCommand (\S+)$", command)
        if match is None:
            word = command.split(" ", 1)[0]
            return 1, "", (f"'{word}' is not recognized as an internal or external command,\r\n"
                           "operable program or batch file.\r\n")
        script = script_of(command)
        for marker, key in POWERSHELL_MARKERS:
            if marker in script:
                return self._powershell(key, script)
        return 1, "", "The term is not recognized as the name of a cmdlet, function, script file, or operable program."

    def _powershell(self, key: str, script: str) -> tuple[int, str, str]:
        answers = self.recording["answers"]
        computer = self.recording.get("computer", self.name.upper())
        if key not in answers:
            return 1, "", (f"The term '{key}' is not recognized as the name of a cmdlet, function, script file, "
                           "or operable program.\r\n")
        if key in HYPERV_CMDLETS and self.faults.access_denied:
            return 1, "", ("You do not have the required permission to complete this task. Contact the administrator "
                           f"of the authorization policy for the computer '{computer}'.\r\n")
        value = json.loads(json.dumps(answers[key]))  # a copy to change
        if key == "Get-VM":
            for vm in value:
                if vm["Name"] in self.faults.saved_vms:
                    vm.update(State="Saved", Uptime={"$timespan_s": 0}, CPUUsage=0, MemoryAssigned=0, MemoryDemand=0,
                              Heartbeat=None)
                if vm["Name"] in self.faults.critical_replications:
                    vm.update(ReplicationHealth=3, ReplicationState=9)
        elif key == "Get-VMReplication":
            for item in value:
                if item["VMName"] in self.faults.critical_replications:
                    # replication stopped: health Critical, state Error, the last cycle an hour back
                    item.update(ReplicationHealth=3, ReplicationState=9, LastReplicationTime={"$ago_s": 3720})
        elif key == "Get-Service":
            asked = {name.lower() for name in re.findall(r"'([^']+)'", script.split("-Name", 1)[1].split("-Error")[0])}
            value = [s for s in value if s["Name"].lower() in asked]
            for service in value:
                if service["Name"].lower() in {s.lower() for s in self.faults.stopped_services}:
                    service["Status"] = 1
        return 0, self._json(value) + "\r\n", ""

    def _json(self, value: Any) -> str:
        version = str(self.recording.get("powershell", "5.1"))
        text = json.dumps(self._render(value, version), ensure_ascii=False, separators=(",", ":"))
        # 5.1 escapes the slashes of its dates: "\/Date(1714557600000)\/"
        return re.sub(r'"/Date\((-?\d+)\)/"', r'"\\/Date(\1)\\/"', text)

    def _render(self, value: Any, version: str) -> Any:
        if isinstance(value, list):
            return [self._render(v, version) for v in value]
        if not isinstance(value, dict):
            return value
        if "$ago_s" in value:
            moment = self.now() - dt.timedelta(seconds=value["$ago_s"])
            if value.get("$format") == "iso":  # a script's .ToUniversalTime().ToString('o')
                return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
            if version.startswith("5"):
                return f"/Date({int(moment.timestamp() * 1000)})/"
            # 7.x: local time with its offset, 7 decimals (the hosts' Europe/Paris, in winter)
            local = moment.astimezone(dt.timezone(dt.timedelta(hours=1)))
            return local.strftime("%Y-%m-%dT%H:%M:%S.%f0") + "+01:00"
        if "$timespan_s" in value:
            return timespan(value["$timespan_s"])
        return {k: self._render(v, version) for k, v in value.items()}

    def _linux(self, command: str) -> tuple[int, str, str]:
        plain = command.removeprefix("LC_ALL=C ")
        answers = self.recording["answers"]
        key = next((key for prefix, key in LINUX_COMMANDS if plain.startswith(prefix)), None)
        if key is None:
            return 127, "", f"sh: 1: {plain.split(' ', 1)[0]}: not found\n"
        if key == "docker":
            lines = []
            for container in answers["docker"]:
                if container["Names"] in self.faults.stopped_containers:
                    container = {**container, "State": "exited", "Status": "Exited (137) 2 minutes ago", "Ports": ""}
                lines.append(json.dumps(container, separators=(",", ":")))
            return 0, "".join(f"{line}\n" for line in lines), ""
        if key == "pg_isready" and self.faults.postgresql_refusing:
            return 2, "localhost:5432 - no response\n", ""
        return 0, answers[key], ""


def timespan(total_seconds: float) -> dict[str, Any]:
    """A .NET TimeSpan as ConvertTo-Json writes it."""
    ticks = int(total_seconds * 10_000_000)
    whole = int(total_seconds)
    return {
        "Ticks": ticks, "Days": whole // 86400, "Hours": whole % 86400 // 3600, "Milliseconds": 0,
        "Minutes": whole % 3600 // 60, "Seconds": whole % 60, "TotalDays": total_seconds / 86400,
        "TotalHours": total_seconds / 3600, "TotalMilliseconds": total_seconds * 1000,
        "TotalMinutes": total_seconds / 60, "TotalSeconds": float(total_seconds),
    }


class _Server(paramiko.ServerInterface):
    def __init__(self, fake: SshHostFake) -> None:
        self.fake = fake

    def get_allowed_auths(self, username: str) -> str:
        return "publickey" if self.fake.login.public_key else "password"

    def check_auth_password(self, username: str, password: str) -> int:
        login = self.fake.login
        ok = login.password is not None and username == login.user and password == login.password
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        login = self.fake.login
        ok = login.public_key is not None and username == login.user and key.get_base64() == login.public_key
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        # answered off the transport's thread: a large answer must not block its reading
        threading.Thread(target=self._answer, args=(channel, command.decode("utf-8", "replace")), daemon=True).start()
        return True

    def _answer(self, channel: paramiko.Channel, command: str) -> None:
        status, out, err = self.fake.answer(command)
        try:
            if out:
                channel.sendall(out.encode())
            if err:
                channel.sendall_stderr(err.encode())
            channel.send_exit_status(status)
            # EOF, then wait for the client's close: closing first could overtake the exec request's
            # reply, which paramiko sends after this handler's thread started
            channel.shutdown_write()
            channel.settimeout(60)
            while channel.recv(4096):
                continue
            channel.close()
        except (OSError, EOFError, paramiko.SSHException):
            return  # the client went away mid-answer: nobody is left to tell
