"""A fake web application server on loopback, for the HTTP and TLS probes' tests and the lab.

Every path answers ``200`` with a small HTML page naming it (``<title>PATH</title>``), except:

- ``/status/CODE``: answers CODE;
- ``/redirect/N``: a 302 to ``/redirect/N-1``, ``/redirect/0`` to ``/``;
- ``/basic``: 401 unless HTTP Basic ``username:password`` (the fake's ``logins``);
- ``/bearer``: 401 unless ``Authorization: Bearer TOKEN`` (the fake's ``tokens``);
- ``/client-cert``: 403 unless the TLS client presented a certificate the server's context trusts;
- a path set down with :meth:`WebFake.set_status` answers that status (a lab fault), until cleared.

Served over HTTP, or HTTPS with the ``ssl.SSLContext`` given (tests make theirs with trustme).
"""

from __future__ import annotations

import base64
import html
import ssl
from collections.abc import Mapping

from aiohttp import web


class WebFake:
    def __init__(
        self,
        tls: ssl.SSLContext | None = None,
        logins: Mapping[str, str] | None = None,
        tokens: frozenset[str] = frozenset(),
    ) -> None:
        self.tls = tls
        self.logins = dict(logins or {})
        self.tokens = tokens
        self.statuses: dict[str, int] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path), in order
        self.url = ""
        self.app = web.Application()
        self.app.router.add_route("*", "/{path:.*}", self._answer)
        self._runner: web.AppRunner | None = None

    def set_status(self, path: str, status: int | None) -> None:
        """``path`` answers ``status`` from now on (None: as usual again)."""
        if status is None:
            self.statuses.pop(path, None)
        else:
            self.statuses[path] = status

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=self.tls)
        await site.start()
        real_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"{'https' if self.tls else 'http'}://{host}:{real_port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _answer(self, request: web.Request) -> web.Response:
        path = request.path
        self.requests.append((request.method, path))
        if path in self.statuses:
            return _page(path, self.statuses[path])
        parts = path.strip("/").split("/")
        if parts[0] == "status" and len(parts) == 2 and parts[1].isdigit():
            return _page(path, int(parts[1]))
        if parts[0] == "redirect" and len(parts) == 2 and parts[1].isdigit():
            left = int(parts[1])
            raise web.HTTPFound(f"/redirect/{left - 1}" if left > 1 else "/")
        if path == "/basic" and not self._basic_ok(request.headers.get("Authorization", "")):
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="fake"'})
        if path == "/bearer" and request.headers.get("Authorization", "").removeprefix("Bearer ") not in self.tokens:
            return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})
        if path == "/client-cert" and not (request.transport and request.transport.get_extra_info("peercert")):
            return _page(path, 403)
        return _page(path, 200)

    def _basic_ok(self, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return user in self.logins and self.logins[user] == password


def _page(path: str, status: int) -> web.Response:
    name = html.escape(path)
    body = f"<!doctype html><html><head><title>{name}</title></head><body>{name}: {status}</body></html>"
    return web.Response(status=status, text=body, content_type="text/html")
