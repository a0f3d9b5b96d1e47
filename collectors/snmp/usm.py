"""The User-based Security Model (RFC 3414) for SNMPv3 notifications: a trap checked and decrypted
with the USM user of the inventory device that sent it.

For a trap the *sender* is the authoritative engine, so its keys are localized to the engine ID the
message carries (RFC 3414 section 2.6): the receiver needs only the device's user and passwords,
not a table of engine IDs set up in advance as snmptrapd's ``createUser -e`` asks. The passwords are
stretched once per (password, hash) and localized once per engine ID; both are cached.

- authentication: HMAC-MD5-96 and HMAC-SHA-96 (RFC 3414), HMAC-SHA-2 (RFC 7860: SHA-224/256/384/512
  truncated to 16/24/32/48 octets);
- privacy: DES-CBC (RFC 3414 section 8), AES-128-CFB (RFC 3826), AES-192/256-CFB and 3DES-EDE with
  the key extension of the Reeder draft — what pysnmp's ``AES192``/``AES256``/``3DES``, and so
  vigie's own polling, use (Cisco does the same);
- timeliness (RFC 3414 section 3.2 step 7b, as a non-authoritative receiver): per engine ID, the
  latest boots and time seen; a message from an earlier boot, or more than 150 s behind the
  engine's time as estimated from the latest one, is a replay and refused.

Informs over SNMPv3 would make vigie the authoritative engine (engine ID discovery, Report PDUs):
not supported; the receiver counts and logs them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from collectors.snmp.ber import V3Message

FLAG_AUTH = 0x01
FLAG_PRIV = 0x02
TIME_WINDOW_S = 150
# auth protocol -> (hash, octets of the truncated HMAC in msgAuthenticationParameters)
AUTH_PROTOCOLS: dict[str, tuple[Callable[..., Any], int]] = {
    "md5": (hashlib.md5, 12),
    "sha": (hashlib.sha1, 12),
    "sha224": (hashlib.sha224, 16),
    "sha256": (hashlib.sha256, 24),
    "sha384": (hashlib.sha384, 32),
    "sha512": (hashlib.sha512, 48),
}
# priv protocol -> octets of localized key it needs (DES and 3DES: the key, then the pre-IV)
PRIV_KEY_OCTETS = {"des": 16, "3des": 32, "aes": 16, "aes128": 16, "aes192": 24, "aes256": 32}


class UsmError(ValueError):
    """A v3 message the device's user does not open. ``reason`` is the receiver's counter name."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class UsmUser:
    name: str
    auth_protocol: str | None = None
    auth_key: str | None = None
    priv_protocol: str | None = None
    priv_key: str | None = None

    @classmethod
    def from_credentials(cls, credentials: Mapping[str, Any]) -> UsmUser | None:
        """The SNMP credentials of a device (collectors.snmp.SnmpCredentials' keys) -> its USM
        user; None for a community (v1/v2c) login."""
        if not credentials.get("user"):
            return None
        return cls(
            name=str(credentials["user"]),
            auth_protocol=(str(credentials["auth_protocol"]).lower() if credentials.get("auth_protocol") else None),
            auth_key=str(credentials["auth_key"]) if credentials.get("auth_key") else None,
            priv_protocol=(str(credentials["priv_protocol"]).lower() if credentials.get("priv_protocol") else None),
            priv_key=str(credentials["priv_key"]) if credentials.get("priv_key") else None,
        )

    @property
    def flags(self) -> int:
        """The security level this user's messages must carry."""
        return (FLAG_AUTH if self.auth_protocol else 0) | (FLAG_PRIV if self.priv_protocol else 0)


@lru_cache(maxsize=4096)
def _stretched(password: str, auth_protocol: str) -> bytes:
    """RFC 3414 A.2: the hash of 1 MiB of the password repeated (the costly part: done once)."""
    return _stretch(password.encode("utf-8"), AUTH_PROTOCOLS[auth_protocol][0])


def _stretch(passphrase: bytes, hash_: Callable[..., Any]) -> bytes:
    if not passphrase:
        raise UsmError("auth_failed", "empty USM password")
    repeated = passphrase * (1_048_576 // len(passphrase) + 1)
    return hash_(repeated[:1_048_576]).digest()


def _localized(key: bytes, engine_id: bytes, hash_: Callable[..., Any]) -> bytes:
    return hash_(key + engine_id + key).digest()


@lru_cache(maxsize=4096)
def auth_key(password: str, auth_protocol: str, engine_id: bytes) -> bytes:
    return _localized(_stretched(password, auth_protocol), engine_id, AUTH_PROTOCOLS[auth_protocol][0])


@lru_cache(maxsize=4096)
def priv_key(password: str, auth_protocol: str, priv_protocol: str, engine_id: bytes) -> bytes:
    """The localized privacy key, extended as the Reeder draft does where the protocol needs more
    octets than the hash gives (3DES, AES-192/256 after MD5 or SHA-1)."""
    hash_ = AUTH_PROTOCOLS[auth_protocol][0]
    key = _localized(_stretched(password, auth_protocol), engine_id, hash_)
    while len(key) < PRIV_KEY_OCTETS[priv_protocol]:
        key += _localized(_stretch(key, hash_), engine_id, hash_)
    return key[: PRIV_KEY_OCTETS[priv_protocol]]


class Usm:
    """Opens the v3 notifications of the inventory's users; remembers each engine's clock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._engines: dict[bytes, tuple[int, int, float]] = {}  # engine ID -> (boots, time, seen at)

    def open(self, message: V3Message, datagram: bytes, user: UsmUser) -> bytes:
        """The scoped PDU (plaintext) of ``message``, authenticated and decrypted with ``user``;
        :class:`UsmError` naming why not."""
        if message.user.decode("utf-8", "replace") != user.name:
            raise UsmError("unknown_user", f"user {message.user.decode('utf-8', 'replace')!r} is not the device's")
        level = message.flags & (FLAG_AUTH | FLAG_PRIV)
        if level != user.flags:
            raise UsmError("wrong_security_level", f"security level {_level(level)}, the device's user is "
                                                   f"{_level(user.flags)}")
        if not level & FLAG_AUTH:
            return message.data
        assert user.auth_protocol is not None and user.auth_key is not None
        self._authenticate(message, datagram, user)
        self._in_time(message)
        if not level & FLAG_PRIV:
            return message.data
        return self._decrypt(message, user)

    def _authenticate(self, message: V3Message, datagram: bytes, user: UsmUser) -> None:
        assert user.auth_protocol is not None and user.auth_key is not None
        hash_, length = AUTH_PROTOCOLS[user.auth_protocol]
        if len(message.auth_params) != length:
            raise UsmError("auth_failed", f"msgAuthenticationParameters of {len(message.auth_params)} octets, "
                                          f"{user.auth_protocol} needs {length}")
        key = auth_key(user.auth_key, user.auth_protocol, message.engine_id)
        at = message.auth_offset
        zeroed = datagram[:at] + bytes(length) + datagram[at + length :]
        digest = hmac.new(key, zeroed, hash_).digest()[:length]
        if not hmac.compare_digest(digest, message.auth_params):
            raise UsmError("auth_failed", f"wrong digest for user {user.name!r} ({user.auth_protocol}): "
                                          "another password, or a forged message")

    def _in_time(self, message: V3Message) -> None:
        now = self.clock()
        known = self._engines.get(message.engine_id)
        if known is not None:
            boots, engine_time, seen_at = known
            estimated = engine_time + (now - seen_at)
            if message.boots < boots or (message.boots == boots and message.time < estimated - TIME_WINDOW_S):
                raise UsmError("not_in_time_window", f"engine boots {message.boots} time {message.time}: older "
                                                     f"than boots {boots} time {estimated:.0f} (a replay?)")
            if (message.boots, message.time) <= (boots, engine_time):
                return
        self._engines[message.engine_id] = (message.boots, message.time, now)

    def _decrypt(self, message: V3Message, user: UsmUser) -> bytes:
        assert user.priv_protocol is not None and user.priv_key is not None and user.auth_protocol is not None
        if len(message.priv_params) != 8:
            raise UsmError("decryption_failed", f"msgPrivacyParameters of {len(message.priv_params)} octets, not 8")
        key = priv_key(user.priv_key, user.auth_protocol, user.priv_protocol, message.engine_id)
        salt = message.priv_params
        if user.priv_protocol in ("des", "3des"):
            cipher_key, pre_iv = key[:-8], key[-8:]
            if len(cipher_key) == 8:
                cipher_key *= 3  # DES as 3DES with one key three times (EDE of K, K, K is DES of K)
            if len(message.data) % 8:
                raise UsmError("decryption_failed", f"encryptedPDU of {len(message.data)} octets, not whole blocks")
            iv = bytes(a ^ b for a, b in zip(pre_iv, salt, strict=True))
            cipher = Cipher(TripleDES(cipher_key), modes.CBC(iv))
        else:
            iv = message.boots.to_bytes(4, "big") + message.time.to_bytes(4, "big") + salt
            cipher = Cipher(algorithms.AES(key), CFB(iv))
        decryptor = cipher.decryptor()
        return decryptor.update(message.data) + decryptor.finalize()


def _level(flags: int) -> str:
    return "authPriv" if flags & FLAG_PRIV else "authNoPriv" if flags & FLAG_AUTH else "noAuthNoPriv"
