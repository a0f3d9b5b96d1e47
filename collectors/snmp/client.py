"""The SNMP engine behind one small interface: ``get`` and ``walk`` returning typed values.

Two transports sit behind it, picked from ``SnmpAuth.version``:

- SNMPv1 / SNMPv2c: :mod:`collectors.snmp.ber` (a minimal, strict BER codec) over ONE shared UDP
  socket per event loop (8 MiB receive buffer), replies matched to requests by request-id and
  source address. About 15x cheaper in CPU per varbind than pysnmp (bench/README.md).
- SNMPv3: pysnmp, for USM (authentication, privacy, engine discovery). pysnmp can also be forced
  for v1/v2c (``transport="pysnmp"``): the differential tests and the benchmark compare the two.

Values are decoded once, here, into :class:`SnmpValue`: ``int`` for every numeric type with its
``kind`` kept (a Counter32 wraps at 2**32, a Counter64 at 2**64, a Gauge never wraps), ``str`` for
printable OCTET STRINGs (hex otherwise), dotted ``str`` for OIDs. ``noSuchObject``,
``noSuchInstance`` and ``endOfMibView`` are not values: the OID is simply absent from the result.

What a device sends is bounded before it is kept: an OCTET STRING longer than
:data:`MAX_VALUE_OCTETS`, or more than a :class:`ReadBudget` allows in one poll, is an
:class:`AnswerTooLarge` error naming the OID. Replies that are not a valid answer (malformed,
for no request in flight, failing authentication) are counted per client in
:attr:`SnmpClient.rejected` and named in the timeout error they would otherwise leave
unexplained. Nothing here imports from ``agent/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import random
import socket
import string
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pyasn1.type import univ
from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.hlapi.v3arch import asyncio as hlapi
from pysnmp.proto import errind, rfc1902, rfc1905

from agent.api import CollectError, Unreachable
from collectors.snmp import ber

log = logging.getLogger(__name__)

ValueKind = Literal[
    "integer", "gauge", "counter32", "counter64", "timeticks", "string", "hex", "oid", "ipaddress"
]
Transport = Literal["ber", "pysnmp"]

# Several MiB, because with 100+ devices in flight the default ~212 KiB buffer drops replies
# (see /work/shared/bench/README.md); the kernel may clamp SO_RCVBUF to net.core.rmem_max, so
# SO_RCVBUFFORCE is tried first (it works with CAP_NET_ADMIN).
RECEIVE_BUFFER_BYTES = 8 * 1024 * 1024
# CPython's socket module does not export SO_RCVBUFFORCE; 33 is its value in Linux's socket.h.
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)

# One request carries at most this many GET varbinds: small agents answer tooBig beyond that.
GET_CHUNK = 32

# The longest OCTET STRING (or Opaque) kept: 64 times the 255 octets of a DisplayString, room for
# any port or VLAN bitmap. A longer value is no reading a profile can use; the stores and the
# expressions (collectors/snmp/expr.py MAX_TEXT is four times this) never see one.
MAX_VALUE_OCTETS = 16 * 1024
# A text this short cannot exceed MAX_VALUE_OCTETS (4 octets per character at most in UTF-8, 2 hex
# digits per octet), so only longer ones are measured.
_MEASURED_ABOVE = MAX_VALUE_OCTETS // 4
# What one poll may gather from one device: a full cisco_ios poll of a 48-port 2960X is 3,154
# varbinds and about 200 KB, a chassis with a thousand ports tens of thousands of varbinds. The
# bound is what keeps the agent's memory bounded against an agent answering an endless walk.
MAX_READ_VARBINDS = 250_000
MAX_READ_OCTETS = 32 * 1024 * 1024
# A response whose request-id was issued among the last this many requests, and is no longer in
# flight, is a late answer (a resend answered twice, an answer after its timeout), not a mismatch.
_LATE_WINDOW = 1 << 20
_REQUEST_IDS = 2**31 - 1

_PRINTABLE = frozenset(string.printable)


class ErrorStatus(CollectError):
    """The agent answered with a non-zero error-status (``noSuchName``, ``genErr``, ...) at the
    1-based varbind ``index``."""

    def __init__(self, message: str, status: int, index: int) -> None:
        super().__init__(message)
        self.status = status
        self.index = index


class AnswerTooLarge(CollectError):
    """The agent sent more than vigie keeps: an OCTET STRING above :data:`MAX_VALUE_OCTETS`, or
    more than a poll's :class:`ReadBudget`."""


@dataclass
class RejectedReplies:
    """Datagrams from the agent's address that were not a valid answer, since the client was
    created. One that cannot be tied to a request (no readable request-id, or a request-id of no
    request in flight) is counted by each client with a request waiting on that address."""

    malformed: int = 0  # not a decodable SNMP message: truncated, garbage, BER out of spec
    mismatched: int = 0  # a well-formed response to no request in flight (request-id, version)
    auth_failures: int = 0  # v1/v2c: another community (dropped, RFC 3584); v3: USM failures


class _Rejections:
    """What one request saw from its agent's address that was not its answer: per kind, how many
    and the last one's description (for the timeout's message), and the client's totals."""

    __slots__ = ("seen", "totals")

    def __init__(self, totals: RejectedReplies) -> None:
        self.seen: dict[str, tuple[int, str]] = {}
        self.totals = totals

    def add(self, kind: str, detail: str) -> None:
        count = self.seen.get(kind, (0, ""))[0] + 1
        self.seen[kind] = (count, detail)
        setattr(self.totals, kind, getattr(self.totals, kind) + 1)


def _reject_for_all(waiting: Iterable[_Rejections], kind: str, detail: str) -> None:
    """One datagram that no single request can claim: noted by each request waiting on its
    address, counted once in each client's totals (a client has several requests in flight)."""
    counted: set[int] = set()
    for rejected in waiting:
        if id(rejected.totals) in counted:
            count = rejected.seen.get(kind, (0, ""))[0] + 1
            rejected.seen[kind] = (count, detail)
        else:
            rejected.add(kind, detail)
            counted.add(id(rejected.totals))


_REJECTION_WORDS = {
    "malformed": ("malformed reply", "malformed replies"),
    "mismatched": ("reply to no request in flight", "replies to no request in flight"),
    "auth_failures": ("authentication failure", "authentication failures"),
}


def _no_valid_answer(endpoint: str, timeout_s: float, attempts: int, rejected: _Rejections) -> Unreachable:
    """The timeout error; it says what was received instead of an answer, if anything."""
    waited = f"within {timeout_s:g}s x{attempts}"
    if not rejected.seen:
        return Unreachable(f"{endpoint}: no SNMP answer {waited}")
    seen = "; ".join(
        f"{count} {_REJECTION_WORDS[kind][count != 1]} received, last: {last}"
        for kind, (count, last) in rejected.seen.items()
    )
    return Unreachable(f"{endpoint}: no valid SNMP answer {waited} ({seen})")


class ReadBudget:
    """What the reads of one poll may still gather: varbinds, and octets of OIDs and values (a
    number counts 8). The engine gives one to every read of a poll. Each reply is counted as a
    whole, so a read may pass the budget by one reply; it then raises :class:`AnswerTooLarge`,
    and so does every read after it, before asking the agent."""

    def __init__(self, varbinds: int = MAX_READ_VARBINDS, octets: int = MAX_READ_OCTETS) -> None:
        self.limits = (varbinds, octets)
        self.varbinds = varbinds
        self.octets = octets

    @property
    def spent(self) -> bool:
        return self.varbinds < 0 or self.octets < 0

    def take(self, varbinds: int, octets: int) -> bool:
        """Count one reply's values; ``False`` when that spent the budget (or it already was)."""
        self.varbinds -= varbinds
        self.octets -= octets
        return not self.spent

    def error(self, endpoint: str, oid: str) -> AnswerTooLarge:
        varbinds, octets = self.limits
        return AnswerTooLarge(f"{endpoint}: more than {varbinds:,} varbinds or {octets // 2**20} MiB in one poll "
                              f"(at {oid})")


class _NotTogether(Exception):
    """The agent does not answer a GETBULK of several OIDs as RFC 3416 says."""


class _ColumnWalk:
    """One column of :meth:`SnmpClient.walk_columns`: where its walk is."""

    def __init__(self, base: str, base_key: bytes, expected: int | None) -> None:
        self.base = self.cursor = base
        self.base_key = self.last_key = base_key
        self.under = len(base_key)  # a row's key starts with the column's and goes on
        self.expected = expected  # rows at its last walk
        self.done = False
        self.result = WalkResult()


@dataclass
class WalkResult:
    """The values a walk read, and the error that ended it before the end of the subtree (the
    values read before it are kept). Keyed by the whole OID (``walk_partial``), or by the row's
    index, the OID past the column's (``walk_column``)."""

    values: dict[str, SnmpValue] = field(default_factory=dict)
    error: CollectError | None = None


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
    # str.isprintable() first: one C pass over the usual name or description; the per-character
    # test only for text that carries a tab or line break (_PRINTABLE) or is not text at all.
    if text.isprintable() or all(ch in _PRINTABLE or ch.isprintable() for ch in text):
        return SnmpValue(text, "string")
    return SnmpValue(raw.hex(), "hex")


_BER_NUMBER_KINDS: dict[int, ValueKind] = {
    ber.INTEGER: "integer",
    ber.COUNTER32: "counter32",
    ber.GAUGE32: "gauge",
    ber.TIMETICKS: "timeticks",
    ber.COUNTER64: "counter64",
}


def decode_ber(tag: int, value: int | bytes | None) -> SnmpValue | None:
    """A varbind value from :func:`ber.decode_response` -> SnmpValue, with the same results as
    :func:`decode` gives for the pysnmp object of the same bytes."""
    kind = _BER_NUMBER_KINDS.get(tag)
    if kind is not None:
        return SnmpValue(value, kind)  # type: ignore[arg-type]
    if tag == ber.OCTET_STRING:
        return decode_octets(value)  # type: ignore[arg-type]
    if tag == ber.OBJECT_IDENTIFIER:
        return SnmpValue(ber.oid_text(value), "oid")  # type: ignore[arg-type]
    if tag == ber.IP_ADDRESS:
        return SnmpValue(".".join(map(str, value)), "ipaddress")  # type: ignore[arg-type]
    if tag == ber.OPAQUE:
        return SnmpValue(value.hex(), "hex")  # type: ignore[union-attr]
    return None  # Null, noSuchObject, noSuchInstance, endOfMibView


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


# ------------------------------------------------------------------ SNMPv1/v2c: BER on one socket
class _Pending:
    """One request in flight: its future, where it went, and what to resend on timeout."""

    __slots__ = ("future", "address", "endpoint", "version", "community", "message", "retries_left",
                 "timeout_s", "attempts", "timer", "rejected")

    def __init__(self, future: asyncio.Future[ber.Response], address: tuple[str, int], endpoint: str,
                 version: int, community: bytes, message: bytes, retries: int, timeout_s: float,
                 rejected: _Rejections) -> None:
        self.future = future
        self.address = address
        self.endpoint = endpoint
        self.version = version
        self.community = community
        self.message = message
        self.retries_left = retries
        self.timeout_s = timeout_s
        self.attempts = retries + 1
        self.timer: asyncio.TimerHandle | None = None
        self.rejected = rejected


class _SnmpSocket(asyncio.DatagramProtocol):
    """The event loop's one UDP socket for SNMPv1/v2c: every client's requests go out through it
    and replies are handed to the waiting request by request-id. A malformed reply to a request in
    flight fails that request with a CollectError naming the agent. Other replies that are not a
    valid answer are dropped and counted against the requests waiting on their source address
    (:class:`RejectedReplies`): malformed ones without a readable request-id, responses to no
    request in flight to that address, and responses with another version or community (RFC 3584
    drops those; an agent, a proxy or a NAT that answers so is worth seeing). A reply from an
    address no request went to, and a late answer to a finished request, are only logged."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self.loop = loop
        self.sock = sock
        self.transport: asyncio.DatagramTransport | None = None
        self.closed = False
        self.opening: asyncio.Task[object] | None = None
        self._pending: dict[int, _Pending] = {}
        self._waiting: dict[tuple[str, int], set[_Pending]] = {}  # by agent address
        self._next_id = random.randrange(1, _REQUEST_IDS)

    # asyncio callbacks: none of them may raise (an exception here would close the socket).
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if _SOCKETS.get(self.loop) is self:
            del _SOCKETS[self.loop]
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(CollectError(f"{pending.endpoint}: SNMP socket closed ({exc})"))

    def error_received(self, exc: Exception) -> None:
        log.debug("SNMP socket error: %s", exc)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        source = addr[:2]
        try:
            response = ber.decode_response(data)
        except ber.BerError as exc:
            detail = f"{len(data)} bytes, {exc}"
            pending = self._pending.get(exc.request_id) if exc.request_id is not None else None
            if pending is not None and pending.address == source:
                pending.rejected.add("malformed", detail)
                if not pending.future.done():
                    pending.future.set_exception(
                        CollectError(f"{pending.endpoint}: malformed SNMP response: {exc} ({len(data)} bytes)")
                    )
            else:
                self._reject_from(source, "malformed", detail)
            return
        pending = self._pending.get(response.request_id)
        if pending is None and 0 < (self._next_id - response.request_id) % _REQUEST_IDS <= _LATE_WINDOW:
            log.debug("late SNMP response (request-id %d) from %s:%s", response.request_id, addr[0], addr[1])
        elif pending is None or pending.address != source:
            self._reject_from(source, "mismatched", f"request-id {response.request_id}")
        elif pending.version != response.version:
            pending.rejected.add("mismatched", f"SNMP version field {response.version}, not {pending.version}")
        elif pending.community != response.community:
            pending.rejected.add("auth_failures", "another community")
        elif not pending.future.done():
            pending.future.set_result(response)

    def _reject_from(self, source: tuple[str, int], kind: str, detail: str) -> None:
        waiting = self._waiting.get(source)
        if not waiting:
            log.debug("ignored a datagram from %s:%s, where no request waits (%s: %s)", *source, kind, detail)
            return
        _reject_for_all((pending.rejected for pending in waiting), kind, detail)

    async def request(self, address: tuple[str, int], endpoint: str, version: int, community: bytes,
                      pdu_type: int, oids: list[bytes], max_repetitions: int, timeout_s: float,
                      retries: int, rejected: RejectedReplies) -> ber.Response:
        """Send one request, resend it ``retries`` times ``timeout_s`` apart (same request-id, so a
        late answer to an earlier attempt still counts), then raise Unreachable saying what was
        received instead, if anything; replies rejected meanwhile are counted in ``rejected``."""
        if self.transport is None:
            try:
                await asyncio.shield(self.opening)  # type: ignore[arg-type]
            except OSError as exc:
                self.connection_lost(exc)
        if self.closed:
            raise CollectError(f"{endpoint}: SNMP socket closed")
        request_id = self._new_id()
        message = ber.encode_request(version, community, pdu_type, request_id, oids, 0, max_repetitions)
        pending = _Pending(self.loop.create_future(), address, endpoint, version, community, message,
                           retries, timeout_s, _Rejections(rejected))
        self._pending[request_id] = pending
        waiting = self._waiting.setdefault(address, set())
        waiting.add(pending)
        try:
            self.transport.sendto(message, address)  # type: ignore[union-attr]
            pending.timer = self.loop.call_later(timeout_s, self._expired, pending)
            return await pending.future
        finally:
            if pending.timer is not None:
                pending.timer.cancel()
            del self._pending[request_id]
            waiting.discard(pending)
            if not waiting:
                del self._waiting[address]

    def _expired(self, pending: _Pending) -> None:
        if pending.future.done():
            return
        if pending.retries_left > 0 and not self.closed:
            pending.retries_left -= 1
            self.transport.sendto(pending.message, pending.address)  # type: ignore[union-attr]
            pending.timer = self.loop.call_later(pending.timeout_s, self._expired, pending)
            return
        pending.future.set_exception(
            _no_valid_answer(pending.endpoint, pending.timeout_s, pending.attempts, pending.rejected)
        )

    def _new_id(self) -> int:
        request_id = self._next_id
        while request_id in self._pending:
            request_id = request_id % _REQUEST_IDS + 1
        self._next_id = request_id % _REQUEST_IDS + 1
        return request_id


# One socket per event loop (tests, or an embedding application, may run several loops).
_SOCKETS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SnmpSocket] = weakref.WeakKeyDictionary()


def _shared_socket() -> _SnmpSocket:
    loop = asyncio.get_running_loop()
    found = _SOCKETS.get(loop)
    if found is not None and not found.closed:
        return found
    for other, stale in list(_SOCKETS.items()):  # loops closed without closing their socket
        if other.is_closed():
            del _SOCKETS[other]
            stale.sock.close()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        set_receive_buffer(sock, RECEIVE_BUFFER_BYTES)
        sock.bind(("0.0.0.0", 0))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    created = _SOCKETS[loop] = _SnmpSocket(loop, sock)
    created.opening = loop.create_task(loop.create_datagram_endpoint(lambda: created, sock=sock))
    return created


def receive_buffer_bytes() -> int | None:
    """SO_RCVBUF (as getsockopt reports it) of the running loop's SNMPv1/v2c socket, ``None``
    before its first request."""
    found = _SOCKETS.get(asyncio.get_running_loop())
    if found is None or found.closed:
        return None
    return found.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


# ---------------------------------------------------------------------------- SNMPv3: pysnmp
class _BigBufferUdpTransport(udp.UdpAsyncioTransport):
    """pysnmp's asyncio UDP transport; asyncio creates the socket inside
    ``loop.create_datagram_endpoint``, so the buffer is set when the socket is handed over."""

    def connection_made(self, transport: asyncio.DatagramTransport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            set_receive_buffer(sock, RECEIVE_BUFFER_BYTES)
        super().connection_made(transport)

    def datagram_received(self, datagram: bytes, transportAddress) -> None:  # type: ignore[no-untyped-def] # noqa: N803
        # pysnmp drops a malformed message silently (it only counts snmpInASNParseErrs for the
        # whole engine): check the BER structure of what comes from an address a request waits on.
        waiting = _PYSNMP_WAITING.get(self.loop, {}).get(tuple(transportAddress[:2]))
        if waiting:
            problem = ber.structure_error(datagram)
            if problem is not None:
                _reject_for_all(waiting, "malformed", f"{len(datagram)} bytes, {problem}")
        super().datagram_received(datagram, transportAddress)


class _UdpTarget(hlapi.UdpTransportTarget):
    PROTO_TRANSPORT = _BigBufferUdpTransport


# One SnmpEngine per event loop: pysnmp binds its dispatcher to the loop it first runs in.
_ENGINES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, hlapi.SnmpEngine] = (
    weakref.WeakKeyDictionary()
)


# The pysnmp requests in flight, by event loop and agent address (see _BigBufferUdpTransport).
_PYSNMP_WAITING: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, int], set[_Rejections]]] = (
    weakref.WeakKeyDictionary()
)
# pysnmp's error indications for a failed USM (or community) check: the agent's usmStats* report,
# or the response failing pysnmp's own check.
_AUTH_FAILURES = (
    errind.UnknownUserName,
    errind.WrongDigest,
    errind.DecryptionError,
    errind.AuthenticationFailure,
    errind.AuthenticationError,
    errind.UnknownSecurityName,
    errind.UnsupportedSecurityLevel,
    errind.NotInTimeWindow,
    errind.UnknownEngineID,
    errind.UnknownCommunityName,
)


def shared_engine() -> hlapi.SnmpEngine:
    loop = asyncio.get_running_loop()
    engine = _ENGINES.get(loop)
    if engine is None:
        engine = _ENGINES[loop] = hlapi.SnmpEngine()
    return engine


# A varbind as both transports hand it to get/walk: (OID key, value or None, is endOfMibView). The
# key is the OID as the transport has it: BER body bytes, or pysnmp's arc tuple. Within one
# transport keys order like the OIDs (ber.oid_after, or >) and one OID's key starts with the key of
# each OID above it (BER encodes each sub-identifier whole), so a walk tells a row of its column
# and the row's index from the keys; only a GET turns every key into dotted text.
_VarBind = tuple[Any, "SnmpValue | None", bool]


class SnmpClient:
    """``get`` / ``walk`` against one agent.

    ``timeout_s`` is per request, ``retries`` the number of resends after the first one; a request
    that never gets an answer raises :class:`Unreachable` naming ``address:port`` (and what came
    instead: see :attr:`rejected`). A ``tooBig`` answer halves the GETBULK max-repetitions (kept for
    the client's later walks) or splits a GET. A column walked again asks for the rows it had at
    its last walk plus one, not max-repetitions a request (see ``_rows_seen``). Values are bounded
    (:data:`MAX_VALUE_OCTETS`, a :class:`ReadBudget` per call unless the caller shares one over
    several).
    ``transport`` is ``"ber"`` for SNMPv1/v2c and ``"pysnmp"`` for SNMPv3 unless forced (pysnmp
    can serve every version; BER cannot do SNMPv3). ``engine`` is the pysnmp engine to use.
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
        *,
        transport: Transport | None = None,
    ) -> None:
        self.address = address
        self.port = port
        self.auth = auth or SnmpAuth()
        self.timeout_s = timeout_s
        self.retries = retries
        self.max_repetitions = max_repetitions
        if transport is None:
            transport = "pysnmp" if self.auth.version == "3" else "ber"
        if transport == "ber" and self.auth.version == "3":
            raise ValueError("transport: the BER transport speaks SNMPv1/v2c only, not SNMPv3")
        if transport not in ("ber", "pysnmp"):
            raise ValueError(f"transport: {transport!r} is not one of ber, pysnmp")
        self.transport: Transport = transport
        self.rejected = RejectedReplies()
        # pysnmp
        self._engine = engine
        self._target: _UdpTarget | None = None
        self._auth_data = _auth_data(self.auth) if transport == "pysnmp" else None
        self._context = hlapi.ContextData(contextName=self.auth.context)
        # BER
        self._version = ber.VERSION_1 if self.auth.version == "1" else ber.VERSION_2C
        self._community = self.auth.community.encode("utf-8")
        self._resolved: tuple[str, int] | None = None
        self._repetitions = max_repetitions  # halved on tooBig
        # Rows each walked column had at its last walk: the next walk asks that many plus one
        # (the varbind that shows the column ended) instead of max-repetitions per request. On
        # a 48-port switch 26 of the 59 columns polled are empty and most others end mid-request:
        # 70 % of the varbinds received and decoded were past the column's end.
        self._rows_seen: dict[str, int] = {}
        # Whether short columns are walked several to a GETBULK (walk_batches): SNMPv2c over BER,
        # until the agent answers one out of order.
        self._together = transport == "ber" and self._version == ber.VERSION_2C

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"

    async def get(self, oids: Iterable[str], budget: ReadBudget | None = None) -> dict[str, SnmpValue]:
        """The values of ``oids`` the agent has (an absent one is left out, for SNMPv1 too)."""
        budget = budget or ReadBudget()
        wanted = [_strip(oid) for oid in oids]
        result: dict[str, SnmpValue] = {}
        for start in range(0, len(wanted), GET_CHUNK):
            if budget.spent:
                raise budget.error(self.endpoint, wanted[start])
            count = octets = 0
            for key, value, _ in await self._get_present(wanted[start : start + GET_CHUNK]):
                if value is not None:
                    oid = self._text(key)
                    octets += self._measure(value, oid)
                    count += 1
                    result[oid] = value
            if not budget.take(count, octets):
                raise budget.error(self.endpoint, oid)
        return result

    async def _get_present(self, oids: list[str]) -> list[_VarBind]:
        while True:
            try:
                return await self._request("get", oids)
            except ErrorStatus as exc:
                # SNMPv1 has no noSuchObject: the agent answers noSuchName naming the first absent
                # OID, and the others are asked again without it (as net-snmp's snmpget does).
                if exc.status != ber.NO_SUCH_NAME or not 1 <= exc.index <= len(oids):
                    raise
                oids = oids[: exc.index - 1] + oids[exc.index :]
                if not oids:
                    return []

    async def walk(self, base_oid: str, budget: ReadBudget | None = None) -> dict[str, SnmpValue]:
        """Every OID strictly under ``base_oid`` (GETBULK, or GETNEXT for SNMPv1)."""
        walked = await self.walk_partial(base_oid, budget)
        if walked.error is not None:
            raise walked.error
        return walked.values

    async def walk_partial(self, base_oid: str, budget: ReadBudget | None = None) -> WalkResult:
        """Like :meth:`walk`, but an error that ends the walk early comes with the values read
        before it (an agent that answers the first rows of a table, then goes silent)."""
        base = _strip(base_oid)
        walked = await self.walk_column(base, budget)
        walked.values = {f"{base}.{index}": value for index, value in walked.values.items()}
        return walked

    async def walk_column(self, base_oid: str, budget: ReadBudget | None = None) -> WalkResult:
        """Like :meth:`walk_partial`, the values keyed by what follows ``base_oid`` (a table
        column's row indexes): no OID is made text whole, the costliest step of a walk after
        the decoding itself."""
        walked = WalkResult()
        try:
            await self._walk_into(_strip(base_oid), walked.values, budget or ReadBudget())
        except CollectError as exc:
            walked.error = exc
        return walked

    def walk_batches(self, bases: Iterable[str]) -> list[list[str]]:
        """``bases`` (column OIDs) in the batches :meth:`walk_columns` takes: the columns whose
        last walk found few rows, as many together as one GETBULK of max-repetitions varbinds asks
        the rows of and the varbind past each end; each other column (never walked yet, or long)
        alone. A 48-port switch's poll walks 59 columns, 26 of them empty and most others 3 to 10
        rows long: 75 requests a poll, 8 varbinds each."""
        bases = [_strip(base) for base in bases]
        if not self._together:
            return [[base] for base in bases]
        ceiling = self._repetitions
        alone: list[list[str]] = []
        short: list[tuple[int, str]] = []  # (varbinds its walk takes, column)
        for base in bases:
            seen = self._rows_seen.get(base)
            if seen is None or 2 * (seen + 1) > ceiling:
                alone.append([base])
            else:
                short.append((seen + 1, base))
        batches: list[list[str]] = []
        batch: list[str] = []
        widest = 0
        for cost, base in sorted(short):  # like lengths together: a batch asks its widest's rows of each
            if batch and (len(batch) + 1) * max(widest, cost) > ceiling:
                batches.append(batch)
                batch, widest = [], 0
            batch.append(base)
            widest = max(widest, cost)
        if batch:
            batches.append(batch)
        return batches + alone

    async def walk_columns(self, bases: list[str], budget: ReadBudget | None = None) -> dict[str, WalkResult]:
        """Each column of ``bases`` (a batch of :meth:`walk_batches`) walked as by
        :meth:`walk_column`, all in the same GETBULK requests. RFC 3416 (4.2.3): the response holds
        the successors of the N OIDs asked, one repetition after the other, so varbind i goes on
        with column i mod N; net-snmp's snmptable reads tables so. An agent that answers otherwise
        (a varbind not past its column's cursor: some answer the first OID alone) gets the batch
        walked again one column at a time, and every later walk so."""
        budget = budget or ReadBudget()
        if len(bases) == 1 or not self._together:
            return {base: await self.walk_column(base, budget) for base in bases}
        try:
            columns = [_ColumnWalk(base, self._order_key(base), self._rows_seen.get(base))
                       for base in sorted(map(_strip, bases), key=oid_key)]
        except CollectError:  # an OID that is none: each walk alone says which
            return {base: await self.walk_column(base, budget) for base in bases}
        try:
            await self._walk_together(columns, budget)
        except _NotTogether as exc:
            self._together = False
            log.warning("%s: %s; its columns are walked one at a time from now on", self.endpoint, exc)
            return {column.base: await self.walk_column(column.base, budget) for column in columns}
        except CollectError as exc:
            for column in columns:
                if not column.done:
                    column.result.error = exc
        for column in columns:
            if column.result.error is None:
                self._rows_seen[column.base] = len(column.result.values)
        return {column.base: column.result for column in columns}

    async def _walk_together(self, columns: list[_ColumnWalk], budget: ReadBudget) -> None:
        active = columns
        measure = self._measure
        while active:
            if budget.spent:
                raise budget.error(self.endpoint, active[0].cursor)
            # the rows each column had last time, and the one past its end; as many as fit once one grew
            rows = [None if c.expected is None or len(c.result.values) > c.expected
                    else c.expected - len(c.result.values) + 1 for c in active]
            share = max(1, self._repetitions // len(active))
            wanted = share if None in rows else min(share, max(rows))  # type: ignore[type-var]
            var_binds = await self._request("next", [c.cursor for c in active], wanted)
            count = octets = 0
            moved = False
            for position, (key, value, end) in enumerate(var_binds):
                column = active[position % len(active)]
                if column.done:
                    continue
                moved = True
                if end:
                    column.done = True
                    continue
                if not ber.oid_after(key, column.last_key):
                    raise _NotTogether(f"GETBULK of {len(active)} columns answered out of order at "
                                       f"varbind {position + 1} ({ber.oid_text(key)} for {column.cursor})")
                if len(key) <= column.under or key[:column.under] != column.base_key:
                    column.done = True
                    continue
                index = ber.arcs_text(key[column.under:])
                if value is not None:
                    octets += measure(value, column.base, index)
                    count += 1
                    column.result.values[index] = value
                column.last_key = key
                column.cursor = f"{column.base}.{index}"
            if not budget.take(count, octets):
                raise budget.error(self.endpoint, active[0].cursor)
            if not moved:  # an empty answer: the walks end, as a lone walk does
                for column in active:
                    column.done = True
            active = [c for c in active if not c.done]

    async def _walk_into(self, base: str, result: dict[str, SnmpValue], budget: ReadBudget) -> None:
        if budget.spent:
            raise budget.error(self.endpoint, base)
        cursor = base
        base_key = last_key = self._order_key(base)
        under = len(base_key)  # a row's key starts with the column's and goes on
        if self.transport == "ber":
            after, index_text = ber.oid_after, ber.arcs_text
        else:
            after, index_text = operator.gt, _arcs_text
        measure = self._measure
        expected = self._rows_seen.get(base)
        rows = 0
        while True:
            # While rows seen last time remain, ask for them and the one past the end; once
            # they are read (the column grew), as many as the agent takes again.
            wanted = self._repetitions if expected is None or rows > expected else expected - rows + 1
            var_binds = await self._request("next", [cursor], wanted)
            last = None
            done = not var_binds
            count = octets = 0
            for key, value, end in var_binds:
                # The last test: a broken agent looping on the same OID would keep us here forever.
                if end or len(key) <= under or key[:under] != base_key or not after(key, last_key):
                    done = True
                    break
                last = index_text(key[under:])
                if value is not None:
                    octets += measure(value, base, last)
                    count += 1
                    result[last] = value
                last_key = key
            if last is not None:
                cursor = f"{base}.{last}"
            if not budget.take(count, octets):
                raise budget.error(self.endpoint, cursor)
            rows += count
            if done or last is None:
                self._rows_seen[base] = rows
                return

    def _measure(self, value: SnmpValue, oid: str, index: str | None = None) -> int:
        """The octets the OID (``oid``, or ``oid``.``index``) and ``value`` count for a
        :class:`ReadBudget`; raise :class:`AnswerTooLarge` for an OCTET STRING over
        :data:`MAX_VALUE_OCTETS`."""
        oid_octets = len(oid) if index is None else len(oid) + 1 + len(index)
        text = value.value
        if text.__class__ is not str:
            return oid_octets + 8
        if len(text) > _MEASURED_ABOVE and value.kind in ("string", "hex"):
            octets = len(text) // 2 if value.kind == "hex" else len(text.encode())
            if octets > MAX_VALUE_OCTETS:
                named = oid if index is None else f"{oid}.{index}"
                raise AnswerTooLarge(
                    f"{self.endpoint}: {named}: an OCTET STRING of {octets:,} octets, more than the "
                    f"{MAX_VALUE_OCTETS:,} kept"
                )
        return oid_octets + len(text)

    def _text(self, key: Any) -> str:
        """The dotted OID of a varbind's key."""
        return ber.oid_text(key) if self.transport == "ber" else _arcs_text(key)

    def _order_key(self, oid: str) -> object:
        if self.transport == "ber":
            try:
                return ber.encode_oid(oid)
            except ValueError as exc:
                raise CollectError(f"{self.endpoint}: {exc}") from None
        return oid_key(oid)

    async def _request(self, op: str, oids: list[str], repetitions: int | None = None) -> list[_VarBind]:
        """``repetitions``: at most that many GETBULK rows (never more than the client's own)."""
        if self.transport == "ber":
            return await self._ber_request(op, oids, repetitions)
        return await self._pysnmp_request(op, oids, repetitions)

    # --------------------------------------------------------------------------------- BER
    async def _ber_request(self, op: str, oids: list[str], repetitions: int | None) -> list[_VarBind]:
        if self._resolved is None:
            self._resolved = await self._resolve()
        try:
            bodies = [ber.encode_oid(oid) for oid in oids]
        except ValueError as exc:
            raise CollectError(f"{self.endpoint}: {exc}") from None
        if op == "get":
            response = await self._ber_get(bodies)
        else:
            response = await self._ber_next(bodies, repetitions)
        if response is None:
            return []
        end_tag = ber.END_OF_MIB_VIEW
        return [(body, decode_ber(tag, value), tag == end_tag) for body, tag, value in response]

    async def _ber_get(self, bodies: list[bytes]) -> list[tuple[bytes, int, int | bytes | None]]:
        response = await self._ber_send(ber.GET_REQUEST, bodies, 0)
        if response.error_status == ber.TOO_BIG and len(bodies) > 1:
            half = len(bodies) // 2
            return await self._ber_get(bodies[:half]) + await self._ber_get(bodies[half:])
        self._check_status(response, "get")
        return response.varbinds

    async def _ber_next(self, bodies: list[bytes],
                        repetitions: int | None) -> list[tuple[bytes, int, int | bytes | None]] | None:
        if self._version == ber.VERSION_1:
            response = await self._ber_send(ber.GET_NEXT_REQUEST, bodies, 0)
        else:
            while True:
                wanted = _repetitions(repetitions, self._repetitions)
                response = await self._ber_send(ber.GET_BULK_REQUEST, bodies, wanted)
                if response.error_status != ber.TOO_BIG or self._repetitions == 1:
                    break
                self._repetitions = max(1, self._repetitions // 2)
                log.info("%s: tooBig, GETBULK max-repetitions lowered to %d", self.endpoint, self._repetitions)
        if response.error_status == ber.NO_SUCH_NAME:
            return None  # SNMPv1 end of the walk
        self._check_status(response, "next")
        return response.varbinds

    async def _ber_send(self, pdu_type: int, bodies: list[bytes], max_repetitions: int) -> ber.Response:
        try:
            shared = _shared_socket()
        except OSError as exc:
            raise CollectError(f"{self.endpoint}: cannot open the SNMP socket: {exc}") from exc
        return await shared.request(
            self._resolved, self.endpoint, self._version, self._community, pdu_type, bodies,  # type: ignore[arg-type]
            max_repetitions, self.timeout_s, self.retries, self.rejected,
        )

    def _check_status(self, response: ber.Response, op: str) -> None:
        status = response.error_status
        if status:
            name = ber.ERROR_STATUS[status] if 0 <= status < len(ber.ERROR_STATUS) else str(status)
            raise ErrorStatus(f"{self.endpoint}: {name} at varbind {response.error_index}", status,
                              response.error_index)

    async def _resolve(self) -> tuple[str, int]:
        with contextlib.suppress(OSError):
            socket.inet_aton(self.address)
            if self.address.count(".") == 3:
                return (self.address, self.port)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                self.address, self.port, family=socket.AF_INET, type=socket.SOCK_DGRAM
            )
        except (OSError, UnicodeError) as exc:
            raise Unreachable(f"{self.endpoint}: {exc}") from exc
        if not infos:
            raise Unreachable(f"{self.endpoint}: no IPv4 address")
        return infos[0][4][:2]  # type: ignore[return-value]

    # ------------------------------------------------------------------------------ pysnmp
    async def _pysnmp_request(self, op: str, oids: list[str], repetitions: int | None) -> list[_VarBind]:
        engine = self._engine or shared_engine()
        if self._target is None:
            try:
                self._target = await _UdpTarget.create(
                    (self.address, self.port), timeout=self.timeout_s, retries=self.retries
                )
            except Exception as exc:  # pysnmp raises PySnmpError for unresolvable names
                raise Unreachable(f"{self.endpoint}: {exc}") from exc
        objects = [hlapi.ObjectType(hlapi.ObjectIdentity(oid)) for oid in oids]
        rejected = _Rejections(self.rejected)
        by_address = _PYSNMP_WAITING.setdefault(asyncio.get_running_loop(), {})
        address = tuple(self._target.transport_address[:2])
        waiting = by_address.setdefault(address, set())  # type: ignore[arg-type]
        waiting.add(rejected)
        try:
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
                    _repetitions(repetitions, self.max_repetitions),
                    *objects,
                    lookupMib=False,
                )
        finally:
            waiting.discard(rejected)
            if not waiting:
                del by_address[address]  # type: ignore[arg-type]
        error_indication, error_status, error_index, var_binds = reply
        if error_indication is not None:
            if isinstance(error_indication, errind.RequestTimedOut):
                raise _no_valid_answer(self.endpoint, self.timeout_s, self.retries + 1, rejected)
            if isinstance(error_indication, _AUTH_FAILURES):
                self.rejected.auth_failures += 1
                raise CollectError(f"{self.endpoint}: authentication failure: {error_indication}")
            raise CollectError(f"{self.endpoint}: {error_indication}")
        if int(error_status):
            status = error_status.prettyPrint() if hasattr(error_status, "prettyPrint") else error_status
            # SNMPv1 signals a missing OID with noSuchName: the walk/get simply ends there.
            if op != "get" and str(status) == "noSuchName":
                return []
            raise ErrorStatus(f"{self.endpoint}: {status} at varbind {int(error_index)}", int(error_status),
                              int(error_index))
        return [(tuple(name), decode(value), isinstance(value, rfc1905.EndOfMibView)) for name, value in var_binds]


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


def _repetitions(wanted: int | None, ceiling: int) -> int:
    """The GETBULK max-repetitions of a request that wants ``wanted`` rows (None: as many as the
    client takes), never more than ``ceiling``, at least one."""
    return ceiling if wanted is None else max(1, min(wanted, ceiling))


def _arcs_text(arcs: tuple[int, ...]) -> str:
    return ".".join(map(str, arcs))


def _strip(oid: str) -> str:
    return oid.strip().lstrip(".")


def oid_key(oid: str) -> tuple[int, ...]:
    return tuple(int(part) for part in oid.split(".") if part)

