"""The PostgreSQL probe (psycopg 3): the server accepts connections, a query answers within a
bound, the databases expected are present, and the replicas named stream with a bounded lag.

Options (README.md beside this file): ``port`` (5432; the device's port is not read), ``dbname``,
``query`` and ``query_bound_ms``, ``databases``, ``replicas`` (``application_name`` values the
primary's pg_stat_replication must list), ``sslmode``, ``timeout_s``. Credentials: the device's
secret for ``postgresql`` holds ``user`` and ``password`` (a role in ``pg_monitor`` sees every
replica and database size). Measurements ``postgresql_server``, ``postgresql_database``,
``postgresql_replication`` (docs/METRICS.md, "Probes").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from agent.api import CollectError, CollectorContext, PluginSpec, Rule, Sink, Target, Unreachable
from probes.postgresql.client import Login, NoServer, Reading, Refused, read

__all__ = ["PLUGIN", "PostgresCredentials", "PostgresOptions", "PostgresProbe", "default_rules", "target_from_url"]

SERVER = "postgresql_server"
DATABASE = "postgresql_database"
REPLICATION = "postgresql_replication"
_STRICT = ConfigDict(extra="forbid", frozen=True)


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


Name = Annotated[str, StringConstraints(min_length=1, max_length=63)]


class PostgresOptions(BaseModel):
    model_config = _STRICT

    port: Annotated[int, Field(ge=1, le=65535), BeforeValidator(_not_bool)] = 5432
    dbname: Name = "postgres"
    query: Annotated[str, StringConstraints(min_length=1, max_length=10_000)] = "SELECT 1"
    query_bound_ms: Annotated[float, Field(gt=0, le=600_000), BeforeValidator(_not_bool)] = 1000.0
    databases: list[Name] = []
    replicas: list[Name] = []
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    timeout_s: Annotated[float, Field(gt=0, le=60), BeforeValidator(_not_bool)] = 5.0


class PostgresCredentials(BaseModel):
    model_config = _STRICT

    user: Name
    password: str | None = None


def evaluate(options: PostgresOptions, reading: Reading) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    """(measurement, fields, tags) of one reading."""
    query_ms = None if reading.query_s is None else round(reading.query_s * 1000, 3)
    out: list[tuple[str, dict[str, Any], dict[str, str]]] = [(SERVER, {
        "accepting": True,
        "connect_ms": round(reading.connect_s * 1000, 3),
        "query_ms": query_ms,
        "query_within_bound": query_ms is not None and query_ms <= options.query_bound_ms,
        "query_error": reading.query_error,
        "version": reading.version,
        "in_recovery": reading.in_recovery,
        "connections": reading.connections,
        "max_connections": reading.max_connections,
    }, {})]
    for name in options.databases:
        found = reading.databases.get(name)
        out.append((DATABASE, {
            "present": found is not None,
            "size_bytes": found.size_bytes if found else None,
            "connections": found.connections if found else None,
        }, {"database": name}))
    for name in options.replicas:
        replica = reading.replicas.get(name)
        out.append((REPLICATION, {
            "connected": replica is not None,
            "state": replica.state if replica else None,
            "sync_state": replica.sync_state if replica else None,
            "replay_lag_s": None if replica is None or replica.replay_lag_s is None else round(replica.replay_lag_s, 3),
            "lag_bytes": replica.lag_bytes if replica else None,
        }, {"replica": name}))
    return out


class PostgresProbe:
    def __init__(
        self, options: PostgresOptions, context: CollectorContext, *, monotonic: Callable[[], float] = time.perf_counter
    ) -> None:
        self.options = options
        self.monotonic = monotonic

    async def collect(self, target: Target, sink: Sink) -> None:
        options = self.options
        credentials = PostgresCredentials.model_validate(dict(target.credentials))  # checked when the config loaded
        login = Login(target.address, options.port, credentials.user, credentials.password, options.dbname,
                      options.sslmode, options.timeout_s)
        try:
            reading = await read(login, options.query, self.monotonic)
        except NoServer as exc:
            raise Unreachable(f"{target.address}:{options.port}: {exc}") from None
        except Refused as exc:
            raise CollectError(f"{target.address}:{options.port}: {exc}") from None
        for measurement, fields, tags in evaluate(options, reading):
            sink.emit(measurement, fields, tags)


def default_rules() -> list[Rule]:
    return [
        Rule(
            name="postgresql_query_slow",
            measurement=SERVER,
            when="query_within_bound == False",
            for_s=300,
            severity="warning",
            summary="{device}: PostgreSQL query answers in {query_ms} ms or fails ({query_error})",
        ),
        Rule(
            name="postgresql_database_missing",
            measurement=DATABASE,
            when="present == False",
            for_s=60,
            severity="critical",
            summary="{device}: PostgreSQL database {database} is not there",
        ),
        Rule(
            name="postgresql_replica_disconnected",
            measurement=REPLICATION,
            when="connected == False",
            for_s=120,
            severity="major",
            summary="{device}: PostgreSQL replica {replica} is not streaming",
        ),
        Rule(
            name="postgresql_replication_lag",
            measurement=REPLICATION,
            when="replay_lag_s > 300",
            for_s=300,
            severity="warning",
            summary="{device}: PostgreSQL replica {replica} replays {replay_lag_s} s behind",
        ),
    ]


def target_from_url(url: str) -> tuple[Target, dict[str, Any]]:
    """``postgresql://USER[:PASSWORD]@HOST[:PORT][/DBNAME][?databases=a,b&replicas=r1&query_bound_ms=N]``."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname or not parts.username:
        raise ValueError(f"{url!r}: expected postgresql://USER[:PASSWORD]@HOST[:PORT][/DBNAME]")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    options: dict[str, Any] = {"port": parts.port or 5432}
    if parts.path.strip("/"):
        options["dbname"] = unquote(parts.path.strip("/"))
    for key in ("databases", "replicas"):
        if key in query:
            options[key] = [v for v in query.pop(key).split(",") if v]
    for key in ("query_bound_ms", "timeout_s", "sslmode", "query"):
        if key in query:
            options[key] = query.pop(key)
    if query:
        raise ValueError(f"{url!r}: unknown parameter(s) {', '.join(sorted(query))}")
    credentials = {"user": unquote(parts.username)}
    if parts.password is not None:
        credentials["password"] = unquote(parts.password)
    return Target(name=parts.hostname, address=parts.hostname, credentials=credentials), options


PLUGIN = PluginSpec(
    name="postgresql",
    kind="probe",
    factory=PostgresProbe,
    options=PostgresOptions,
    credentials=PostgresCredentials,
    default_rules=default_rules,
    url_schemes={"postgresql": target_from_url, "postgres": target_from_url},
    description="PostgreSQL: accepts connections, a query within a bound, databases present, replication lag",
)
