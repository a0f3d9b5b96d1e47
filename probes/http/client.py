"""One HTTP exchange through httpx, bounded: the status, the redirects, at most ``max_body_bytes``
of the body, and how long it all took. No vigie import.

Failures are typed by where they happened, because they mean different things: nothing accepted
the connection (:class:`ConnectFailed`: the server is not there), the TLS handshake failed
(:class:`TlsFailed`: a server answered, with a certificate the client refuses), or the exchange
went wrong after the connection (:class:`ExchangeFailed`: a timeout, a broken answer, too many
redirects).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx


class HttpFailure(Exception):
    """``kind`` names the failure in the probe's ``result`` vocabulary."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class ConnectFailed(HttpFailure):
    pass


class TlsFailed(HttpFailure):
    pass


class ExchangeFailed(HttpFailure):
    pass


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: Mapping[str, str]
    auth: httpx.Auth | None
    follow_redirects: bool
    max_redirects: int
    timeout_s: float
    max_body_bytes: int


@dataclass(frozen=True)
class Answer:
    status_code: int
    redirects: int
    final_url: str
    body: bytes  # at most max_body_bytes
    truncated: bool  # the body was longer than what was read
    elapsed_s: float  # from the request to the last byte read


def _tls_cause(exc: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


async def exchange(
    request: Request, tls: ssl.SSLContext, monotonic: Callable[[], float] = time.perf_counter
) -> Answer:
    timeout = httpx.Timeout(request.timeout_s)
    async with httpx.AsyncClient(
        verify=tls,
        timeout=timeout,
        follow_redirects=request.follow_redirects,
        max_redirects=request.max_redirects,
        trust_env=False,  # a probe goes where it is told: no proxy or netrc from the environment
    ) as client:
        started = monotonic()
        try:
            async with client.stream(request.method, request.url, headers=dict(request.headers),
                                     auth=request.auth) as response:
                body = bytearray()
                truncated = False
                async for chunk in response.aiter_bytes():
                    room = request.max_body_bytes - len(body)
                    body += chunk[:room]
                    if len(chunk) > room:
                        truncated = True
                        break
                elapsed = monotonic() - started
        except httpx.ConnectTimeout:
            raise ConnectFailed("timeout", f"no connection within {request.timeout_s:g} s") from None
        except httpx.ConnectError as exc:
            cause = _tls_cause(exc)
            if cause is not None:
                verify = getattr(cause, "verify_message", None)
                reason = f"certificate verify failed: {verify}" if verify else cause.reason or str(cause)
                raise TlsFailed("tls_error", reason) from None
            raise ConnectFailed("connection_failed", str(exc) or type(exc).__name__) from None
        except httpx.TooManyRedirects:
            raise ExchangeFailed("too_many_redirects", f"more than {request.max_redirects} redirects") from None
        except httpx.TimeoutException:
            raise ExchangeFailed("timeout", f"no complete answer within {request.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise ExchangeFailed("protocol_error", f"{type(exc).__name__}: {exc}") from None
    return Answer(
        status_code=response.status_code,
        redirects=len(response.history),
        final_url=str(response.url),
        body=bytes(body),
        truncated=truncated,
        elapsed_s=elapsed,
    )
