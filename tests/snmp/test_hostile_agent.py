"""The SNMP collector against a misbehaving agent on loopback (tests/snmp/hostile.py), issue 7:

- item 2: whatever a device sends, values and polls stay bounded, and an oversized answer is an
  error naming its OID;
- item 6: failed walks reach the sink (the run is `partial`, the rows read are kept), and a device
  answering its system GET and nothing else is unreachable, not `ok` with one sample;
- item 7: a timeout says what was received instead of an answer, and the client counts it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from agent.api import CollectError, Sink, Target, Unreachable
from collectors.snmp import SnmpCollector, ber
from collectors.snmp.client import (
    MAX_VALUE_OCTETS,
    AnswerTooLarge,
    ReadBudget,
    SnmpAuth,
    SnmpClient,
)
from tests.snmp import hostile
from tests.snmp.hostile import HostileAgent, garbage, other_community, other_request_id, truncated

Start = Callable[..., Awaitable[HostileAgent]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    transports = []

    async def run(ports: int = 4) -> HostileAgent:
        transport, agent = await hostile.start(hostile.device(ports))
        transports.append(transport)
        return agent

    yield run
    for transport in transports:
        transport.close()


def collector(**options) -> SnmpCollector:
    return SnmpCollector({"timeout_s": 0.2, "retries": 1, **options})


def target(agent: HostileAgent, community: str = "public") -> Target:
    return Target("hostile", "127.0.0.1", agent.port, {"community": community})


def new_sink() -> Sink:
    return Sink({"client": "c", "site": "s", "device": "hostile"}, time.time_ns)


def interfaces(sink: Sink) -> list:
    return [s for s in sink.samples if s.measurement == "snmp_interface"]


def biggest_value(sink: Sink) -> int:
    return max(len(str(v)) for s in sink.samples for v in [*s.fields.values(), *s.tags.values()])


def walk_index(request: dict, column: str) -> int | None:
    """The row index a GETNEXT/GETBULK continues from in ``column`` (0 at its start)."""
    if request["type"] == ber.GET_REQUEST:
        return None
    oid = ber.oid_text(request["oids"][0])
    if oid == column:
        return 0
    return int(oid.rsplit(".", 1)[1]) if oid.startswith(column + ".") else None


# ------------------------------------------------------------------------ item 2: bounded values
@pytest.mark.parametrize("high_speed", ["1000", "1" * 10, "<private>"])
async def test_a_speed_sent_as_text_is_unknown_and_costs_nothing(start: Start, high_speed: str) -> None:
    agent = await start(ports=4)
    for index in range(1, 5):
        agent.values[f"{hostile.IF_HIGH_SPEED}.{index}"] = hostile.octets(high_speed)
    sink = new_sink()
    await collector().collect(target(agent), sink)
    ports = interfaces(sink)
    assert len(ports) == 4
    # ifSpeed is saturated, so the speed is ifHighSpeed's; as text it is unknown, not 10 MB of "1".
    assert {p.fields["speed_bps"] for p in ports} == {None}
    assert biggest_value(sink) < 100
    assert sink.errors == []


async def test_an_oversized_string_is_an_error_naming_its_oid_and_the_rest_is_kept(start: Start) -> None:
    agent = await start(ports=4)
    agent.values[f"{hostile.IF_ALIAS}.1"] = hostile.octets("first port")
    agent.values[f"{hostile.IF_ALIAS}.2"] = hostile.octets("x" * (MAX_VALUE_OCTETS + 1))
    sink = new_sink()
    await collector().collect(target(agent), sink)
    (error,) = sink.errors
    assert error.startswith("walk of table interface failed for 1 of 16 columns (alias 1.3.6.1.2.1.31.1.1.1.18): ")
    assert f"1.3.6.1.2.1.31.1.1.1.18.2: an OCTET STRING of {MAX_VALUE_OCTETS + 1:,} octets, more than the " \
           f"{MAX_VALUE_OCTETS:,} kept (1 row read before it kept)" in error
    ports = interfaces(sink)
    assert [p.tags.get("if_alias") for p in ports] == ["first port", None, None, None]
    assert {p.fields["speed_bps"] for p in ports} == {10_000_000_000}
    assert biggest_value(sink) < 100


async def test_an_endless_walk_stops_at_the_read_budget(start: Start) -> None:
    agent = await start(ports=1)
    agent.endless = hostile.IF_ALIAS
    client = SnmpClient("127.0.0.1", agent.port, SnmpAuth(community="public"), timeout_s=0.5)
    # Counted per reply (25 rows each): the 21st reply passes 500 varbinds.
    with pytest.raises(AnswerTooLarge, match=r"more than 500 varbinds or 1 MiB in one poll \(at 1\.3\.6\.1\.2\.1\.31"
                                             r"\.1\.1\.1\.18\.525\)"):
        await client.walk(hostile.IF_ALIAS, ReadBudget(varbinds=500, octets=2**20))
    budget = ReadBudget(varbinds=10_000, octets=20_000)
    walked = await client.walk_partial(hostile.IF_ALIAS, budget)
    assert isinstance(walked.error, AnswerTooLarge)
    assert 0 < len(walked.values) <= 20_000 // 200 + 25  # the rows within the budget (and one reply) kept
    # Once spent, a budget refuses every later read without asking the agent.
    asked = len(agent.requests)
    with pytest.raises(AnswerTooLarge):
        await client.walk(hostile.IF_DESCR, budget)
    assert len(agent.requests) == asked


async def test_a_poll_of_giant_values_ends_partial_at_32_mib(start: Start) -> None:
    agent = await start(ports=2)
    agent.endless = hostile.IF_ALIAS
    agent.endless_value = hostile.octets("x" * MAX_VALUE_OCTETS)  # each the largest allowed
    sink = new_sink()
    await collector(timeout_s=2).collect(target(agent), sink)
    assert any("walk of table interface failed for 1 of 16 columns (alias 1.3.6.1.2.1.31.1.1.1.18): "
               "127.0.0.1" in e and "more than 250,000 varbinds or 32 MiB in one poll" in e for e in sink.errors)
    # The alias rows read within the budget are kept (each is an interface row: 16 KiB x 2,040).
    ports = interfaces(sink)
    assert [p.tags.get("if_name") for p in ports[:3]] == ["te1", "te2", None]
    assert 2000 < len(ports) <= 32 * 2**20 // MAX_VALUE_OCTETS


# ------------------------------------------------------------------ item 6: honest poll status
async def test_a_device_answering_only_its_system_get_is_unreachable(start: Start) -> None:
    agent = await start()
    agent.walk_answers = 0
    with pytest.raises(Unreachable, match=r"no SNMP answer within 0\.2s x2 \(the system GET was answered, none of "
                                          r"the \d+ reads of profile generic were\)"):
        await collector().collect(target(agent), new_sink())


async def test_walks_answered_only_with_errors_are_an_error_not_unreachable(start: Start) -> None:
    agent = await start()

    def gen_err(request: dict, reply: bytes) -> list[bytes]:
        if request["type"] == ber.GET_REQUEST:
            return [reply]
        return [hostile.response(hostile.vb(b"\x05\x00"), request_id=hostile.tlv(0x02, request["request_id"]),
                                 status=5, index=1, version=request["version"], community=request["community"])]

    agent.mangle = gen_err
    with pytest.raises(CollectError, match="genErr at varbind 1") as excinfo:
        await collector().collect(target(agent), new_sink())
    assert not isinstance(excinfo.value, Unreachable)


async def test_a_walk_dying_half_way_is_partial_with_its_rows_kept(start: Start) -> None:
    agent = await start(ports=60)
    silent: list[bool] = []

    def die_after_30_descr(request: dict, reply: bytes) -> list[bytes]:
        index = walk_index(request, hostile.IF_DESCR)
        if index is not None and index >= 30:
            silent.append(True)
        return [] if silent else [reply]

    agent.mangle = die_after_30_descr
    sink = new_sink()
    await collector(max_repetitions=10).collect(target(agent), sink)
    first = sink.errors[0]
    assert first.startswith("walk of table interface failed for ")
    # descr is the table's first column: its error comes first, saying what was kept.
    assert "columns (descr 1.3.6.1.2.1.2.2.1.2, " in first
    assert first.endswith(f": 127.0.0.1:{agent.port}: no SNMP answer within 0.2s x2 (30 rows read before it kept)")
    described = [p.fields["if_descr"] for p in interfaces(sink) if p.fields["if_descr"] is not None]
    assert described == [f"port{i}" for i in range(1, 31)]  # the rows it got are kept


async def test_tables_the_device_does_not_have_are_no_error(start: Start) -> None:
    # The generic profile also walks HOST-RESOURCES and ENTITY-SENSOR: the agent has neither.
    agent = await start()
    sink = new_sink()
    await collector().collect(target(agent), sink)
    assert sink.errors == []
    assert len(interfaces(sink)) == 4


# ------------------------------------------------------------ item 7: say what was received
@pytest.mark.parametrize(
    ("mangle", "counter", "said"),
    [
        (truncated, "malformed", r"2 malformed replies received, last: \d+ bytes, truncated message: \d+ bytes "
                                 r"announced, \d+ left"),
        (garbage, "malformed", r"2 malformed replies received, last: 40 bytes, message: tag 0x00, expected 0x30"),
        (other_request_id, "mismatched", r"2 replies to no request in flight received, last: request-id \d+"),
        (other_community, "auth_failures", r"2 authentication failures received, last: another community"),
    ],
    ids=["truncated", "garbage", "request-id", "community"],
)
async def test_a_timeout_says_what_was_received_and_counts_it(start: Start, mangle, counter: str, said: str) -> None:
    agent = await start()
    agent.mangle = mangle
    client = SnmpClient("127.0.0.1", agent.port, SnmpAuth(community="public"), timeout_s=0.1, retries=1)
    with pytest.raises(Unreachable, match=rf"127\.0\.0\.1:{agent.port}: no valid SNMP answer within 0\.1s x2 "
                                          rf"\({said}\)$"):
        await client.get([hostile.SYS_UPTIME])
    counts = {"malformed": 0, "mismatched": 0, "auth_failures": 0, counter: 2}
    assert vars(client.rejected) == counts


async def test_rejected_replies_are_fields_of_snmp_system(start: Start) -> None:
    agent = await start()
    # Every answer comes after a datagram from the same address that is not one.
    agent.mangle = lambda request, reply: [b"\x30\x03\x02\x01", reply]
    snmp = collector()
    sink = new_sink()
    await snmp.collect(target(agent), sink)
    assert sink.errors == []
    (system,) = [s for s in sink.samples if s.measurement == "snmp_system"]
    answered = len(agent.requests)
    assert system.fields["malformed_replies"] == answered
    assert (system.fields["mismatched_replies"], system.fields["auth_failures"]) == (0, 0)
    sink = new_sink()
    await snmp.collect(target(agent), sink)  # counted since the client was created
    (system,) = [s for s in sink.samples if s.measurement == "snmp_system"]
    assert system.fields["malformed_replies"] == len(agent.requests) > answered


async def test_an_answer_sent_twice_is_no_mismatch(start: Start) -> None:
    agent = await start(ports=60)
    agent.mangle = lambda request, reply: [reply, reply]
    client = SnmpClient("127.0.0.1", agent.port, SnmpAuth(community="public"), max_repetitions=5)
    assert len(await client.walk(hostile.IF_DESCR)) == 60
    assert vars(client.rejected) == {"malformed": 0, "mismatched": 0, "auth_failures": 0}


async def test_pysnmp_transport_says_malformed_replies_too(start: Start) -> None:
    agent = await start()
    agent.mangle = truncated
    client = SnmpClient("127.0.0.1", agent.port, SnmpAuth(community="public"), timeout_s=0.1, retries=1,
                        transport="pysnmp")
    with pytest.raises(Unreachable, match=r"no valid SNMP answer within 0\.1s x2 \(2 malformed replies received, "
                                          r"last: \d+ bytes, truncated message"):
        await client.get([hostile.SYS_UPTIME])
    assert client.rejected.malformed == 2
