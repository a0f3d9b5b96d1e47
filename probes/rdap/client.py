"""RDAP domain lookups (RFC 7480 over HTTP, RFC 9083 JSON) and what the answer says. No vigie import.

Only the few members a domain's expiry needs are read: ``events`` (eventAction ``expiration``,
``registration``, ``last changed``), ``status``, and the registrar entity's jCard ``fn``. A member
missing or malformed is None, never a made-up date.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

ACCEPT = "application/rdap+json, application/json;q=0.9"
MAX_ANSWER_BYTES = 1024 * 1024  # a domain object is a few KiB


class RdapError(Exception):
    pass


class NotFound(RdapError):
    """404: the registry's server does not know the domain."""


class RateLimited(RdapError):
    def __init__(self, message: str, retry_after_s: float | None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unanswered(RdapError):
    """No answer at all: connection refused, timeout."""


@dataclass(frozen=True)
class DomainRecord:
    name: str
    expiration: dt.datetime | None
    registration: dt.datetime | None
    last_changed: dt.datetime | None
    registrar: str | None
    status: tuple[str, ...]


def retry_after(value: str | None, now: float) -> float | None:
    """Retry-After in seconds, from delay-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


async def lookup(
    client: httpx.AsyncClient, base_url: str, domain: str, clock: Callable[[], float] = time.time
) -> tuple[Mapping[str, Any], float]:
    """The domain object and how long the exchange took (seconds, from ``clock``)."""
    url = f"{base_url.rstrip('/')}/domain/{domain}"
    started = time.perf_counter()
    try:
        async with client.stream("GET", url, headers={"Accept": ACCEPT}) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    raise RdapError(f"{url}: answer over {MAX_ANSWER_BYTES} bytes")
    except (httpx.ConnectError, httpx.TimeoutException) as exc:
        raise Unanswered(f"{url}: {type(exc).__name__}: {exc}") from None
    except httpx.HTTPError as exc:
        raise RdapError(f"{url}: {type(exc).__name__}: {exc}") from None
    elapsed = time.perf_counter() - started
    if response.status_code == 404:
        raise NotFound(f"{url}: 404, the server does not know {domain}")
    if response.status_code == 429:
        wait = retry_after(response.headers.get("Retry-After"), clock())
        raise RateLimited(f"{url}: 429 Too Many Requests" + (f", retry after {wait:g} s" if wait else ""), wait)
    if response.status_code != 200:
        raise RdapError(f"{url}: HTTP {response.status_code}")
    try:
        answer = json.loads(bytes(body))
    except ValueError:
        raise RdapError(f"{url}: not JSON") from None
    if not isinstance(answer, dict):
        raise RdapError(f"{url}: not an RDAP object")
    return answer, elapsed


def _date(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _registrar(entities: Any) -> str | None:
    for entity in entities if isinstance(entities, list) else []:
        if not isinstance(entity, dict) or "registrar" not in (entity.get("roles") or []):
            continue
        vcard = entity.get("vcardArray")
        if isinstance(vcard, list) and len(vcard) == 2 and isinstance(vcard[1], list):
            for prop in vcard[1]:
                if isinstance(prop, list) and len(prop) == 4 and prop[0] == "fn" and isinstance(prop[3], str):
                    return prop[3]
        handle = entity.get("handle")
        return handle if isinstance(handle, str) else None
    return None


def parse(domain: str, answer: Mapping[str, Any]) -> DomainRecord:
    events: dict[str, dt.datetime | None] = {}
    for event in answer.get("events") or []:
        if isinstance(event, dict) and isinstance(event.get("eventAction"), str):
            events.setdefault(event["eventAction"], _date(event.get("eventDate")))
    status = answer.get("status")
    return DomainRecord(
        name=str(answer.get("ldhName") or domain).lower(),
        expiration=events.get("expiration"),
        registration=events.get("registration"),
        last_changed=events.get("last changed"),
        registrar=_registrar(answer.get("entities")),
        status=tuple(s for s in status if isinstance(s, str)) if isinstance(status, list) else (),
    )
