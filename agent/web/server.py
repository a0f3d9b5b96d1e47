"""The web app under uvicorn, in the agent's own event loop: started after the agent's parts,
stopped first, within a bound (an open browser's keep-alive connection must not hold the stop)."""

from __future__ import annotations

import asyncio
import logging
import socket

import uvicorn

from agent.web.app import WebApp, WebContext

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0
START_TIMEOUT_S = 10.0


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8080`` for IPv6; port 0: one the OS chooses) -> (host, port); raise
    ValueError naming it."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"agent.web_listen: expected host:port, got {listen!r}")
    return host, int(port)


class WebServer:
    def __init__(self, context: WebContext, listen: str) -> None:
        self.web = WebApp(context)
        settings = context.config.agent.web
        host, port = parse_listen(listen)
        self._server = uvicorn.Server(uvicorn.Config(
            self.web, host=host, port=port, log_level="warning", access_log=False, lifespan="off",
            ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
            ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
            timeout_graceful_shutdown=int(STOP_TIMEOUT_S),
        ))
        self._server.install_signal_handlers = lambda: None  # the agent owns SIGINT/SIGTERM
        self._task: asyncio.Task | None = None
        self._address = (host, port)
        self.listen = listen
        self.scheme = "https" if settings.tls_cert else "http"

        self.port: int | None = None

    async def start(self) -> None:
        """Bind (raise OSError naming the address when it is taken), then serve."""
        host, port = self._address
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        try:
            sock = socket.create_server((host, port), family=family, reuse_port=False)
        except OSError as exc:
            raise OSError(exc.errno, f"agent.web_listen {self.listen}: {exc.strerror}") from None
        self.port = sock.getsockname()[1]
        # uvicorn given the socket: a failure to bind never reaches its sys.exit()
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="web")
        async with asyncio.timeout(START_TIMEOUT_S):
            while not self._server.started:
                if self._task.done():
                    self._task.result()  # raises why it could not start (port in use)
                    raise RuntimeError(f"web app at {self.listen} stopped while starting")
                await asyncio.sleep(0.02)
        if not self.web.settings.users:
            log.warning("web app: no agent.web.users: only /healthz and /metrics answer")
        log.info("web app at %s://%s:%d (%d user(s))", self.scheme, parse_listen(self.listen)[0], self.port,
                 len(self.web.settings.users))

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), STOP_TIMEOUT_S + 1)
        except TimeoutError:
            log.warning("web app not stopped within %.0f s: cancelled", STOP_TIMEOUT_S + 1)
            self._task.cancel()
        self._task = None
