"""The declarations of the built-in stores: the embedded SQLite store and InfluxDB (through the
on-disk spool). ``agent.store: {kind: NAME, ...}`` is checked by the options models here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from agent.api import PluginSpec, SecretRef, StoreContext
from agent.stores import Store, build_store
from agent.stores.sqlite import DEFAULT_RETENTION_DAYS

_STRICT = ConfigDict(extra="forbid", frozen=True)


class SqliteOptions(BaseModel):
    model_config = _STRICT
    retention_days: Annotated[int, Field(ge=1, le=3660)] = DEFAULT_RETENTION_DAYS


class InfluxOptions(BaseModel):
    model_config = _STRICT
    url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
    org: Annotated[str, StringConstraints(min_length=1)]
    bucket: Annotated[str, StringConstraints(min_length=1)]
    token: SecretRef
    spool_dir: Path | None = None
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 5000


def build_sqlite(options: SqliteOptions, context: StoreContext) -> Store:
    return build_store({"kind": "sqlite", **options.model_dump()}, context.state_dir)


def build_influx(options: InfluxOptions, context: StoreContext) -> Store:
    settings = {"kind": "influxdb", **options.model_dump(exclude={"token"}), "token": context.secret(options.token)}
    return build_store(settings, context.state_dir)


SQLITE = PluginSpec(name="sqlite", kind="store", factory=build_sqlite, options=SqliteOptions,
                    description="embedded SQLite time series (13 months in a few GB)")
INFLUXDB = PluginSpec(name="influxdb", kind="store", factory=build_influx, options=InfluxOptions,
                      description="InfluxDB 1.8+/2.x/3.x or VictoriaMetrics, line protocol through a disk spool")
