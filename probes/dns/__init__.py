"""The DNS probe: given names resolved against given resolvers (dnspython), answers checked
against what is expected, latency.

Options (README.md beside this file): ``queries`` (``name``, ``type``, ``expect``), ``resolvers``
(addresses; default the device's address), ``port`` (53), ``tcp``, ``timeout_s``. Measurement
``dns_query``, one per (resolver, name, type) (docs/METRICS.md, "Probes").
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from agent.api import CollectorContext, PluginSpec, Rule, Sink, Target, Unreachable
from probes.dns.client import NoReply, Reply, ask

__all__ = ["PLUGIN", "DnsOptions", "DnsProbe", "DnsQuery", "default_rules", "evaluate", "target_from_url"]

MEASUREMENT = "dns_query"
RecordType = Literal["A", "AAAA", "CNAME", "MX", "NS", "TXT", "SOA", "PTR", "SRV", "CAA"]
_STRICT = ConfigDict(extra="forbid", frozen=True)


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


def _address(value: str) -> str:
    return str(ipaddress.ip_address(value))  # a resolver is an address: resolving it needs a resolver


class DnsQuery(BaseModel):
    model_config = _STRICT

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+$", max_length=253)]
    type: Annotated[RecordType, BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v)] = "A"
    # each must be among the answers (others may come too: a CDN adds addresses)
    expect: list[str] = []


class DnsOptions(BaseModel):
    model_config = _STRICT

    queries: Annotated[list[DnsQuery], Field(min_length=1, max_length=100)]
    resolvers: list[Annotated[str, AfterValidator(_address)]] = []
    port: Annotated[int, Field(ge=1, le=65535), BeforeValidator(_not_bool)] = 53
    tcp: bool = False
    timeout_s: Annotated[float, Field(gt=0, le=30), BeforeValidator(_not_bool)] = 2.0


def _normalised_expectation(value: str, rtype: str) -> str:
    if rtype in ("A", "AAAA"):
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            return value
    return value if rtype == "TXT" else value.lower().rstrip(".")


def evaluate(query: DnsQuery, reply: Reply) -> dict[str, Any]:
    expected = {_normalised_expectation(v, query.type) for v in query.expect}
    matched = expected <= set(reply.answers) if expected else None
    if reply.rcode != "NOERROR":
        result, error = ("nxdomain" if reply.rcode == "NXDOMAIN" else "rcode"), f"answered {reply.rcode}"
    elif not reply.answers:
        result, error = "empty", f"no {query.type} record"
    elif matched is False:
        missing = ", ".join(sorted(expected - set(reply.answers)))
        result, error = "mismatch", f"expected {missing} among the answers"
    else:
        result, error = "ok", None
    return {
        "result": result,
        "rcode": reply.rcode,
        "answers": ", ".join(reply.answers),
        "answer_count": len(reply.answers),
        "expected_match": matched,
        "latency_ms": round(reply.elapsed_s * 1000, 3),
        "error": error,
    }


def silent(reason: str) -> dict[str, Any]:
    return {"result": "timeout", "rcode": None, "answers": None, "answer_count": None, "expected_match": None,
            "latency_ms": None, "error": reason}


class DnsProbe:
    def __init__(
        self, options: DnsOptions, context: CollectorContext, *, monotonic: Callable[[], float] = time.perf_counter
    ) -> None:
        self.options = options
        self.monotonic = monotonic

    async def collect(self, target: Target, sink: Sink) -> None:
        options = self.options
        resolvers = options.resolvers or [target.address]
        asked = [(resolver, query) for resolver in resolvers for query in options.queries]
        replies = await asyncio.gather(
            *(ask(resolver, options.port, q.name, q.type, options.timeout_s, options.tcp, self.monotonic)
              for resolver, q in asked),
            return_exceptions=True,
        )
        for (resolver, query), reply in zip(asked, replies, strict=True):
            if isinstance(reply, NoReply):
                fields = silent(str(reply))
            elif isinstance(reply, BaseException):
                raise reply
            else:
                fields = evaluate(query, reply)
            sink.emit(MEASUREMENT, fields, {"resolver": resolver, "name": query.name, "record_type": query.type})
        if all(isinstance(reply, NoReply) for reply in replies):
            raise Unreachable(f"no resolver answered ({', '.join(resolvers)} port {options.port}): {replies[0]}")


def default_rules() -> list[Rule]:
    return [
        Rule(
            name="dns_query_failed",
            measurement=MEASUREMENT,
            when="result != 'ok'",
            for_s=120,
            severity="major",
            summary="{device}: {resolver} resolves {name} {record_type}: {result} ({error})",
        )
    ]


def target_from_url(url: str) -> tuple[Target, dict[str, Any]]:
    """``dns://RESOLVER[:PORT]/NAME[?type=A&expect=V1,V2&tcp=1&timeout_s=S]``."""
    parts = urlsplit(url)
    name = unquote(parts.path.strip("/"))
    if parts.scheme != "dns" or not parts.hostname or not name:
        raise ValueError(f"{url!r}: expected dns://RESOLVER[:PORT]/NAME[?type=A&expect=...]")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    question: dict[str, Any] = {"name": name, "type": query.pop("type", "A")}
    if "expect" in query:
        question["expect"] = [v for v in query.pop("expect").split(",") if v]
    options: dict[str, Any] = {"queries": [question], "port": parts.port or 53}
    if "tcp" in query:
        options["tcp"] = query.pop("tcp") in ("1", "true", "yes")
    if "timeout_s" in query:
        options["timeout_s"] = query.pop("timeout_s")
    if query:
        raise ValueError(f"{url!r}: unknown parameter(s) {', '.join(sorted(query))}")
    return Target(name=parts.hostname, address=parts.hostname), options


PLUGIN = PluginSpec(
    name="dns",
    kind="probe",
    factory=DnsProbe,
    options=DnsOptions,
    default_rules=default_rules,
    url_schemes={"dns": target_from_url},
    description="DNS resolution of given names against given resolvers: answers, expected values, latency",
)
