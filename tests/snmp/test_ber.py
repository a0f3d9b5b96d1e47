"""The BER codec on hand-made byte strings: every SNMP value type, edge values, malformed input."""

from __future__ import annotations

import pytest

from collectors.snmp import ber
from collectors.snmp.client import SnmpValue, decode_ber


def tlv(tag: int, payload: bytes, long_length: int = 0) -> bytes:
    """``long_length`` forces the long form with that many length octets."""
    n = len(payload)
    if long_length:
        return bytes([tag, 0x80 | long_length]) + n.to_bytes(long_length, "big") + payload
    if n < 0x80:
        return bytes([tag, n]) + payload
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(body)]) + body + payload


SYS_UPTIME = bytes([0x2B, 6, 1, 2, 1, 1, 3, 0])  # 1.3.6.1.2.1.1.3.0


def response(*varbinds: bytes, request_id: bytes = b"\x02\x01\x07", status: int = 0, index: int = 0,
             version: int = 1, community: bytes = b"public") -> bytes:
    pdu = request_id + bytes([2, 1, status, 2, 1, index]) + tlv(0x30, b"".join(varbinds))
    return tlv(0x30, bytes([2, 1, version]) + tlv(0x04, community) + tlv(0xA2, pdu))


def vb(value: bytes, oid: bytes = SYS_UPTIME) -> bytes:
    return tlv(0x30, tlv(0x06, oid) + value)


def one(value: bytes, oid: bytes = SYS_UPTIME) -> tuple[int, object]:
    (got_oid, tag, decoded), = ber.decode_response(response(vb(value, oid))).varbinds
    assert got_oid == oid
    return tag, decoded


# ------------------------------------------------------------------------------------ encoding
def test_get_request_bytes() -> None:
    got = ber.encode_request(ber.VERSION_2C, b"public", ber.GET_REQUEST, 0x1234, [SYS_UPTIME])
    want = tlv(0x30, b"\x02\x01\x01" + tlv(0x04, b"public") + tlv(
        0xA0, b"\x02\x02\x12\x34" + b"\x02\x01\x00" * 2 + tlv(0x30, tlv(0x30, tlv(0x06, SYS_UPTIME) + b"\x05\x00"))))
    assert got == want


def test_getbulk_carries_non_repeaters_and_max_repetitions() -> None:
    got = ber.encode_request(ber.VERSION_2C, b"c", ber.GET_BULK_REQUEST, 1, [SYS_UPTIME], 0, 200)
    assert b"\xa5" in got
    # request-id 1, non-repeaters 0, max-repetitions 200 (needs a leading zero byte: 0x00c8)
    assert b"\x02\x01\x01\x02\x01\x00\x02\x02\x00\xc8" in got


def test_getnext_v1_and_bulk_needs_v2c() -> None:
    got = ber.encode_request(ber.VERSION_1, b"c", ber.GET_NEXT_REQUEST, 2**31 - 1, [SYS_UPTIME])
    assert got.startswith(b"\x30") and b"\x02\x01\x00\x04\x01c\xa1" in got
    assert b"\x02\x04\x7f\xff\xff\xff" in got
    with pytest.raises(ValueError, match="SNMPv2c"):
        ber.encode_request(ber.VERSION_1, b"c", ber.GET_BULK_REQUEST, 1, [SYS_UPTIME])
    with pytest.raises(ValueError, match="request"):
        ber.encode_request(ber.VERSION_2C, b"c", ber.RESPONSE, 1, [SYS_UPTIME])


def test_long_request_uses_long_form_lengths() -> None:
    oids = [ber.encode_oid(f"1.3.6.1.2.1.2.2.1.{column}.{i}") for column in (2, 10, 16) for i in range(1, 40)]
    got = ber.encode_request(ber.VERSION_2C, b"public", ber.GET_REQUEST, 9, oids)
    assert got[1] == 0x82 and int.from_bytes(got[2:4], "big") == len(got) - 4


@pytest.mark.parametrize(
    ("oid", "body"),
    [
        ("1.3.6.1", b"\x2b\x06\x01"),
        ("0.0", b"\x00"),
        ("2.999.3", b"\x88\x37\x03"),  # X.690's example: 2.999 -> 1079 in two bytes
        ("1.3.6.1.4.1.4294967295", b"\x2b\x06\x01\x04\x01\x8f\xff\xff\xff\x7f"),
        ("1.3.6.1.4.1.128", b"\x2b\x06\x01\x04\x01\x81\x00"),
        ("1.3.4294967296", b"\x2b\x90\x80\x80\x80\x00"),  # beyond the SMI, as pysnmp allows
    ],
)
def test_oid_round_trip(oid: str, body: bytes) -> None:
    assert ber.encode_oid(oid) == body
    assert ber.oid_text(body) == oid
    assert ".".join(map(str, ber.oid_arcs(body))) == oid


@pytest.mark.parametrize("oid", ["1", "", "1.x.3", "3.1", "1.40", "1.3.-1", ".".join(["1"] * 129)])
def test_encode_oid_rejects(oid: str) -> None:
    with pytest.raises(ValueError):
        ber.encode_oid(oid)


def test_oid_order_with_multi_byte_arcs() -> None:
    def after(a: str, b: str) -> bool:
        return ber.oid_after(ber.encode_oid(a), ber.encode_oid(b))

    assert after("1.3.6.2", "1.3.6.1.99")
    assert after("1.3.6.1.1", "1.3.6.1")
    assert not after("1.3.6.1", "1.3.6.1")
    assert after("1.3.6.268435456", "1.3.6.1000")  # bytes alone would say the opposite
    assert after("1.3.6.16384", "1.3.6.16383")
    assert not after("1.3.6.127", "1.3.6.128")
    assert after("1.3.6.10102", "1.3.6.10101") and not after("1.3.6.10101", "1.3.6.10102")
    assert after("1.3.6.200.1", "1.3.6.129.5") and after("1.3.6.129.5.200", "1.3.6.129.5.129")
    assert after("1.3.6.16383.1", "1.3.6.129.200")  # same length, other boundaries


# ------------------------------------------------------------------------------------ decoding
def test_header_fields() -> None:
    got = ber.decode_response(response(vb(b"\x05\x00"), request_id=b"\x02\x04\x7f\xff\xff\xff", status=5,
                                       index=1, version=0, community=b"s3cr3t"))
    assert (got.version, got.community, got.request_id, got.error_status, got.error_index) == (
        0, b"s3cr3t", 2**31 - 1, 5, 1)
    assert got.varbinds == [(SYS_UPTIME, ber.NULL, None)]


@pytest.mark.parametrize(
    ("value", "tag", "decoded", "snmp_value"),
    [
        (b"\x02\x01\x00", ber.INTEGER, 0, SnmpValue(0, "integer")),
        (b"\x02\x01\xff", ber.INTEGER, -1, SnmpValue(-1, "integer")),
        (b"\x02\x02\xff\x7f", ber.INTEGER, -129, SnmpValue(-129, "integer")),
        (b"\x02\x04\x80\x00\x00\x00", ber.INTEGER, -(2**31), SnmpValue(-(2**31), "integer")),
        (b"\x02\x04\x7f\xff\xff\xff", ber.INTEGER, 2**31 - 1, SnmpValue(2**31 - 1, "integer")),
        (b"\x02\x02\x00\x01", ber.INTEGER, 1, SnmpValue(1, "integer")),  # not minimal, still accepted
        (b"\x41\x05\x00\xff\xff\xff\xff", ber.COUNTER32, 2**32 - 1, SnmpValue(2**32 - 1, "counter32")),
        (b"\x42\x01\x00", ber.GAUGE32, 0, SnmpValue(0, "gauge")),
        (b"\x43\x03\x01\xe2\x40", ber.TIMETICKS, 123456, SnmpValue(123456, "timeticks")),
        (b"\x46\x09\x00" + b"\xff" * 8, ber.COUNTER64, 2**64 - 1, SnmpValue(2**64 - 1, "counter64")),
        (b"\x46\x01\x00", ber.COUNTER64, 0, SnmpValue(0, "counter64")),
        (b"\x04\x04eth0", ber.OCTET_STRING, b"eth0", SnmpValue("eth0", "string")),
        (b"\x04\x03\x00\xff\x10", ber.OCTET_STRING, b"\x00\xff\x10", SnmpValue("00ff10", "hex")),
        (b"\x04\x00", ber.OCTET_STRING, b"", SnmpValue("", "string")),
        (b"\x40\x04\x0a\x00\x00\xfe", ber.IP_ADDRESS, b"\x0a\x00\x00\xfe", SnmpValue("10.0.0.254", "ipaddress")),
        (b"\x44\x03\x9f\x78\x04", ber.OPAQUE, b"\x9f\x78\x04", SnmpValue("9f7804", "hex")),
        (b"\x06\x01\x00", ber.OBJECT_IDENTIFIER, b"\x00", SnmpValue("0.0", "oid")),
        (b"\x06\x0a\x2b\x06\x01\x04\x01\x8f\xff\xff\xff\x7f", ber.OBJECT_IDENTIFIER,
         b"\x2b\x06\x01\x04\x01\x8f\xff\xff\xff\x7f", SnmpValue("1.3.6.1.4.1.4294967295", "oid")),
        (b"\x05\x00", ber.NULL, None, None),
        (b"\x80\x00", ber.NO_SUCH_OBJECT, None, None),
        (b"\x81\x00", ber.NO_SUCH_INSTANCE, None, None),
        (b"\x82\x00", ber.END_OF_MIB_VIEW, None, None),
    ],
)
def test_value_types(value: bytes, tag: int, decoded: object, snmp_value: SnmpValue | None) -> None:
    assert one(value) == (tag, decoded)
    assert decode_ber(tag, decoded) == snmp_value


def test_varbind_oid_with_large_arcs() -> None:
    oid = ber.encode_oid("1.3.6.1.4.1.2636.3.1.13.1.8.9.1.0.4294967295.268435456")
    ((got, _, _),) = ber.decode_response(response(vb(b"\x05\x00", oid))).varbinds
    assert ber.oid_text(got) == "1.3.6.1.4.1.2636.3.1.13.1.8.9.1.0.4294967295.268435456"


def test_long_form_lengths_everywhere() -> None:
    text = b"x" * 300  # 2 length octets
    value = tlv(0x04, text)
    varbind = tlv(0x30, tlv(0x06, SYS_UPTIME, long_length=1) + value, long_length=3)
    pdu = b"\x02\x01\x07\x02\x01\x00\x02\x01\x00" + tlv(0x30, varbind, long_length=4)
    message = tlv(0x30, b"\x02\x01\x01" + tlv(0x04, b"public", long_length=2) + tlv(0xA2, pdu, long_length=2),
                  long_length=2)
    assert ber.decode_response(message).varbinds == [(SYS_UPTIME, ber.OCTET_STRING, text)]


def test_many_varbinds() -> None:
    binds = [vb(b"\x41\x01" + bytes([i]), SYS_UPTIME[:-1] + bytes([i])) for i in range(100)]
    got = ber.decode_response(response(*binds)).varbinds
    assert [v for _, _, v in got] == list(range(100))


MALFORMED = [
    (b"", "truncated message"),
    (b"\x30", "truncated message"),
    (b"\x31\x00", "tag 0x31"),
    (b"\x30\x80" + b"\x00" * 4, "indefinite length"),
    (b"\x30\x85\x00\x00\x00\x00\x05", "5-octet length"),
    (b"\x30\x82\x01", "truncated message length"),
    (b"\x30\x05\x02\x01\x01", "truncated message: 5 bytes announced, 3 left"),
    (response(vb(b"\x05\x00")) + b"\x00", "1 trailing bytes after the message"),
    (tlv(0x30, b"\x02\x01\x03" + tlv(0x04, b"p") + tlv(0xA2, b"")), "version 3"),
    (tlv(0x30, b"\x02\x00" + tlv(0x04, b"p")), "version: empty INTEGER"),
    (tlv(0x30, b"\x02\x01\x01" + tlv(0x04, b"p") + tlv(0xA0, b"\x02\x01\x07")), "not a Response"),
    (tlv(0x30, b"\x02\x01\x01" + tlv(0x02, b"p")), "community: tag 0x02"),
    (tlv(0x30, b"\x02\x01\x01" + tlv(0x04, b"p") + tlv(0xA2, b"\x02\x01\x07\x02\x01")), "truncated error-status"),
    (response(b"\x30\x03\x06\x01\x2b"), "truncated varbind 1"),
    (response(vb(b"\x02\x00")), "empty INTEGER"),
    (response(vb(b"\x02\x05\x00\x80\x00\x00\x00")), "INTEGER 2147483648 outside Integer32"),
    (response(vb(b"\x41\x04\xff\xff\xff\xff")), "Counter32 -1 out of range"),
    (response(vb(b"\x41\x05\x01\x00\x00\x00\x00")), "Counter32 4294967296 out of range"),
    (response(vb(b"\x46\x09\x01" + b"\x00" * 8)), "Counter64 18446744073709551616 out of range"),
    (response(vb(b"\x43\x00")), "empty TimeTicks"),
    (response(vb(b"\x40\x03\x01\x02\x03")), "IpAddress of 3 octets"),
    (response(vb(b"\x05\x01\x00")), "1 content bytes"),
    (response(vb(b"\x82\x01\x00")), "1 content bytes"),
    (response(vb(b"\x24\x04\x04\x02ab")), "unsupported value tag 0x24"),  # constructed OCTET STRING
    (response(vb(b"\x47\x01\x01")), "unsupported value tag 0x47"),
    (response(vb(b"\x05\x00", b"")), "empty OBJECT IDENTIFIER"),
    (response(vb(b"\x05\x00", b"\x2b\x86")), "ends inside a sub-identifier"),
    (response(vb(b"\x05\x00", b"\x2b\x80\x01")), "padded with 0x80"),
    (response(vb(b"\x06\x02\x2b\x80")), "ends inside a sub-identifier"),
    (response(vb(b"\x05\x00") + b"\x05"), "truncated varbind 2"),
    (response(tlv(0x30, tlv(0x06, SYS_UPTIME) + b"\x05\x00\x00")), "1 trailing bytes"),
    (response(tlv(0x30, tlv(0x06, SYS_UPTIME))), "truncated varbind 1"),
    (response(tlv(0x31, b"")), "varbind 1: tag 0x31"),
]


@pytest.mark.parametrize(("data", "message"), MALFORMED, ids=[f"{i}-{m}" for i, (_, m) in enumerate(MALFORMED)])
def test_malformed_is_a_ber_error(data: bytes, message: str) -> None:
    with pytest.raises(ber.BerError, match=message):
        ber.decode_response(data)


def test_error_names_its_request_id_once_read() -> None:
    with pytest.raises(ber.BerError) as excinfo:
        ber.decode_response(response(vb(b"\x41\x04\xff\xff\xff\xff"), request_id=b"\x02\x02\x01\x00"))
    assert excinfo.value.request_id == 256
    with pytest.raises(ber.BerError) as excinfo:
        ber.decode_response(b"\x30\x03\x02\x01\x01")
    assert excinfo.value.request_id is None


def test_every_truncation_of_a_valid_response_is_rejected() -> None:
    good = response(vb(b"\x46\x09\x00" + b"\xff" * 8), vb(b"\x04\x04eth0"), vb(b"\x82\x00"))
    ber.decode_response(good)
    for cut in range(len(good)):
        with pytest.raises(ber.BerError):
            ber.decode_response(good[:cut])


def test_garbage_never_raises_anything_but_ber_error() -> None:
    import random

    rng = random.Random(1)
    good = bytearray(response(vb(b"\x41\x01\x05"), vb(b"\x04\x02ok"), vb(b"\x06\x03\x2b\x06\x01")))
    for _ in range(3000):
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            ber.decode_response(bytes(data))
        except ber.BerError:
            pass


@pytest.mark.parametrize(
    "oid",
    ["1.3.6.1.2.1.31.1.1.1.6.10101", "1.3.6.1.2.1.31.1.1.1.6.10102", "1.3.6.1.4.1.9.1000.5.300.7",
     "2.999", "2.47.128.1", "1.3.127.128.16383.16384.2097151.2097152"],
)
def test_oid_text_of_multi_byte_arcs(oid: str) -> None:
    for _ in range(2):  # the second time from the remembered prefix
        assert ber.oid_text(ber.encode_oid(oid)) == oid
