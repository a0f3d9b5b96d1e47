"""Where samples go: the `Store` contract and the factory the agent builds from its config.

Stores take whole batches so that a remote store can send them in one request and the local one
can write them in one transaction. Every store skips ``None`` fields (see agent/samples.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from agent.api import Sample


@runtime_checkable
class Store(Protocol):
    async def write(self, samples: Sequence[Sample]) -> None: ...

    async def close(self) -> None: ...


class StoreError(Exception):
    """A store refused or could not take a batch; the message names the URL and the server's words.

    ``retryable`` is False when sending the same batch again cannot succeed by waiting (HTTP 4xx
    other than 429). ``data_rejected`` is True when the server refused the data itself (400, 413,
    422) rather than the request's credentials or target (401, 403, 404): a spool isolates and
    quarantines the refused lines of the former and keeps everything for the latter, since a fixed
    token must still find every point.
    """

    def __init__(
        self,
        url: str,
        message: str,
        status: int | None = None,
        retryable: bool = True,
        data_rejected: bool = False,
    ) -> None:
        self.url = url
        self.status = status
        self.server_message = message
        self.retryable = retryable
        self.data_rejected = data_rejected
        where = f"HTTP {status} from {url}" if status is not None else url
        super().__init__(f"{where}: {message}")


def build_store(
    store_config: Mapping[str, Any],
    state_dir: Path,
    secrets: Any = None,
    counter_fields: Iterable[tuple[str, str]] = (),
) -> Store:
    """Build the configured store.

    ``{kind: compact, raw_retention_days, five_minute_retention_days, retention_days}`` writes
    ``<state_dir>/samples-compact.sqlite``;
    ``{kind: sqlite, retention_days}`` writes ``<state_dir>/samples.sqlite``;
    ``{kind: influxdb, url, org, bucket, token, spool_dir, batch_size, max_in_flight, gzip_level,
    ca_bundle, verify_tls}`` sends to InfluxDB (or
    anything speaking its write API) through an on-disk spool, ``<state_dir>/spool`` unless
    ``spool_dir`` says otherwise. ``secrets`` is accepted for the config module's calling
    convention; the token arrives already resolved, so it is not consulted. ``counter_fields``:
    the (measurement, field) pairs the compact store rolls up as increases (the plugins'
    ``PluginSpec.counter_fields``).
    """
    kind = store_config.get("kind", "compact")
    if kind == "compact":
        from agent.stores.compact import CompactStore, Retention

        defaults = Retention()
        return CompactStore(
            Path(store_config.get("path") or state_dir / "samples-compact.sqlite"),
            Retention(
                raw_days=float(store_config.get("raw_retention_days", defaults.raw_days)),
                five_minute_days=float(store_config.get("five_minute_retention_days", defaults.five_minute_days)),
                days=float(store_config.get("retention_days", defaults.days)),
            ),
            counter_fields=counter_fields,
        )
    if kind == "sqlite":
        from agent.stores.sqlite import SqliteStore

        return SqliteStore(
            Path(store_config.get("path") or state_dir / "samples.sqlite"),
            retention_days=float(store_config.get("retention_days", 400)),
        )
    if kind == "influxdb":
        from agent.api.tls import client_tls
        from agent.stores.influx import InfluxStore
        from agent.stores.spool import SpooledStore

        batch_size = int(store_config.get("batch_size", 5000))
        inner = InfluxStore(
            url=store_config["url"],
            org=store_config.get("org", ""),
            bucket=store_config["bucket"],
            token=store_config.get("token") or "",
            batch_size=batch_size,
            # The spool sends in the background, each request under its own deadline, and retries
            # on its own backoff: one try per request.
            max_retries=0,
            max_in_flight=int(store_config.get("max_in_flight", 4)),
            gzip_level=int(store_config.get("gzip_level", 1)) or None,
            ssl_context=(client_tls(store_config.get("ca_bundle"), bool(store_config.get("verify_tls", True)))
                         if str(store_config["url"]).startswith("https://") else None),
        )
        spool_dir = Path(store_config.get("spool_dir") or state_dir / "spool")
        max_bytes = store_config.get("spool_max_bytes")
        return SpooledStore(
            inner,
            spool_dir,
            batch_size=batch_size,
            max_in_flight=inner.max_in_flight,
            **({"max_bytes": int(max_bytes)} if max_bytes is not None else {}),
        )
    raise ValueError(f"unknown store kind {kind!r} (expected 'compact', 'sqlite' or 'influxdb')")


__all__ = ["Sample", "Store", "StoreError", "build_store"]
