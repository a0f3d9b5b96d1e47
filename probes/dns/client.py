"""One DNS question to one resolver (dnspython), timed. No vigie import."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype


@dataclass(frozen=True)
class Reply:
    rcode: str  # NOERROR, NXDOMAIN, SERVFAIL, REFUSED, ...
    answers: tuple[str, ...]  # the records of the asked type, as text, normalised
    elapsed_s: float


class NoReply(Exception):
    """Nothing came back: a timeout, or the resolver's port is closed."""


def _normalised(text: str, rtype: str) -> str:
    if rtype == "TXT":
        return "".join(part.strip('"') for part in text.split('" "'))
    return text.lower().rstrip(".") if rtype in ("CNAME", "NS", "PTR", "MX", "SRV") else text


async def ask(
    resolver: str,
    port: int,
    name: str,
    rtype: str,
    timeout_s: float,
    tcp: bool = False,
    monotonic: Callable[[], float] = time.perf_counter,
) -> Reply:
    query = dns.message.make_query(name, rtype)
    send = dns.asyncquery.tcp if tcp else dns.asyncquery.udp
    started = monotonic()
    try:
        response = await send(query, resolver, timeout=timeout_s, port=port)
    except dns.exception.Timeout:
        raise NoReply(f"no answer within {timeout_s:g} s") from None
    except OSError as exc:
        raise NoReply(exc.strerror or str(exc)) from None
    except dns.exception.DNSException as exc:
        raise NoReply(f"unusable answer: {exc}") from None
    elapsed = monotonic() - started
    wanted = dns.rdatatype.from_text(rtype)
    answers = tuple(
        sorted(_normalised(rd.to_text(), rtype) for rrset in response.answer if rrset.rdtype == wanted for rd in rrset)
    )
    return Reply(dns.rcode.to_text(response.rcode()), answers, elapsed)
