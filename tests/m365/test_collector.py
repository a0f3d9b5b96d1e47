"""The m365 collector against the fake Entra ID + Graph, driven by MSAL: every part read across
several pages, then each of Graph's and Entra ID's failures named in the collection status."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from alerting.engine import AlertEngine
from collectors.m365 import ISSUES, PLUGIN, SECURITY_ALERTS, SKUS, M365Options
from lab.graph_fake import GraphFake, Tenant
from tests.metrics_doc import check, documented

from .conftest import Pki
from .helpers import Waits, collector, of, options, run, status


async def test_a_tenant_read_across_pages(fake: GraphFake, pki: Pki, tenant: Tenant) -> None:
    samples = await run(collector(options(fake, pki.ca_file)))
    assert status(samples) == ("ok", None)
    services = {s.tags["service"]: s.fields for s in of(samples, "m365_service")}
    assert len(services) == 6 and services["Exchange Online"]["status"] == "serviceOperational"
    assert services["Exchange Online"]["healthy"] is True and services["Exchange Online"]["service_id"] == "Exchange"
    issues = {s.tags["issue_id"]: s for s in of(samples, "m365_issue")}
    assert len(issues) == 3 and fake.graph_requests(ISSUES) == 2  # 3 issues, pages of 2
    teams = next(s for s in issues.values() if s.tags["service"] == "Microsoft Teams")
    assert teams.tags["classification"] == "incident" and teams.fields["is_resolved"] is True
    assert teams.fields["title"] == "Users can't join meetings" and teams.fields["status"] == "serviceRestored"
    assert teams.fields["end"] - teams.fields["start"] == pytest.approx(3600, abs=2)
    sharepoint = issues["SP555111"]  # PascalCase in, camelCase out
    assert sharepoint.tags["classification"] == "incident" and sharepoint.fields["status"] == "serviceDegradation"
    assert sharepoint.fields["end"] is None and sharepoint.fields["impact"] == "Search results may be delayed."
    licences = {s.tags["sku"]: s.fields for s in of(samples, "m365_license")}
    assert licences["SPE_E3"] == {"consumed": 504, "prepaid": 505, "available": 1, "suspended": 0, "warning": 0,
                                  "capability_status": "enabled"}
    assert fake.graph_requests(SKUS) == 2  # 3 SKUs
    (sync,) = of(samples, "m365_sync")
    assert sync.fields["enabled"] is True and 0 <= sync.fields["last_sync_age_s"] <= 1800
    alerts = {s.tags["alert_id"]: s.fields for s in of(samples, "m365_security_alert")}
    assert set(alerts) == {"da637542910", "da637542911", "da637542912"}  # the 30-day-old one is out of the window
    assert alerts["da637542910"]["severity"] == "high" and alerts["da637542910"]["is_resolved"] is False
    assert tenant.token_requests == 1


async def test_the_default_rules_on_the_public_body(fake: GraphFake, pki: Pki, tmp_path: Path) -> None:
    samples = await run(collector(options(fake, pki.ca_file)))
    engine = AlertEngine(str(tmp_path / "alerts.db"), PLUGIN.default_rules(), clock=time.time)
    engine.evaluate(samples, time.time())
    firing = sorted((a.rule, a.summary) for a in engine.firing())
    assert firing == [
        ("m365_licenses_low", "EMS: 0 licence(s) left (100 of 100 assigned)"),
        ("m365_licenses_low", "SPE_E3: 1 licence(s) left (504 of 505 assigned)"),
        ("m365_security_alert", "Microsoft Defender (microsoftDefenderForEndpoint): high alert Malware detected (0)"),
        ("m365_security_alert", "Microsoft Defender (microsoftDefenderForEndpoint): medium alert Malware detected (2)"),
    ]  # SharePoint's incident is not Exchange's nor Teams'; the Exchange advisory is not an incident


async def test_the_token_is_cached_until_graph_says_it_expired(fake: GraphFake, pki: Pki, tenant: Tenant) -> None:
    m365 = collector(options(fake, pki.ca_file))
    for _ in range(3):
        assert status(await run(m365)) == ("ok", None)
    assert tenant.token_requests == 1  # MSAL's cache: a 3599 s token serves every run
    fake.expire_tokens()  # Graph refuses it while MSAL still holds it valid: one new token, the run goes on
    assert status(await run(m365)) == ("ok", None)
    assert tenant.token_requests == 2
    assert fake.requests.count("GET /84841066-274d-4ec0-a5c1-276be684bdd3/v2.0/.well-known/openid-configuration") == 1


async def test_a_token_near_its_expiry_is_not_reused(fake: GraphFake, pki: Pki, tenant: Tenant) -> None:
    fake.token_lifetime_s = 240  # under MSAL's 5-minute margin: expired for MSAL as soon as issued
    m365 = collector(options(fake, pki.ca_file))
    assert status(await run(m365)) == ("ok", None)
    assert status(await run(m365)) == ("ok", None)
    assert tenant.token_requests == 2


async def test_a_bad_client_secret_is_entra_ids_error(fake: GraphFake, pki: Pki) -> None:
    state, error = status(await run(collector(options(fake, pki.ca_file)), secret="wrong"))
    assert state == "error"
    assert error.startswith("Entra ID refused a token to client 5e8f5c1d-2b0a-4d3e-9f1a-1c2b3d4e5f60 of tenant ")
    assert "invalid_client: AADSTS7000215: Invalid client secret provided" in error
    assert fake.graph_requests("/subscribedSkus") == 0


async def test_an_unknown_application_and_an_unknown_tenant(fake: GraphFake, pki: Pki) -> None:
    other_app = options(fake, pki.ca_file, client_id="00000000-0000-0000-0000-000000000001")
    state, error = status(await run(collector(other_app)))
    assert state == "error" and "unauthorized_client: AADSTS700016" in error
    other_tenant = options(fake, pki.ca_file, tenant_id="contoso.onmicrosoft.com")
    state, error = status(await run(collector(other_tenant)))
    assert state == "error" and "AADSTS90002" in error and "contoso.onmicrosoft.com" in error


async def test_missing_credentials_are_named_without_the_secret(fake: GraphFake, pki: Pki) -> None:
    state, error = status(await run(collector(options(fake, pki.ca_file)), secret=""))
    assert (state, error) == ("error", "m365 needs client_secret in the device's credentials")


async def test_a_429_storm_is_waited_out_as_retry_after_says(fake: GraphFake, pki: Pki) -> None:
    waits = Waits()
    fake.answer_next(3, 429, retry_after="7")
    samples = await run(collector(options(fake, pki.ca_file, max_retry_wait_s=60), waits))
    assert status(samples) == ("ok", None)
    assert waits.asked == [7.0, 7.0, 7.0]
    assert len(of(samples, "m365_service")) == 6


async def test_503_with_retry_after_then_without(fake: GraphFake, pki: Pki) -> None:
    waits = Waits()
    fake.answer_next(1, 503, retry_after="2")
    fake.answer_next(2, 503)  # no Retry-After: 2 s then 4 s (the second and third retries of that request)
    assert status(await run(collector(options(fake, pki.ca_file, max_retry_wait_s=60), waits))) == ("ok", None)
    assert waits.asked == [2.0, 2.0, 4.0]


async def test_a_storm_longer_than_the_retries_fails_that_part_only(fake: GraphFake, pki: Pki) -> None:
    waits = Waits()
    fake.answer_next(4, 429, retry_after="1")  # the first call and its 3 retries
    samples = await run(collector(options(fake, pki.ca_file), waits))
    state, error = status(samples)
    assert state == "partial"
    assert error == ("/admin/serviceAnnouncement/healthOverviews: HTTP 429 TooManyRequests: Scripted failure of the "
                     "fake. (3 retries, Retry-After 1 s)")
    assert waits.asked == [1.0, 1.0, 1.0]
    assert of(samples, "m365_license") and of(samples, "m365_sync")  # the other parts were read


async def test_a_retry_after_beyond_the_budget_is_not_waited(fake: GraphFake, pki: Pki) -> None:
    waits = Waits()
    fake.answer_next(1, 429, retry_after="120")
    state, error = status(await run(collector(options(fake, pki.ca_file, max_retry_wait_s=60), waits)))
    assert state == "partial" and "HTTP 429 TooManyRequests" in error and "Retry-After 120 s)" in error
    assert waits.asked == []
    fake.answer_next(1, 429, retry_after="6")  # over the default budget of 5 s: the next poll will do
    state, error = status(await run(collector(options(fake, pki.ca_file), waits)))
    assert state == "partial" and "(0 retries, Retry-After 6 s)" in error
    assert waits.asked == []


async def test_a_missing_permission_is_named(fake: GraphFake, pki: Pki, tenant: Tenant) -> None:
    tenant.permissions.discard("Organization.Read.All")
    samples = await run(collector(options(fake, pki.ca_file)))
    state, error = status(samples)
    assert state == "partial"
    assert error == (
        "/subscribedSkus: HTTP 403 Authorization_RequestDenied: Insufficient privileges to complete the operation.: "
        "the application lacks the application permission Organization.Read.All (admin consent); "
        "/organization: HTTP 403 Authorization_RequestDenied: Insufficient privileges to complete the operation.: "
        "the application lacks the application permission Organization.Read.All (admin consent)"
    )
    assert of(samples, "m365_service") and of(samples, "m365_security_alert")


async def test_every_permission_missing_is_an_error(fake: GraphFake, pki: Pki, tenant: Tenant) -> None:
    tenant.permissions.clear()
    state, error = status(await run(collector(options(fake, pki.ca_file))))
    assert state == "error"
    for permission in ("ServiceHealth.Read.All", "Organization.Read.All", "SecurityAlert.Read.All"):
        assert f"lacks the application permission {permission}" in error


async def test_a_tenant_without_defender_says_so_and_the_rest_is_read(
    fake: GraphFake, pki: Pki, tenant: Tenant
) -> None:
    tenant.defender = False
    samples = await run(collector(options(fake, pki.ca_file)))
    state, error = status(samples)
    assert state == "partial" and error.startswith("/security/alerts_v2: HTTP 403 Forbidden")
    assert "SecurityAlert.Read.All, or the tenant has no Microsoft Defender licence" in error
    assert of(samples, "m365_license") and not of(samples, "m365_security_alert")
    # told not to ask, the run is whole and Defender is never called
    asked = fake.graph_requests(SECURITY_ALERTS)
    assert status(await run(collector(options(fake, pki.ca_file, security_alerts=False)))) == ("ok", None)
    assert fake.graph_requests(SECURITY_ALERTS) == asked


async def test_a_500_and_malformed_json(fake: GraphFake, pki: Pki) -> None:
    fake.answer_next(1, 500)
    state, error = status(await run(collector(options(fake, pki.ca_file))))
    assert state == "partial"
    assert error == ("/admin/serviceAnnouncement/healthOverviews: HTTP 500 InternalServerError: Scripted failure of "
                     "the fake.")
    fake.answer_next(1, 200, malformed=True)
    state, error = status(await run(collector(options(fake, pki.ca_file))))
    assert state == "partial" and error.startswith("/admin/serviceAnnouncement/healthOverviews: malformed JSON (")


async def test_a_slow_graph_is_no_answer_within_the_timeout(fake: GraphFake, pki: Pki) -> None:
    fake.delay_s = 1.0
    started = time.monotonic()
    state, error = status(await run(collector(options(fake, pki.ca_file, timeout_s=0.2))))
    assert (state, error) == ("unreachable", "/admin/serviceAnnouncement/healthOverviews: no answer within 0.2 s")
    assert time.monotonic() - started < 1.0


async def test_graph_down(fake: GraphFake, pki: Pki) -> None:
    waits = Waits()
    fake.down = True
    state, error = status(await run(collector(options(fake, pki.ca_file, max_retry_wait_s=60), waits)))
    assert state == "error"
    assert error.startswith("/admin/serviceAnnouncement/healthOverviews: HTTP 503 ServiceUnavailable: The service is "
                            "currently unavailable. (3 retries); /subscribedSkus: HTTP 503")
    assert waits.asked == [1.0, 2.0, 4.0, 1.0, 2.0, 4.0, 1.0, 2.0, 4.0, 1.0, 2.0, 4.0]


async def test_nobody_listening_and_an_untrusted_certificate(fake: GraphFake, pki: Pki) -> None:
    closed = options(fake, pki.ca_file, authority_url="https://127.0.0.1:9", graph_url="https://127.0.0.1:9")
    state, error = status(await run(collector(closed)))
    assert state == "unreachable" and error.startswith("127.0.0.1:9: ") and "refused" in error.lower()
    untrusted = options(fake, pki.ca_file).model_copy(update={"ca_bundle": None})
    state, error = status(await run(collector(untrusted)))
    assert state == "unreachable" and "TLS" in error and "CERTIFICATE_VERIFY_FAILED" in error


async def test_instance_discovery_asked_of_the_authority(fake: GraphFake, pki: Pki) -> None:
    opts = options(fake, pki.ca_file, instance_discovery_url=f"{fake.url}/common/discovery/instance")
    assert status(await run(collector(opts))) == ("ok", None)
    assert fake.requests[:3] == [
        "GET /common/discovery/instance",
        "GET /84841066-274d-4ec0-a5c1-276be684bdd3/v2.0/.well-known/openid-configuration",
        "POST /84841066-274d-4ec0-a5c1-276be684bdd3/oauth2/v2.0/token",
    ]


async def test_an_exchange_incident_fires_and_resolves_when_microsoft_closes_it(
    fake: GraphFake, pki: Pki, tenant: Tenant, tmp_path: Path
) -> None:
    m365 = collector(options(fake, pki.ca_file))
    engine = AlertEngine(str(tmp_path / "alerts.db"), PLUGIN.default_rules(), clock=time.time)
    issue_id = tenant.open_incident("Exchange Online", time.time(), title="Some users can't send mail")
    engine.evaluate(await run(m365), time.time())
    incidents = [a for a in engine.firing() if a.rule == "m365_incident"]
    assert [(a.severity, a.summary) for a in incidents] == [
        ("major", f"Exchange Online: Microsoft incident {issue_id}: Some users can't send mail")
    ]
    samples = await run(m365)
    exchange = next(s for s in of(samples, "m365_service") if s.tags["service"] == "Exchange Online")
    assert exchange.fields["status"] == "serviceDegradation" and exchange.fields["healthy"] is False
    tenant.resolve(issue_id, time.time())
    transitions = engine.evaluate(await run(m365), time.time())
    assert [(t.alert.rule, t.state) for t in transitions] == [("m365_incident", "resolved")]


async def test_a_stale_sync_fires_and_a_cloud_only_tenant_never(
    fake: GraphFake, pki: Pki, tenant: Tenant, tmp_path: Path
) -> None:
    m365 = collector(options(fake, pki.ca_file))
    engine = AlertEngine(str(tmp_path / "alerts.db"), PLUGIN.default_rules(), clock=time.time)
    tenant.last_sync = time.time() - 4 * 3600
    samples = await run(m365)
    (sync,) = of(samples, "m365_sync")
    assert sync.fields["last_sync_age_s"] == pytest.approx(4 * 3600, abs=5)
    engine.evaluate(samples, time.time())
    assert [a.rule for a in engine.firing() if a.rule == "m365_sync_stale"] == ["m365_sync_stale"]
    tenant.sync_enabled, tenant.last_sync = None, None  # never synced: Graph's nulls
    samples = await run(m365)
    (sync,) = of(samples, "m365_sync")
    assert sync.fields == {"enabled": None, "last_sync": None, "last_sync_age_s": None}


def test_options_are_refused_without_io() -> None:
    base = {"tenant_id": "contoso.onmicrosoft.com", "client_id": "5e8f5c1d-2b0a-4d3e-9f1a-1c2b3d4e5f60"}
    M365Options.model_validate(base)
    for bad, field in (
        ({"authority_url": "http://127.0.0.1:8443"}, "authority_url"),
        ({"client_id": "not-a-guid"}, "client_id"),
        ({"timeout_s": True}, "timeout_s"),
        ({"tenant": "x"}, "tenant"),
    ):
        with pytest.raises(ValueError, match=field):
            M365Options.model_validate({**base, **bad})
    with pytest.raises(ValueError, match="ca_bundle"):
        collector(M365Options.model_validate({**base, "ca_bundle": "/nonexistent/ca.pem"}))


async def test_every_field_is_documented_with_its_type(fake: GraphFake, pki: Pki) -> None:
    tables = documented("m365")
    samples = [s for s in await run(collector(options(fake, pki.ca_file))) if s.measurement.startswith("m365_")]
    assert {s.measurement for s in samples} == set(tables)
    check(samples, tables)


async def test_entra_id_throttling_the_token_request(fake: GraphFake, pki: Pki, tenant: Tenant) -> None:
    fake.refuse_tokens(1, 429, retry_after="0")
    fake.refuse_tokens(1, 503, retry_after="0")
    m365 = collector(options(fake, pki.ca_file))
    state, error = status(await run(m365))
    assert state == "error" and error.endswith(": temporarily_unavailable: AADSTS50089: The service is temporarily "
                                               "unavailable. Retry the request later.")
    state, error = status(await run(m365))
    assert state == "error" and error.endswith(": token endpoint: HTTP Error: 503")
    assert fake.graph_requests("/subscribedSkus") == 0
    assert status(await run(m365)) == ("ok", None)  # the next poll gets its token
    assert tenant.token_requests == 3


async def test_an_item_without_its_id_is_left_out_and_said(fake: GraphFake, pki: Pki, tenant: Tenant) -> None:
    tenant.recorded["/subscribedSkus"] = [{"skuPartNumber": "SPE_E3", "consumedUnits": 3, "prepaidUnits": {}},
                                          {"consumedUnits": 1}]
    samples = await run(collector(options(fake, pki.ca_file)))
    assert status(samples) == ("partial", "/subscribedSkus: 1 item(s) without an id or a name left out")
    (licence,) = of(samples, "m365_license")
    assert licence.fields["consumed"] == 3 and licence.fields["prepaid"] is None and licence.fields["available"] is None


async def test_a_next_page_elsewhere_is_not_followed(fake: GraphFake, pki: Pki) -> None:
    fake.link_host = "127.0.0.2:8443"  # never asked: the token would go with the request
    state, error = status(await run(collector(options(fake, pki.ca_file))))
    assert state == "partial"  # the organization is one page: read
    assert "/subscribedSkus: @odata.nextLink 'https://127.0.0.2:8443/v1.0/subscribedSkus?" in error
    assert "is not a URL of 127.0.0.1:" in error
    assert fake.graph_requests(SKUS) == 1  # its first page only
