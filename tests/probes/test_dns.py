"""The DNS probe against a real DNS server on a loopback UDP port (dnslib)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from lab.dns_fake import DnsFake
from probes.dns import PLUGIN, DnsOptions

from .helpers import T0, context, engine, firing, free_udp_port, of, run_poll, sink, status, target, vigie_collect

RECORDS = {
    ("app.ofdt.test", "A"): ["127.0.0.1", "127.0.0.2"],
    ("ofdt.test", "MX"): ["10 mail.ofdt.test."],
    ("ofdt.test", "TXT"): ['"v=spf1 -all"'],
}


@pytest.fixture
async def resolver() -> AsyncIterator[DnsFake]:
    fake = DnsFake(RECORDS)
    await fake.start()
    yield fake
    await fake.stop()


def _options(fake: DnsFake, *queries: dict, **more) -> dict:
    return {"queries": list(queries), "port": fake.address[1], "timeout_s": 1, **more}


async def test_answers_are_checked_against_what_is_expected(resolver) -> None:
    samples = await run_poll(PLUGIN, _options(
        resolver,
        {"name": "app.ofdt.test", "expect": ["127.0.0.2"]},
        {"name": "ofdt.test", "type": "mx", "expect": ["10 mail.ofdt.test"]},
        {"name": "ofdt.test", "type": "TXT", "expect": ["v=spf1 -all"]},
        {"name": "app.ofdt.test", "expect": ["192.0.2.1"]},
        {"name": "gone.ofdt.test"},
        {"name": "app.ofdt.test", "type": "AAAA"},
    ), target())
    assert status(samples)["status"] == "ok"
    got = [(s.tags["name"], s.tags["record_type"], s.fields["result"], s.fields["answers"], s.fields["error"])
           for s in of(samples, "dns_query")]
    assert got == [
        ("app.ofdt.test", "A", "ok", "127.0.0.1, 127.0.0.2", None),
        ("ofdt.test", "MX", "ok", "10 mail.ofdt.test", None),
        ("ofdt.test", "TXT", "ok", "v=spf1 -all", None),
        ("app.ofdt.test", "A", "mismatch", "127.0.0.1, 127.0.0.2", "expected 192.0.2.1 among the answers"),
        ("gone.ofdt.test", "A", "nxdomain", "", "answered NXDOMAIN"),
        ("app.ofdt.test", "AAAA", "empty", "", "no AAAA record"),
    ]
    first = of(samples, "dns_query")[0]
    assert first.tags["resolver"] == "127.0.0.1" and first.fields["latency_ms"] > 0
    assert first.fields["expected_match"] is True and first.fields["answer_count"] == 2


async def test_a_silent_resolver_beside_an_answering_one_is_a_timeout_not_an_error(resolver) -> None:
    resolver.set_silent(True)
    samples = await run_poll(PLUGIN, _options(resolver, {"name": "app.ofdt.test"}), target())
    assert status(samples)["status"] == "unreachable"  # the only resolver said nothing
    (sample,) = of(samples, "dns_query")
    assert sample.fields["result"] == "timeout" and sample.fields["latency_ms"] is None


async def test_a_changed_record_pages_after_two_minutes(resolver, tmp_path) -> None:
    probe = PLUGIN.factory(DnsOptions.model_validate(_options(resolver, {"name": "app.ofdt.test",
                                                                         "expect": ["127.0.0.1"]})), context())
    alerts = engine(tmp_path, PLUGIN)
    resolver.set_records("app.ofdt.test", "A", ["127.0.0.9"])
    for minute in range(3):
        out = sink(T0 + 60 * minute)
        await probe.collect(target(), out)
        alerts.evaluate(out.samples, now=T0 + 60 * minute)
    ((rule, severity, summary),) = firing(alerts)
    assert (rule, severity) == ("dns_query_failed", "major")
    assert summary == ("probe-target: 127.0.0.1 resolves app.ofdt.test A: mismatch "
                       "(expected 127.0.0.1 among the answers)")


def test_a_resolver_is_an_address() -> None:
    with pytest.raises(ValueError):
        DnsOptions.model_validate({"queries": [{"name": "x.test"}], "resolvers": ["dns.example"]})


async def test_vigie_collect_takes_a_dns_url(resolver) -> None:
    url = f"dns://127.0.0.1:{resolver.address[1]}/app.ofdt.test?type=A&expect=127.0.0.1"
    code, lines, stderr = await asyncio.to_thread(vigie_collect, url)
    assert code == 0, stderr
    assert [line["measurement"] for line in lines] == ["dns_query", "collection"]
    assert lines[0]["fields"]["result"] == "ok"


async def test_a_port_nobody_listens_on_is_unreachable() -> None:
    samples = await run_poll(PLUGIN, {"queries": [{"name": "x.test"}], "port": free_udp_port(), "timeout_s": 1},
                             target())
    assert status(samples)["status"] == "unreachable"
