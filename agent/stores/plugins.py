"""The declarations of the built-in stores: the embedded compact store (the default), the embedded
row store, and InfluxDB (through the on-disk spool). ``agent.store: {kind: NAME, ...}`` is checked
by the options models here."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from agent.api import PluginSpec, SecretRef, StoreContext
from agent.api.tls import client_tls
from agent.stores import Store, build_store
from agent.stores.compact import Retention
from agent.stores.sqlite import DEFAULT_RETENTION_DAYS

log = logging.getLogger(__name__)

_STRICT = ConfigDict(extra="forbid", frozen=True)


class SqliteOptions(BaseModel):
    model_config = _STRICT
    retention_days: Annotated[int, Field(ge=1, le=3660)] = DEFAULT_RETENTION_DAYS


class CompactOptions(BaseModel):
    """Days kept: raw points, 5-minute rollups, hourly rollups (``retention_days``, also the
    StateDB's and so the reports', which follow the store's ``retention_days``)."""

    model_config = _STRICT
    raw_retention_days: Annotated[int, Field(ge=1, le=3660)] = int(Retention().raw_days)
    five_minute_retention_days: Annotated[int, Field(ge=1, le=3660)] = int(Retention().five_minute_days)
    retention_days: Annotated[int, Field(ge=1, le=3660)] = int(Retention().days)

    @model_validator(mode="after")
    def _rollups_outlive_what_they_sum(self) -> CompactOptions:
        Retention(self.raw_retention_days, self.five_minute_retention_days, self.retention_days)
        return self


class InfluxOptions(BaseModel):
    """``max_in_flight`` batches are sent at once (the server's time overlaps the encoder's);
    ``gzip_level`` 1 costs a tenth of level 9's CPU for a body about a third larger, 0 sends
    uncompressed. ``ca_bundle`` trusts a private CA; ``verify_tls: false`` (logged at start-up)
    checks neither chain nor host name."""

    model_config = _STRICT
    url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
    org: Annotated[str, StringConstraints(min_length=1)]
    bucket: Annotated[str, StringConstraints(min_length=1)]
    token: SecretRef
    spool_dir: Path | None = None
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 5000
    max_in_flight: Annotated[int, Field(ge=1, le=16)] = 4
    gzip_level: Annotated[int, Field(ge=0, le=9)] = 1
    ca_bundle: Path | None = None
    verify_tls: bool = True

    @model_validator(mode="after")
    def _bundle_readable(self) -> InfluxOptions:
        if self.url.startswith("https://"):
            client_tls(self.ca_bundle, self.verify_tls)  # an unreadable bundle is refused here, named
        return self


def build_sqlite(options: SqliteOptions, context: StoreContext) -> Store:
    return build_store({"kind": "sqlite", **options.model_dump()}, context.state_dir)


def build_compact(options: CompactOptions, context: StoreContext) -> Store:
    return build_store({"kind": "compact", **options.model_dump()}, context.state_dir,
                       counter_fields=context.counter_fields)


def build_influx(options: InfluxOptions, context: StoreContext) -> Store:
    if not options.verify_tls and options.url.startswith("https://"):
        log.warning("store influxdb: TLS verification of %s disabled by verify_tls: false", options.url)
    settings = {"kind": "influxdb", **options.model_dump(exclude={"token"}), "token": context.secret(options.token)}
    return build_store(settings, context.state_dir)


COMPACT = PluginSpec(
    name="compact",
    kind="store",
    factory=build_compact,
    options=CompactOptions,
    description="embedded SQLite, compressed per-series chunks: raw points 30 days, rollups 13 months",
)
SQLITE = PluginSpec(
    name="sqlite",
    kind="store",
    factory=build_sqlite,
    options=SqliteOptions,
    description="embedded SQLite, one row per point (about 90 bytes a point)",
)
INFLUXDB = PluginSpec(
    name="influxdb",
    kind="store",
    factory=build_influx,
    options=InfluxOptions,
    description="InfluxDB 1.8+/2.x/3.x or VictoriaMetrics, line protocol through a disk spool",
)
