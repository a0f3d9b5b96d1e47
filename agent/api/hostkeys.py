"""The SSH host keys vigie has met: trusted on first use, a change refused.

Every SSH-based plugin (Linux, Windows and Hyper-V hosts over SSH, network CLI) keeps its
``known_hosts`` in its :class:`~agent.api.plugin.CollectorContext` state directory, in OpenSSH's
format (so an operator can read it, or seed it with ``ssh-keyscan``). The first key a host shows
is recorded; a different key later is refused with :class:`HostKeyChanged` — the collector's run
fails naming both fingerprints, and nothing is sent over that connection. A changed key is a
security event (a reinstalled host, or someone in the middle): an operator who has checked it
removes the host's line (``ssh-keygen -R '[host]:port' -f FILE``) and the next contact records
the new key.

This module knows no SSH library: plugins hand it the key type and the key's wire bytes
(paramiko: ``key.get_name()``, ``key.asbytes()``).
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from pathlib import Path

from agent.api.collector import CollectError


class HostKeyChanged(CollectError):
    """The host showed a key other than the one recorded for it."""

    def __init__(self, host: str, known: str, shown: str, path: Path) -> None:
        super().__init__(
            f"{host}: SSH host key changed (recorded {known}, shown {shown}): refused; if the change "
            f"is expected, remove its line from {path}"
        )
        self.host = host
        self.known = known
        self.shown = shown


def fingerprint(key_bytes: bytes) -> str:
    """OpenSSH's SHA256 fingerprint: ``SHA256:`` and unpadded base64."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key_bytes).digest()).decode().rstrip("=")


def host_entry(host: str, port: int) -> str:
    """How known_hosts names a host: ``host`` on port 22, ``[host]:port`` elsewhere."""
    return host if port == 22 else f"[{host}]:{port}"


class KnownHosts:
    """One known_hosts file. Safe to share between the collectors of one process."""

    _lock = threading.Lock()  # one writer at a time across every instance in this process

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _read(self) -> dict[tuple[str, str], str]:
        """(host entry, key type) -> base64 key; comments and unreadable lines are kept out."""
        entries: dict[tuple[str, str], str] = {}
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return entries
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 3 and not parts[0].startswith("#"):
                for host in parts[0].split(","):
                    entries[(host, parts[1])] = parts[2]
        return entries

    def key_types(self, host: str, port: int) -> list[str]:
        """The key types recorded for the host, so a client can ask for that type first: a server
        with several host keys shows the one the client prefers, and a client whose preference
        changed (a library upgrade) would otherwise meet "another" key."""
        entry = host_entry(host, port)
        with self._lock:
            return [key_type for (host_name, key_type) in self._read() if host_name == entry]

    def check(self, host: str, port: int, key_type: str, key_bytes: bytes) -> bool:
        """True when this is the first contact (the key is now recorded), False when the key is
        the recorded one; raise :class:`HostKeyChanged` when it is not."""
        entry = host_entry(host, port)
        shown = base64.b64encode(key_bytes).decode()
        with self._lock:
            entries = self._read()
            known = entries.get((entry, key_type))
            if known == shown:
                return False
            if known is not None:
                raise HostKeyChanged(entry, fingerprint(base64.b64decode(known)), fingerprint(key_bytes), self.path)
            # another key type recorded for this host is a change too: a host does not drop its key
            for (other_host, other_type), other in entries.items():
                if other_host == entry:
                    raise HostKeyChanged(
                        entry, f"{other_type} {fingerprint(base64.b64decode(other))}",
                        f"{key_type} {fingerprint(key_bytes)}", self.path,
                    )
            self._append(f"{entry} {key_type} {shown}\n")
            return True

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            out.write(line)
            out.flush()
            os.fsync(out.fileno())
