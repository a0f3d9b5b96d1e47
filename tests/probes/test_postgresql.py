"""The PostgreSQL probe against a real PostgreSQL from Debian's packages: a throwaway primary and
its streaming replica on loopback ports, run as a non-root user."""

from __future__ import annotations

import asyncio

from probes.postgresql import PLUGIN, PostgresOptions

from .helpers import T0, context, engine, firing, free_tcp_port, of, run_poll, sink, status, target, vigie_collect


def _login(postgres) -> dict:
    return {"user": postgres.user, "password": postgres.password}


async def test_the_primary_answers_its_databases_are_there_and_its_named_replica_streams(postgres) -> None:
    options = {"port": postgres.primary.port, "databases": ["app", "reports", "billing"],
               "replicas": ["replica-1", "replica-2"]}
    samples = await run_poll(PLUGIN, options, target(credentials=_login(postgres)))
    assert status(samples)["status"] == "ok", status(samples)
    (server,) = of(samples, "postgresql_server")
    assert server.fields["accepting"] is True and server.fields["query_within_bound"] is True
    assert server.fields["in_recovery"] is False and server.fields["version"].startswith(("1", "2"))
    assert server.fields["connections"] >= 1 and server.fields["max_connections"] > 0
    databases = {s.tags["database"]: s.fields for s in of(samples, "postgresql_database")}
    assert databases["app"]["present"] is True and databases["app"]["size_bytes"] > 0
    assert databases["billing"] == {"present": False, "size_bytes": None, "connections": None}
    replicas = {s.tags["replica"]: s.fields for s in of(samples, "postgresql_replication")}
    assert replicas["replica-1"]["connected"] is True and replicas["replica-1"]["state"] == "streaming"
    assert replicas["replica-1"]["lag_bytes"] is not None and replicas["replica-1"]["lag_bytes"] >= 0
    assert replicas["replica-2"]["connected"] is False and replicas["replica-2"]["replay_lag_s"] is None


async def test_a_missing_database_and_a_missing_replica_page(postgres, tmp_path) -> None:
    options = PostgresOptions(port=postgres.primary.port, databases=["billing"], replicas=["replica-2"])
    probe = PLUGIN.factory(options, context())
    alerts = engine(tmp_path, PLUGIN)
    for minute in range(3):
        out = sink(T0 + 60 * minute)
        await probe.collect(target(credentials=_login(postgres)), out)
        alerts.evaluate(out.samples, now=T0 + 60 * minute)
    assert [(rule, severity) for rule, severity, _ in firing(alerts)] == [
        ("postgresql_database_missing", "critical"), ("postgresql_replica_disconnected", "major")
    ]


async def test_the_replica_is_in_recovery_and_a_slow_query_is_out_of_bound(postgres) -> None:
    options = {"port": postgres.replica.port, "query": "SELECT pg_sleep(0.3)", "query_bound_ms": 100}
    samples = await run_poll(PLUGIN, options, target(credentials=_login(postgres)))
    (server,) = of(samples, "postgresql_server")
    assert server.fields["in_recovery"] is True
    assert server.fields["query_ms"] >= 300 and server.fields["query_within_bound"] is False
    options = {"port": postgres.replica.port, "query": "SELECT * FROM no_such_table"}
    (server,) = of(await run_poll(PLUGIN, options, target(credentials=_login(postgres))), "postgresql_server")
    assert server.fields["query_within_bound"] is False and "no_such_table" in server.fields["query_error"]


async def test_a_refused_login_is_an_error_nothing_listening_is_unreachable(postgres) -> None:
    wrong = {"user": postgres.user, "password": "not-the-password"}
    samples = await run_poll(PLUGIN, {"port": postgres.primary.port}, target(credentials=wrong))
    assert status(samples)["status"] == "error"
    assert 'password authentication failed for user "vigie_probe"' in status(samples)["error"]
    assert "not-the-password" not in status(samples)["error"]
    samples = await run_poll(PLUGIN, {"port": free_tcp_port(), "timeout_s": 2}, target(credentials=_login(postgres)))
    assert status(samples)["status"] == "unreachable" and "Connection refused" in status(samples)["error"]


async def test_vigie_collect_takes_a_postgresql_url(postgres) -> None:
    url = f"postgresql://{postgres.user}:{postgres.password}@127.0.0.1:{postgres.primary.port}/app?databases=reports"
    code, lines, stderr = await asyncio.to_thread(vigie_collect, url)
    assert code == 0, stderr
    assert [line["measurement"] for line in lines] == ["postgresql_server", "postgresql_database", "collection"]
    assert postgres.password not in stderr
