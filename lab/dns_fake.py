"""A fake authoritative DNS server on a loopback UDP port (dnslib), for the DNS probe's tests and
the lab.

``records``: ``{(name, type): [value, ...]}``, e.g. ``{("app.ofdt.test", "A"): ["127.0.0.1"]}``.
A name it does not know is NXDOMAIN; a known name without the asked type is an empty NOERROR.
:meth:`DnsFake.set_silent` makes it drop every query (a resolver that went away), and
:meth:`DnsFake.set_records` changes an answer (a hijacked or mistyped record).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from dnslib import QTYPE, RCODE, RR, DNSRecord

Records = Mapping[tuple[str, str], Sequence[str]]


def _key(name: str, rtype: str) -> tuple[str, str]:
    return name.lower().rstrip("."), rtype.upper()


class DnsFake(asyncio.DatagramProtocol):
    def __init__(self, records: Records, ttl: int = 300) -> None:
        self.records = {_key(n, t): list(v) for (n, t), v in records.items()}
        self.ttl = ttl
        self.silent = False
        self.queries: list[tuple[str, str]] = []
        self.address: tuple[str, int] = ("", 0)
        self._transport: asyncio.DatagramTransport | None = None

    def set_records(self, name: str, rtype: str, values: Sequence[str]) -> None:
        self.records[_key(name, rtype)] = list(values)

    def set_silent(self, silent: bool) -> None:
        self.silent = silent

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
        self._transport = transport
        self.address = transport.get_extra_info("sockname")[:2]
        return self.address

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            query = DNSRecord.parse(data)
        except Exception:  # noqa: BLE001 - dnslib raises several kinds on garbage: a server drops it
            return
        name, rtype = str(query.q.qname), QTYPE[query.q.qtype]
        self.queries.append((name.rstrip("."), rtype))
        if self.silent or self._transport is None:
            return
        reply = query.reply()
        known = {key[0] for key in self.records}
        if _key(name, rtype)[0] not in known:
            reply.header.rcode = RCODE.NXDOMAIN
        for value in self.records.get(_key(name, rtype), []):
            reply.add_answer(*RR.fromZone(f"{name} {self.ttl} IN {rtype} {value}"))
        self._transport.sendto(reply.pack(), addr)
