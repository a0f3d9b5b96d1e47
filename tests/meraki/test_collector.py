"""The Meraki collector, with the official SDK, against the fake Dashboard on loopback: paging over
several pages, piggyback samples onto the inventory's APs, and every way the Dashboard fails —
each collection status names its cause, and a broken organization holds nobody else's poll."""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from agent.api import Sample
from alerting.engine import AlertEngine
from collectors.meraki import PLUGIN
from lab.meraki_fake import MerakiFake
from tests.e2e.helpers import ROOT

from .helpers import API_KEY, CLIENT, ORG_ID, of, options, organization, poll, scheduler, status


@pytest.fixture
async def fake() -> AsyncIterator[MerakiFake]:
    server = MerakiFake([organization()], {API_KEY: [ORG_ID], "other-org-key": ["999"]})
    await server.start()
    yield server
    await server.stop()


async def run(fake: MerakiFake, **more: object) -> list[Sample]:
    one = poll(PLUGIN, options(fake.url, **more))
    return await scheduler(PLUGIN, [one]).run_poll(one)


async def test_one_poll_pages_through_the_organization_and_lands_on_the_inventory(fake: MerakiFake) -> None:
    samples = await run(fake)
    assert status(samples)["status"] == "ok", status(samples)
    # 9 devices at perPage=3: three pages of statuses, three of wireless clients (8 APs)
    assert fake.count("/devices/statuses") == 3 and fake.count("/wireless/clients/overview/byDevice") == 3
    assert all(seen.status == 200 for seen in fake.requests)
    devices = {s.tags["serial"]: s for s in of(samples, "meraki_device")}
    assert len(devices) == 9
    ap1 = devices["Q2MD-0001-AP00"]
    assert (ap1.tags["device"], ap1.tags["site"], ap1.tags["vigie_site"]) == ("ap-siege-01", "siege", "siege")
    assert ap1.fields["status"] == "online" and ap1.fields["wireless_clients"] == 1
    assert ap1.fields["last_reported_age_s"] is not None and ap1.fields["last_reported_age_s"] < 60
    ap5 = devices["Q2MD-0005-AP00"]  # not in the inventory: reported on the polled device
    assert (ap5.tags["device"], ap5.tags["name"]) == ("meraki", "ap-siege-05")
    mx = devices["Q2XX-MX00-0001"]
    assert mx.fields["wireless_clients"] is None and "vigie_site" not in mx.tags
    uplinks = {s.tags["interface"]: s.fields for s in of(samples, "meraki_uplink")}
    assert uplinks["wan1"]["status"] == "active" and uplinks["wan1"]["loss_percent"] == 12.5
    assert uplinks["cellular"] == {**uplinks["cellular"], "status": "ready", "active": False, "loss_percent": None}
    networks = {s.tags["network"]: s.fields for s in of(samples, "meraki_network")}
    assert networks["Siège VSGP"] == {"devices": 8, "online": 8, "alerting": 0, "offline": 0, "dormant": 0,
                                      "wireless_clients": 36}
    assert networks["Médiathèque"]["wireless_clients"] is None
    neighbors = of(samples, "meraki_neighbor")
    assert len(neighbors) == 5  # neighbors_per_poll: the rest on the next polls
    assert {n.fields["system_name"] for n in neighbors} == {"sw-siege-01"}
    (org,) = of(samples, "meraki_organization")
    assert org.fields["api_requests"] == len(fake.requests) == 14 and org.fields["api_rate_limited"] == 0


async def test_neighbours_are_asked_a_few_per_poll_and_networks_once_an_hour(fake: MerakiFake) -> None:
    one = poll(PLUGIN, options(fake.url, neighbors_per_poll=3))
    agent = scheduler(PLUGIN, [one])
    first = await agent.run_poll(one)
    second = await agent.run_poll(one)
    assert fake.count("/networks") == 1 and fake.count("/lldpCdp") == 6
    assert len(of(first, "meraki_neighbor")) == 3 and len(of(second, "meraki_neighbor")) == 6


async def test_an_offline_ap_is_an_alert_held_back_while_its_switch_is_unreachable(
    fake: MerakiFake, tmp_path: Path
) -> None:
    for device in fake.orgs[ORG_ID].devices[:2]:
        device.status = "offline"
        device.last_reported_at = None
    samples = await run(fake)
    now = time.time()
    switch_down = Sample("collection", {"client": CLIENT, "site": "siege", "device": "sw-siege-02"},
                         {"status": "unreachable"}, int(now * 1e9))
    engine = AlertEngine(str(tmp_path / "alerts.db"), PLUGIN.default_rules(), clock=lambda: now,
                         parents={(CLIENT, "ap-siege-02"): "sw-siege-02"})
    engine.evaluate([*samples, switch_down], now)
    later = now + 301
    engine.evaluate([*samples, Sample(switch_down.measurement, switch_down.tags, switch_down.fields,
                                      int(later * 1e9))], later)
    firing = sorted((a.rule, a.labels["device"]) for a in engine.firing())
    # ap-siege-02 is held back by its parent; the MX's 12.5 % loss on wan1 is an alert of its own
    assert firing == [("meraki_ap_offline", "ap-siege-01"), ("meraki_uplink_loss", "meraki")]
    engine.close()


@pytest.mark.parametrize(
    ("key", "org", "said"),
    [
        ("wrong-key", ORG_ID, "HTTP 401 — the API key is missing, wrong or revoked"),
        ("other-org-key", ORG_ID, "HTTP 404 — the organization does not exist, this API key cannot see it"),
        (API_KEY, "123", "HTTP 404 — the organization does not exist"),
    ],
)
async def test_a_refused_key_or_an_invisible_organization_is_named(
    fake: MerakiFake, key: str, org: str, said: str
) -> None:
    one = poll(PLUGIN, {**options(fake.url), "organization_id": org}, key=key)
    result = status(await scheduler(PLUGIN, [one]).run_poll(one))
    assert result["status"] == "error" and said in result["error"], result
    assert "/devices/statuses (getOrganizationDevicesStatuses)" in result["error"]


async def test_a_key_revoked_between_polls_and_a_forbidden_call_are_named(fake: MerakiFake) -> None:
    one = poll(PLUGIN, options(fake.url, neighbors_per_poll=0))
    agent = scheduler(PLUGIN, [one])
    assert status(await agent.run_poll(one))["status"] == "ok"
    fake.fail_next(1, 403, "/devices/statuses")  # e.g. the Dashboard's "unauthorized IP address"
    result = status(await agent.run_poll(one))
    assert result["status"] == "error" and "HTTP 403 — this API key's administrator has no read access" in (
        result["error"]), result
    fake.revoke(API_KEY)
    result = status(await agent.run_poll(one))
    assert result["status"] == "error" and "/devices/statuses" in result["error"] and "HTTP 401" in result["error"]


async def test_an_organization_with_api_access_disabled_says_so(fake: MerakiFake) -> None:
    fake.orgs[ORG_ID].api_enabled = False
    result = status(await run(fake))
    assert result["status"] == "error" and "API access is disabled" in result["error"], result


async def test_a_short_429_storm_is_waited_out(fake: MerakiFake) -> None:
    fake.rate_limit_storm(1.2, retry_after_s=1)
    samples = await run(fake, neighbors_per_poll=0)
    assert status(samples)["status"] == "ok", status(samples)
    (org,) = of(samples, "meraki_organization")
    limited = [seen for seen in fake.requests if seen.status == 429]
    assert limited and org.fields["api_rate_limited"] == len(limited) and org.fields["api_wait_s"] >= 0.9
    after = fake.requests[len(limited)]
    assert after.status == 200 and after.at - limited[-1].at >= 0.9  # Retry-After: 1 was honoured


async def test_a_long_retry_after_holds_every_poll_of_the_organization(fake: MerakiFake) -> None:
    fake.rate_limit_storm(60, retry_after_s=30)
    first, second = poll(PLUGIN, options(fake.url)), poll(PLUGIN, options(fake.url), device="meraki-2")
    agent = scheduler(PLUGIN, [first, second])
    started = time.monotonic()
    result = status(await agent.run_poll(first))
    assert result["status"] == "error" and "HTTP 429 — rate limited" in result["error"], result
    asked = len(fake.requests)
    result = status(await agent.run_poll(second))  # another device, same organization: not even asked
    assert result["status"] == "error" and "not asked, HTTP 429 rate limited" in result["error"], result
    assert len(fake.requests) == asked == 1 and time.monotonic() - started < 5


async def test_polls_of_one_organization_share_its_budget(fake: MerakiFake) -> None:
    """Four devices polling one organization at once stay under the Dashboard's own 10 calls/s
    (burst 10): the budget's burst is kept small, as a request may reach the Dashboard later than
    it took its slot, and the bucket refills meanwhile."""
    opts = options(fake.url, per_page=1000, neighbors_per_poll=0)  # 9 calls/s, burst 3
    polls = [poll(PLUGIN, opts, device=f"meraki-{i}") for i in range(4)]
    agent = scheduler(PLUGIN, polls)
    results = await asyncio.gather(*(agent.run_poll(p) for p in polls))
    assert [status(r)["status"] for r in results] == ["ok"] * 4
    # unshared, the 20 calls would go at once and half would be 429s; shared, none is, bar one or
    # two when a loaded machine delays a request after it took its slot (then waited out)
    limited = [s for s in fake.requests if s.status == 429]
    assert len(limited) <= 2 and len(fake.requests) == 20 + len(limited)
    spread = fake.requests[-1].at - fake.requests[0].at
    assert spread >= 1.5  # the budget paced them: 17 calls after the burst of 3, at 9/s


async def test_a_failing_part_makes_the_poll_partial_and_a_failing_status_call_an_error(fake: MerakiFake) -> None:
    fake.fail_next(1)  # the SDK asks again after 1 s
    assert status(await run(fake, neighbors_per_poll=0))["status"] == "ok"
    fake.fail_next(2, 503, "/networks")  # twice: the networks are a part
    result = status(await run(fake, neighbors_per_poll=0))
    assert result["status"] == "partial" and result["error"].startswith("networks: GET /organizations/549236/networks")
    fake.fail_next(2, 503)  # the device statuses twice: the poll fails, naming the call
    result = status(await run(fake, neighbors_per_poll=0))
    assert result["status"] == "error" and "/devices/statuses" in result["error"] and "HTTP 503" in result["error"]


async def test_a_wireless_clients_failure_leaves_the_statuses(fake: MerakiFake) -> None:
    fake.fail_next(2, 500, "/wireless/clients/overview/byDevice")
    samples = await run(fake, neighbors_per_poll=0)
    result = status(samples)
    assert result["status"] == "partial", result
    assert result["error"].startswith("wireless clients: GET /organizations/549236/wireless/clients/overview/byDevice")
    assert "HTTP 500" in result["error"]
    devices = of(samples, "meraki_device")
    assert len(devices) == 9 and {d.fields["wireless_clients"] for d in devices} == {None}


async def test_malformed_json_is_asked_again_once_then_named(fake: MerakiFake) -> None:
    fake.malformed_next(1)
    assert status(await run(fake, neighbors_per_poll=0))["status"] == "ok"
    fake.malformed_next(2)
    result = status(await run(fake, neighbors_per_poll=0))
    assert result["status"] == "error" and "HTTP 200 — the answer is not JSON" in result["error"], result


async def test_a_page_of_another_shape_is_named(fake: MerakiFake) -> None:
    fake.reshape_next("/wireless/clients/overview/byDevice", [{"serial": "Q2MD-0001-AP00"}], after=1)
    result = status(await run(fake, neighbors_per_poll=0))
    assert result["status"] == "partial", result
    assert "byDevice: an answer of unexpected shape (TypeError" in result["error"], result


async def test_slow_answers_and_a_dashboard_down_are_unreachable(fake: MerakiFake) -> None:
    fake.delay_s = 1.5  # over timeout_s=1
    result = status(await run(fake, timeout_s=1))
    assert result["status"] == "unreachable" and "ReadTimeout" in result["error"], result
    fake.delay_s = 0
    await fake.set_down(True)
    result = status(await run(fake))
    assert result["status"] == "unreachable" and "no answer (ConnectError" in result["error"], result
    await fake.set_down(False)
    assert status(await run(fake))["status"] == "ok"


async def test_a_dead_dashboard_holds_no_other_poll(fake: MerakiFake) -> None:
    fake.delay_s = 30  # hung: answers nothing within the collector's timeout
    hung = poll(PLUGIN, options(fake.url, timeout_s=10, wait_s=1), device="hung", timeout_s=2)
    healthy_fake = MerakiFake([organization(aps=2)], {API_KEY: [ORG_ID]})
    await healthy_fake.start()
    try:
        healthy = poll(PLUGIN, {**options(healthy_fake.url), "neighbors_per_poll": 0})
        agent = scheduler(PLUGIN, [hung, healthy])
        started = time.monotonic()
        results = await asyncio.gather(agent.run_poll(hung), agent.run_poll(healthy))
        assert [status(r)["status"] for r in results] == ["timeout", "ok"]
        assert time.monotonic() - started < 5
    finally:
        await healthy_fake.stop()


def test_an_unreadable_ca_bundle_is_refused_when_the_collector_is_built(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ca_bundle: cannot read"):
        scheduler(PLUGIN, [poll(PLUGIN, options("https://127.0.0.1:1/api/v1", ca_bundle=str(tmp_path / "no.pem")))])


def test_options_are_checked_without_io() -> None:
    with pytest.raises(ValueError, match="base_url"):
        PLUGIN.options.model_validate({"organization_id": "1", "base_url": "ftp://x"})
    with pytest.raises(ValueError, match="organization_id"):
        PLUGIN.options.model_validate({"base_url": "https://api.meraki.com/api/v1"})
    with pytest.raises(ValueError, match="rate_per_s"):
        PLUGIN.options.model_validate({"organization_id": "1", "rate_per_s": 50})


async def test_tls_is_verified_against_the_ca_bundle(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    server = MerakiFake([organization(aps=2)], {API_KEY: [ORG_ID]})
    url = await server.start(tls=tls)
    try:
        assert url.startswith("https://")
        trusted = status(await run(server, ca_bundle=str(ca_file), neighbors_per_poll=0))
        assert trusted["status"] == "ok", trusted
        untrusted = status(await run(server, neighbors_per_poll=0))  # the system's store knows not this CA
        assert untrusted["status"] == "error", untrusted
        assert "TLS: unable to get local issuer certificate" in untrusted["error"], untrusted
    finally:
        await server.stop()


async def test_every_emitted_field_and_tag_is_documented(fake: MerakiFake) -> None:
    """docs/METRICS.md "Cisco Meraki" names exactly the fields and tags the collector emits."""
    text = (ROOT / "docs" / "METRICS.md").read_text()
    section = text[text.index("## Cisco Meraki (collector `meraki`)"):]
    section = section[: section.index("\n## ", 1)]
    documented: dict[str, tuple[set[str], set[str]]] = {}
    for block in section.split("\n### `")[1:]:
        measurement = block[: block.index("`")]
        tags_line = next(line for line in block.splitlines() if line.startswith("Tags:"))
        tags = set(re.findall(r"`([a-z_]+)`(?: \(|,|\.|$)", tags_line))
        fields = set(re.findall(r"^\| `([a-z_]+)` \| (?:str|int|float|bool) \|", block, re.MULTILINE))
        documented[measurement] = (tags, fields)
    fake.orgs[ORG_ID].devices[0].neighbors["wired0"]["cdp"] = {"deviceId": "sw", "portId": "1", "address": "x"}
    samples = await run(fake)
    base = {"client", "site", "device"}
    assert {s.measurement for s in samples} - {"collection"} == set(documented)
    assert all(tags and fields for tags, fields in documented.values())
    for sample in samples:
        if sample.measurement == "collection":
            continue
        tags, fields = documented[sample.measurement]
        assert set(sample.fields) == fields, sample.measurement
        assert set(sample.tags) - base <= tags, sample.measurement
