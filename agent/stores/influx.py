"""InfluxDB v2 write API (InfluxDB 2/3, VictoriaMetrics, anything speaking ``/api/v2/write``).

Samples become line protocol through ``line_protocol.encode`` and go in gzip'd batches of
``batch_size`` lines, up to ``max_in_flight`` batches at a time (the server's time then overlaps the
encoding of the next batches instead of adding to it; points carry their own timestamps, so the
order in which batches land does not matter). Requests go through influxdb-client's async write
service; the client's own gzip (level 9, about five times the CPU of level 1 for bodies of line
protocol a few % smaller) is replaced by ``gzip_level``, compressed off the event loop (zlib lets go of the
GIL, so it overlaps the encoding). Fields line protocol cannot carry (NaN, infinity, ints beyond
int64) are left out, logged once per field name and counted in ``unrepresentable_fields``. A batch
is retried with exponential backoff on 429, 5xx and connection errors (honouring ``Retry-After``);
any other 4xx is final at once. When retries run out or the server refuses, ``StoreError`` names
the URL and the server's own message; the other batches of the call are still sent (those not yet
started are not), so a failed call may have delivered part of its points: sending it again writes
those a second time (InfluxDB overwrites them; VictoriaMetrics keeps both copies unless its
deduplication is on). Put a ``SpooledStore`` in front so that an outage loses nothing: it keeps
the encoded lines (``encode_lines``) and sends them with ``write_lines``.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence

import aiohttp
from influxdb_client import WritePrecision
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.rest import ApiException
from influxdb_client.service.write_service import WriteService

from agent.api import Sample
from agent.stores import StoreError
from agent.stores.line_protocol import encode

log = logging.getLogger(__name__)

# 400: malformed line protocol, 413: batch too large, 422: points outside retention. Sending the
# same lines again is pointless; 401/403/404 are about the token or bucket and may be fixed.
DATA_REJECTED_STATUSES = frozenset({400, 413, 422})


class InfluxStore:
    def __init__(
        self,
        url: str,
        org: str,
        bucket: str,
        token: str,
        batch_size: int = 5000,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        timeout_s: float = 30.0,
        max_in_flight: int = 4,
        gzip_level: int | None = 1,
        ssl_context: ssl.SSLContext | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.org = org
        self.bucket = bucket
        self._token = token
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        if gzip_level is not None and not 0 <= gzip_level <= 9:
            raise ValueError(f"gzip_level must be 0-9 or None (no compression), not {gzip_level}")
        self.max_in_flight = max_in_flight
        self.gzip_level = gzip_level
        self._ssl_context = ssl_context
        self._sleep = sleep
        self._client: InfluxDBClientAsync | None = None
        self._write_service: WriteService | None = None
        self.unrepresentable_fields = 0
        self._reported_unrepresentable: set[tuple[str, str]] = set()

    def __repr__(self) -> str:
        return f"InfluxStore({self.url!r}, org={self.org!r}, bucket={self.bucket!r})"

    async def write(self, samples: Sequence[Sample]) -> None:
        left_out: list[int] = []

        def batches() -> Iterable[list[str]]:
            # Encoded one batch ahead of the sending: the first request leaves before the last
            # batch is encoded.
            for start in range(0, len(samples), self.batch_size):
                lines, batch_left_out = self._encode(samples[start : start + self.batch_size])
                left_out.append(batch_left_out)
                yield lines

        await self._send_batches(batches())
        # Counted once sent: a call sent again (by a spool) is not counted again.
        self.unrepresentable_fields += sum(left_out)

    def encode_lines(self, samples: Sequence[Sample]) -> list[str]:
        """The line protocol ``write`` would send for ``samples``, for a spool to keep as it is and
        send later with ``write_lines``; what is left out is logged and counted now."""
        lines, left_out = self._encode(samples)
        self.unrepresentable_fields += left_out
        return lines

    async def write_lines(self, lines: Sequence[str]) -> None:
        """Send lines of line protocol (from ``encode_lines``) in batches, as ``write`` does."""
        await self._send_batches(
            list(lines[start : start + self.batch_size]) for start in range(0, len(lines), self.batch_size)
        )

    async def _send_batches(self, batches: Iterable[list[str]]) -> None:
        slots = asyncio.Semaphore(self.max_in_flight)
        failures: list[StoreError] = []

        async def send(lines: list[str]) -> None:
            try:
                await self._send(lines)
            except StoreError as exc:
                failures.append(exc)
            finally:
                slots.release()

        sending: list[asyncio.Task[None]] = []
        try:
            for lines in batches:
                await slots.acquire()
                if failures:
                    # Server down or data refused: the batches not started yet wait for the next call.
                    break
                if lines:
                    sending.append(asyncio.create_task(send(lines)))
                else:
                    slots.release()
            await asyncio.gather(*sending)
        finally:
            # Cancelled (a deadline) or broken: no request of this call outlives it.
            for task in sending:
                task.cancel()
            await asyncio.gather(*sending, return_exceptions=True)
        if failures:
            # An outage outranks refused data: a spool must wait and resend, not bisect.
            raise min(failures, key=lambda error: error.data_rejected)

    def _encode(self, samples: Sequence[Sample]) -> tuple[list[str], int]:
        lines = []
        left_out = 0
        for sample in samples:
            encoded = encode(sample)
            left_out += len(encoded.left_out)
            for key in encoded.left_out:
                # Once per field name, not once per point: a sensor reading NaN every poll is one story.
                if (sample.measurement, key) not in self._reported_unrepresentable:
                    self._reported_unrepresentable.add((sample.measurement, key))
                    log.warning(
                        "%s: field %r of %r had a value with no line-protocol form (NaN, infinity, beyond"
                        " int64, or no key): left out, counted in unrepresentable_fields",
                        self,
                        key,
                        sample.measurement,
                    )
            if encoded.text is not None:
                lines.append(encoded.text)
        return lines, left_out

    def stats(self) -> dict[str, int]:
        return {"unrepresentable_fields": self.unrepresentable_fields}

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
            self._write_service = None

    def _writes(self) -> WriteService:
        # Built on first use: the client's aiohttp session must belong to the running loop.
        if self._write_service is None:
            self._client = InfluxDBClientAsync(
                url=self.url,
                token=self._token,
                org=self.org,
                timeout=int(self.timeout_s * 1000),
                # Compressed here, at gzip_level (the client's own gzip is level 9).
                enable_gzip=False,
                # None: the system's CAs, verified (the client's own default)
                ssl_context=self._ssl_context,
            )
            self._write_service = WriteService(self._client.api_client)
        return self._write_service

    async def _body(self, lines: list[str]) -> bytes:
        data = "\n".join(lines).encode("utf-8", "replace")
        if self.gzip_level is None:
            return data
        return await asyncio.to_thread(gzip.compress, data, self.gzip_level)

    async def _send(self, lines: list[str]) -> None:
        body = await self._body(lines)
        compression = {"content_encoding": "gzip"} if self.gzip_level is not None else {}
        attempt = 0
        while True:
            try:
                await self._writes().post_write_async(
                    org=self.org,
                    bucket=self.bucket,
                    body=body,
                    precision=WritePrecision.NS,
                    content_type="text/plain; charset=utf-8",
                    **compression,
                )
                return
            except ApiException as exc:
                error = self._http_error(exc)
                retry_after = _retry_after_s(exc)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                error = StoreError(self.url, f"{type(exc).__name__}: {exc}".rstrip(": "))
                retry_after = None
            if not error.retryable or attempt >= self.max_retries:
                raise error
            delay = min(self.max_backoff_s, self.backoff_s * 2**attempt)
            if retry_after is not None:
                delay = min(self.max_backoff_s, max(delay, retry_after))
            attempt += 1
            log.warning("%s; retry %d/%d in %.1fs", error, attempt, self.max_retries, delay)
            await self._sleep(delay)

    def _http_error(self, exc: ApiException) -> StoreError:
        status = exc.status
        # The client lifts "message" out of a JSON body, else hands back the raw body.
        raw = exc.message
        message = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")
        if self._token:  # a proxy that echoes the request in its error page must not put the token in our logs
            message = message.replace(self._token, "<redacted>")
        retryable = status is None or status == 429 or status >= 500
        return StoreError(
            f"{self.url}/api/v2/write (bucket {self.bucket!r})",
            (message or exc.reason or "no message").strip(),
            status=status,
            retryable=retryable,
            data_rejected=status in DATA_REJECTED_STATUSES,
        )


def _retry_after_s(exc: ApiException) -> float | None:
    value = getattr(exc, "retry_after", None)
    try:
        return float(value) if value is not None else None
    except ValueError:
        # An HTTP-date Retry-After: the exponential backoff is as good a guess.
        return None
