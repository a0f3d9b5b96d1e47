"""A minimal, strict BER codec for SNMPv1 / SNMPv2c messages (RFC 1157, RFC 3416, X.690 subset).

Encodes GetRequest, GetNextRequest and GetBulkRequest; decodes Response PDUs. For the trap
receiver (:mod:`collectors.snmp.traps`) it also decodes notifications (SNMPv1 Trap-PDU, SNMPv2c
Trap and InformRequest) and encodes them and the Response that acknowledges an Inform, and reads
the SNMPv3 message around a notification (RFC 3412 header, RFC 3414 USM parameters, the scoped
PDU once :mod:`collectors.snmp.usm` has checked and decrypted it). Nothing else: no SET, no SNMPv3
requests (polling over v3 stays with pysnmp in :mod:`collectors.snmp.client`).

Strict means: definite lengths only (short or long form, at most 4 length octets), every length
must fit its enclosing TLV exactly, no trailing bytes, primitive encodings only, value ranges of
the SMI enforced (Integer32, Counter32, Gauge32, TimeTicks, Counter64, 4-octet IpAddress), no
0x80 padding inside OID sub-identifiers. Anything else raises :class:`BerError`; the caller turns
it into a ``CollectError`` naming the agent. The decoder only ever raises ``BerError``.

OIDs stay as their BER body (``bytes``) until a caller wants text (:func:`oid_text`);
:func:`oid_after` orders two bodies without decoding them when every sub-identifier is one byte.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Universal and SNMP application tags.
INTEGER = 0x02
OCTET_STRING = 0x04
NULL = 0x05
OBJECT_IDENTIFIER = 0x06
SEQUENCE = 0x30
IP_ADDRESS = 0x40
COUNTER32 = 0x41
GAUGE32 = 0x42  # also Unsigned32
TIMETICKS = 0x43
OPAQUE = 0x44
COUNTER64 = 0x46
NO_SUCH_OBJECT = 0x80
NO_SUCH_INSTANCE = 0x81
END_OF_MIB_VIEW = 0x82

GET_REQUEST = 0xA0
GET_NEXT_REQUEST = 0xA1
RESPONSE = 0xA2
GET_BULK_REQUEST = 0xA5
TRAP_V1 = 0xA4
INFORM_REQUEST = 0xA6
TRAP_V2 = 0xA7

VERSION_1 = 0
VERSION_2C = 1
VERSION_3 = 3
USM = 3  # msgSecurityModel of the User-based Security Model

TOO_BIG = 1
NO_SUCH_NAME = 2
# RFC 3416 error-status names, as pysnmp prints them.
ERROR_STATUS = (
    "noError", "tooBig", "noSuchName", "badValue", "readOnly", "genErr", "noAccess", "wrongType",
    "wrongLength", "wrongEncoding", "wrongValue", "noCreation", "inconsistentValue",
    "resourceUnavailable", "commitFailed", "undoFailed", "authorizationError", "notWritable",
    "inconsistentName",
)

_INT32 = (-(2**31), 2**31 - 1)
_UNSIGNED_MAX = {COUNTER32: 2**32 - 1, GAUGE32: 2**32 - 1, TIMETICKS: 2**32 - 1, COUNTER64: 2**64 - 1}
_TAG_NAMES = {COUNTER32: "Counter32", GAUGE32: "Gauge32", TIMETICKS: "TimeTicks", COUNTER64: "Counter64"}
_ARC = [str(n) for n in range(128)]


class BerError(ValueError):
    """Malformed or unsupported SNMP message. ``request_id`` is set once it could be read."""

    def __init__(self, message: str, request_id: int | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


@dataclass(frozen=True, slots=True)
class Response:
    """A decoded Response PDU. Each varbind is ``(oid body, tag, value)``: ``value`` is an ``int``
    for INTEGER and the unsigned types, ``bytes`` for OCTET STRING, Opaque and IpAddress, the BER
    body for OBJECT IDENTIFIER, ``None`` for NULL and the three exceptions (see ``tag``)."""

    version: int
    community: bytes
    request_id: int
    error_status: int
    error_index: int
    varbinds: list[tuple[bytes, int, int | bytes | None]]


# ------------------------------------------------------------------------------------- encoding
def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _tlv(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + _length(len(payload)) + payload


def _integer(value: int) -> bytes:
    return _tlv(INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def encode_oid(oid: str) -> bytes:
    """Dotted OID (no leading dot) -> BER body. Raises ``ValueError`` for what BER cannot carry.

    Sub-identifiers above 2**32 - 1 (outside the SMI) are encoded all the same, as pysnmp does:
    an agent that lists such an OID in a walk must be able to continue the walk from it."""
    try:
        arcs = [int(part) for part in oid.split(".")]
    except ValueError:
        raise ValueError(f"OID {oid!r}: not dotted decimal") from None
    if len(arcs) < 2 or len(arcs) > 128:
        raise ValueError(f"OID {oid!r}: needs 2 to 128 arcs")
    first, second = arcs[0], arcs[1]
    if first > 2 or (first < 2 and second >= 40) or min(arcs) < 0:
        raise ValueError(f"OID {oid!r}: arc out of range")
    out = bytearray()
    for arc in (40 * first + second, *arcs[2:]):
        if arc < 0x80:
            out.append(arc)
            continue
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


def encode_request(
    version: int,
    community: bytes,
    pdu_type: int,
    request_id: int,
    oids: list[bytes],
    non_repeaters: int = 0,
    max_repetitions: int = 0,
) -> bytes:
    """A GetRequest / GetNextRequest / GetBulkRequest for ``oids`` (BER bodies), values NULL.

    For GET and GETNEXT, error-status and error-index are 0; for GETBULK (SNMPv2c only) those
    two fields carry ``non_repeaters`` and ``max_repetitions``.
    """
    if pdu_type not in (GET_REQUEST, GET_NEXT_REQUEST, GET_BULK_REQUEST):
        raise ValueError(f"PDU type 0x{pdu_type:02x} is not a request this codec sends")
    if pdu_type == GET_BULK_REQUEST and version != VERSION_2C:
        raise ValueError("GetBulkRequest needs SNMPv2c")
    if not 0 <= request_id <= _INT32[1]:
        raise ValueError(f"request-id {request_id} out of range")
    binds = b"".join(_tlv(SEQUENCE, _tlv(OBJECT_IDENTIFIER, oid) + b"\x05\x00") for oid in oids)
    pdu = _integer(request_id) + _integer(non_repeaters) + _integer(max_repetitions) + _tlv(SEQUENCE, binds)
    return _tlv(SEQUENCE, _integer(version) + _tlv(OCTET_STRING, community) + _tlv(pdu_type, pdu))


# ------------------------------------------------------------------------------------- decoding
def _header(buf: bytes, i: int, end: int, what: str) -> tuple[int, int, int]:
    """TLV at ``i`` -> (tag, offset of the value, offset after the value); all within ``end``."""
    if i + 2 > end:
        raise BerError(f"truncated {what}")
    tag = buf[i]
    n = buf[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0:
            raise BerError(f"{what}: indefinite length")
        if k > 4:
            raise BerError(f"{what}: {k}-octet length")
        if i + k > end:
            raise BerError(f"truncated {what} length")
        n = int.from_bytes(buf[i : i + k], "big")
        i += k
    if i + n > end:
        raise BerError(f"truncated {what}: {n} bytes announced, {end - i} left")
    return tag, i, i + n


def _expect(buf: bytes, i: int, end: int, tag: int, what: str) -> tuple[int, int]:
    got, start, stop = _header(buf, i, end, what)
    if got != tag:
        raise BerError(f"{what}: tag 0x{got:02x}, expected 0x{tag:02x}")
    return start, stop


def _read_integer(buf: bytes, i: int, end: int, what: str) -> tuple[int, int]:
    start, stop = _expect(buf, i, end, INTEGER, what)
    if start == stop:
        raise BerError(f"{what}: empty INTEGER")
    return int.from_bytes(buf[start:stop], "big", signed=True), stop


def oid_text(body: bytes) -> str:
    """BER body of a (validated) OID -> dotted text."""
    if body.isascii():  # every sub-identifier fits one byte: the common case
        return _ascii_oid_text(body)
    # A table index past 127 (ifIndex 10101): the one-byte arcs before it are converted (and
    # remembered: a walk meets the same column prefix over and over), only the rest is decoded.
    cut = _HIGH_BYTE.search(body).start()  # type: ignore[union-attr]
    if cut == 0:
        return ".".join(map(str, oid_arcs(body)))
    head = body[:cut]
    text = _PREFIXES.get(head)
    if text is None:
        if len(_PREFIXES) >= 4096:
            _PREFIXES.clear()
        text = _PREFIXES[head] = _ascii_oid_text(head)
    return text + "." + arcs_text(body[cut:])


def arcs_text(tail: bytes) -> str:
    """BER sub-identifiers past an OID's first byte (whole ones: a validated OID cut where one
    ends, such as a table row's index after its column) -> dotted text."""
    if tail.isascii():
        return ".".join([_ARC[b] for b in tail])
    arcs: list[str] = []
    value = 0
    for byte in tail:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(str(value))
            value = 0
    return ".".join(arcs)


def _ascii_oid_text(body: bytes) -> str:
    first = body[0]
    head = f"{first // 40}.{first % 40}" if first < 80 else f"2.{first - 80}"
    if len(body) == 1:
        return head
    return head + "." + arcs_text(body[1:])


_HIGH_BYTE = re.compile(rb"[\x80-\xff]")
_PREFIXES: dict[bytes, str] = {}


def oid_arcs(body: bytes) -> tuple[int, ...]:
    """BER body of a (validated) OID -> its arcs."""
    arcs: list[int] = []
    value = 0
    for byte in body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [first // 40, first % 40] if first < 80 else [2, first - 80]
    return tuple(head + arcs[1:])


def oid_after(body: bytes, previous: bytes) -> bool:
    """Is the OID ``body`` after ``previous`` in OID order? Bytes compare like the OIDs when each
    sub-identifier is one byte (the first one, 40 * arc1 + arc2, grows with both arcs); longer
    sub-identifiers do not (0x81 0x80 0x00 is 16384 but sorts before 0x87 0x68, 1000)."""
    if body.isascii() and previous.isascii():
        return body > previous
    # Same length and the same continuation bits: the same arc boundaries, so bytes compare as
    # well (the usual case in a walk: ifIndex 10101 after 10102).
    if len(body) == len(previous) and body.translate(_CONTINUATION) == previous.translate(_CONTINUATION):
        return body > previous
    return oid_arcs(body) > oid_arcs(previous)


_CONTINUATION = bytes(0x80 if byte & 0x80 else 0 for byte in range(256))


def _check_oid(body: bytes, what: str) -> None:
    if not body:
        raise BerError(f"{what}: empty OBJECT IDENTIFIER")
    if body[-1] & 0x80:
        raise BerError(f"{what}: OBJECT IDENTIFIER ends inside a sub-identifier")
    if not body.isascii():
        previous_ended = True
        for byte in body:
            if previous_ended and byte == 0x80:
                raise BerError(f"{what}: OBJECT IDENTIFIER sub-identifier padded with 0x80")
            previous_ended = not byte & 0x80


def decode_response(buf: bytes) -> Response:
    """One datagram -> :class:`Response`; :class:`BerError` for anything malformed or not a
    Response PDU (the error carries the request-id when it got that far)."""
    try:
        return _decode_response(buf)
    except BerError:
        raise
    except Exception as exc:  # a bug here must not take the event loop down: report it as malformed
        raise BerError(f"undecodable ({type(exc).__name__}: {exc})") from exc


def _envelope(buf: bytes) -> tuple[int, bytes, int, int, int]:
    """The v1/v2c message around a PDU: (version, community, PDU type, offset of the PDU's
    content, its end), the message and the PDU each filling the rest of the datagram."""
    size = len(buf)
    start, end = _expect(buf, 0, size, SEQUENCE, "message")
    if end != size:
        raise BerError(f"{size - end} trailing bytes after the message")
    version, i = _read_integer(buf, start, end, "version")
    if version not in (VERSION_1, VERSION_2C):
        raise BerError(f"version {version} is not SNMPv1 or SNMPv2c")
    c_start, i = _expect(buf, i, end, OCTET_STRING, "community")
    community = buf[c_start:i]
    pdu_type, i, pdu_end = _header(buf, i, end, "PDU")
    if pdu_end != end:
        raise BerError(f"{end - pdu_end} trailing bytes after the PDU")
    return version, community, pdu_type, i, end


def _decode_response(buf: bytes) -> Response:
    version, community, pdu_type, i, end = _envelope(buf)
    if pdu_type != RESPONSE:
        raise BerError(f"PDU type 0x{pdu_type:02x} is not a Response")
    request_id, i = _read_integer(buf, i, end, "request-id")
    try:
        error_status, i = _read_integer(buf, i, end, "error-status")
        error_index, i = _read_integer(buf, i, end, "error-index")
        l_start, l_end = _expect(buf, i, end, SEQUENCE, "varbind list")
        if l_end != end:
            raise BerError(f"{end - l_end} trailing bytes after the varbind list")
        varbinds = _varbinds(buf, l_start, l_end)
    except BerError as exc:
        raise BerError(str(exc), request_id) from None
    return Response(version, community, request_id, error_status, error_index, varbinds)


def structure_error(buf: bytes) -> str | None:
    """Why ``buf`` is not one well-formed BER message (a SEQUENCE of TLVs whose definite lengths
    nest exactly, no trailing bytes), or ``None``. For the SNMPv3 messages pysnmp decodes: it
    drops a malformed one without telling the request that waits (its encrypted part is not
    looked into)."""
    size = len(buf)
    try:
        start, end = _expect(buf, 0, size, SEQUENCE, "message")
        if end != size:
            return f"{size - end} trailing bytes after the message"
        spans = [(start, end)]
        while spans:
            i, end = spans.pop()
            while i < end:
                tag, start, i = _header(buf, i, end, "value")
                if tag & 0x20:  # constructed: its content is TLVs too
                    spans.append((start, i))
    except BerError as exc:
        return str(exc)
    return None


def _varbinds(buf: bytes, i: int, end: int) -> list[tuple[bytes, int, int | bytes | None]]:
    out: list[tuple[bytes, int, int | bytes | None]] = []
    append = out.append
    while i < end:
        what = f"varbind {len(out) + 1}"
        vb_start, vb_end = _expect(buf, i, end, SEQUENCE, what)
        o_start, o_end = _expect(buf, vb_start, vb_end, OBJECT_IDENTIFIER, what)
        oid = buf[o_start:o_end]
        _check_oid(oid, what)
        tag, v_start, v_end = _header(buf, o_end, vb_end, what)
        if v_end != vb_end:
            raise BerError(f"{what}: {vb_end - v_end} trailing bytes")
        raw = buf[v_start:v_end]
        value: int | bytes | None
        if tag == INTEGER:
            if not raw:
                raise BerError(f"{what}: empty INTEGER")
            value = int.from_bytes(raw, "big", signed=True)
            if not _INT32[0] <= value <= _INT32[1]:
                raise BerError(f"{what}: INTEGER {value} outside Integer32")
        elif tag in _UNSIGNED_MAX:
            if not raw:
                raise BerError(f"{what}: empty {_TAG_NAMES[tag]}")
            value = int.from_bytes(raw, "big", signed=True)
            if not 0 <= value <= _UNSIGNED_MAX[tag]:
                raise BerError(f"{what}: {_TAG_NAMES[tag]} {value} out of range")
        elif tag == OCTET_STRING or tag == OPAQUE:
            value = raw
        elif tag == OBJECT_IDENTIFIER:
            _check_oid(raw, what)
            value = raw
        elif tag == IP_ADDRESS:
            if len(raw) != 4:
                raise BerError(f"{what}: IpAddress of {len(raw)} octets")
            value = raw
        elif tag in (NULL, NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW):
            if raw:
                raise BerError(f"{what}: {len(raw)} content bytes for tag 0x{tag:02x}")
            value = None
        else:
            raise BerError(f"{what}: unsupported value tag 0x{tag:02x}")
        append((oid, tag, value))
        i = vb_end
    return out


# -------------------------------------------------------------------------------- notifications
@dataclass(frozen=True, slots=True)
class Notification:
    """A decoded notification: an SNMPv1 Trap-PDU, an SNMPv2c Trap or InformRequest.

    ``varbinds`` as in :class:`Response`. For SNMPv2c the first two are, by RFC 3416, sysUpTime.0
    and snmpTrapOID.0 (left in place: checking them is the receiver's business). The SNMPv1
    fields (``enterprise`` as an OID body, ``agent_address`` as 4 octets, the generic and
    specific trap numbers, ``timestamp`` in TimeTicks) are ``None`` for SNMPv2c, and
    ``request_id`` is ``None`` for SNMPv1, whose Trap-PDU has none."""

    version: int
    community: bytes
    pdu_type: int
    request_id: int | None
    varbinds: list[tuple[bytes, int, int | bytes | None]]
    enterprise: bytes | None = None
    agent_address: bytes | None = None
    generic_trap: int | None = None
    specific_trap: int | None = None
    timestamp: int | None = None


def decode_notification(buf: bytes) -> Notification:
    """One datagram -> :class:`Notification`; :class:`BerError` for anything malformed, another
    version, or a PDU that is not a notification of its version."""
    try:
        return _decode_notification(buf)
    except BerError:
        raise
    except Exception as exc:  # a bug here must not take the receiver down: report it as malformed
        raise BerError(f"undecodable ({type(exc).__name__}: {exc})") from exc


def _decode_notification(buf: bytes) -> Notification:
    version, community, pdu_type, i, end = _envelope(buf)
    if version == VERSION_1:
        if pdu_type != TRAP_V1:
            raise BerError(f"PDU type 0x{pdu_type:02x} is not an SNMPv1 Trap-PDU")
        e_start, i = _expect(buf, i, end, OBJECT_IDENTIFIER, "enterprise")
        enterprise = buf[e_start:i]
        _check_oid(enterprise, "enterprise")
        a_start, i = _expect(buf, i, end, IP_ADDRESS, "agent-addr")
        if i - a_start != 4:
            raise BerError(f"agent-addr of {i - a_start} octets")
        agent_address = buf[a_start:i]
        generic, i = _read_integer(buf, i, end, "generic-trap")
        if not 0 <= generic <= 6:
            raise BerError(f"generic-trap {generic} outside 0..6")
        specific, i = _read_integer(buf, i, end, "specific-trap")
        t_start, i = _expect(buf, i, end, TIMETICKS, "time-stamp")
        if t_start == i:
            raise BerError("time-stamp: empty TimeTicks")
        timestamp = int.from_bytes(buf[t_start:i], "big", signed=True)
        if not 0 <= timestamp <= _UNSIGNED_MAX[TIMETICKS]:
            raise BerError(f"time-stamp {timestamp} out of range")
        l_start, l_end = _expect(buf, i, end, SEQUENCE, "varbind list")
        if l_end != end:
            raise BerError(f"{end - l_end} trailing bytes after the varbind list")
        varbinds = _varbinds(buf, l_start, l_end)
        return Notification(version, community, pdu_type, None, varbinds, enterprise, agent_address, generic,
                            specific, timestamp)
    return _v2_notification(buf, version, community, pdu_type, i, end)


def _v2_notification(buf: bytes, version: int, community: bytes, pdu_type: int, i: int, end: int) -> Notification:
    """An SNMPv2 Trap or InformRequest PDU's content (``buf[i:end]``), as SNMPv2c and SNMPv3 carry it."""
    if pdu_type not in (TRAP_V2, INFORM_REQUEST):
        raise BerError(f"PDU type 0x{pdu_type:02x} is not an SNMPv2 Trap or InformRequest")
    request_id, i = _read_integer(buf, i, end, "request-id")
    try:
        _, i = _read_integer(buf, i, end, "error-status")
        _, i = _read_integer(buf, i, end, "error-index")
        l_start, l_end = _expect(buf, i, end, SEQUENCE, "varbind list")
        if l_end != end:
            raise BerError(f"{end - l_end} trailing bytes after the varbind list")
        varbinds = _varbinds(buf, l_start, l_end)
    except BerError as exc:
        raise BerError(str(exc), request_id) from None
    return Notification(version, community, pdu_type, request_id, varbinds)


@dataclass(frozen=True, slots=True)
class V3Message:
    """An SNMPv3 message as received (RFC 3412 section 6, RFC 3414 section 2.4), before any check.

    ``flags``: msgFlags (1 auth, 2 priv, 4 reportable). ``engine_id``, ``boots``, ``time``: the
    authoritative engine's (for a trap, the sender's). ``auth_offset``: where the
    msgAuthenticationParameters value sits in the datagram (zeroed there to compute the HMAC).
    ``data``: the scoped PDU's encoding, or for an encrypted message the encryptedPDU's octets."""

    msg_id: int
    flags: int
    engine_id: bytes
    boots: int
    time: int
    user: bytes
    auth_params: bytes
    auth_offset: int
    priv_params: bytes
    data: bytes


def is_v3(buf: bytes) -> bool:
    """Whether the datagram claims to be an SNMPv3 message (read no further than its version)."""
    try:
        start, end = _expect(buf, 0, len(buf), SEQUENCE, "message")
        version, _ = _read_integer(buf, start, end, "version")
    except BerError:
        return False
    return version == VERSION_3


def decode_v3_message(buf: bytes) -> V3Message:
    """One SNMPv3 datagram with USM security parameters -> :class:`V3Message`; BerError otherwise."""
    try:
        return _decode_v3_message(buf)
    except BerError:
        raise
    except Exception as exc:  # as decode_notification: never anything but BerError
        raise BerError(f"undecodable ({type(exc).__name__}: {exc})") from exc


def _decode_v3_message(buf: bytes) -> V3Message:
    size = len(buf)
    start, end = _expect(buf, 0, size, SEQUENCE, "message")
    if end != size:
        raise BerError(f"{size - end} trailing bytes after the message")
    version, i = _read_integer(buf, start, end, "version")
    if version != VERSION_3:
        raise BerError(f"version {version} is not SNMPv3")
    g_start, i = _expect(buf, i, end, SEQUENCE, "msgGlobalData")
    msg_id, j = _read_integer(buf, g_start, i, "msgID")
    _, j = _read_integer(buf, j, i, "msgMaxSize")
    f_start, j = _expect(buf, j, i, OCTET_STRING, "msgFlags")
    if j - f_start != 1:
        raise BerError(f"msgFlags of {j - f_start} octets")
    flags = buf[f_start]
    model, j = _read_integer(buf, j, i, "msgSecurityModel")
    if j != i:
        raise BerError("trailing bytes in msgGlobalData")
    if model != USM:
        raise BerError(f"msgSecurityModel {model} is not USM (3)")
    if flags & 2 and not flags & 1:
        raise BerError("msgFlags: privacy without authentication")
    p_start, i = _expect(buf, i, end, OCTET_STRING, "msgSecurityParameters")
    u_start, u_end = _expect(buf, p_start, i, SEQUENCE, "UsmSecurityParameters")
    if u_end != i:
        raise BerError("trailing bytes in msgSecurityParameters")
    e_start, k = _expect(buf, u_start, u_end, OCTET_STRING, "msgAuthoritativeEngineID")
    engine_id = buf[e_start:k]
    boots, k = _read_integer(buf, k, u_end, "msgAuthoritativeEngineBoots")
    engine_time, k = _read_integer(buf, k, u_end, "msgAuthoritativeEngineTime")
    if not (0 <= boots <= _INT32[1] and 0 <= engine_time <= _INT32[1]):
        raise BerError("engine boots or time out of range")
    n_start, k = _expect(buf, k, u_end, OCTET_STRING, "msgUserName")
    user = buf[n_start:k]
    a_start, k = _expect(buf, k, u_end, OCTET_STRING, "msgAuthenticationParameters")
    auth_params, auth_offset = buf[a_start:k], a_start
    v_start, k = _expect(buf, k, u_end, OCTET_STRING, "msgPrivacyParameters")
    priv_params = buf[v_start:k]
    if k != u_end:
        raise BerError("trailing bytes in UsmSecurityParameters")
    tag, d_start, d_end = _header(buf, i, end, "msgData")
    if d_end != end:
        raise BerError(f"{end - d_end} trailing bytes after msgData")
    if flags & 2:
        if tag != OCTET_STRING:
            raise BerError(f"msgData: tag 0x{tag:02x}, an encrypted message carries an OCTET STRING")
        data = buf[d_start:d_end]
    else:
        if tag != SEQUENCE:
            raise BerError(f"msgData: tag 0x{tag:02x}, a plaintext message carries a scoped PDU")
        data = buf[i:d_end]
    return V3Message(msg_id, flags, engine_id, boots, engine_time, user, auth_params, auth_offset, priv_params, data)


def decode_scoped_notification(scoped: bytes) -> Notification:
    """A scoped PDU (RFC 3412: contextEngineID, contextName, PDU) carrying an SNMPv2 Trap or
    InformRequest -> :class:`Notification` with ``version`` 3 and the context name as
    ``community``. Decrypted data may end with padding (DES): bytes after the scoped PDU are
    ignored."""
    try:
        start, end = _expect(scoped, 0, len(scoped), SEQUENCE, "scopedPDU")
        _, i = _expect(scoped, start, end, OCTET_STRING, "contextEngineID")
        n_start, i = _expect(scoped, i, end, OCTET_STRING, "contextName")
        pdu_type, p_start, p_end = _header(scoped, i, end, "PDU")
        if p_end != end:
            raise BerError(f"{end - p_end} trailing bytes after the PDU")
        return _v2_notification(scoped, VERSION_3, scoped[n_start:i], pdu_type, p_start, p_end)
    except BerError:
        raise
    except Exception as exc:  # as decode_notification: never anything but BerError
        raise BerError(f"undecodable ({type(exc).__name__}: {exc})") from exc


def encode_value(tag: int, value: int | bytes | None) -> bytes:
    """One varbind value, the inverse of the decoder: ``int`` for INTEGER and the unsigned types,
    ``bytes`` for OCTET STRING, Opaque, IpAddress and an OID body, ``None`` for NULL."""
    if tag == INTEGER or tag in _UNSIGNED_MAX:
        if not isinstance(value, int):
            raise ValueError(f"tag 0x{tag:02x} needs an int, got {value!r}")
        low, high = _INT32 if tag == INTEGER else (0, _UNSIGNED_MAX[tag])
        if not low <= value <= high:
            raise ValueError(f"{value} out of range for tag 0x{tag:02x}")
        return _tlv(tag, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))
    if tag in (OCTET_STRING, OPAQUE, OBJECT_IDENTIFIER, IP_ADDRESS):
        if not isinstance(value, bytes):
            raise ValueError(f"tag 0x{tag:02x} needs bytes, got {value!r}")
        if tag == IP_ADDRESS and len(value) != 4:
            raise ValueError("an IpAddress is 4 octets")
        return _tlv(tag, value)
    if tag in (NULL, NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW):
        return bytes((tag, 0))
    raise ValueError(f"unsupported value tag 0x{tag:02x}")


def _varbind_list(varbinds: list[tuple[bytes, int, int | bytes | None]]) -> bytes:
    return _tlv(SEQUENCE, b"".join(
        _tlv(SEQUENCE, _tlv(OBJECT_IDENTIFIER, oid) + encode_value(tag, value)) for oid, tag, value in varbinds
    ))


def encode_pdu(
    version: int,
    community: bytes,
    pdu_type: int,
    request_id: int,
    varbinds: list[tuple[bytes, int, int | bytes | None]],
) -> bytes:
    """An SNMPv2c Trap or InformRequest, or the Response acknowledging an Inform (error-status and
    error-index 0), with valued ``varbinds`` (OID body, tag, value)."""
    if pdu_type not in (TRAP_V2, INFORM_REQUEST, RESPONSE):
        raise ValueError(f"PDU type 0x{pdu_type:02x} is not a notification or a Response")
    if not _INT32[0] <= request_id <= _INT32[1]:
        raise ValueError(f"request-id {request_id} out of range")
    pdu = _integer(request_id) + _integer(0) + _integer(0) + _varbind_list(varbinds)
    return _tlv(SEQUENCE, _integer(version) + _tlv(OCTET_STRING, community) + _tlv(pdu_type, pdu))


def encode_trap_v1(
    community: bytes,
    enterprise: bytes,
    agent_address: bytes,
    generic_trap: int,
    specific_trap: int,
    timestamp: int,
    varbinds: list[tuple[bytes, int, int | bytes | None]],
) -> bytes:
    """An SNMPv1 Trap-PDU (RFC 1157 section 4.1.6)."""
    if not 0 <= generic_trap <= 6:
        raise ValueError(f"generic-trap {generic_trap} outside 0..6")
    pdu = (
        _tlv(OBJECT_IDENTIFIER, enterprise)
        + encode_value(IP_ADDRESS, agent_address)
        + _integer(generic_trap)
        + _integer(specific_trap)
        + encode_value(TIMETICKS, timestamp)
        + _varbind_list(varbinds)
    )
    return _tlv(SEQUENCE, _integer(VERSION_1) + _tlv(OCTET_STRING, community) + _tlv(TRAP_V1, pdu))
