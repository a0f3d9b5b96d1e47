"""The TLS probe against real HTTPS servers on loopback (trustme certificates): a certificate
expiring in 5 days raises a critical alert through the real alert engine and the probe's rules."""

from __future__ import annotations

import asyncio
import datetime as dt
from urllib.parse import urlsplit

from probes.tls import PLUGIN, TlsOptions

from .conftest import SERVER_NAME
from .helpers import context, engine, firing, free_tcp_port, of, run_poll, sink, status, target, vigie_collect


def _probe(fake, pki, **options):
    port = urlsplit(fake.url).port
    return PLUGIN.factory(TlsOptions(port=port, **options), context(clock=pki.now.timestamp))


async def _collect(probe, now: float):
    out = sink(now)
    await probe.collect(target(), out)
    (sample,) = of(out.samples, "tls_certificate")
    return out.samples, sample


async def test_a_certificate_expiring_in_5_days_raises_a_critical_alert(https_expiring, pki, tmp_path) -> None:
    probe = _probe(https_expiring, pki, server_name=SERVER_NAME, ca_bundle=pki.ca_file)
    samples, sample = await _collect(probe, pki.now.timestamp())
    assert sample.fields["expires_in_days"] == 5.0
    assert sample.fields["chain_valid"] is True and sample.fields["hostname_valid"] is True
    assert "Testing CA" in sample.fields["issuer"] and sample.tags["server_name"] == SERVER_NAME
    alerts = engine(tmp_path, PLUGIN)
    alerts.evaluate(samples, now=pki.now.timestamp())
    ((rule, severity, summary),) = firing(alerts)
    assert (rule, severity) == ("tls_certificate_expiry_critical", "critical")
    not_after = (pki.now + dt.timedelta(days=5)).isoformat()
    assert summary.startswith(f"probe-target: certificate of {SERVER_NAME}:{sample.tags['port']} expires in 5.0 days "
                              f"({not_after}, OU=Testing CA")


async def test_a_year_long_certificate_raises_nothing_and_20_days_is_a_warning(https, pki, tmp_path) -> None:
    probe = _probe(https, pki, server_name=SERVER_NAME, ca_bundle=pki.ca_file)
    samples, sample = await _collect(probe, pki.now.timestamp())
    assert sample.fields["expires_in_days"] == 365.0
    alerts = engine(tmp_path, PLUGIN)
    alerts.evaluate(samples, now=pki.now.timestamp())
    assert firing(alerts) == []
    # 345 days later (the probe's clock moved): 20 days left
    later = (pki.now + dt.timedelta(days=345)).timestamp()
    probe.clock = lambda: later
    samples, sample = await _collect(probe, later)
    alerts.evaluate(samples, now=later)
    assert [(rule, severity) for rule, severity, _ in firing(alerts)] == [("tls_certificate_expiring", "warning")]


async def test_an_unknown_ca_and_a_wrong_name_are_told_apart(https, pki, tmp_path) -> None:
    _, sample = await _collect(_probe(https, pki, server_name=SERVER_NAME), pki.now.timestamp())
    # the system's store does not know trustme's CA: the certificate is still read
    assert sample.fields["chain_valid"] is False and sample.fields["hostname_valid"] is True
    assert sample.fields["verify_error"] == "self-signed certificate in certificate chain"
    assert sample.fields["expires_in_days"] == 365.0
    samples, sample = await _collect(
        _probe(https, pki, server_name="other.vigie.test", ca_bundle=pki.ca_file), pki.now.timestamp()
    )
    assert sample.fields["chain_valid"] is True and sample.fields["hostname_valid"] is False
    alerts = engine(tmp_path, PLUGIN)
    alerts.evaluate(samples, now=pki.now.timestamp() + 300)
    alerts.evaluate([type(samples[0])(s.measurement, s.tags, s.fields, s.timestamp_ns + 300 * 10**9)
                     for s in samples], now=pki.now.timestamp() + 300)
    assert [rule for rule, _, _ in firing(alerts)] == ["tls_hostname_mismatch"]


async def test_nothing_listening_is_unreachable_and_plain_tcp_is_an_error() -> None:
    samples = await run_poll(PLUGIN, {"port": free_tcp_port()}, target())
    assert status(samples)["status"] == "unreachable" and of(samples, "tls_certificate") == []
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    try:
        samples = await run_poll(PLUGIN, {"port": server.sockets[0].getsockname()[1]}, target())
    finally:
        server.close()
        await server.wait_closed()
    assert status(samples)["status"] == "error"
    assert "TLS handshake failed" in status(samples)["error"]


async def test_vigie_collect_takes_a_tls_url(https, pki) -> None:
    port = urlsplit(https.url).port
    code, lines, stderr = await asyncio.to_thread(
        vigie_collect, f"tls://127.0.0.1:{port}?server_name={SERVER_NAME}&ca_bundle={pki.ca_file}"
    )
    assert code == 0, stderr
    assert [line["measurement"] for line in lines] == ["tls_certificate", "collection"]
    assert lines[0]["fields"]["chain_valid"] is True and lines[0]["fields"]["expires_in_days"] > 364
