"""InfluxDB v2 write API (InfluxDB 2/3, VictoriaMetrics, anything speaking ``/api/v2/write``).

Samples become line protocol through ``line_protocol.encode`` and go in gzip'd batches of
``batch_size`` lines. Fields line protocol cannot carry (NaN, infinity, ints beyond int64) are left
out, logged once per field name and counted in ``unrepresentable_fields``. A batch is retried with
exponential backoff on 429, 5xx and connection errors (honouring ``Retry-After``); any other 4xx is
final at once. When retries run out or the server refuses, ``StoreError`` names the URL and the
server's own message. Put a ``SpooledStore`` in front so that an outage loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

import aiohttp
from influxdb_client import WritePrecision
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.rest import ApiException

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
        self._sleep = sleep
        self._client: InfluxDBClientAsync | None = None
        self.unrepresentable_fields = 0
        self._reported_unrepresentable: set[tuple[str, str]] = set()

    def __repr__(self) -> str:
        return f"InfluxStore({self.url!r}, org={self.org!r}, bucket={self.bucket!r})"

    async def write(self, samples: Sequence[Sample]) -> None:
        for start in range(0, len(samples), self.batch_size):
            lines, left_out = self._encode(samples[start : start + self.batch_size])
            if lines:
                await self._send(lines)
            # Counted once sent: a batch retried or split by the spool is not counted again.
            self.unrepresentable_fields += left_out

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

    def _api(self) -> InfluxDBClientAsync:
        # Built on first use: the client's aiohttp session must belong to the running loop.
        if self._client is None:
            self._client = InfluxDBClientAsync(
                url=self.url,
                token=self._token,
                org=self.org,
                timeout=int(self.timeout_s * 1000),
                enable_gzip=True,
            )
        return self._client

    async def _send(self, lines: list[str]) -> None:
        attempt = 0
        while True:
            try:
                await (
                    self._api()
                    .write_api()
                    .write(bucket=self.bucket, org=self.org, record=lines, write_precision=WritePrecision.NS)
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
