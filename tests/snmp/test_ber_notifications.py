"""The BER codec's notifications: SNMPv1 Trap-PDUs and SNMPv2c Traps/Informs, against pysnmp's own
encoder (an independent implementation) and on malformed input."""

from __future__ import annotations

import pytest
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api

from collectors.snmp import ber
from tests.snmp.test_ber import tlv

SYS_UPTIME_0 = "1.3.6.1.2.1.1.3.0"
SNMP_TRAP_OID_0 = "1.3.6.1.6.3.1.1.4.1.0"
LINK_DOWN = "1.3.6.1.6.3.1.1.5.3"
IF_OPER_STATUS_3 = "1.3.6.1.2.1.2.2.1.8.3"
IF_DESCR_3 = "1.3.6.1.2.1.2.2.1.2.3"


def _pysnmp_v2c(pdu_type: str = "TrapPDU") -> bytes:
    v2c = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
    pdu = getattr(v2c, pdu_type)()
    v2c.apiTrapPDU.set_defaults(pdu)
    v2c.apiPDU.set_request_id(pdu, 4242)
    v2c.apiPDU.set_varbinds(pdu, [
        (v2c.ObjectIdentifier(SYS_UPTIME_0), v2c.TimeTicks(123456)),
        (v2c.ObjectIdentifier(SNMP_TRAP_OID_0), v2c.ObjectIdentifier(LINK_DOWN)),
        (v2c.ObjectIdentifier(IF_OPER_STATUS_3), v2c.Integer(2)),
        (v2c.ObjectIdentifier(IF_DESCR_3), v2c.OctetString(b"GigabitEthernet1/0/3")),
    ])
    message = v2c.Message()
    v2c.apiMessage.set_defaults(message)
    v2c.apiMessage.set_community(message, "trap-community")
    v2c.apiMessage.set_pdu(message, pdu)
    return encoder.encode(message)


def test_a_v2c_trap_from_pysnmp_decodes() -> None:
    got = ber.decode_notification(_pysnmp_v2c())
    assert (got.version, got.community, got.pdu_type, got.request_id) == (ber.VERSION_2C, b"trap-community",
                                                                         ber.TRAP_V2, 4242)
    oids = [ber.oid_text(oid) for oid, _, _ in got.varbinds]
    assert oids == [SYS_UPTIME_0, SNMP_TRAP_OID_0, IF_OPER_STATUS_3, IF_DESCR_3]
    assert got.varbinds[0][1:] == (ber.TIMETICKS, 123456)
    assert ber.oid_text(got.varbinds[1][2]) == LINK_DOWN  # type: ignore[arg-type]
    assert got.varbinds[2][1:] == (ber.INTEGER, 2)
    assert got.varbinds[3][2] == b"GigabitEthernet1/0/3"
    assert got.enterprise is None and got.agent_address is None


def test_an_inform_decodes_and_its_response_is_what_pysnmp_reads_as_one() -> None:
    got = ber.decode_notification(_pysnmp_v2c("InformRequestPDU"))
    assert got.pdu_type == ber.INFORM_REQUEST and got.request_id == 4242
    ack = ber.encode_pdu(got.version, got.community, ber.RESPONSE, got.request_id, got.varbinds)
    decoded = ber.decode_response(ack)
    assert decoded.request_id == 4242 and decoded.varbinds == got.varbinds
    message, _ = decoder.decode(ack, asn1Spec=api.PROTOCOL_MODULES[api.SNMP_VERSION_2C].Message())
    pdu = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C].apiMessage.get_pdu(message)
    assert pdu.isSameTypeWith(api.PROTOCOL_MODULES[api.SNMP_VERSION_2C].ResponsePDU())


def test_a_v1_trap_from_pysnmp_decodes() -> None:
    v1 = api.PROTOCOL_MODULES[api.SNMP_VERSION_1]
    pdu = v1.TrapPDU()
    v1.apiTrapPDU.set_defaults(pdu)
    v1.apiTrapPDU.set_enterprise(pdu, (1, 3, 6, 1, 4, 1, 318))
    v1.apiTrapPDU.set_agent_address(pdu, v1.IpAddress("10.20.30.40"))
    v1.apiTrapPDU.set_generic_trap(pdu, 6)
    v1.apiTrapPDU.set_specific_trap(pdu, 5)
    v1.apiTrapPDU.set_timestamp(pdu, 777)
    v1.apiTrapPDU.set_varbinds(pdu, [(v1.ObjectIdentifier("1.3.6.1.4.1.318.2.3.3.0"), v1.OctetString(b"on battery"))])
    message = v1.Message()
    v1.apiMessage.set_defaults(message)
    v1.apiMessage.set_community(message, "public")
    v1.apiMessage.set_pdu(message, pdu)
    got = ber.decode_notification(encoder.encode(message))
    assert (got.version, got.pdu_type, got.request_id) == (ber.VERSION_1, ber.TRAP_V1, None)
    assert ber.oid_text(got.enterprise) == "1.3.6.1.4.1.318"  # type: ignore[arg-type]
    assert got.agent_address == bytes([10, 20, 30, 40])
    assert (got.generic_trap, got.specific_trap, got.timestamp) == (6, 5, 777)
    assert got.varbinds == [(ber.encode_oid("1.3.6.1.4.1.318.2.3.3.0"), ber.OCTET_STRING, b"on battery")]


def test_our_encoders_read_back_and_match_pysnmp_bytes() -> None:
    varbinds = [
        (ber.encode_oid(SYS_UPTIME_0), ber.TIMETICKS, 123456),
        (ber.encode_oid(SNMP_TRAP_OID_0), ber.OBJECT_IDENTIFIER, ber.encode_oid(LINK_DOWN)),
        (ber.encode_oid(IF_OPER_STATUS_3), ber.INTEGER, 2),
        (ber.encode_oid(IF_DESCR_3), ber.OCTET_STRING, b"GigabitEthernet1/0/3"),
    ]
    ours = ber.encode_pdu(ber.VERSION_2C, b"trap-community", ber.TRAP_V2, 4242, varbinds)
    assert ours == _pysnmp_v2c()
    v1 = ber.encode_trap_v1(b"public", ber.encode_oid("1.3.6.1.4.1.9"), bytes([127, 0, 0, 1]), 2, 0, 5, varbinds[2:])
    got = ber.decode_notification(v1)
    assert (got.generic_trap, got.agent_address, got.varbinds) == (2, bytes([127, 0, 0, 1]), varbinds[2:])


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        (b"", "truncated message"),
        (b"\x30\x05\x02\x01\x01", "truncated"),
        # a GetResponse is no notification
        (ber.encode_pdu(ber.VERSION_2C, b"c", ber.RESPONSE, 1, []), "not an SNMPv2 Trap"),
        # SNMPv3 (version 3) is not decoded here
        (bytes.fromhex("300a020103") + b"\x04\x00" + b"\xa7\x03\x02\x01\x00", "version 3"),
        # a v2c Trap PDU inside a v1 message
        (bytes([0x30, 0x0E, 0x02, 0x01, 0x00, 0x04, 0x01, 0x63, 0xA7, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x00]),
         "not an SNMPv1 Trap-PDU"),
        (ber.encode_trap_v1(b"c", b"\x2b\x06", bytes(4), 1, 0, 0, []) + b"\x00", "trailing"),
    ],
)
def test_malformed_notifications_are_ber_errors(datagram: bytes, reason: str) -> None:
    with pytest.raises(ber.BerError, match=reason):
        ber.decode_notification(datagram)


def test_a_v1_agent_address_of_the_wrong_size_is_refused() -> None:
    pdu = tlv(0x06, b"\x2b\x06") + tlv(0x40, b"\x0a\x00\x00") + b"\x02\x01\x01\x02\x01\x00\x43\x01\x00" + tlv(0x30, b"")
    with pytest.raises(ber.BerError, match="agent-addr of 3 octets"):
        ber.decode_notification(tlv(0x30, b"\x02\x01\x00" + tlv(0x04, b"c") + tlv(0xA4, pdu)))


def test_value_encoding_refuses_what_the_decoder_would() -> None:
    with pytest.raises(ValueError, match="out of range"):
        ber.encode_value(ber.COUNTER32, -1)
    with pytest.raises(ValueError, match="4 octets"):
        ber.encode_value(ber.IP_ADDRESS, b"\x01")
    assert ber.encode_value(ber.NULL, None) == b"\x05\x00"
