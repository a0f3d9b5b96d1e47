"""The RDAP probe: a domain's expiry date from its registry's RDAP server (RFC 9083 ``events``,
eventAction ``expiration``), so an expiring domain is a ticket weeks ahead.

Options (README.md beside this file): ``domains``, ``base_url`` (the RDAP server: the registry's,
e.g. ``https://rdap.nic.fr/``; the lab points it at a loopback fake), ``refresh_s`` (an answer is
kept that long: expiry dates move once a year, registries rate-limit), ``timeout_s``. A 429's
``Retry-After`` is honoured: nothing is asked of that server before it. Measurement
``rdap_domain`` (docs/METRICS.md, "Probes"). The device's address is not read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

import httpx
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from agent.api import CollectError, CollectorContext, PluginSpec, Rule, Sink, Target
from probes.rdap.client import DomainRecord, NotFound, RateLimited, RdapError, lookup, parse

__all__ = ["PLUGIN", "RdapOptions", "RdapProbe", "default_rules", "evaluate", "target_from_url"]

MEASUREMENT = "rdap_domain"
WARNING_DAYS = 30
CRITICAL_DAYS = 7
DEFAULT_WAIT_S = 60.0  # after a 429 without Retry-After


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


def _base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise ValueError(f"{url!r}: expected the RDAP server's base URL, http(s)://HOST[/PATH/]")
    return url if url.endswith("/") else url + "/"


Domain = Annotated[
    str,
    StringConstraints(pattern=r"^([a-z0-9-]{1,63}\.)+[a-z0-9-]{2,63}$", max_length=253),
    BeforeValidator(lambda v: v.lower().rstrip(".") if isinstance(v, str) else v),
]


class RdapOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    domains: Annotated[list[Domain], Field(min_length=1, max_length=100)]
    base_url: Annotated[str, AfterValidator(_base_url)]
    refresh_s: Annotated[float, Field(ge=0, le=7 * 86400), BeforeValidator(_not_bool)] = 6 * 3600.0
    timeout_s: Annotated[float, Field(gt=0, le=60), BeforeValidator(_not_bool)] = 10.0


@dataclass(frozen=True)
class Known:
    """The last answer about one domain: a record, or None when the server did not know it."""

    record: DomainRecord | None
    at: float  # when it was fetched (epoch seconds)
    latency_s: float | None


def evaluate(known: Known, now: float) -> dict[str, Any]:
    record = known.record
    expires = record.expiration if record else None
    return {
        "registered": record is not None,
        "expires_in_days": None if expires is None else round((expires.timestamp() - now) / 86400, 3),
        "expiration": None if expires is None else expires.isoformat(),
        "registrar": record.registrar if record else None,
        "status": ", ".join(record.status) if record and record.status else None,
        "latency_ms": None if known.latency_s is None else round(known.latency_s * 1000, 3),
        "answer_age_s": round(now - known.at, 3),
    }


class RdapProbe:
    def __init__(self, options: RdapOptions, context: CollectorContext) -> None:
        self.options = options
        self.clock = context.clock
        self.known: dict[str, Known] = {}
        self.not_before = 0.0  # a 429's Retry-After: nothing is asked before

    async def collect(self, target: Target, sink: Sink) -> None:
        options = self.options
        failures: list[str] = []
        async with httpx.AsyncClient(timeout=options.timeout_s, follow_redirects=True, trust_env=False) as client:
            for domain in options.domains:
                now = self.clock()
                known = self.known.get(domain)
                if known is None or now - known.at >= options.refresh_s:
                    fresh, failure = await self._ask(client, domain, now)
                    if fresh is not None:
                        self.known[domain] = known = fresh
                    if failure is not None:
                        failures.append(failure)
                if known is not None:  # fresh, or the last answer while the server cannot be asked
                    sink.emit(MEASUREMENT, evaluate(known, self.clock()), {"domain": domain})
        if failures and not sink.samples:
            raise CollectError("; ".join(failures))
        for failure in failures:
            sink.error(failure)

    async def _ask(self, client: httpx.AsyncClient, domain: str, now: float) -> tuple[Known | None, str | None]:
        if now < self.not_before:
            return None, f"{domain}: not asked, the RDAP server asked to wait {self.not_before - now:.0f} s more"
        try:
            answer, elapsed = await lookup(client, self.options.base_url, domain, self.clock)
        except NotFound:
            return Known(None, now, None), None
        except RateLimited as exc:
            self.not_before = now + (exc.retry_after_s if exc.retry_after_s is not None else DEFAULT_WAIT_S)
            return None, f"{domain}: {exc}"
        except RdapError as exc:
            return None, f"{domain}: {exc}"
        return Known(parse(domain, answer), now, elapsed), None


def default_rules() -> list[Rule]:
    summary = "{device}: domain {domain} expires in {expires_in_days} days ({expiration}, {registrar})"
    return [
        Rule(
            name="domain_expiring",
            measurement=MEASUREMENT,
            when=f"{CRITICAL_DAYS} <= expires_in_days < {WARNING_DAYS}",
            severity="warning",
            summary=summary,
        ),
        Rule(
            name="domain_expiry_critical",
            measurement=MEASUREMENT,
            when=f"expires_in_days < {CRITICAL_DAYS}",
            severity="critical",
            summary=summary,
        ),
        Rule(
            name="domain_not_registered",
            measurement=MEASUREMENT,
            when="registered == False",
            severity="major",
            summary="{device}: the RDAP server does not know domain {domain} (dropped, or a typo in the config)",
        ),
    ]


def target_from_url(url: str) -> tuple[Target, dict[str, Any]]:
    """``rdap://DOMAIN?base_url=RDAP_SERVER_URL[&timeout_s=S]``."""
    parts = urlsplit(url)
    if parts.scheme != "rdap" or not parts.hostname:
        raise ValueError(f"{url!r}: expected rdap://DOMAIN?base_url=https://RDAP-SERVER/")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    if "base_url" not in query:
        raise ValueError(f"{url!r}: give the RDAP server: ?base_url=https://rdap.nic.fr/ (the registry's)")
    options: dict[str, Any] = {"domains": [parts.hostname], "base_url": query.pop("base_url"), "refresh_s": 0}
    if "timeout_s" in query:
        options["timeout_s"] = query.pop("timeout_s")
    if query:
        raise ValueError(f"{url!r}: unknown parameter(s) {', '.join(sorted(query))}")
    return Target(name=parts.hostname, address=parts.hostname), options


PLUGIN = PluginSpec(
    name="rdap",
    kind="probe",
    factory=RdapProbe,
    options=RdapOptions,
    default_rules=default_rules,
    url_schemes={"rdap": target_from_url},
    description="Domain expiry through RDAP (RFC 9083 events), answers kept refresh_s, Retry-After honoured",
)
