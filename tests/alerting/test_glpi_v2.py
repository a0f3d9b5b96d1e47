"""The GLPI 11 high-level API connector (api: v2) against the fake speaking it: OAuth2, RSQL,
Timeline, its error bodies, and the outbox's exactly-once guarantee through it."""

from __future__ import annotations

import logging

import aiohttp
import pytest

from alerting.notifier import TicketDispatcher
from alerting.ticketing.glpi import TICKET_CHANGEPRIORITY, GlpiConfigError, GlpiError
from alerting.ticketing.glpi_v2 import GlpiV2Connector
from lab.glpi_fake import ALL_TICKET_RIGHTS, FakeGlpi, rsql

from .helpers import T0, firing_alert, iface
from .test_dispatcher import Crash, crash_at, engine, fire, running, step


class Sleeps(list):
    async def __call__(self, delay: float) -> None:
        self.append(delay)


@pytest.fixture
async def fake(clock):
    fake = FakeGlpi(clock=clock, oauth_clients={"vigie": "s3cret"}, oauth_users={"noc": ("pw", 2)})
    await fake.start()
    yield fake
    await fake.stop()


def v2(fake, clock, **kwargs):
    options = {"grant": "password", "username": "noc", "password": "pw", **kwargs}
    return GlpiV2Connector(fake.hl_url, "vigie", kwargs.pop("secret", "s3cret"), sleep=Sleeps(), clock=clock,
                           **{k: v for k, v in options.items() if k != "secret"})


async def test_open_follow_up_solve_over_the_high_level_api(fake, clock):
    conn = v2(fake, clock, itilcategories_id=7)
    alert = firing_alert("major")
    assert await conn.find_open(alert.idempotency_key) is None
    ref = await conn.open(alert)
    ticket = fake.tickets[int(ref.id)]
    assert alert.idempotency_key in ticket["name"] and alert.idempotency_key in ticket["content"]
    assert (ticket["urgency"], ticket["impact"], ticket["priority"], ticket["itilcategories_id"]) == (5, 4, 5, 7)
    assert ref.url == f"{fake.hl_url[: -len('/api.php')]}/front/ticket.form.php?id={ref.id}"
    fake.tickets[int(ref.id)]["name"] = "renamed by a technician"
    assert await conn.find_open(alert.idempotency_key) == ref  # found through the content
    await conn.add_followup(ref, "On-call notified")
    assert [f["content"] for f in fake.followups] == ["On-call notified"]
    await conn.solve(ref, alert)
    await conn.solve(ref, alert)  # already solved: idempotent
    assert fake.tickets[int(ref.id)]["status"] == 5 and len(fake.solutions) == 1
    assert await conn.find_open(alert.idempotency_key) is None
    assert fake.count("POST", "token") == 1  # one token for all of it
    await conn.close()


async def test_client_credentials_grant(fake, clock):
    conn = GlpiV2Connector(fake.hl_url, "vigie", "s3cret", grant="client_credentials", sleep=Sleeps(), clock=clock)
    ref = await conn.open(firing_alert())
    assert ref.id == "1" and fake.count("POST", "token", 200) == 1
    await conn.close()


async def test_an_expired_token_is_renewed_before_or_on_401(fake, clock):
    conn = v2(fake, clock)
    await conn.find_open("vigie:x:1")
    fake.expire_sessions()  # GLPI forgot the token: 401, renewed once, replayed
    await conn.find_open("vigie:x:1")
    clock.t += 3600  # past its lifetime: renewed before the call
    await conn.find_open("vigie:x:1")
    assert fake.count("POST", "token") == 3 and fake.count("GET", "v2/Assistance/Ticket", 401) == 1
    await conn.close()


async def test_refused_credentials_are_a_configuration_error(fake, clock):
    conn = v2(fake, clock, secret="wrong")
    with pytest.raises(GlpiConfigError) as err:
        await conn.find_open("vigie:x:1")
    assert (err.value.status, err.value.code, err.value.retryable) == (401, "OAUTH_INVALID_CLIENT", False)
    assert fake.count("POST", "token") == 1
    await conn.close()
    bad_user = v2(fake, clock, password="nope")
    with pytest.raises(GlpiConfigError) as err:
        await bad_user.find_open("vigie:x:1")
    assert err.value.code == "OAUTH_INVALID_GRANT"
    await bad_user.close()


async def test_a_mandatory_field_is_a_500_glpi_explains_not_an_outage(fake, clock):
    fake.require(0, 7)
    conn = v2(fake, clock)
    with pytest.raises(GlpiConfigError) as err:
        await conn.open(firing_alert())
    assert err.value.status == 500 and "Mandatory fields are not filled. Please correct: Category" in str(err.value)
    assert fake.count("POST", "v2/Assistance/Ticket") == 1 and conn._sleep == []  # not retried
    await conn.close()


async def test_no_create_right_is_a_403_configuration_error(clock):
    fake = FakeGlpi(clock=clock, entities={0})
    await fake.start()
    conn = GlpiV2Connector(fake.hl_url, "vigie-client", "vigie-secret", username="vigie", password="vigie-password",
                           entities_id=4, sleep=Sleeps(), clock=clock)
    with pytest.raises(GlpiConfigError) as err:
        await conn.open(firing_alert())
    assert (err.value.status, err.value.code) == (403, "ERROR_RIGHT_MISSING") and "entity 4" in str(err.value)
    await conn.close()
    await fake.stop()


async def test_the_priority_glpi_recomputes_is_read_back_and_logged(clock, caplog):
    fake = FakeGlpi(clock=clock, ticket_rights=ALL_TICKET_RIGHTS & ~TICKET_CHANGEPRIORITY)
    await fake.start()
    conn = GlpiV2Connector(fake.hl_url, "vigie-client", "vigie-secret", username="vigie", password="vigie-password",
                           sleep=Sleeps(), clock=clock)
    with caplog.at_level(logging.ERROR, logger="alerting"):
        await conn.open(firing_alert("critical"))
    assert [r.getMessage() for r in caplog.records if "land in GLPI" in r.getMessage()] == [
        f"GLPI {fake.hl_url}: critical alerts land in GLPI with priority 5 (sent 6): the API user's profile lacks "
        "the Ticket 'Change priority' right (GLPI then takes its own urgency x impact matrix)"
    ]
    await conn.close()
    await fake.stop()


async def test_a_create_whose_answer_was_lost_is_found_not_doubled(fake, clock):
    conn = v2(fake, clock)
    fake.inject(503, times=1, method="POST", path="v2/Assistance/Ticket", after_processing=True)
    ref = await conn.open(firing_alert())
    assert ref.id == "1" and len(fake.tickets) == 1 and fake.count("POST", "v2/Assistance/Ticket") == 1
    await conn.close()


async def test_glpi_down_for_minutes_then_a_crash_after_create_one_ticket(fake, clock, tmp_path):
    """The outbox's guarantee through the v2 connector: GLPI answering 503 for ten minutes, then
    the process dying right after the create (before the link is written): one ticket."""
    links = str(tmp_path / "links.sqlite")
    conn = v2(fake, clock, retries=0)
    eng = engine(tmp_path, [T0])
    fake.inject(503, times=10**6, path="v2/Assistance")
    async with running(TicketDispatcher(links, {"vsgp": conn}, clock=clock, checkpoint=crash_at("after_open"))) as d:
        transitions = await fire(eng)
        at = T0 + 60
        res = await step(d, clock, at, transitions)
        while at < T0 + 660:
            assert res.retrying and not fake.tickets
            at = d.links()[0].next_attempt_at
            res = await step(d, clock, at)
        fake.clear_faults()
        with pytest.raises(Crash):
            await step(d, clock, d.links()[0].next_attempt_at)
    assert len(fake.tickets) == 1
    async with running(TicketDispatcher(links, {"vsgp": conn}, clock=clock)) as d:
        res = await d.settle()
        assert [link.ticket_id for link in res.reattached] == ["1"]
        res = await step(d, clock, clock.t + 60, eng.evaluate([iface(clock.t + 60, "up")], now=clock.t + 60))
        assert [link.state for link in res.solved] == ["solved"]
    assert len(fake.tickets) == 1 and fake.count("POST", "v2/Assistance/Ticket", 201) == 1
    assert fake.tickets[1]["status"] == 5 and len(fake.solutions) == 1
    await conn.close()


def test_the_fakes_rsql_follows_glpis_grammar():
    row = {"id": 3, "name": "[vigie:ab:1] sw down", "content": "x", "status": {"id": 2}}
    assert rsql('status.id=out=(5,6);(name=like="*vigie:ab:1*",content=like="*vigie:ab:1*")')(row)
    assert not rsql("status.id=in=(5,6)")(row)
    assert rsql("id=gt=2;id=lt=4")(row) and not rsql("id==4,name==nope")(row)
    assert rsql("name=ilike=*SW DOWN")(row) and not rsql("name=like=*SW DOWN")(row)
    with pytest.raises(KeyError):
        rsql("nosuch==1")(row)
    with pytest.raises(KeyError):
        rsql("nosuch==1", frozenset({"id"}))  # refused before any row is read, as GLPI's parser does
    with pytest.raises(ValueError):
        rsql("name==a;(")


async def test_the_fakes_high_level_api_errors(fake):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{fake.hl_url}/v2/Assistance/Ticket") as r:
            assert r.status == 401 and (await r.json())["error"] == "access_denied"
        async with http.post(f"{fake.hl_url}/token", data={"grant_type": "implicit"}) as r:
            assert r.status == 400 and (await r.json())["error"] == "unsupported_grant_type"
        form = {"grant_type": "client_credentials", "client_id": "vigie", "client_secret": "s3cret", "scope": "api"}
        async with http.post(f"{fake.hl_url}/token", data=form) as r:
            token = (await r.json())["access_token"]
        hdr = {"Authorization": f"Bearer {token}"}
        async with http.get(f"{fake.hl_url}/v2/Assistance/Ticket", headers=hdr, params={"filter": "bogus==1"}) as r:
            body = await r.json()
            assert r.status == 400 and body["status"] == "ERROR_INVALID_PARAMETER"
            assert "Invalid RSQL property: bogus" in body["additional_messages"][0]["message"]
        async with http.post(f"{fake.hl_url}/v2/Assistance/Ticket", headers=hdr, json={"nope": 1}) as r:
            assert r.status == 400 and (await r.json())["status"] == "ERROR_INVALID_PARAMETER"
        async with http.post(f"{fake.hl_url}/v2/Assistance/Ticket", headers=hdr,
                             json={"name": "t", "content": "c", "entity": 0}) as r:
            assert r.status == 201 and r.headers["Location"] == "/Assistance/Ticket/1"
        async with http.get(f"{fake.hl_url}/v2/Assistance/Ticket/1", headers=hdr) as r:
            assert (await r.json())["status"] == {"id": 1, "name": "New"}


def test_a_retryable_5xx_without_explanation_stays_retryable():
    from alerting.ticketing.glpi_v2 import parse_hl_error

    plain = parse_hl_error(500, '{"status": "ERROR", "title": "Failed to create item(s)"}', "u", "POST")
    assert plain.retryable
    explained = parse_hl_error(500, '{"status": "ERROR", "title": "Failed to create item(s)", "additional_messages":'
                                    ' [{"priority": "error", "message": "Mandatory fields are not filled"}]}', "u")
    assert not explained.retryable and explained.refused_by_configuration
    assert isinstance(explained, GlpiError)


def test_the_options_model_builds_the_connector_of_the_api_chosen(tmp_path):
    from pydantic import ValidationError

    from agent.api import ReceiverContext, SecretRef
    from agent.plugins import Plugins
    from alerting.ticketing.glpi import GlpiConnector

    spec = Plugins.discover().get("ticketing", "glpi")
    context = ReceiverContext("vsgp", "Europe/Paris", "fr", tmp_path, secret=lambda ref: f"value-of-{ref.secret}")
    legacy = spec.factory(spec.options(url="https://g.example/api", user_token=SecretRef(secret="u"), entity_id=0,
                                       web_url="https://support.example"), context)
    assert isinstance(legacy, GlpiConnector) and legacy.web_url == "https://support.example"
    options = spec.options(url="https://g.example/api.php", api="v2", client_id="c",
                           client_secret=SecretRef(secret="s"), username="noc", password=SecretRef(secret="p"),
                           entity_id=2)
    built = spec.factory(options, context)
    assert isinstance(built, GlpiV2Connector) and (built.client_secret, built.password) == ("value-of-s", "value-of-p")
    assert built.web_url == "https://g.example" and built.entities_id == 2
    refused = {
        "user_token: required with api: legacy": {"url": "https://g/apirest.php", "entity_id": 0},
        "client_id, client_secret: required with api: v2": {"url": "https://g/api.php", "api": "v2", "entity_id": 0},
        "username, password: required with api: v2 and grant: password": {
            "url": "https://g/api.php", "api": "v2", "client_id": "c", "client_secret": {"secret": "s"},
            "entity_id": 0},
        "user_token, app_token: only with api: legacy": {
            "url": "https://g/api.php", "api": "v2", "client_id": "c", "client_secret": {"secret": "s"},
            "grant": "client_credentials", "user_token": {"secret": "u"}, "entity_id": 0},
    }
    for message, raw in refused.items():
        with pytest.raises(ValidationError, match=message):
            spec.options.model_validate(raw)
    spec.options.model_validate({"url": "https://g/api.php", "api": "v2", "client_id": "c",
                                 "client_secret": {"secret": "s"}, "grant": "client_credentials", "entity_id": 0})


async def test_check_online_over_the_high_level_api(clock):
    fake = FakeGlpi(clock=clock, entities={0, 2})
    await fake.start()
    good = GlpiV2Connector(fake.hl_url, "vigie-client", "vigie-secret", username="vigie", password="vigie-password",
                           entities_id=2, clock=clock)
    assert [(c.what, c.ok) for c in await good.check_online()] == [
        ("log in", True), ("entity 2", True), ("read tickets", True)]
    elsewhere = GlpiV2Connector(fake.hl_url, "vigie-client", "vigie-secret", username="vigie",
                                password="vigie-password", entities_id=5, clock=clock)
    checks = {c.what: c for c in await elsewhere.check_online()}
    assert not checks["entity 5"].ok and "NOT among [0, 2]" in checks["entity 5"].detail
    refused = GlpiV2Connector(fake.hl_url, "vigie-client", "nope", grant="client_credentials", clock=clock)
    ((what, ok),) = [(c.what, c.ok) for c in await refused.check_online()]
    assert (what, ok) == ("log in", False)
    for conn in (good, elsewhere, refused):
        await conn.close()
    await fake.stop()
