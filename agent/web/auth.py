"""Who is asking: the web app's users (``agent.web.users``), their passwords and tokens, the
session's CSRF token, and the limit on failed logins.

A :class:`Principal` is resolved on the server for every request, from the session cookie (signed,
carrying the user's name and a digest of the credential it was opened with: a changed password
or a removed user ends the session) or from an ``Authorization: Bearer`` token. The NOC sees
every client, a DSI only its own: the one test of scope is :meth:`Principal.sees`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from agent.api import SecretRef
from agent.config.schema import WebSettings, WebUser

_HASHER = PasswordHasher()
# Verified against when the user name is unknown, so a miss costs the same time as a wrong password.
_DUMMY_HASH = _HASHER.hash(secrets.token_hex(16))
CSRF_KEY = "csrf"


def hash_password(password: str) -> str:
    """The argon2id hash to put in ``agent.web.users[].password_hash``."""
    return _HASHER.hash(password)


@dataclass(frozen=True)
class Principal:
    name: str
    role: str  # noc | dsi
    client: str | None  # a DSI's client; None: the NOC, every client

    def sees(self, client: str) -> bool:
        return self.client is None or self.client == client

    def visible(self, clients: Iterable[str]) -> list[str]:
        return [c for c in clients if self.sees(c)]


def _principal(user: WebUser) -> Principal:
    return Principal(user.name, user.role, user.client)


def credential_digest(user: WebUser) -> str:
    """What a session keeps of the credential it was opened with (never the hash itself)."""
    return hashlib.sha256((user.password_hash or "").encode()).hexdigest()[:16]


class Users:
    def __init__(self, settings: WebSettings, secret: Callable[[SecretRef], str]) -> None:
        self._by_name = {user.name: user for user in settings.users}
        self._tokens = [(secret(user.token).encode(), user) for user in settings.users if user.token is not None]

    def login(self, name: str, password: str) -> WebUser | None:
        user = self._by_name.get(name)
        hashed = user.password_hash if user is not None and user.password_hash else _DUMMY_HASH
        try:
            _HASHER.verify(hashed, password)
        except (VerificationError, InvalidHashError):
            return None
        return user if hashed is not _DUMMY_HASH else None

    def from_session(self, name: object, digest: object) -> Principal | None:
        user = self._by_name.get(name) if isinstance(name, str) else None
        if user is None or user.password_hash is None or not isinstance(digest, str):
            return None
        return _principal(user) if hmac.compare_digest(digest, credential_digest(user)) else None

    def from_token(self, token: str) -> Principal | None:
        given = token.encode()
        found = None
        for expected, user in self._tokens:  # every one compared: the time says nothing of which matched
            if hmac.compare_digest(given, expected):
                found = user
        return None if found is None else _principal(found)


class LoginLimiter:
    """At most ``attempts`` failed logins per key (a user name, an address) in ``window_s``."""

    def __init__(self, attempts: int, window_s: float, clock: Callable[[], float]) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        found = self._failures.setdefault(key, deque())
        horizon = self.clock() - self.window_s
        while found and found[0] <= horizon:
            found.popleft()
        return found

    def blocked(self, keys: Iterable[str]) -> bool:
        return any(len(self._recent(key)) >= self.attempts for key in keys)

    def failed(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._recent(key).append(self.clock())
        # forget keys whose failures all aged out, so a scan of names cannot grow the table forever
        for key in [k for k in self._failures if not self._recent(k)]:
            del self._failures[key]


def csrf_token(session: dict) -> str:
    token = session.get(CSRF_KEY)
    if not isinstance(token, str):
        token = session[CSRF_KEY] = secrets.token_urlsafe(32)
    return token


def csrf_ok(session: dict, given: object) -> bool:
    expected = session.get(CSRF_KEY)
    return isinstance(expected, str) and isinstance(given, str) and hmac.compare_digest(expected, given)
