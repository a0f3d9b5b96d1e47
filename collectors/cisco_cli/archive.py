"""The configuration archive: one git repository per client, one file per device, a commit per change.

Uses the git command line (Debian's ``git``), run with no system or user configuration so that an
operator's settings (hooks, signing, aliases) never change what is stored. Author and date are
vigie's and the collector's clock, so a test can drive them.

What is stored is the running configuration *masked* and *without its volatile lines*:

- masked: every secret (enable secret/password, ``username ... secret|password``, SNMP communities
  and v3 passphrases, TACACS+/RADIUS keys, key-strings, OSPF/BGP/NTP authentication keys, IKE
  pre-shared keys, line passwords, PPP passwords) is replaced by ``<masked:HMAC>``: 8 hex digits of
  an HMAC-SHA256 of the secret under a key kept beside the archive (``mask.key``, mode 0600). So a
  rotated password still shows as a changed line in the diff, and the secret cannot be read back
  or guessed from the archive alone. The type digit (``secret 9``, ``key 7``) is kept: it says
  which encryption the device uses;
- volatile lines left out: ``Building configuration...``, ``Current configuration : N bytes``,
  ``! Last configuration change at ...`` (read first: it says when and by whom), ``! NVRAM config
  last updated at ...``, ``! No configuration change since last restart``, ``ntp clock-period N``
  (the device tunes it itself), and the configured ``ignore_lines``.

No vigie import: the collector hands it paths, a clock and the text.
"""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import hashlib
import hmac
import os
import re
import secrets
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

GIT_TIMEOUT_S = 30
MASKED = "<masked:{}>"

# IOS's own stamp: "! Last configuration change at 08:01:57 CET Mon Nov 30 2026 by admin"
LAST_CHANGE = re.compile(r"^! Last configuration change at (?P<at>.+?)(?: by (?P<by>\S+))?\s*$")

VOLATILE = tuple(re.compile(p) for p in (
    r"^Building configuration\.\.\.\s*$",
    r"^Current configuration ?: \d+ bytes\s*$",
    r"^! Last configuration change at ",
    r"^! NVRAM config last updated at ",
    r"^! No configuration change since last restart",
    r"^\s*ntp clock-period \d+\s*$",
))

_T = r"(?: [0-9])?"  # the encryption type before a secret: 0 clear, 5/8/9 hashes, 6 AES, 7 Vigenère
# Each pattern: the text kept (``keep``) then the secret (``secret``), masked wherever it matches.
SECRET_LINES = tuple(re.compile(p) for p in (
    rf"^(?P<keep>\s*enable (?:secret|password)(?: level \d+)?{_T} )(?P<secret>\S+)",
    rf"^(?P<keep>\s*username \S+(?: .*?)? (?:secret|password){_T} )(?P<secret>\S+)",
    r"^(?P<keep>\s*snmp-server community )(?P<secret>\S+)",
    r"^(?P<keep>\s*snmp-server host \S+(?: vrf \S+)?(?: (?:traps|informs))?"
    r"(?: version (?:1|2c|3 (?:auth|noauth|priv)))? )(?P<secret>\S+)",
    r"^(?P<keep>\s*snmp-server user .*? auth (?:md5|sha|sha-?\d+) )(?P<secret>\S+)",
    r"^(?P<keep>\s*snmp-server user .*? priv (?:des|3des|aes \d+|des56) )(?P<secret>\S+)",
    rf"^(?P<keep>\s*(?:tacacs|radius)-server (?:host \S+ .*?)?key{_T} )(?P<secret>\S+)",
    rf"^(?P<keep>\s*server-key{_T} )(?P<secret>\S+)",
    rf"^(?P<keep>\s*key-string{_T} )(?P<secret>\S+)",
    r"^(?P<keep>\s*ntp authentication-key \d+ \S+ )(?P<secret>\S+)",
    rf"^(?P<keep>\s*(?!ntp ).*?\bauthentication-key{_T} )(?P<secret>\S+)",
    rf"^(?P<keep>.*\bmessage-digest-key \d+ md5{_T} )(?P<secret>\S+)",
    rf"^(?P<keep>\s*neighbor \S+ password{_T} )(?P<secret>\S+)",
    rf"^(?P<keep>\s*crypto isakmp key{_T} )(?P<secret>\S+)",
    rf"^(?P<keep>\s*pre-shared-key(?: (?:local|remote))?(?: address \S+(?: \S+)?)?(?: key)?{_T} )(?P<secret>\S+)",
    rf"^(?P<keep>\s*(?:password|secret){_T} )(?P<secret>\S+)",
    rf"^(?P<keep>.*\bppp (?:chap|pap) (?:password|sent-username \S+ password){_T} )(?P<secret>\S+)",
    rf"^(?P<keep>.*\bauthentication (?:md5 key-string|text){_T} )(?P<secret>\S+)",
    r"^(?P<keep>.*\bwpa-psk (?:ascii|hex)(?: [0-9])? )(?P<secret>\S+)",
))
# `key 7 ...` alone on a line is a secret inside these blocks (a key chain's `key 1` is an index)
KEY_BLOCKS = re.compile(r"^(?:tacacs server|radius server|aaa server radius|radius dynamic-author)\b")
BLOCK_KEY = re.compile(rf"^(?P<keep>\s+key{_T} )(?P<secret>\S+)")


class ArchiveError(Exception):
    """git failed, or the archive could not be written: the message says which step."""


@dataclass(frozen=True)
class Normalised:
    text: str  # masked, volatile lines out, LF line ends, one final newline
    changed_at: str | None  # IOS's "Last configuration change at" stamp
    changed_by: str | None


@dataclass(frozen=True)
class Stored:
    commit: str  # the device's latest version (full hash)
    versions: int  # how many versions of the device's file the archive holds
    changed: bool  # this backup stored a new version (False: same as the last, or a baseline)
    baseline: bool  # this backup was the device's first
    diff: str | None  # unified diff from the previous version (None unless changed)
    lines_added: int | None
    lines_removed: int | None


class Masker:
    """Replaces secrets with ``<masked:HMAC>``; the key is created on first use."""

    def __init__(self, key_path: Path) -> None:
        self.key_path = key_path
        self._key: bytes | None = None

    def _secret_key(self) -> bytes:
        if self._key is None:
            try:
                self._key = self.key_path.read_bytes()
            except FileNotFoundError:
                self.key_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                key = secrets.token_bytes(32)
                try:
                    fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                except FileExistsError:  # another collector of this client wrote it first
                    self._key = self.key_path.read_bytes()
                else:
                    with os.fdopen(fd, "wb") as out:
                        out.write(key)
                    self._key = key
        return self._key

    def token(self, secret: str) -> str:
        return MASKED.format(hmac.new(self._secret_key(), secret.encode(), hashlib.sha256).hexdigest()[:8])

    def line(self, line: str, in_key_block: bool) -> str:
        patterns = (*SECRET_LINES, BLOCK_KEY) if in_key_block else SECRET_LINES
        for pattern in patterns:
            match = pattern.match(line)
            if match and not match.group("secret").startswith("<masked:"):
                line = line[: match.start("secret")] + self.token(match.group("secret")) + line[match.end("secret"):]
        return line


def normalise(text: str, masker: Masker, ignore: Sequence[re.Pattern[str]] = ()) -> Normalised:
    changed_at = changed_by = None
    lines: list[str] = []
    in_key_block = False
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.rstrip()
        stamp = LAST_CHANGE.match(line)
        if stamp:
            changed_at, changed_by = stamp.group("at"), stamp.group("by")
        if any(p.search(line) for p in VOLATILE) or any(p.search(line) for p in ignore):
            continue
        if line and not line[0].isspace():
            in_key_block = bool(KEY_BLOCKS.match(line))
        lines.append(masker.line(line, in_key_block))
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return Normalised("\n".join(lines) + "\n", changed_at, changed_by)


_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One writer per archive: a lock per process (the collectors of one client share the
    repository) and a file lock across processes (`vigie collect` beside a running agent)."""
    with _locks_guard:
        lock = _locks.setdefault(path, threading.Lock())
    with lock:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


class ConfigArchive:
    """``root``: the client's archive directory (a git repository, created on first write)."""

    def __init__(self, root: Path, max_diff_lines: int = 200) -> None:
        self.root = root
        self.max_diff_lines = max_diff_lines

    def _git(self, *args: str, when: float) -> str:
        stamp = f"@{int(when)} +0000"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_AUTHOR_NAME": "vigie", "GIT_AUTHOR_EMAIL": "vigie@localhost", "GIT_AUTHOR_DATE": stamp,
            "GIT_COMMITTER_NAME": "vigie", "GIT_COMMITTER_EMAIL": "vigie@localhost", "GIT_COMMITTER_DATE": stamp,
        }
        try:
            done = subprocess.run(
                ["git", "-C", str(self.root), *args], env=env, capture_output=True, text=True, timeout=GIT_TIMEOUT_S,
            )
        except FileNotFoundError:
            raise ArchiveError("git is not installed (the configuration archive needs the git command)") from None
        except subprocess.TimeoutExpired:
            raise ArchiveError(f"git {args[0]}: no answer in {GIT_TIMEOUT_S} s ({self.root})") from None
        if done.returncode != 0:
            raise ArchiveError(f"git {args[0]} failed in {self.root}: {done.stderr.strip() or done.returncode}")
        return done.stdout

    def _ensure_repository(self, when: float) -> None:
        if not (self.root / ".git").is_dir():
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._git("init", "-q", "-b", "main", when=when)

    @staticmethod
    def file_name(device: str) -> str:
        return f"{device}.cfg"

    def store(self, device: str, config: Normalised, when: float) -> Stored:
        """Keep ``config`` as the device's latest version: a commit when it differs."""
        name = self.file_name(device)
        path = self.root / name
        with _locked(self.root.parent / f"{self.root.name}.lock"):
            self._ensure_repository(when)
            previous = path.read_text(encoding="utf-8") if path.exists() else None
            if previous == config.text:
                return Stored(self._head(name, when), self._count(name, when), False, False, None, None, None)
            previous_commit = self._head(name, when) if previous is not None else None
            path.write_text(config.text, encoding="utf-8")
            self._git("add", "--", name, when=when)
            if previous is None:
                message = f"{device}: baseline"
            else:
                by = f" by {config.changed_by}" if config.changed_by else ""
                at = f" at {config.changed_at}" if config.changed_at else ""
                message = f"{device}: running-config changed{at}{by}"
            self._git("commit", "-q", "--no-verify", "-m", message, "--", name, when=when)
            commit = self._head(name, when)
            versions = self._count(name, when)
        if previous is None:
            return Stored(commit, versions, False, True, None, None, None)
        diff, added, removed = self._diff(device, previous, config, previous_commit or "", commit)
        return Stored(commit, versions, True, False, diff, added, removed)

    def _head(self, name: str, when: float) -> str:
        return self._git("log", "-1", "--format=%H", "--", name, when=when).strip()

    def _count(self, name: str, when: float) -> int:
        return int(self._git("rev-list", "--count", "HEAD", "--", name, when=when).strip() or 0)

    def _diff(self, device: str, previous: str, config: Normalised, old: str, new: str) -> tuple[str, int, int]:
        by = f", changed by {config.changed_by}" if config.changed_by else ""
        lines = list(difflib.unified_diff(
            previous.splitlines(), config.text.splitlines(),
            fromfile=f"{device} {old[:10]}", tofile=f"{device} {new[:10]}{by}", lineterm="",
        ))
        added = sum(1 for line in lines[2:] if line.startswith("+"))
        removed = sum(1 for line in lines[2:] if line.startswith("-"))
        if len(lines) > self.max_diff_lines:
            rest = len(lines) - self.max_diff_lines
            lines = [*lines[: self.max_diff_lines], f"... {rest} more diff lines: git -C {self.root} show {new[:10]}"]
        return "\n".join(lines), added, removed
