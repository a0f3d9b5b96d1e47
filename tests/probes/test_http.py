"""The HTTP probe against real HTTP and HTTPS servers on loopback (trustme certificates)."""

from __future__ import annotations

import asyncio

import pytest

from probes.http import PLUGIN, HttpOptions

from .conftest import LOGINS, TOKENS
from .helpers import T0, context, engine, firing, free_tcp_port, of, run_poll, sink, status, target, vigie_collect


async def _one(options: dict, credentials: dict | None = None, expect: str = "ok") -> dict:
    samples = await run_poll(PLUGIN, options, target(credentials=credentials))
    assert status(samples)["status"] == expect, status(samples)
    (response,) = of(samples, "http_response")
    return dict(response.fields)


async def test_https_with_the_ca_bundle_a_body_regex_and_redirects_followed(https, pki) -> None:
    fields = await _one({"url": f"{https.url}/redirect/2", "ca_bundle": str(pki.ca_file), "body_regex": "<title>/</"})
    assert fields["result"] == "ok" and fields["status_code"] == 200 and fields["body_match"] is True
    assert fields["redirects"] == 2 and fields["final_url"] == f"{https.url}/"
    assert fields["latency_ms"] > 0 and fields["error"] is None


async def test_redirects_not_followed_report_the_3xx(https, pki) -> None:
    fields = await _one({"url": f"{https.url}/redirect/2", "ca_bundle": str(pki.ca_file), "follow_redirects": False})
    assert (fields["result"], fields["status_code"], fields["redirects"]) == ("ok", 302, 0)
    fields = await _one({"url": f"{https.url}/redirect/2", "ca_bundle": str(pki.ca_file), "follow_redirects": False,
                         "expect_status": [200]})
    assert (fields["result"], fields["error"]) == ("status_mismatch", "status 302, expected 200")


async def test_an_unknown_ca_is_a_tls_error_not_an_unreachable_server(https) -> None:
    fields = await _one({"url": f"{https.url}/"})  # the system's trust store does not know trustme's CA
    assert fields["result"] == "tls_error" and "certificate verify failed" in fields["error"]
    assert fields["status_code"] is None and fields["latency_ms"] is None


async def test_status_and_body_mismatches(http) -> None:
    fields = await _one({"url": f"{http.url}/status/503"})
    assert (fields["result"], fields["status_code"]) == ("status_mismatch", 503)
    assert fields["error"] == "status 503, expected < 400"
    fields = await _one({"url": f"{http.url}/health", "body_regex": "Welcome", "max_body_bytes": 16})
    assert fields["result"] == "body_mismatch" and fields["body_bytes"] == 16
    assert fields["error"] == "the first 16 bytes do not match 'Welcome'"


async def test_basic_and_bearer_auth_come_from_the_device_credentials(http) -> None:
    (user, password), token = next(iter(LOGINS.items())), next(iter(TOKENS))
    basic = {"url": f"{http.url}/basic", "auth": "basic"}
    assert (await _one(basic, {"username": user, "password": password}))["status_code"] == 200
    assert (await _one(basic, {"username": user, "password": "wrong-pass"}))["status_code"] == 401
    bearer = {"url": f"{http.url}/bearer", "auth": "bearer"}
    # another collector's keys beside the token (one secret for the device) are left alone
    assert (await _one(bearer, {"token": token, "community": "public"}))["status_code"] == 200
    samples = await run_poll(PLUGIN, bearer, target(credentials={"username": user}))
    assert status(samples)["status"] == "error"
    assert status(samples)["error"] == "auth bearer needs token in the device's credentials"
    assert of(samples, "http_response") == []


async def test_a_client_certificate_is_presented(https, pki, tmp_path) -> None:
    options = {"url": f"{https.url}/client-cert", "ca_bundle": str(pki.ca_file)}
    assert (await _one(options))["status_code"] == 403
    with_cert = {**options, "client_cert": str(pki.client_files(tmp_path))}
    assert (await _one(with_cert))["status_code"] == 200


async def test_nothing_listening_is_unreachable_with_its_sample(tmp_path) -> None:
    samples = await run_poll(PLUGIN, {"url": f"http://127.0.0.1:{free_tcp_port()}/"}, target())
    assert status(samples)["status"] == "unreachable"
    (response,) = of(samples, "http_response")
    assert response.fields["result"] == "connection_failed"


async def test_a_failing_check_pages_through_the_default_rule(http, tmp_path) -> None:
    probe = PLUGIN.factory(HttpOptions(url=f"{http.url}/status/500"), context())
    alerts = engine(tmp_path, PLUGIN)
    for minute in range(3):
        out = sink(T0 + 60 * minute)
        await probe.collect(target(), out)
        alerts.evaluate(out.samples, now=T0 + 60 * minute)
    ((rule, severity, summary),) = firing(alerts)
    assert (rule, severity) == ("http_check_failed", "critical")
    assert summary == f"probe-target: {http.url}/status/500 answers status_mismatch (status 500, expected < 400)"


@pytest.mark.parametrize(
    "bad",
    [
        {"url": "ftp://host/"},
        {"url": "https://user:pw@host/"},
        {"url": "https://host/", "headers": {"Authorization": "Basic eA=="}},
        {"url": "https://host/", "client_key": "/k.pem"},
        {"url": "https://host/", "body_regex": "("},
    ],
)
def test_options_that_cannot_be_meant_are_refused(bad) -> None:
    with pytest.raises(ValueError):
        HttpOptions.model_validate(bad)


def test_an_unreadable_ca_bundle_refuses_the_config(tmp_path) -> None:
    with pytest.raises(ValueError, match="TLS files"):
        PLUGIN.factory(HttpOptions(url="https://host/", ca_bundle=tmp_path / "missing.pem"), context())


async def test_vigie_collect_takes_an_http_url(http) -> None:
    # the server runs in this test's event loop: the subprocess must not block it
    code, lines, stderr = await asyncio.to_thread(vigie_collect, f"{http.url}/health")
    assert code == 0, stderr
    assert [line["measurement"] for line in lines] == ["http_response", "collection"]
    assert lines[0]["tags"]["url"] == f"{http.url}/health" and lines[0]["fields"]["status_code"] == 200
