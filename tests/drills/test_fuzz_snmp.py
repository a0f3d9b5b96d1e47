"""Bad SNMP input fuzzed: responses into the BER decoder and the profile evaluator, trap PDUs (v1,
v2c, v3) into the notification decoders. Garbage, truncated or huge -> BerError, bounded memory,
never another exception."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from collectors.snmp import ber
from collectors.snmp.client import SnmpValue, decode_ber
from collectors.snmp.engine import CounterStore, Snapshot, evaluate
from collectors.snmp.profile import ProfileSet
from tests.drills.fuzzing import FUZZ, bounded_memory, hostile_text, only_raises

TAGS = [ber.INTEGER, ber.OCTET_STRING, ber.OBJECT_IDENTIFIER, ber.IP_ADDRESS, ber.COUNTER32, ber.GAUGE32,
        ber.TIMETICKS, ber.OPAQUE, ber.COUNTER64, ber.NULL, 0x80, 0x81, 0x82]
oid_bodies = st.lists(st.integers(0, 2**32), min_size=2, max_size=12).map(
    lambda arcs: ber.encode_oid(".".join(["1", "3"] + [str(a) for a in arcs]))
)


def varbind_values(tag: int) -> st.SearchStrategy:
    if tag in (ber.INTEGER,):
        return st.integers(-(2**31), 2**31 - 1)
    if tag in (ber.COUNTER32, ber.GAUGE32, ber.TIMETICKS):
        return st.integers(0, 2**32 - 1)
    if tag == ber.COUNTER64:
        return st.integers(0, 2**64 - 1)
    if tag == ber.OBJECT_IDENTIFIER:
        return oid_bodies
    if tag == ber.IP_ADDRESS:
        return st.binary(min_size=4, max_size=4)
    if tag in (ber.OCTET_STRING, ber.OPAQUE):
        return st.binary(max_size=64)
    return st.none()


varbinds = st.lists(
    st.sampled_from(TAGS).flatmap(lambda tag: st.tuples(oid_bodies, st.just(tag), varbind_values(tag))),
    max_size=8,
)
responses = st.builds(
    lambda version, community, request_id, binds: ber.encode_pdu(version, community, ber.RESPONSE, request_id, binds),
    st.sampled_from([0, 1]), st.binary(max_size=16), st.integers(0, 2**31 - 1), varbinds,
)


def mutated(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """A valid datagram cut short, with bytes flipped, or with bytes inserted: what a broken agent,
    a truncating middlebox or a hostile sender produces."""

    def mutate(data: st.DataObject, buf: bytes) -> bytes:
        how = data.draw(st.sampled_from(["truncate", "flip", "insert", "as_is"]))
        if how == "truncate" and buf:
            return buf[: data.draw(st.integers(0, len(buf) - 1))]
        if how == "flip" and buf:
            at = data.draw(st.integers(0, len(buf) - 1))
            return buf[:at] + bytes([data.draw(st.integers(0, 255))]) + buf[at + 1 :]
        if how == "insert":
            at = data.draw(st.integers(0, len(buf)))
            return buf[:at] + data.draw(st.binary(min_size=1, max_size=8)) + buf[at:]
        return buf

    return st.tuples(st.data(), valid).map(lambda pair: mutate(*pair))


datagrams = mutated(responses) | st.binary(max_size=512)


@FUZZ
@given(datagrams)
def test_a_response_decodes_or_is_a_berror(buf: bytes) -> None:
    try:
        response = ber.decode_response(buf)
    except ber.BerError as exc:
        assert str(exc)
        return
    for _, tag, value in response.varbinds:
        decoded = decode_ber(tag, value)
        assert decoded is None or isinstance(decoded, SnmpValue)


@FUZZ
@given(varbinds)
def test_a_valid_response_decodes_to_what_was_sent(binds) -> None:
    response = ber.decode_response(ber.encode_pdu(1, b"public", ber.RESPONSE, 7, binds))
    assert response.request_id == 7
    assert [(oid, tag) for oid, tag, _ in response.varbinds] == [(oid, tag) for oid, tag, _ in binds]


traps_v2 = st.builds(
    lambda community, pdu, request_id, binds: ber.encode_pdu(1, community, pdu, request_id, binds),
    st.binary(max_size=16), st.sampled_from([ber.TRAP_V2, ber.INFORM_REQUEST]), st.integers(0, 2**31 - 1), varbinds,
)
traps_v1 = st.builds(
    ber.encode_trap_v1,
    st.binary(max_size=16), oid_bodies, st.binary(min_size=4, max_size=4), st.integers(0, 6),
    st.integers(0, 2**31 - 1), st.integers(0, 2**32 - 1), varbinds,
)


@FUZZ
@given(mutated(traps_v1 | traps_v2) | st.binary(max_size=512))
def test_a_trap_decodes_or_is_a_berror(buf: bytes) -> None:
    only_raises(lambda: ber.decode_notification(buf), ber.BerError)


def _v3_message(engine_id: bytes, user: bytes, flags: int, scoped: bytes) -> bytes:
    usm = ber._tlv(ber.SEQUENCE, b"".join([
        ber._tlv(ber.OCTET_STRING, engine_id), ber._integer(1), ber._integer(2), ber._tlv(ber.OCTET_STRING, user),
        ber._tlv(ber.OCTET_STRING, b"\x00" * 12 if flags & 1 else b""), ber._tlv(ber.OCTET_STRING, b""),
    ]))
    header = ber._tlv(ber.SEQUENCE, ber._integer(42) + ber._integer(65507) + ber._tlv(ber.OCTET_STRING, bytes([flags]))
                      + ber._integer(3))
    return ber._tlv(ber.SEQUENCE, ber._integer(3) + header + ber._tlv(ber.OCTET_STRING, usm) + scoped)


def _scoped(pdu: bytes) -> bytes:
    # The v2c message's PDU (after version and community) wrapped as a scoped PDU.
    _, _, _, start, end = ber._envelope(pdu)
    header_len = len(pdu) - (end - start)
    return ber._tlv(ber.SEQUENCE, ber._tlv(ber.OCTET_STRING, b"\x80\x00") + ber._tlv(ber.OCTET_STRING, b"")
                    + pdu[header_len - 2 - _length_octets(end - start) :])


def _length_octets(n: int) -> int:
    return 0 if n < 0x80 else (n.bit_length() + 7) // 8


v3_messages = st.builds(
    lambda engine, user, flags, trap: _v3_message(engine, user, flags, _scoped(trap)),
    st.binary(max_size=32), st.binary(max_size=32), st.sampled_from([0, 1, 3, 4, 2]), traps_v2,
)


@FUZZ
@given(mutated(v3_messages) | st.binary(max_size=512))
def test_a_v3_message_decodes_or_is_a_berror(buf: bytes) -> None:
    try:
        message = ber.decode_v3_message(buf)
    except ber.BerError as exc:
        assert str(exc)
        return
    if not message.flags & 2:
        only_raises(lambda: ber.decode_scoped_notification(message.data), ber.BerError)


def test_a_huge_or_lying_datagram_costs_bounded_memory() -> None:
    # A length field claiming 2 GiB, a 60 kB datagram of nested SEQUENCE headers, 60 kB of zeros.
    lying = b"\x30\x84\x7f\xff\xff\xff" + b"\x02\x01\x01" * 10
    nested = b"\x30\x82\xea\x5c" * 15_000
    zeros = bytes(60_000)
    for buf in (lying, nested, zeros):
        with bounded_memory(4 * len(buf) + 1_000_000):
            only_raises(lambda buf=buf: ber.decode_response(buf), ber.BerError)
            only_raises(lambda buf=buf: ber.decode_notification(buf), ber.BerError)
            only_raises(lambda buf=buf: ber.decode_v3_message(buf), ber.BerError)


PROFILES = ProfileSet.load()
snmp_values = (
    st.builds(SnmpValue, st.integers(-(2**64), 2**64), st.sampled_from(["integer", "counter32", "counter64", "gauge",
                                                                         "timeticks"]))
    | st.builds(SnmpValue, hostile_text, st.sampled_from(["string", "oid", "ipaddress"]))
    | st.binary(max_size=24).map(lambda raw: SnmpValue(raw.hex(), "hex"))
)
indexes = st.lists(st.integers(0, 2**32), min_size=1, max_size=3).map(lambda arcs: ".".join(map(str, arcs)))


@FUZZ
@given(st.sampled_from(sorted(PROFILES.profiles)), st.lists(snmp_values, min_size=1, max_size=16),
       st.lists(indexes, min_size=1, max_size=2, unique=True))
def test_the_profile_evaluator_turns_any_reading_into_rows(name: str, values: list[SnmpValue],
                                                           rows: list[str]) -> None:
    """Whatever an agent answers in any column (wrong types, huge numbers, hostile text), the
    shipped profiles evaluate it to rows of None-or-values: one bad column is never a failed poll."""
    profile = PROFILES.get(name)
    snapshot = Snapshot(read_at=1_700_000_000.0)
    drawn = iter(values * 1000)  # the drawn values dealt out to every column in turn
    for table in profile.tables:
        for column in table.columns:
            if table.scalar:
                snapshot.scalars[column.oid] = next(drawn)
            else:
                snapshot.columns.setdefault(column.oid, {}).update({index: next(drawn) for index in rows})
    store = CounterStore()
    for now in (1_700_000_000.0, 1_700_000_060.0):  # twice: counters get a rate
        for row in evaluate(profile, snapshot, store, now):
            for value in row.fields.values():
                assert value is None or isinstance(value, bool | int | float | str)
