"""A scripted SNMPv2c agent on loopback that misbehaves on purpose (issue 7 items 2, 6 and 7).

It serves a small device (system group and an IF-MIB interface table, ``ports`` rows) from a
sorted list of records and answers GET, GETNEXT and GETBULK like a real agent (noSuchObject,
endOfMibView, replies cut to fit one datagram). What it does wrong is set on the instance and may
change while it runs:

- ``walk_answers``: how many GETNEXT/GETBULK requests it still answers (``None``: all). ``0`` is a
  device that answers its system GET and never a walk; ``3`` one that dies half way through.
- ``mangle(request, reply)``: the datagrams sent instead of ``reply`` (truncated, another
  request-id or community, garbage, nothing).
- ``values``: OID -> encoded value, to plant hostile values (a speed as text, giant strings).
- ``endless``: a column OID under which rows never end (index after index), each
  ``endless_value``.
- ``bulk_per_rfc``: a GETBULK of several OIDs is answered as RFC 3416 says, the successors of
  each, repetition after repetition; by default with those of the first OID alone, as some
  agents do.

``python -m tests.snmp.hostile --port N [--ports N] [--high-speed-text N] [--walk-answers N]
[--reply truncated|garbage|request-id|community]`` serves it until killed, for measuring
``vigie collect`` against it.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
from collections.abc import Callable

from collectors.snmp import ber
from collectors.snmp.client import oid_key
from tests.snmp.test_ber import response, tlv, vb

__all__ = ["HostileAgent", "device", "response", "start", "tlv", "vb"]
from tests.snmp.test_ber_transport import parse, request_fields

SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
IF_DESCR = "1.3.6.1.2.1.2.2.1.2"
IF_SPEED = "1.3.6.1.2.1.2.2.1.5"
IF_OPER = "1.3.6.1.2.1.2.2.1.8"
IF_NAME = "1.3.6.1.2.1.31.1.1.1.1"
IF_HIGH_SPEED = "1.3.6.1.2.1.31.1.1.1.15"
IF_ALIAS = "1.3.6.1.2.1.31.1.1.1.18"
# What one reply may carry: a real agent sends fewer rows rather than a datagram UDP cannot carry.
MAX_REPLY = 60_000


def _number(tag: int, value: int) -> bytes:
    return tlv(tag, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def integer(value: int) -> bytes:
    return _number(0x02, value)


def gauge(value: int) -> bytes:
    return _number(0x42, value)


def timeticks(value: int) -> bytes:
    return _number(0x43, value)


def octets(value: bytes | str) -> bytes:
    return tlv(0x04, value.encode() if isinstance(value, str) else value)


def object_id(value: str) -> bytes:
    return tlv(0x06, ber.encode_oid(value))


def device(ports: int) -> dict[str, bytes]:
    """A net-snmp-looking device (the `generic` profile) with ``ports`` 10 Gbit/s interfaces."""
    values = {
        SYS_DESCR: octets("hostile test agent"),
        SYS_OBJECT_ID: object_id("1.3.6.1.4.1.99999.1"),
        SYS_UPTIME: timeticks(123456),
    }
    for index in range(1, ports + 1):
        values[f"{IF_DESCR}.{index}"] = octets(f"port{index}")
        values[f"1.3.6.1.2.1.2.2.1.3.{index}"] = integer(6)
        values[f"{IF_SPEED}.{index}"] = gauge(4294967295)
        values[f"1.3.6.1.2.1.2.2.1.7.{index}"] = integer(1)
        values[f"{IF_OPER}.{index}"] = integer(1)
        values[f"{IF_NAME}.{index}"] = octets(f"te{index}")
        values[f"{IF_HIGH_SPEED}.{index}"] = gauge(10000)
    return values


class HostileAgent(asyncio.DatagramProtocol):
    def __init__(self, values: dict[str, bytes], community: bytes = b"public") -> None:
        self.values = values
        self.community = community
        self.walk_answers: int | None = None
        self.mangle: Callable[[dict, bytes], list[bytes]] = lambda request, reply: [reply]
        self.endless: str | None = None
        self.endless_value = octets("x" * 200)
        self.bulk_per_rfc = False
        self.requests: list[dict] = []
        self.transport: asyncio.DatagramTransport | None = None
        self._sorted: list[tuple[int, ...]] = []
        self._sorted_from: int | None = None

    @property
    def port(self) -> int:
        return self.transport.get_extra_info("sockname")[1]  # type: ignore[union-attr]

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[override]
        request = request_fields(data)
        self.requests.append(request)
        if request["community"] != self.community:
            return  # as real agents do: silence
        if request["type"] == ber.GET_REQUEST:
            binds = [vb(self.values.get(ber.oid_text(oid), b"\x80\x00"), oid) for oid in request["oids"]]
        else:
            if self.walk_answers is not None:
                if self.walk_answers <= 0:
                    return
                self.walk_answers -= 1
            repetitions = request["b"] if request["type"] == ber.GET_BULK_REQUEST else 1
            if self.bulk_per_rfc and request["type"] == ber.GET_BULK_REQUEST:
                binds = self._bulk(request["oids"], repetitions)
            else:
                binds = self._next(request["oids"][0], repetitions)
        reply = response(*binds, request_id=tlv(0x02, request["request_id"]), version=request["version"],
                         community=request["community"])
        for datagram in self.mangle(request, reply):
            self.transport.sendto(datagram, addr)  # type: ignore[union-attr]

    def _next(self, after: bytes, repetitions: int) -> list[bytes]:
        cursor = ber.oid_arcs(after)
        binds: list[bytes] = []
        size = 0
        for _ in range(repetitions):
            found = self._after(cursor)
            if found is None:
                binds.append(vb(b"\x82\x00", ber.encode_oid(".".join(map(str, cursor)))))
                break
            cursor, value = found
            bind = vb(value, ber.encode_oid(".".join(map(str, cursor))))
            if binds and size + len(bind) > MAX_REPLY:
                break
            binds.append(bind)
            size += len(bind)
        return binds

    def _bulk(self, oids: list[bytes], repetitions: int) -> list[bytes]:
        cursors = [ber.oid_arcs(oid) for oid in oids]
        binds: list[bytes] = []
        for _ in range(repetitions):
            for position, cursor in enumerate(cursors):
                found = self._after(cursor)
                if found is None:
                    binds.append(vb(b"\x82\x00", ber.encode_oid(".".join(map(str, cursor)))))
                    continue
                cursors[position], value = found
                binds.append(vb(value, ber.encode_oid(".".join(map(str, found[0])))))
        return binds

    def _after(self, cursor: tuple[int, ...]) -> tuple[tuple[int, ...], bytes] | None:
        if self._sorted_from != id(self.values) or len(self._sorted) != len(self.values):
            self._sorted = sorted(oid_key(oid) for oid in self.values)
            self._sorted_from = id(self.values)
        position = bisect.bisect_right(self._sorted, cursor)
        found = self._sorted[position] if position < len(self._sorted) else None
        if self.endless is not None:
            column = oid_key(self.endless)
            inside = cursor[: len(column)] == column and len(cursor) > len(column)
            row = (*column, cursor[len(column)] + 1 if inside else 1)
            if row > cursor and (found is None or row < found):
                return row, self.endless_value
        return None if found is None else (found, self.values[".".join(map(str, found))])


# Replies instead of the agent's own (``mangle``), each one datagram per request.
def truncated(request: dict, reply: bytes) -> list[bytes]:
    return [reply[:-3]]


def garbage(request: dict, reply: bytes) -> list[bytes]:
    return [b"\x00" * 40]


def other_request_id(request: dict, reply: bytes) -> list[bytes]:
    wrong = (int.from_bytes(request["request_id"], "big") + 1000).to_bytes(4, "big")
    return [response(*_binds(reply), request_id=tlv(0x02, wrong), version=request["version"],
                     community=request["community"])]


def other_community(request: dict, reply: bytes) -> list[bytes]:
    return [response(*_binds(reply), request_id=tlv(0x02, request["request_id"]), version=request["version"],
                     community=b"not-yours")]


def _binds(reply: bytes) -> list[bytes]:
    """The varbinds of ``reply``, encoded again."""
    ((_, (_, _, (_, (*_, (_, binds))))),) = parse(reply)
    return [tlv(0x30, tlv(0x06, oid) + tlv(tag, value)) for _, ((_, oid), (tag, value)) in binds]


# The replies --reply picks.
REPLIES = {"truncated": truncated, "garbage": garbage, "request-id": other_request_id, "community": other_community}


async def start(
    values: dict[str, bytes], community: bytes = b"public"
) -> tuple[asyncio.DatagramTransport, HostileAgent]:
    return await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: HostileAgent(values, community), local_addr=("127.0.0.1", 0)
    )


async def _serve(args: argparse.Namespace) -> None:
    values = device(args.ports)
    if args.high_speed_text:
        for index in range(1, args.ports + 1):
            values[f"{IF_HIGH_SPEED}.{index}"] = octets("1" * args.high_speed_text)
    transport, agent = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: HostileAgent(values), local_addr=("127.0.0.1", args.port)
    )
    agent.walk_answers = args.walk_answers
    if args.reply:
        agent.mangle = REPLIES[args.reply]
    print(f"hostile agent on 127.0.0.1:{agent.port} (community public, {args.ports} ports)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        transport.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ports", type=int, default=48)
    parser.add_argument("--high-speed-text", type=int, metavar="N",
                        help="answer ifHighSpeed as an OCTET STRING of N digits")
    parser.add_argument("--walk-answers", type=int, metavar="N", help="answer N walk requests, then none")
    parser.add_argument("--reply", choices=sorted(REPLIES), help="send this instead of every reply")
    args = parser.parse_args()
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
