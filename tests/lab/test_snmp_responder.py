"""lab.snmp_responder answers as snmpsim does on every recording, and its effects on hand-made requests."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api

from collectors.snmp.client import SnmpAuth, SnmpClient, SnmpValue
from lab.processes import Child
from lab.snmp_responder import Responder, Walk, load_devices
from lab.snmpsim import SnmpLab
from lab.walks import all_recordings, recording

V1, V2C = api.PROTOCOL_MODULES[api.SNMP_VERSION_1], api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
IF_OPER_STATUS_1 = "1.3.6.1.2.1.2.2.1.8.1"
COUNTER64 = "1.3.6.1.2.1.31.1.1.1.6.1"  # ifHCInOctets.1 of the QNAP walk
# Upstream's sophos-xg recording has one line out of order (1.3.6.1.4.1.2604.5.1.4.1.0 after the
# snmpFramework group): snmpsim's bisect over the file then loses the 13 records that follow it in
# walks. The responder sorts, as a real agent's MIB tree is ordered.
SNMPSIM_LOSES = {"sophos-xg": 13}


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """(snmpsim port, responder port), each serving every recording under its own name."""
    directory = tmp_path_factory.mktemp("responder")
    devices = directory / "devices.json"
    devices.write_text(json.dumps({name: str(recording(name)) for name in all_recordings()}))
    child = Child(
        "responder",
        [sys.executable, "-m", "lab.snmp_responder", "--devices", str(devices), "--listen", "127.0.0.1:0"],
        log=directory / "responder.log",
        stdout_pipe=True,
    )
    child.start()
    try:
        ready = child.read_line(60)
        port = int(re.search(r"udp 127\.0\.0\.1:(\d+)", ready).group(1))  # type: ignore[union-attr]
        with SnmpLab({name: name for name in all_recordings()}) as snmpsim:
            yield snmpsim.port, port
    finally:
        child.stop()


async def walk(port: int, community: str, version: str) -> dict[str, SnmpValue]:
    client = SnmpClient("127.0.0.1", port, SnmpAuth(version=version, community=community), timeout_s=10, retries=1)
    return await client.walk("1.3")


# SNMPv1 walks through snmpsim are slow (one varbind per request): a few recordings with Counter64.
SNMPV1_WALKS = ["qnap", "drac_r640", "jetstream_t1600g-28ts"]


@pytest.mark.parametrize(
    ("name", "version"), [(name, "2c") for name in all_recordings()] + [(name, "1") for name in SNMPV1_WALKS]
)
def test_same_walk_as_snmpsim(both: tuple[int, int], name: str, version: str) -> None:
    snmpsim_port, responder_port = both
    expected = asyncio.run(walk(snmpsim_port, name, version))
    served = asyncio.run(walk(responder_port, name, version))
    assert len(served) - len(expected) == SNMPSIM_LOSES.get(name, 0)
    assert {oid: served[oid] for oid in expected} == expected


# -- hand-made requests ------------------------------------------------------------------------


def message(pdu_type: str, oids: list[str], community: str = "qnap", version: object = V2C, **bulk: int) -> bytes:
    pdu = getattr(version, pdu_type)()
    version.apiPDU.set_defaults(pdu)  # type: ignore[attr-defined]
    if bulk:
        version.apiBulkPDU.set_non_repeaters(pdu, bulk["non_repeaters"])  # type: ignore[attr-defined]
        version.apiBulkPDU.set_max_repetitions(pdu, bulk["max_repetitions"])  # type: ignore[attr-defined]
    version.apiPDU.set_varbinds(pdu, [(oid, version.Null("")) for oid in oids])  # type: ignore[attr-defined]
    msg = version.Message()  # type: ignore[attr-defined]
    version.apiMessage.set_defaults(msg)  # type: ignore[attr-defined]
    version.apiMessage.set_community(msg, community)  # type: ignore[attr-defined]
    version.apiMessage.set_pdu(msg, pdu)  # type: ignore[attr-defined]
    return bytes(encoder.encode(msg))


def answer(data: bytes | None, version: object = V2C) -> tuple[int, int, list[tuple[str, str]]]:
    """(error-status, error-index, [(oid, value as text)])"""
    assert data is not None, "no answer"
    msg, _ = decoder.decode(data, asn1Spec=version.Message())  # type: ignore[attr-defined]
    pdu = version.apiMessage.get_pdu(msg)  # type: ignore[attr-defined]
    binds = [(str(oid), value.prettyPrint()) for oid, value in version.apiPDU.get_varbinds(pdu)]  # type: ignore[attr-defined]
    return int(version.apiPDU.get_error_status(pdu)), int(version.apiPDU.get_error_index(pdu)), binds  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def qnap() -> dict[bytes, Walk]:
    return load_devices({"qnap": recording("qnap"), "other": recording("qnap")})


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def responder(devices: dict[bytes, Walk], tmp_path: Path, effects: list[dict[str, object]], clock: Clock) -> Responder:
    path = tmp_path / "effects.json"
    path.write_text(json.dumps(effects))
    return Responder(devices, path, clock)


def test_unknown_community_and_garbage_get_no_answer(qnap: dict[bytes, Walk]) -> None:
    served = Responder(qnap)
    assert served.answer(message("GetRequestPDU", [IF_OPER_STATUS_1], community="nobody")) is None
    assert served.answer(b"\x30\x03\x02\x01") is None
    assert served.answer(message("GetRequestPDU", [IF_OPER_STATUS_1])[:-3]) is None


def test_get_next_and_bulk(qnap: dict[bytes, Walk]) -> None:
    served = Responder(qnap)
    assert answer(served.answer(message("GetRequestPDU", [IF_OPER_STATUS_1, "1.3.6.1.2.1.2.2.1.8.999"])))[2] == [
        (IF_OPER_STATUS_1, "1"),
        ("1.3.6.1.2.1.2.2.1.8.999", "No Such Instance currently exists at this OID"),
    ]
    status, _, binds = answer(served.answer(message("GetNextRequestPDU", ["1.3.6.1.2.1.2.2.1.8"])))
    assert (status, binds) == (0, [(IF_OPER_STATUS_1, "1")])
    _, _, binds = answer(served.answer(message("GetNextRequestPDU", ["1.9"])))
    assert binds[0][1] == "No more variables left in this MIB View"
    _, _, binds = answer(
        served.answer(
            message("GetBulkRequestPDU", ["1.3.6.1.2.1.1.1", "1.3.6.1.2.1.2.2.1.8"], non_repeaters=1, max_repetitions=3)
        )
    )
    assert [oid for oid, _ in binds] == [
        "1.3.6.1.2.1.1.1.0",
        IF_OPER_STATUS_1,
        "1.3.6.1.2.1.2.2.1.8.2",
        "1.3.6.1.2.1.2.2.1.8.3",
    ]
    _, _, binds = answer(served.answer(message("GetBulkRequestPDU", ["1.3"], non_repeaters=0, max_repetitions=500)))
    assert len(binds) == 64  # as snmpsim: never more varbinds than that in one answer


def test_snmpv1_has_no_counter64_and_errors_with_no_such_name(qnap: dict[bytes, Walk]) -> None:
    served = Responder(qnap)
    status, index, binds = answer(
        served.answer(message("GetRequestPDU", [IF_OPER_STATUS_1, COUNTER64], version=V1)), V1
    )
    assert (status, index) == (2, 2)  # noSuchName on the Counter64, the request's varbinds sent back
    assert [oid for oid, _ in binds] == [IF_OPER_STATUS_1, COUNTER64]
    _, _, binds = answer(served.answer(message("GetNextRequestPDU", ["1.3.6.1.2.1.31.1.1.1.5.1"], version=V1)), V1)
    assert not binds[0][0].startswith("1.3.6.1.2.1.31.1.1.1.6.")  # the Counter64 column is skipped
    assert served.answer(message("GetBulkRequestPDU", ["1.3"], version=V2C, non_repeaters=0, max_repetitions=1))
    status, _, _ = answer(served.answer(message("GetNextRequestPDU", ["1.9"], version=V1)), V1)
    assert status == 2


def test_set_is_refused(qnap: dict[bytes, Walk]) -> None:
    status, index, _ = answer(Responder(qnap).answer(message("SetRequestPDU", [IF_OPER_STATUS_1])))
    assert (status, index) == (17, 1)  # notWritable


def test_value_and_silence_effects(qnap: dict[bytes, Walk], tmp_path: Path) -> None:
    effects = [
        {"community": "qnap", "oid": IF_OPER_STATUS_1, "tag": "2", "value": "2"},
        {"community": "other", "silent": True},
    ]
    served = responder(qnap, tmp_path, effects, Clock(0))
    assert answer(served.answer(message("GetRequestPDU", [IF_OPER_STATUS_1])))[2] == [(IF_OPER_STATUS_1, "2")]
    _, _, binds = answer(served.answer(message("GetNextRequestPDU", ["1.3.6.1.2.1.2.2.1.8"])))
    assert binds == [(IF_OPER_STATUS_1, "2")]  # walks see it too
    assert served.answer(message("GetRequestPDU", [IF_OPER_STATUS_1], community="other")) is None
    (tmp_path / "effects.partial").write_text("[]")
    (tmp_path / "effects.partial").replace(tmp_path / "effects.json")  # as the lab rewrites it
    assert answer(served.answer(message("GetRequestPDU", [IF_OPER_STATUS_1])))[2] == [(IF_OPER_STATUS_1, "1")]
    assert served.answer(message("GetRequestPDU", [IF_OPER_STATUS_1], community="other")) is not None


def test_scheduled_effects_hold_in_their_half_of_each_period(qnap: dict[bytes, Walk], tmp_path: Path) -> None:
    schedule = {"period_s": 10, "since": 1000.0}
    effects = [
        {"community": "qnap", "oid": IF_OPER_STATUS_1, "tag": "2", "value": "2", "schedule": {**schedule, "half": 0}},
        {"community": "qnap", "oid": IF_OPER_STATUS_1, "tag": "2", "value": "1", "schedule": {**schedule, "half": 1}},
        {"community": "other", "silent": True, "schedule": {**schedule, "half": 1}},
    ]
    clock = Clock(1000.0)
    served = responder(qnap, tmp_path, effects, clock)

    def oper_status() -> str:
        return answer(served.answer(message("GetRequestPDU", [IF_OPER_STATUS_1])))[2][0][1]

    def other_answers() -> bool:
        return served.answer(message("GetRequestPDU", [IF_OPER_STATUS_1], community="other")) is not None

    seen = []
    for now in (1000.0, 1004.9, 1005.0, 1009.9, 1010.0, 1027.0):
        clock.now = now
        seen.append((oper_status(), other_answers()))
    assert seen == [("2", True), ("2", True), ("1", False), ("1", False), ("2", True), ("1", False)]


def test_an_effect_on_an_unknown_oid_is_refused(qnap: dict[bytes, Walk], tmp_path: Path) -> None:
    served = responder(qnap, tmp_path, [{"community": "qnap", "oid": "1.3.6.9", "tag": "2", "value": "1"}], Clock(0))
    with pytest.raises(ValueError, match="qnap: no OID 1.3.6.9 in its walk"):
        served.refresh_effects()


def test_a_broken_effects_file_keeps_the_previous_effects(
    qnap: dict[bytes, Walk], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    served = responder(qnap, tmp_path, [{"community": "other", "silent": True}], Clock(0))
    assert served.answer(message("GetRequestPDU", [IF_OPER_STATUS_1], community="other")) is None
    (tmp_path / "effects.partial").write_text("[{")
    (tmp_path / "effects.partial").replace(tmp_path / "effects.json")
    assert served.answer(message("GetRequestPDU", [IF_OPER_STATUS_1], community="other")) is None
    assert served.answer(message("GetRequestPDU", [IF_OPER_STATUS_1])) is not None
    assert capsys.readouterr().err.count("the previous effects stay") == 1
