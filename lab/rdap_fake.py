"""A fake RDAP server for domains (RFC 9083 JSON over HTTP, RFC 7480), on loopback, for the RDAP
probe's tests and the lab.

``GET /domain/NAME`` answers the domain's object (``objectClassName``, ``ldhName``, ``status``,
``events`` with ``registration`` / ``expiration`` / ``last changed``, the registrar as an entity
with a jCard), ``application/rdap+json``. An unknown domain is a 404 with an RFC 9083 error body.
:meth:`RdapFake.rate_limit` makes the next N requests a 429 with ``Retry-After`` (RFC 7480 §5.5).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

CONTENT_TYPE = "application/rdap+json"


@dataclass(frozen=True)
class Domain:
    expires: dt.datetime | None  # None: the registry publishes no expiration event
    registrar: str = "Lab Registrar SAS"
    status: tuple[str, ...] = ("active",)


class RdapFake:
    def __init__(self, domains: Mapping[str, Domain]) -> None:
        self.domains = {name.lower().rstrip("."): d for name, d in domains.items()}
        self.requests: list[str] = []  # the paths asked, in order
        self.url = ""
        self._limited = 0
        self._retry_after_s = 0
        self.app = web.Application()
        self.app.router.add_get("/domain/{name}", self._domain)
        self._runner: web.AppRunner | None = None

    def rate_limit(self, requests: int, retry_after_s: int) -> None:
        self._limited, self._retry_after_s = requests, retry_after_s

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        real_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{host}:{real_port}/"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _domain(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        if self._limited > 0:
            self._limited -= 1
            return _error(429, "Too Many Requests", {"Retry-After": str(self._retry_after_s)})
        name = request.match_info["name"].lower().rstrip(".")
        domain = self.domains.get(name)
        if domain is None:
            return _error(404, "Not Found")
        events = [{"eventAction": "registration", "eventDate": "2004-03-09T10:00:00Z"}]
        if domain.expires is not None:
            events.append({"eventAction": "expiration", "eventDate": domain.expires.strftime("%Y-%m-%dT%H:%M:%SZ")})
        events.append({"eventAction": "last changed", "eventDate": "2024-02-20T08:30:00Z"})
        body = {
            "rdapConformance": ["rdap_level_0"],
            "objectClassName": "domain",
            "handle": f"DOM-{name.upper()}",
            "ldhName": name,
            "status": list(domain.status),
            "events": events,
            "entities": [
                {
                    "objectClassName": "entity",
                    "handle": "REG-1",
                    "roles": ["registrar"],
                    "vcardArray": ["vcard", [["version", {}, "text", "4.0"], ["fn", {}, "text", domain.registrar]]],
                }
            ],
            "notices": [{"title": "Terms of Use", "description": ["Lab data, nothing here is real."]}],
        }
        return web.Response(text=json.dumps(body), content_type=CONTENT_TYPE)


def _error(status: int, title: str, headers: Mapping[str, str] | None = None) -> web.Response:
    body = {"rdapConformance": ["rdap_level_0"], "errorCode": status, "title": title}
    return web.Response(status=status, text=json.dumps(body), content_type=CONTENT_TYPE, headers=headers)
