"""The RDAP probe against an RDAP fake on loopback following RFC 9083's JSON (aiohttp): a domain
expiring in 20 days raises a warning; 404 for an unknown domain; 429 with Retry-After honoured."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest

from lab.rdap_fake import Domain, RdapFake
from probes.rdap import PLUGIN, RdapOptions

from .helpers import T0, context, engine, firing, of, sink, target, vigie_collect

NOW = dt.datetime.fromtimestamp(T0, dt.UTC)


@pytest.fixture
async def rdap() -> AsyncIterator[RdapFake]:
    fake = RdapFake({
        "ofdt.test": Domain(NOW + dt.timedelta(days=20), registrar="Gandi SAS"),
        "sintes-lab.test": Domain(NOW + dt.timedelta(days=400)),
        "no-expiry.test": Domain(None),
    })
    await fake.start()
    yield fake
    await fake.stop()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _probe(fake: RdapFake, clock: Clock, *domains: str, **options):
    return PLUGIN.factory(RdapOptions(domains=list(domains), base_url=fake.url, **options), context(clock=clock))


async def _collect(probe, now: float):
    out = sink(now)
    await probe.collect(target(), out)
    return out


async def test_a_domain_expiring_in_20_days_raises_a_warning(rdap, tmp_path) -> None:
    clock = Clock(T0)
    out = await _collect(_probe(rdap, clock, "ofdt.test", "sintes-lab.test", "no-expiry.test"), T0)
    fields = {s.tags["domain"]: s.fields for s in of(out.samples, "rdap_domain")}
    assert fields["ofdt.test"]["expires_in_days"] == 20.0
    assert fields["ofdt.test"]["expiration"] == (NOW + dt.timedelta(days=20)).isoformat()
    assert (fields["ofdt.test"]["registrar"], fields["ofdt.test"]["status"]) == ("Gandi SAS", "active")
    assert fields["no-expiry.test"]["registered"] is True and fields["no-expiry.test"]["expires_in_days"] is None
    alerts = engine(tmp_path, PLUGIN)
    alerts.evaluate(out.samples, now=T0)
    ((rule, severity, summary),) = firing(alerts)
    assert (rule, severity) == ("domain_expiring", "warning")
    assert summary.startswith("probe-target: domain ofdt.test expires in 20.0 days (")
    assert summary.endswith(", Gandi SAS)")


async def test_an_unknown_domain_is_not_registered_not_an_error(rdap, tmp_path) -> None:
    out = await _collect(_probe(rdap, Clock(T0), "dropped.test"), T0)
    assert out.errors == []
    (sample,) = of(out.samples, "rdap_domain")
    assert sample.fields["registered"] is False and sample.fields["expires_in_days"] is None
    alerts = engine(tmp_path, PLUGIN)
    alerts.evaluate(out.samples, now=T0)
    assert [(rule, severity) for rule, severity, _ in firing(alerts)] == [("domain_not_registered", "major")]


async def test_answers_are_kept_refresh_s_and_a_429_retry_after_is_honoured(rdap) -> None:
    clock = Clock(T0)
    probe = _probe(rdap, clock, "ofdt.test", refresh_s=3600)
    await _collect(probe, T0)
    clock.now = T0 + 600
    out = await _collect(probe, clock.now)
    assert len(rdap.requests) == 1  # kept: asked once
    (sample,) = of(out.samples, "rdap_domain")
    assert sample.fields["answer_age_s"] == 600.0 and sample.fields["expires_in_days"] < 20
    rdap.rate_limit(requests=1, retry_after_s=7200)
    clock.now = T0 + 3600
    out = await _collect(probe, clock.now)
    # the kept answer is still reported, the run is partial
    assert [s.tags["domain"] for s in of(out.samples, "rdap_domain")] == ["ofdt.test"]
    assert out.errors == [f"ofdt.test: {rdap.url}domain/ofdt.test: 429 Too Many Requests, retry after 7200 s"]
    clock.now = T0 + 3600 + 3600  # due again, but inside the server's Retry-After
    out = await _collect(probe, clock.now)
    assert len(rdap.requests) == 2 and "asked to wait 3600 s more" in out.errors[0]
    clock.now = T0 + 3600 + 7200
    out = await _collect(probe, clock.now)
    assert len(rdap.requests) == 3 and out.errors == []


async def test_a_first_answer_refused_is_an_error_of_the_run(rdap) -> None:
    rdap.rate_limit(requests=1, retry_after_s=30)
    with pytest.raises(Exception, match="429 Too Many Requests, retry after 30 s"):
        await _collect(_probe(rdap, Clock(T0), "ofdt.test"), T0)


async def test_vigie_collect_takes_an_rdap_url(rdap) -> None:
    code, lines, stderr = await asyncio.to_thread(vigie_collect, f"rdap://sintes-lab.test?base_url={rdap.url}")
    assert code == 0, stderr
    assert [line["measurement"] for line in lines] == ["rdap_domain", "collection"]
    # the subprocess's clock is the machine's: the date is what the server said
    assert lines[0]["fields"]["expiration"] == (NOW + dt.timedelta(days=400)).isoformat()
