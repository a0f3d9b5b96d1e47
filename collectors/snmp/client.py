"""The SNMP engine behind one small interface: ``get`` and ``walk`` returning typed values.

Everything pysnmp-specific lives in this module, so the engine can be swapped later for a faster
one (plain pysnmp costs about 9x the CPU of snmp_exporter per varbind) without touching profiles,
the collector or the tests. Nothing here imports from ``agent/``.

Values are decoded once, here, into :class:`SnmpValue`: ``int`` for every numeric type with its
``kind`` kept (a Counter32 wraps at 2**32, a Counter64 at 2**64, a Gauge never wraps), ``str`` for
printable OCTET STRINGs (hex otherwise), dotted ``str`` for OIDs. ``noSuchObject``,
``noSuchInstance`` and ``endOfMibView`` are not values: the OID is simply absent from the result.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import string
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from pyasn1.type import univ
from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.hlapi.v3arch import asyncio as hlapi
from pysnmp.proto import errind, rfc1902, rfc1905

from collectors.base import CollectError, Unreachable

log = logging.getLogger(__name__)

ValueKind = Literal[
    "integer", "gauge", "counter32", "counter64", "timeticks", "string", "hex", "oid", "ipaddress"
]

# Several MiB, because with 100+ devices in flight the default ~212 KiB buffer drops replies
# (see /work/shared/bench/README.md); the kernel may clamp SO_RCVBUF to net.core.rmem_max, so
# SO_RCVBUFFORCE is tried first (it works with CAP_NET_ADMIN).
RECEIVE_BUFFER_BYTES = 8 * 1024 * 1024
# CPython's socket module does not export SO_RCVBUFFORCE; 33 is its value in Linux's socket.h.
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)

# One request carries at most this many GET varbinds: small agents answer tooBig beyond that.
GET_CHUNK = 32

_PRINTABLE = frozenset(string.printable)


@dataclass(frozen=True, slots=True)
class SnmpValue:
    value: int | str
    kind: ValueKind

    @property
    def is_counter(self) -> bool:
        return self.kind in ("counter32", "counter64")


@dataclass(frozen=True)
class SnmpAuth:
    """How to talk to one agent. ``version`` is "1", "2c" or "3"."""

    version: Literal["1", "2c", "3"] = "2c"
    community: str = "public"
    user: str | None = None
    auth_protocol: str | None = None  # MD5 | SHA | SHA224 | SHA256 | SHA384 | SHA512
    auth_key: str | None = None
    priv_protocol: str | None = None  # DES | 3DES | AES | AES128 | AES192 | AES256
    priv_key: str | None = None
    context: str = ""  # SNMPv3 contextName (VRF contexts; snmpsim picks the device by it)

    def __post_init__(self) -> None:
        if self.version not in ("1", "2c", "3"):
            raise ValueError(f"version: {self.version!r} is not one of 1, 2c, 3")
        if self.version == "3":
            if not self.user:
                raise ValueError("user: required for SNMPv3")
            if self.auth_protocol and self.auth_protocol.upper() not in AUTH_PROTOCOLS:
                raise ValueError(f"auth_protocol: {self.auth_protocol!r} not in {sorted(AUTH_PROTOCOLS)}")
            if self.priv_protocol and self.priv_protocol.upper() not in PRIV_PROTOCOLS:
                raise ValueError(f"priv_protocol: {self.priv_protocol!r} not in {sorted(PRIV_PROTOCOLS)}")
            if self.priv_key and not self.auth_key:
                raise ValueError("priv_key: privacy needs an auth_key too (authPriv)")


AUTH_PROTOCOLS = {
    "MD5": hlapi.USM_AUTH_HMAC96_MD5,
    "SHA": hlapi.USM_AUTH_HMAC96_SHA,
    "SHA1": hlapi.USM_AUTH_HMAC96_SHA,
    "SHA224": hlapi.USM_AUTH_HMAC128_SHA224,
    "SHA256": hlapi.USM_AUTH_HMAC192_SHA256,
    "SHA384": hlapi.USM_AUTH_HMAC256_SHA384,
    "SHA512": hlapi.USM_AUTH_HMAC384_SHA512,
}
PRIV_PROTOCOLS = {
    "DES": hlapi.USM_PRIV_CBC56_DES,
    "3DES": hlapi.USM_PRIV_CBC168_3DES,
    "AES": hlapi.USM_PRIV_CFB128_AES,
    "AES128": hlapi.USM_PRIV_CFB128_AES,
    "AES192": hlapi.USM_PRIV_CFB192_AES,
    "AES256": hlapi.USM_PRIV_CFB256_AES,
}


def decode(value: object) -> SnmpValue | None:
    """pysnmp value -> SnmpValue; ``None`` for the "no such thing" exceptions and Null."""
    if isinstance(value, (rfc1905.NoSuchObject, rfc1905.NoSuchInstance, rfc1905.EndOfMibView)):
        return None
    # Order matters: the SNMP application types derive from univ.Integer / OctetString.
    if isinstance(value, rfc1902.Counter64):
        return SnmpValue(int(value), "counter64")
    if isinstance(value, rfc1902.Counter32):
        return SnmpValue(int(value), "counter32")
    if isinstance(value, rfc1902.TimeTicks):
        return SnmpValue(int(value), "timeticks")
    if isinstance(value, (rfc1902.Gauge32, rfc1902.Unsigned32)):
        return SnmpValue(int(value), "gauge")
    if isinstance(value, univ.Integer):
        return SnmpValue(int(value), "integer")
    if isinstance(value, rfc1902.IpAddress):
        return SnmpValue(".".join(str(b) for b in value.asOctets()), "ipaddress")
    if isinstance(value, univ.ObjectIdentifier):
        return SnmpValue(str(value), "oid")
    if isinstance(value, (rfc1902.Opaque, rfc1902.Bits)):
        return SnmpValue(value.asOctets().hex(), "hex")
    if isinstance(value, univ.OctetString):
        return decode_octets(value.asOctets())
    return None  # Null


def decode_octets(raw: bytes) -> SnmpValue:
    """Printable text stays text (trailing NULs some agents append are dropped); else hex."""
    text_bytes = raw.rstrip(b"\x00")
    try:
        text = text_bytes.decode("utf-8")
    except UnicodeDecodeError:
        return SnmpValue(raw.hex(), "hex")
    if all(ch in _PRINTABLE or ch.isprintable() for ch in text):
        return SnmpValue(text, "string")
    return SnmpValue(raw.hex(), "hex")


class _BigBufferUdpTransport(udp.UdpAsyncioTransport):
    """pysnmp's asyncio UDP transport; asyncio creates the socket inside
    ``loop.create_datagram_endpoint``, so the buffer is set when the socket is handed over."""

    def connection_made(self, transport: asyncio.DatagramTransport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            set_receive_buffer(sock, RECEIVE_BUFFER_BYTES)
        super().connection_made(transport)


def set_receive_buffer(sock: socket.socket, size: int) -> int:
    """Ask for ``size`` bytes of receive buffer; return what the kernel granted."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:  # no CAP_NET_ADMIN, or not Linux: the kernel clamps to net.core.rmem_max
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    # Linux reports twice the usable size (it counts its bookkeeping); say what is really usable.
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
    if granted < size:
        log.warning("SNMP receive buffer is %d bytes, not the %d asked for: raise net.core.rmem_max "
                    "or run with CAP_NET_ADMIN, or replies may drop with many devices in flight", granted, size)
    return granted


class _UdpTarget(hlapi.UdpTransportTarget):
    PROTO_TRANSPORT = _BigBufferUdpTransport


# One SnmpEngine per event loop: pysnmp binds its dispatcher to the loop it first runs in, and
# tests (or an embedding application) may run several loops in one process.
_ENGINES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, hlapi.SnmpEngine] = (
    weakref.WeakKeyDictionary()
)


def shared_engine() -> hlapi.SnmpEngine:
    loop = asyncio.get_running_loop()
    engine = _ENGINES.get(loop)
    if engine is None:
        engine = _ENGINES[loop] = hlapi.SnmpEngine()
    return engine


def receive_buffer_bytes(engine: hlapi.SnmpEngine | None = None) -> int | None:
    """Effective SO_RCVBUF of the engine's UDP socket (``None`` before the first request)."""
    engine = engine or shared_engine()
    dispatcher = engine.transport_dispatcher
    if dispatcher is None:
        return None
    transport = dispatcher.get_transport(udp.DOMAIN_NAME)
    sock = transport.transport.get_extra_info("socket") if transport and transport.transport else None
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) if sock is not None else None


class SnmpClient:
    """``get`` / ``walk`` against one agent.

    ``timeout_s`` is per request, ``retries`` the number of resends after the first one; a request
    that never gets an answer raises :class:`Unreachable` naming ``address:port``.
    """

    def __init__(
        self,
        address: str,
        port: int = 161,
        auth: SnmpAuth | None = None,
        timeout_s: float = 2.0,
        retries: int = 1,
        max_repetitions: int = 25,
        engine: hlapi.SnmpEngine | None = None,
    ) -> None:
        self.address = address
        self.port = port
        self.auth = auth or SnmpAuth()
        self.timeout_s = timeout_s
        self.retries = retries
        self.max_repetitions = max_repetitions
        self._engine = engine
        self._target: _UdpTarget | None = None
        self._auth_data = _auth_data(self.auth)
        self._context = hlapi.ContextData(contextName=self.auth.context)

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"

    async def get(self, oids: Iterable[str]) -> dict[str, SnmpValue]:
        wanted = [_strip(oid) for oid in oids]
        result: dict[str, SnmpValue] = {}
        for start in range(0, len(wanted), GET_CHUNK):
            chunk = wanted[start : start + GET_CHUNK]
            var_binds = await self._request("get", chunk)
            result.update(_decoded(var_binds))
        return result

    async def walk(self, base_oid: str) -> dict[str, SnmpValue]:
        """Every OID strictly under ``base_oid`` (GETBULK, or GETNEXT for SNMPv1)."""
        base = _strip(base_oid)
        prefix = base + "."
        result: dict[str, SnmpValue] = {}
        cursor = base
        while True:
            var_binds = await self._request("next", [cursor])
            last = cursor
            for name, value in var_binds:
                oid = str(name)
                if not oid.startswith(prefix) or isinstance(value, rfc1905.EndOfMibView):
                    return result
                if not _after(oid, last):
                    # A broken agent looping on the same OID would keep us here forever.
                    return result
                decoded = decode(value)
                if decoded is not None:
                    result[oid] = decoded
                last = oid
            if not var_binds or last == cursor:
                return result
            cursor = last

    async def _request(self, op: str, oids: list[str]) -> list[tuple[object, object]]:
        engine = self._engine or shared_engine()
        if self._target is None:
            try:
                self._target = await _UdpTarget.create(
                    (self.address, self.port), timeout=self.timeout_s, retries=self.retries
                )
            except Exception as exc:  # pysnmp raises PySnmpError for unresolvable names
                raise Unreachable(f"{self.endpoint}: {exc}") from exc
        objects = [hlapi.ObjectType(hlapi.ObjectIdentity(oid)) for oid in oids]
        if op == "get":
            reply = await hlapi.get_cmd(
                engine, self._auth_data, self._target, self._context, *objects, lookupMib=False
            )
        elif self.auth.version == "1":
            reply = await hlapi.next_cmd(
                engine, self._auth_data, self._target, self._context, *objects, lookupMib=False
            )
        else:
            reply = await hlapi.bulk_cmd(
                engine,
                self._auth_data,
                self._target,
                self._context,
                0,
                self.max_repetitions,
                *objects,
                lookupMib=False,
            )
        error_indication, error_status, error_index, var_binds = reply
        if error_indication is not None:
            if isinstance(error_indication, errind.RequestTimedOut):
                raise Unreachable(
                    f"{self.endpoint}: no SNMP answer within {self.timeout_s:g}s x{self.retries + 1}"
                )
            raise CollectError(f"{self.endpoint}: {error_indication}")
        if int(error_status):
            status = error_status.prettyPrint() if hasattr(error_status, "prettyPrint") else error_status
            # SNMPv1 signals a missing OID with noSuchName: the walk/get simply ends there.
            if op != "get" and str(status) == "noSuchName":
                return []
            raise CollectError(f"{self.endpoint}: {status} at varbind {int(error_index)}")
        return [(vb[0], vb[1]) for vb in var_binds]


def _auth_data(auth: SnmpAuth) -> hlapi.CommunityData | hlapi.UsmUserData:
    if auth.version in ("1", "2c"):
        return hlapi.CommunityData(auth.community, mpModel=0 if auth.version == "1" else 1)
    auth_proto = hlapi.USM_AUTH_NONE
    priv_proto = hlapi.USM_PRIV_NONE
    if auth.auth_key:
        auth_proto = AUTH_PROTOCOLS[(auth.auth_protocol or "SHA").upper()]
    if auth.priv_key:
        priv_proto = PRIV_PROTOCOLS[(auth.priv_protocol or "AES").upper()]
    return hlapi.UsmUserData(
        auth.user,
        authKey=auth.auth_key or None,
        privKey=auth.priv_key or None,
        authProtocol=auth_proto,
        privProtocol=priv_proto,
    )


def _decoded(var_binds: list[tuple[object, object]]) -> Mapping[str, SnmpValue]:
    out: dict[str, SnmpValue] = {}
    for name, value in var_binds:
        decoded = decode(value)
        if decoded is not None:
            out[str(name)] = decoded
    return out


def _strip(oid: str) -> str:
    return oid.strip().lstrip(".")


def oid_key(oid: str) -> tuple[int, ...]:
    return tuple(int(part) for part in oid.split(".") if part)


def _after(oid: str, previous: str) -> bool:
    return oid_key(oid) > oid_key(previous)
