"""The TCP probe against loopback: a listening port, a refused one, a silent host (a namespace)."""

from __future__ import annotations

import asyncio

from probes.tcp import PLUGIN, TcpOptions

from .conftest import SILENT, collect_in
from .helpers import T0, context, engine, firing, free_tcp_port, of, run_poll, sink, status, target, vigie_collect


async def test_an_open_port_has_its_latency_a_refused_one_is_down_and_pages() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    open_port = server.sockets[0].getsockname()[1]
    closed_port = free_tcp_port()
    try:
        samples = await run_poll(PLUGIN, {"ports": [open_port, closed_port], "timeout_s": 2}, target())
    finally:
        server.close()
        await server.wait_closed()
    assert status(samples)["status"] == "ok"  # a refused port is an answer: the host is there
    by_port = {s.tags["port"]: s.fields for s in of(samples, "tcp_port")}
    assert by_port[str(open_port)]["status"] == "up" and by_port[str(open_port)]["connect_ms"] > 0
    assert by_port[str(closed_port)] == {
        "status": "down", "outcome": "refused", "connect_ms": None, "error": "connection refused"
    }


async def test_a_refused_port_fires_tcp_port_down_after_two_minutes(tmp_path) -> None:
    probe = PLUGIN.factory(TcpOptions(ports=[free_tcp_port()]), context())
    alerts = engine(tmp_path, PLUGIN)
    for minute in range(3):
        out = sink(T0 + 60 * minute)
        await probe.collect(target(), out)
        alerts.evaluate(out.samples, now=T0 + 60 * minute)
    ((rule, severity, summary),) = firing(alerts)
    assert (rule, severity) == ("tcp_port_down", "major")
    assert "does not accept connections (refused)" in summary


def test_the_options_refuse_what_they_cannot_mean() -> None:
    for bad in ({"ports": []}, {"ports": [0]}, {"ports": [22], "timeout_s": True}, {"ports": [22], "colour": 1}):
        try:
            TcpOptions.model_validate(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad}")


def test_vigie_collect_takes_a_tcp_url() -> None:
    port = free_tcp_port()
    code, lines, stderr = vigie_collect(f"tcp://127.0.0.1?ports={port}&timeout_s=2")
    assert code == 0, stderr
    assert [line["measurement"] for line in lines] == ["tcp_port", "collection"]
    assert lines[0]["fields"]["outcome"] == "refused"


def test_a_silent_host_is_unreachable_with_every_port_reported(netns) -> None:
    code, lines = collect_in(netns, f"tcp://{SILENT}?ports=22,443&timeout_s=0.5")
    assert code == 1
    assert [(line["tags"].get("port"), line["fields"]["status"]) for line in lines] == [
        ("22", "down"), ("443", "down"), (None, "unreachable")
    ]
    assert lines[0]["fields"]["outcome"] == "silent"
