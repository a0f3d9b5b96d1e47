"""The BER transport of SnmpClient: the same results as pysnmp on lab walks (kinds included), and
its own behaviour on the wire (one socket, request-ids, retries, tooBig, stray and bad replies)
against a scripted agent on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from agent.api import CollectError, Unreachable
from collectors.snmp import ber
from collectors.snmp.client import _SOCKETS, SnmpAuth, SnmpClient, SnmpValue, oid_key, receive_buffer_bytes
from lab.snmpsim import SnmpLab
from tests.snmp.test_ber import response, tlv, vb

# ------------------------------------------------------------------------ differential: vs pysnmp
# (device, subtrees walked). Small devices are walked whole; big ones on the columns that matter.
WALKS = [
    ("odd_agent", ["1.3.6"]),
    ("qnap", ["1.3.6"]),
    ("kyocera_taskalfa", ["1.3.6"]),
    ("eaton-mgeups_9pxle", ["1.3.6.1.2.1.33", "1.3.6.1.4.1.705"]),
    ("apc_smt750x-nmc2", ["1.3.6"]),
    ("drac_r640", ["1.3.6.1.4.1.674", "1.3.6.1.2.1.1"]),
    ("arubaos-cx_6300m", ["1.3.6.1.2.1.2.2.1", "1.3.6.1.2.1.31.1.1.1.1"]),  # ifIndex 268435456
    ("ios_2960x", ["1.3.6.1.2.1.2.2.1.2", "1.3.6.1.2.1.31.1.1.1.6", "1.3.6.1.4.1.9.9.109", "1.3.6.1.2.1.1"]),
    ("iosxe_c9300", ["1.3.6.1.2.1.47.1.1.1.1.2", "1.3.6.1.4.1.9.9.42", "1.3.6.1.2.1.5.30.1"]),
    ("exotic", ["1.3.6"]),
]
# Every value type the codec knows, edge values, large arcs, odd strings (snmprec: OID|TAG|VALUE).
EXOTIC = """\
1.3.6.1.2.1.1.1.0|4|caf\u00e9 \u2014 r\u00e9seau
1.3.6.1.2.1.1.2.0|6|1.3.6.1.4.1.4294967295.268435456.1
1.3.6.1.2.1.1.3.0|67|0
1.3.6.1.2.1.1.4.0|4|
1.3.6.1.2.1.1.5.0|4x|7377312d636f726500000000
1.3.6.1.2.1.1.6.0|4x|00ff10
1.3.6.1.2.1.1.7.0|2|-2147483648
1.3.6.1.2.1.1.8.0|67|4294967295
1.3.6.1.2.1.1.9.0|6|0.0
1.3.6.1.2.1.4.20.1.1.10.0.0.254|64|10.0.0.254
1.3.6.1.2.1.4.20.1.2.10.0.0.254|2|2147483647
1.3.6.1.2.1.31.1.1.1.6.1|70|18446744073709551615
1.3.6.1.2.1.31.1.1.1.6.2|70|0
1.3.6.1.2.1.31.1.1.1.15.1|66|4294967295
1.3.6.1.2.1.2.2.1.10.1|65|4294967295
1.3.6.1.4.1.2021.10.1.6.1|68x|9f78043f800000
1.3.6.1.4.1.2636.3.1.13.1.8.9.1.0.4294967295|2|-1
1.3.6.1.4.1.2636.3.1.13.1.8.9.1.0.4294967296|2|-129
"""


@pytest.fixture(scope="module")
def dlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpLab]:
    exotic = tmp_path_factory.mktemp("exotic") / "exotic.snmprec"
    # snmpsim searches its data files by bisection: records must be in OID order.
    records = sorted(EXOTIC.splitlines(), key=lambda line: oid_key(line.split("|")[0]))
    exotic.write_text("\n".join(records) + "\n", encoding="utf-8")
    devices: dict[str, str | Path] = {name: name for name, _ in WALKS if name not in ("odd_agent", "exotic")}
    devices["odd_agent"] = Path(__file__).parent / "data" / "odd_agent.snmprec"
    devices["exotic"] = exotic
    with SnmpLab(devices) as running:
        yield running


async def outcome(call) -> dict[str, SnmpValue] | str:
    try:
        return await call
    except CollectError as exc:
        return f"{type(exc).__name__}: {exc}"


def pair(lab: SnmpLab, device: str, version: str = "2c", **options) -> tuple[SnmpClient, SnmpClient]:
    auth = SnmpAuth(version, community=device)  # type: ignore[arg-type]
    fast = SnmpClient(lab.host, lab.port, auth, **options)
    slow = SnmpClient(lab.host, lab.port, auth, transport="pysnmp", **options)
    assert (fast.transport, slow.transport) == ("ber", "pysnmp")
    return fast, slow


@pytest.mark.parametrize(("device", "column", "indexes"), [
    ("exotic", "1.3.6.1.4.1.2636.3.1.13.1.8", ["9.1.0.4294967295", "9.1.0.4294967296"]),  # arcs of 5 bytes
    ("exotic", "1.3.6.1.2.1.4.20.1.1", ["10.0.0.254"]),  # an index past 127 among one-byte arcs
    ("exotic", "1.3.6.1.2.1.31.1.1.1.6", ["1", "2"]),
    ("exotic", "1.3.6.1.2.1.31.1.1.1.7", []),  # an absent column: its walk runs into the next one
])
async def test_a_column_walk_keys_rows_by_their_index(dlab: SnmpLab, device: str, column: str,
                                                     indexes: list[str]) -> None:
    # The engine reads columns by row index; the index is decoded from the OID past the column's,
    # never from the whole OID made text, and must be what the agent's OIDs say (both transports).
    for client in pair(dlab, device):
        walked = await client.walk_column(column)
        assert walked.error is None
        assert list(walked.values) == indexes, client.transport
        assert list(await client.walk(column)) == [f"{column}.{index}" for index in indexes]


@pytest.mark.parametrize(("device", "subtrees"), WALKS, ids=[d for d, _ in WALKS])
async def test_walk_and_get_match_pysnmp(dlab: SnmpLab, device: str, subtrees: list[str]) -> None:
    fast, slow = pair(dlab, device)
    seen: dict[str, SnmpValue] = {}
    for subtree in subtrees:
        got = await fast.walk(subtree)
        assert got, f"{device} {subtree}: empty walk"
        assert got == await slow.walk(subtree)
        assert [v.kind for v in got.values()] == [v.kind for v in (await slow.walk(subtree)).values()]
        assert list(got) == list(await slow.walk(subtree))  # same order too
        seen.update(got)
    # GET: up to 70 of the walked OIDs (several 32-varbind requests) plus absent ones.
    wanted = list(seen)[:: max(1, len(seen) // 70)] + ["1.3.6.1.2.1.1.99.0", "1.3.6.1.6.3.99.1.0", ".1.3.6.1.2.1.1.3.0"]
    got = await fast.get(wanted)
    assert got == await slow.get(wanted)
    assert {k: v.kind for k, v in got.items()} == {k: v.kind for k, v in (await slow.get(wanted)).items()}


async def test_exotic_values_decode_as_pysnmp_does(dlab: SnmpLab) -> None:
    fast, _ = pair(dlab, "exotic")
    got = await fast.walk("1.3.6")
    assert got["1.3.6.1.2.1.1.2.0"] == SnmpValue("1.3.6.1.4.1.4294967295.268435456.1", "oid")
    assert got["1.3.6.1.2.1.1.7.0"] == SnmpValue(-(2**31), "integer")
    assert got["1.3.6.1.2.1.1.5.0"] == SnmpValue("sw1-core", "string")  # trailing NULs dropped
    assert got["1.3.6.1.2.1.4.20.1.1.10.0.0.254"] == SnmpValue("10.0.0.254", "ipaddress")
    assert got["1.3.6.1.2.1.31.1.1.1.6.1"] == SnmpValue(2**64 - 1, "counter64")
    assert got["1.3.6.1.4.1.2021.10.1.6.1"] == SnmpValue("9f78043f800000", "hex")
    assert got["1.3.6.1.4.1.2636.3.1.13.1.8.9.1.0.4294967296"] == SnmpValue(-129, "integer")


@pytest.mark.parametrize("device", ["odd_agent", "kyocera_taskalfa", "exotic"])
async def test_snmpv1_matches_pysnmp(dlab: SnmpLab, device: str) -> None:
    fast, slow = pair(dlab, device, version="1")
    got = await fast.walk("1.3.6")
    assert got and got == await slow.walk("1.3.6")
    assert not any(v.kind == "counter64" for v in got.values())  # v1 has no Counter64
    present = list(got)[:5]
    assert await fast.get(present) == await slow.get(present)
    # SNMPv1 answers a GET with an absent OID with noSuchName (naming it): both ask again without
    # it, so an absent OID is left out as with SNMPv2c's noSuchObject.
    missing = [present[0], "1.3.6.1.2.1.1.99.0", *present[1:], "1.3.6.1.2.1.1.98.0"]
    got = await outcome(fast.get(missing))
    assert got == await outcome(slow.get(missing))
    assert got == await fast.get(present)
    assert await fast.get(["1.3.6.1.2.1.1.99.0"]) == {} == await slow.get(["1.3.6.1.2.1.1.99.0"])


@pytest.mark.parametrize("max_repetitions", [1, 3, 64])
async def test_repetitions_do_not_change_results(dlab: SnmpLab, max_repetitions: int) -> None:
    fast, slow = pair(dlab, "ios_2960x", max_repetitions=max_repetitions)
    column = "1.3.6.1.2.1.31.1.1.1.1"
    got = await fast.walk(column)
    assert len(got) == 146 and got == await slow.walk(column)
    assert await fast.walk(column + ".999999") == {} == await slow.walk(column + ".999999")


async def test_silent_device_same_error_from_both(dlab: SnmpLab) -> None:
    fast, slow = pair(dlab, "no-such-community", timeout_s=0.2, retries=1)
    error = await outcome(fast.get(["1.3.6.1.2.1.1.3.0"]))
    assert error == await outcome(slow.get(["1.3.6.1.2.1.1.3.0"]))
    assert error == f"Unreachable: {dlab.host}:{dlab.port}: no SNMP answer within 0.2s x2"


async def test_snmpv3_stays_on_pysnmp() -> None:
    assert SnmpClient("127.0.0.1", auth=SnmpAuth("3", user="u")).transport == "pysnmp"
    with pytest.raises(ValueError, match="SNMPv3"):
        SnmpClient("127.0.0.1", auth=SnmpAuth("3", user="u"), transport="ber")


# ------------------------------------------------------------------------- scripted agent on loopback
def parse(buf: bytes) -> list:
    """Generic TLV tree: constructed tags (0x30, 0xA0-0xA5) nest, the rest stay bytes."""
    out, i = [], 0
    while i < len(buf):
        tag, n = buf[i], buf[i + 1]
        i += 2
        if n & 0x80:
            k = n & 0x7F
            n, i = int.from_bytes(buf[i : i + k], "big"), i + k
        body = buf[i : i + n]
        out.append((tag, parse(body) if tag == 0x30 or 0xA0 <= tag <= 0xA5 else body))
        i += n
    return out


def request_fields(data: bytes) -> dict:
    ((_, (version, community, (pdu_type, fields))),) = parse(data)
    (_, rid), (_, a), (_, b), (_, binds) = fields
    return {
        "version": version[1][0], "community": community[1], "type": pdu_type, "request_id": rid,
        "a": int.from_bytes(a, "big"), "b": int.from_bytes(b, "big"), "oids": [vb_[1][0][1] for vb_ in binds],
    }


def reply(req: dict, *binds: bytes, status: int = 0, index: int = 0, request_id: bytes | None = None,
          community: bytes | None = None) -> bytes:
    rid = tlv(0x02, req["request_id"] if request_id is None else request_id)
    return response(*binds, request_id=rid, status=status, index=index, version=req["version"],
                    community=req["community"] if community is None else community)


class Agent(asyncio.DatagramProtocol):
    """Answers each request with whatever ``script(request)`` returns (a list of datagrams)."""

    def __init__(self, script: Callable[[dict], list[bytes]]) -> None:
        self.script = script
        self.requests: list[tuple[tuple[str, int], dict]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[override]
        req = request_fields(data)
        self.requests.append((addr, req))
        for datagram in self.script(req):
            self.transport.sendto(datagram, addr)  # type: ignore[union-attr]

    @property
    def port(self) -> int:
        return self.transport.get_extra_info("sockname")[1]  # type: ignore[union-attr]


@pytest.fixture
async def agent() -> AsyncIterator[Callable[[Callable[[dict], list[bytes]]], Awaitable[Agent]]]:
    transports = []

    async def start(script: Callable[[dict], list[bytes]]) -> Agent:
        transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: Agent(script), local_addr=("127.0.0.1", 0))
        transports.append(transport)
        return protocol

    yield start
    for transport in transports:
        transport.close()


UPTIME = bytes([0x2B, 6, 1, 2, 1, 1, 3, 0])
IF_DESCR = "1.3.6.1.2.1.2.2.1.2"
ROWS = [(ber.encode_oid(f"{IF_DESCR}.{i}"), tlv(0x04, f"port{i}".encode())) for i in range(1, 41)]


def bulk_table(limit: int) -> Callable[[dict], list[bytes]]:
    """A GETBULK agent over ROWS that answers tooBig when max-repetitions exceeds ``limit``, and a
    GET agent answering tooBig beyond ``limit`` varbinds."""

    def script(req: dict) -> list[bytes]:
        if req["type"] == ber.GET_REQUEST:
            if len(req["oids"]) > limit:
                return [reply(req, status=ber.TOO_BIG)]
            return [reply(req, *(vb(b"\x43\x01\x05", oid) for oid in req["oids"]))]
        if req["b"] > limit:
            return [reply(req, status=ber.TOO_BIG)]
        start = next((k for k, (oid, _) in enumerate(ROWS) if ber.oid_after(oid, req["oids"][0])), len(ROWS))
        rows = ROWS[start : start + req["b"]]
        binds = [vb(value, oid) for oid, value in rows]
        if len(rows) < req["b"]:
            binds.append(vb(b"\x82\x00", req["oids"][0]))
        return [reply(req, *binds)]

    return script


def client(port: int, **options) -> SnmpClient:
    options.setdefault("timeout_s", 0.5)
    return SnmpClient("127.0.0.1", port, SnmpAuth(community="c"), **options)


async def test_too_big_halves_repetitions_and_splits_gets(agent) -> None:
    fake = await agent(bulk_table(limit=5))
    snmp = client(fake.port, max_repetitions=25)
    walked = await snmp.walk(IF_DESCR)
    assert walked == {f"{IF_DESCR}.{i}": SnmpValue(f"port{i}", "string") for i in range(1, 41)}
    assert [r["b"] for _, r in fake.requests[:4]] == [25, 12, 6, 3]  # halved until accepted
    assert {r["b"] for _, r in fake.requests[3:]} == {3}  # and kept for the rest of the walk
    fake.requests.clear()
    await snmp.walk(IF_DESCR)
    # and for later walks (whose last request asks only for the row left and the end: 40 = 13 x 3 + 1)
    assert [r["b"] for _, r in fake.requests] == [3] * 13 + [2]
    wanted = [f"1.3.6.1.2.1.1.{i}.0" for i in range(1, 21)]
    fake.requests.clear()
    got = await snmp.get(wanted)
    assert got == {oid: SnmpValue(5, "timeticks") for oid in wanted}
    assert [len(r["oids"]) for _, r in fake.requests] == [20, 10, 5, 5, 10, 5, 5]


def growing_table(rows: int, next_column: int) -> Callable[[dict], list[bytes]]:
    """A GETBULK agent whose IF_DESCR column has ``script.rows`` rows (changed by the test),
    followed by ``next_column`` rows of ifType, as a real agent goes on past a column's end."""

    def script(req: dict) -> list[bytes]:
        table = [(ber.encode_oid(f"{IF_DESCR}.{i}"), tlv(0x04, f"port{i}".encode())) for i in range(1, script.rows + 1)]
        table += [(ber.encode_oid(f"1.3.6.1.2.1.2.2.1.3.{i}"), tlv(0x02, b"\x06")) for i in range(1, next_column + 1)]
        start = next((k for k, (oid, _) in enumerate(table) if ber.oid_after(oid, req["oids"][0])), len(table))
        binds = [vb(value, oid) for oid, value in table[start : start + req["b"]]]
        return [reply(req, *binds)]

    script.rows = rows  # type: ignore[attr-defined]
    return script


async def test_a_walk_asks_for_the_rows_its_column_had_last_time(agent) -> None:
    """Each GETBULK of a walk asked max-repetitions rows, so every walk received up to that many
    varbinds past its column's end (of a 48-port switch's smart poll, 1,230 of the 1,850 decoded).
    The next walk of a column asks for the rows it had plus one, the varbind that shows the end."""
    script = growing_table(rows=40, next_column=30)
    fake = await agent(script)
    snmp = client(fake.port, max_repetitions=25)
    first = await snmp.walk(IF_DESCR)
    assert len(first) == 40 and [r["b"] for _, r in fake.requests] == [25, 25]
    fake.requests.clear()
    assert await snmp.walk(IF_DESCR) == first
    assert [r["b"] for _, r in fake.requests] == [25, 16]  # 41 varbinds received, not 50
    script.rows = 0  # an empty column: one varbind asked to see it is still empty
    fake.requests.clear()
    assert await snmp.walk(IF_DESCR) == {}
    assert await snmp.walk(IF_DESCR) == {}
    assert [r["b"] for _, r in fake.requests] == [25, 1]
    script.rows = 60  # grown: once the rows seen are read, as many as the client takes again
    fake.requests.clear()
    grown = await snmp.walk(IF_DESCR)
    assert sorted(grown) == sorted(f"{IF_DESCR}.{i}" for i in range(1, 61))
    assert [r["b"] for _, r in fake.requests] == [1, 25, 25, 25]
    fake.requests.clear()
    assert await snmp.walk(IF_DESCR) == grown
    assert [r["b"] for _, r in fake.requests] == [25, 25, 11]


async def test_too_big_on_a_single_varbind_is_an_error(agent) -> None:
    fake = await agent(bulk_table(limit=0))
    with pytest.raises(CollectError, match=f"127.0.0.1:{fake.port}: tooBig at varbind 0"):
        await client(fake.port).get(["1.3.6.1.2.1.1.3.0"])
    with pytest.raises(CollectError, match="tooBig"):
        await client(fake.port, max_repetitions=4).walk(IF_DESCR)


async def test_error_status_is_named(agent) -> None:
    fake = await agent(lambda req: [reply(req, vb(b"\x05\x00"), status=5, index=1)])
    with pytest.raises(CollectError, match=f"127.0.0.1:{fake.port}: genErr at varbind 1"):
        await client(fake.port).walk("1.3.6.1.2.1.1")
    fake.script = lambda req: [reply(req, vb(b"\x05\x00"), status=77, index=1)]
    with pytest.raises(CollectError, match="77 at varbind 1"):
        await client(fake.port).get(["1.3.6.1.2.1.1.3.0"])


async def test_stray_replies_are_ignored(agent) -> None:
    good = vb(b"\x43\x01\x07", UPTIME)
    fake = await agent(lambda req: [
        reply(req, vb(b"\x43\x01\x01", UPTIME), request_id=(int.from_bytes(req["request_id"], "big") + 1)
              .to_bytes(4, "big")),  # another request-id
        reply(req, vb(b"\x43\x01\x02", UPTIME), community=b"other"),  # another community
        b"\x30\x03\x02\x01\x01",  # garbage before the request-id
        reply(req, good),
    ])
    # A third party that knows the request-id answers first, from another port: ignored too.
    loop = asyncio.get_running_loop()
    rogue, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    script = fake.script

    def forged(req: dict) -> list[bytes]:
        source = fake.requests[-1][0]
        rogue.sendto(reply(req, vb(b"\x43\x01\x03", UPTIME)), source)
        return script(req)

    fake.script = forged
    try:
        got = await client(fake.port).get(["1.3.6.1.2.1.1.3.0"])
    finally:
        rogue.close()
    assert got == {"1.3.6.1.2.1.1.3.0": SnmpValue(7, "timeticks")}


async def test_malformed_reply_is_a_collect_error_naming_the_agent(agent) -> None:
    fake = await agent(lambda req: [reply(req, vb(b"\x41\x04\xff\xff\xff\xff", UPTIME))])
    with pytest.raises(CollectError, match=rf"127\.0\.0\.1:{fake.port}: malformed SNMP response: varbind 1: "
                                           r"Counter32 -1 out of range") as excinfo:
        await client(fake.port).get(["1.3.6.1.2.1.1.3.0"])
    assert not isinstance(excinfo.value, Unreachable)
    # The socket survived: the next request on the same loop works.
    fake.script = lambda req: [reply(req, vb(b"\x43\x01\x09", UPTIME))]
    assert await client(fake.port).get(["1.3.6.1.2.1.1.3.0"]) == {"1.3.6.1.2.1.1.3.0": SnmpValue(9, "timeticks")}


async def test_garbage_only_times_out_and_the_loop_goes_on(agent) -> None:
    fake = await agent(lambda req: [b"", b"\x00" * 40, b"\x30\x82\xff\xff", b"\xa2\x00"])
    snmp = client(fake.port, timeout_s=0.1, retries=1)
    with pytest.raises(Unreachable, match=rf"127\.0\.0\.1:{fake.port}: no valid SNMP answer within 0\.1s x2 "
                                          r"\(6 malformed replies received, last: 2 bytes, message: tag 0xa2"):
        await snmp.get(["1.3.6.1.2.1.1.3.0"])
    assert len(fake.requests) == 2  # one resend
    assert snmp.rejected.malformed == 6  # asyncio delivers no empty datagram


async def test_resend_keeps_the_request_id_and_a_late_answer_counts(agent) -> None:
    held: list[dict] = []

    def script(req: dict) -> list[bytes]:
        held.append(req)
        if len(held) < 3:
            return []  # silent twice
        return [reply(held[0], vb(b"\x43\x01\x04", UPTIME))]  # answers the first attempt

    fake = await agent(script)
    got = await client(fake.port, timeout_s=0.1, retries=2).get(["1.3.6.1.2.1.1.3.0"])
    assert got == {"1.3.6.1.2.1.1.3.0": SnmpValue(4, "timeticks")}
    assert len({r["request_id"] for r in held}) == 1


async def test_one_socket_for_every_client_and_concurrent_requests(agent) -> None:
    fake = await agent(lambda req: [reply(req, vb(b"\x43\x01\x01", UPTIME))])
    other = await agent(lambda req: [reply(req, vb(b"\x43\x01\x02", UPTIME))])
    clients = [client(fake.port) for _ in range(20)] + [client(other.port) for _ in range(20)]
    results = await asyncio.gather(*(c.get(["1.3.6.1.2.1.1.3.0"]) for c in clients))
    assert [r["1.3.6.1.2.1.1.3.0"].value for r in results] == [1] * 20 + [2] * 20
    sources = {addr for addr, _ in fake.requests + other.requests}
    assert len(sources) == 1
    assert len({r["request_id"] for _, r in fake.requests + other.requests}) == 40
    assert receive_buffer_bytes() >= 256 * 1024


async def test_cancelled_request_leaves_nothing_behind(agent) -> None:
    fake = await agent(lambda req: [])
    task = asyncio.create_task(client(fake.port, timeout_s=5).get(["1.3.6.1.2.1.1.3.0"]))
    while not fake.requests:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not _SOCKETS[asyncio.get_running_loop()]._pending

