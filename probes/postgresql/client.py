"""What the PostgreSQL probe reads from a server, through psycopg 3 (async). No vigie import.

Every statement runs in one read-only session with a ``statement_timeout``, so a probe can
neither change a database nor hold a connection longer than its bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg


class NoServer(Exception):
    """Nothing answered: refused, timeout, no route."""


class Refused(Exception):
    """A server answered and refused: a login, a database that does not exist, a server starting up."""


@dataclass(frozen=True)
class Login:
    host: str
    port: int
    user: str
    password: str | None
    dbname: str
    sslmode: str
    timeout_s: float


@dataclass(frozen=True)
class Replica:
    name: str  # application_name in pg_stat_replication
    state: str | None
    sync_state: str | None
    replay_lag_s: float | None  # None: not measured (an idle primary reports no lag)
    lag_bytes: int | None


@dataclass(frozen=True)
class Database:
    name: str
    size_bytes: int | None
    connections: int | None


@dataclass(frozen=True)
class Reading:
    connect_s: float
    query_s: float | None  # None: the query failed (query_error says why)
    query_error: str | None
    version: str
    in_recovery: bool
    connections: int
    max_connections: int
    databases: dict[str, Database]  # every database of the server, by name
    replicas: dict[str, Replica]  # every streaming replica the server sees, by application_name


SERVER = """
SELECT current_setting('server_version'), pg_is_in_recovery(),
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),
       current_setting('max_connections')::int
"""
DATABASES = """
SELECT d.datname, pg_database_size(d.oid), s.numbackends
FROM pg_database d LEFT JOIN pg_stat_database s ON s.datid = d.oid
WHERE NOT d.datistemplate AND has_database_privilege(d.oid, 'CONNECT')
"""
REPLICATION = """
SELECT application_name, state, sync_state, EXTRACT(EPOCH FROM replay_lag)::float8,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::int8 END
FROM pg_stat_replication
"""


async def read(login: Login, query: str, monotonic: Callable[[], float] = time.perf_counter) -> Reading:
    started = monotonic()
    try:
        connection = await psycopg.AsyncConnection.connect(
            host=login.host,
            port=login.port,
            user=login.user,
            password=login.password,
            dbname=login.dbname,
            sslmode=login.sslmode,
            connect_timeout=max(2, round(login.timeout_s)),  # libpq's least
            application_name="vigie-probe",
            options=f"-c statement_timeout={int(login.timeout_s * 1000)} -c default_transaction_read_only=on",
            autocommit=True,
        )
    except psycopg.OperationalError as exc:
        message = str(exc).strip().replace("\n", " ")
        # libpq prefixes what the server said with its severity; anything else is the network's
        if "FATAL:" in message or "ERROR:" in message:
            raise Refused(message.split("failed: ", 1)[-1]) from None
        raise NoServer(message) from None
    connect_s = monotonic() - started
    async with connection:
        query_s, query_error = await _timed(connection, query, monotonic)
        try:
            ((version, in_recovery, connections, max_connections),) = await _all(connection, SERVER)
            databases = {
                name: Database(name, size, backends) for name, size, backends in await _all(connection, DATABASES)
            }
            replicas = {
                row[0]: Replica(row[0], row[1], row[2], row[3], row[4]) for row in await _all(connection, REPLICATION)
            }
        except psycopg.Error as exc:
            raise Refused(f"reading the server's state: {type(exc).__name__}: {str(exc).strip()}") from None
    return Reading(connect_s, query_s, query_error, version, in_recovery, connections, max_connections,
                   databases, replicas)


async def _timed(
    connection: psycopg.AsyncConnection, query: str, monotonic: Callable[[], float]
) -> tuple[float | None, str | None]:
    started = monotonic()
    try:
        cursor = await connection.execute(query)  # type: ignore[arg-type] - the operator's own SQL
        if cursor.description:
            await cursor.fetchall()
    except psycopg.Error as exc:
        return None, f"{type(exc).__name__}: {str(exc).strip()}"
    return monotonic() - started, None


async def _all(connection: psycopg.AsyncConnection, sql: str) -> list[Sequence[Any]]:
    cursor = await connection.execute(sql)  # type: ignore[arg-type]
    return list(await cursor.fetchall())
