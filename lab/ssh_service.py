"""The lab's SSH hosts (lab/ssh_hosts.py) as a `vigie lab up` service: one fake per device of the
estate that names the ``hyperv``, ``windows`` or ``linux`` collector, on the loopback port its
collector's ``port`` option gives, answering from the recording its ``x-lab: {ssh: NAME}`` names
(lab/ssh_recordings/NAME.json). It accepts the login of the device's secret for that collector
(lab/estates/secrets.yaml: a password for Windows hosts, the lab's key for Debian ones).

Faults (``vigie lab fault ofdt/hv1 hyperv-vm-saved vm-gfi``, ...) change what one host answers.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import paramiko
import yaml

from lab.estate import EstateError, expand, is_loopback
from lab.services import Context, Fault, FaultError, FaultKind, LabService
from lab.ssh_hosts import RECORDINGS, HostFaults, Login, SshHostFake, load_recording

SSH_COLLECTORS = ("hyperv", "windows", "linux")


@dataclass
class HostEntry:
    key: str  # CLIENT/DEVICE
    collector: str
    host: str
    port: int
    recording: str
    login: Login
    fake: SshHostFake | None = None


def _login(context: Context, key: str, credentials: Any, collector: str) -> Login:
    name = credentials.get(collector) if isinstance(credentials, dict) else credentials
    secret = context.estate.secrets.get(str(name)) if name else None
    if not isinstance(secret, dict) or "user" not in secret:
        raise EstateError(f"{key}: {collector} needs credentials whose secret holds a user (lab/estates/secrets.yaml)")
    if secret.get("private_key"):
        key_obj = paramiko.ECDSAKey.from_private_key(io.StringIO(str(secret["private_key"])))
        return Login(str(secret["user"]), public_key=key_obj.get_base64())
    return Login(str(secret["user"]), password=str(secret.get("password", "")))


class SshHostsService(LabService):
    name = "ssh_hosts"
    fault_kinds = (
        FaultKind("ssh-host-key-changed", "device", "", "the SSH host shows another host key (a reinstall)"),
        FaultKind("hyperv-access-denied", "device", "", "the Hyper-V cmdlets answer access denied"),
        FaultKind("hyperv-vm-saved", "device", "VM", "VM is in Saved state on the Hyper-V host"),
        FaultKind("hyperv-replication-critical", "device", "VM", "replication of VM is Critical (state Error)"),
        FaultKind("windows-service-stopped", "device", "SERVICE", "Windows service SERVICE is stopped"),
        FaultKind("linux-container-stopped", "device", "CONTAINER", "Docker container CONTAINER has exited (137)"),
        FaultKind("linux-postgresql-refusing", "device", "", "pg_isready on the host answers no response"),
    )

    def __init__(self, entries: list[HostEntry]) -> None:
        self.entries = entries

    @classmethod
    def for_estate(cls, context: Context) -> SshHostsService | None:
        entries: list[HostEntry] = []
        for path in context.estate.paths:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            for client in data.get("clients") or []:
                for site in client.get("sites") or []:
                    for device in site.get("devices") or []:
                        entries.extend(cls._entries(context, client["name"], device))
        return cls(entries) if entries else None

    @classmethod
    def _entries(cls, context: Context, client: str, device: dict[str, Any]) -> list[HostEntry]:
        found = []
        key = f"{client}/{device['name']}"
        for collector in SSH_COLLECTORS:
            if collector not in (device.get("collectors") or {}):
                continue
            options = device["collectors"][collector] or {}
            address = str(device.get("address", ""))
            if not is_loopback(address):
                raise EstateError(f"{key}: {collector}: {address!r} is not loopback; the lab serves loopback only")
            if "port" not in options:
                raise EstateError(f"{key}: {collector}: give the lab's SSH port as the collector's port option")
            recording = (device.get("x-lab") or {}).get("ssh")
            if not recording or not (RECORDINGS / f"{recording}.json").exists():
                raise EstateError(f"{key}: x-lab.ssh must name a recording of {RECORDINGS} (got {recording!r})")
            port = int(expand(str(options["port"]), context.environ))
            login = _login(context, key, device.get("credentials"), collector)
            found.append(HostEntry(key, collector, address, port, recording, login))
        return found

    async def start(self) -> None:
        for entry in self.entries:
            entry.fake = SshHostFake(entry.key, load_recording(entry.recording), entry.login)
            try:
                entry.fake.start(entry.host, entry.port)
            except OSError as exc:
                raise EstateError(f"tcp {entry.host}:{entry.port}: {exc.strerror} (another lab?)") from None

    async def stop(self) -> None:
        for entry in self.entries:
            if entry.fake is not None:
                entry.fake.stop()
                entry.fake = None

    def endpoints(self) -> list[str]:
        return [f"ssh {e.host}:{e.port}  {e.key} ({e.collector}, {e.recording})" for e in self.entries]

    def devices(self) -> list[tuple[str, str]]:
        return [(e.key, f"ssh://{e.login.user}@{e.host}:{e.port}") for e in self.entries]

    def examples(self) -> list[str]:
        return [f"vigie collect --config lab/estates/{e.key.split('/')[0]}.yaml --secrets lab/estates/secrets.yaml "
                f"--device {e.key} --collector {e.collector}" for e in self.entries[:1]]

    def _entry(self, target: str) -> HostEntry:
        for entry in self.entries:
            if entry.key == target:
                return entry
        raise FaultError(f"{target}: no hyperv, windows or linux collector of the estate points at the lab")

    def check_fault(self, fault: Fault) -> str:
        entry = self._entry(fault.target)
        kind = next(k for k in self.fault_kinds if k.name == fault.kind)
        wants_argument = bool(kind.usage)
        if len(fault.args) != int(wants_argument):
            raise FaultError(f"{fault.kind}: give {kind.usage or 'no argument'}")
        if fault.kind.startswith("hyperv-") and entry.collector != "hyperv":
            raise FaultError(f"{fault.target} is not a Hyper-V host of the lab")
        if fault.kind.startswith("linux-") and entry.collector != "linux":
            raise FaultError(f"{fault.target} is not a Debian host of the lab")
        if fault.kind.startswith("windows-") and entry.collector != "windows":
            raise FaultError(f"{fault.target} is not a Windows server of the lab")
        return f"{fault.target}: {kind.help.replace(kind.usage, ' '.join(fault.args)) if kind.usage else kind.help}"

    async def apply_faults(self, faults: Sequence[Fault]) -> None:
        for entry in self.entries:
            mine = [f for f in faults if f.target == entry.key]
            state = HostFaults()
            for fault in mine:
                argument = fault.args[0] if fault.args else ""
                if fault.kind == "ssh-host-key-changed":
                    state.host_key_changed = True
                elif fault.kind == "hyperv-access-denied":
                    state.access_denied = True
                elif fault.kind == "hyperv-vm-saved":
                    state.saved_vms.add(argument)
                elif fault.kind == "hyperv-replication-critical":
                    state.critical_replications.add(argument)
                elif fault.kind == "windows-service-stopped":
                    state.stopped_services.add(argument)
                elif fault.kind == "linux-container-stopped":
                    state.stopped_containers.add(argument)
                elif fault.kind == "linux-postgresql-refusing":
                    state.postgresql_refusing = True
            if entry.fake is not None:
                entry.fake.set_faults(state)
