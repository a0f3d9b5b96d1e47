"""The legacy GLPI connector against a fake as strict as GLPI 10/11 (rights, templates, priority
matrix and masks, an Authorization header dropped on the way), and that fake's own strictness."""

from __future__ import annotations

import logging

import aiohttp
import pytest

from alerting.notifier import TicketDispatcher
from alerting.ticketing.glpi import TICKET_CHANGEPRIORITY, TICKET_UPDATE, GlpiConfigError, GlpiConnector, web_root
from lab.glpi_fake import ALL_TICKET_RIGHTS, FakeGlpi

from .helpers import T0, firing_alert
from .test_dispatcher import engine, fire, running, step


class Sleeps(list):
    async def __call__(self, delay: float) -> None:
        self.append(delay)


@pytest.fixture
async def fake_factory(clock):
    started = []

    async def make(**kwargs):
        fake = FakeGlpi(app_token="app-token", user_tokens={"user-token": 2}, clock=clock, **kwargs)
        await fake.start()
        started.append(fake)
        return fake

    yield make
    for fake in started:
        await fake.stop()


@pytest.fixture
async def connectors():
    built = []

    def make(fake, **kwargs):
        conn = GlpiConnector(fake.url, "app-token", "user-token", sleep=Sleeps(), **kwargs)
        built.append(conn)
        return conn

    yield make
    for conn in built:
        await conn.close()


def errors(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("alerting")]


# -- Authorization header dropped by the web server ------------------------------------------


async def test_a_dropped_authorization_header_falls_back_to_the_user_token_parameter(fake_factory, connectors, caplog):
    fake = await fake_factory(strip_authorization=True)
    conn = connectors(fake)
    with caplog.at_level(logging.WARNING, logger="alerting"):
        ref = await conn.open(firing_alert())
        fake.expire_sessions()  # the next session goes straight to the query parameter
        await conn.add_followup(ref, "after expiry")
    assert fake.count("GET", "initSession", 400) == 1 and fake.count("GET", "initSession", 200) == 2
    assert conn.token_in_query and len(fake.tickets) == 1 and len(fake.followups) == 1
    (warning,) = [r.getMessage() for r in caplog.records if "Authorization header" in r.getMessage()]
    assert "user_token query parameter" in warning and "ERROR_LOGIN_PARAMETERS_MISSING" in warning


async def test_a_missing_token_with_the_header_kept_is_a_configuration_error(fake_factory):
    fake = await fake_factory()
    conn = GlpiConnector(fake.url, "app-token", "", sleep=Sleeps())  # no token at all: the fallback cannot help
    with pytest.raises(GlpiConfigError) as err:
        await conn.find_open("vigie:x:1")
    await conn.close()
    assert err.value.code == "ERROR_LOGIN_PARAMETERS_MISSING" and not err.value.retryable
    assert fake.count("GET", "initSession") == 2  # the header, then the parameter: no loop


# -- priority: GLPI's matrix, the Change priority right, the masks ----------------------------


async def test_without_change_priority_glpi_takes_its_matrix_and_the_mismatch_is_logged_once(
    fake_factory, connectors, caplog
):
    fake = await fake_factory(ticket_rights=ALL_TICKET_RIGHTS & ~TICKET_CHANGEPRIORITY)
    conn = connectors(fake)
    with caplog.at_level(logging.WARNING, logger="alerting"):
        first = await conn.open(firing_alert("critical"))
        await conn.open(firing_alert("critical", fp="1111111111111111"))
    # sent urgency 5, impact 5, priority 6 (P0, "major"); GLPI's default matrix gives 5
    assert (fake.tickets[int(first.id)]["urgency"], fake.tickets[int(first.id)]["priority"]) == (5, 5)
    (logged,) = errors(caplog)
    assert "critical alerts land in GLPI with priority 5 (sent 6)" in logged and "'Change priority'" in logged
    assert fake.count("GET", f"Ticket/{first.id}") == 1  # read back once the ticket was created


async def test_a_masked_urgency_is_forced_to_3_and_said(fake_factory, connectors, caplog):
    fake = await fake_factory(urgency_mask=62 & ~(1 << 5))  # "very high" urgency switched off
    conn = connectors(fake)
    with caplog.at_level(logging.ERROR, logger="alerting"):
        ref = await conn.open(firing_alert("major"))
    assert fake.tickets[int(ref.id)]["urgency"] == 3
    (logged,) = errors(caplog)
    assert "major alerts land in GLPI with urgency 3 (sent 5)" in logged and "urgency_mask" in logged


async def test_with_the_right_and_the_levels_on_the_priority_sent_is_kept_and_nothing_logged(
    fake_factory, connectors, caplog
):
    fake = await fake_factory()
    conn = connectors(fake)
    with caplog.at_level(logging.WARNING, logger="alerting"):
        ref = await conn.open(firing_alert("critical"))
    assert fake.tickets[int(ref.id)]["priority"] == 6 and errors(caplog) == []


# -- rights and templates: configuration errors, reported once, not retried --------------------


async def test_an_entity_the_profile_cannot_see_is_a_configuration_error(fake_factory, connectors, caplog):
    fake = await fake_factory(entities={0})
    conn = connectors(fake, entities_id=3)
    with caplog.at_level(logging.ERROR, logger="alerting"):
        for fp in ("0123456789abcdef", "1111111111111111"):
            with pytest.raises(GlpiConfigError) as err:
                await conn.open(firing_alert(fp=fp))
            assert not err.value.retryable and err.value.code == "ERROR_GLPI_ADD"
            assert "You don't have permission" in str(err.value) and "entity 3" in str(err.value)
    assert fake.count("POST", "Ticket") == 2 and conn._sleep == []  # one POST each, no retry
    assert len(errors(caplog)) == 1 and "check-config --online" in errors(caplog)[0]  # logged once


async def test_a_mandatory_template_field_is_named(fake_factory, connectors):
    fake = await fake_factory()
    fake.require(0, 7)  # the root entity's template makes Category mandatory
    with pytest.raises(GlpiConfigError) as err:
        await connectors(fake).open(firing_alert())
    assert "Mandatory fields are not filled. Please correct: Category" in str(err.value)
    assert "category_id" in err.value.fix
    ref = await connectors(fake, itilcategories_id=7).open(firing_alert())
    assert fake.tickets[int(ref.id)]["itilcategories_id"] == 7


async def test_a_profile_that_cannot_solve_fails_once_in_the_outbox_not_forever(fake_factory, tmp_path, clock, caplog):
    state = tmp_path
    fake = await fake_factory(ticket_rights=ALL_TICKET_RIGHTS & ~TICKET_UPDATE)
    conn = GlpiConnector(fake.url, "app-token", "user-token", sleep=Sleeps())
    eng = engine(state, [T0])
    async with running(TicketDispatcher(str(state / "links.sqlite"), {"vsgp": conn}, clock=clock)) as disp:
        res = await step(disp, clock, T0 + 60, await fire(eng))
        assert len(res.opened) == 1
        with caplog.at_level(logging.ERROR):
            res = await step(disp, clock, T0 + 120, eng.evaluate([_up(T0 + 120)], now=T0 + 120))
        ((_, error),) = res.failed
        assert "may not solve tickets" in error and "Ticket 'Update'" in error
        assert disp.links()[0].state == "failed"
        assert not await step(disp, clock, T0 + 7200)  # two hours later: not tried again
    assert fake.count("POST", "ITILSolution") == 1 and fake.tickets[1]["status"] == 1
    await conn.close()


async def test_no_read_or_follow_up_right_is_named_too(fake_factory, connectors):
    from lab.glpi_fake import (
        ALL_FOLLOWUP_RIGHTS,
        FOLLOWUP_ADDALLTICKET,
        FOLLOWUP_ADDMYTICKET,
        TICKET_READALL,
        TICKET_READMY,
    )

    fake = await fake_factory(followup_rights=ALL_FOLLOWUP_RIGHTS & ~(FOLLOWUP_ADDALLTICKET | FOLLOWUP_ADDMYTICKET))
    conn = connectors(fake)
    ref = await conn.open(firing_alert())
    with pytest.raises(GlpiConfigError, match="may not add follow-ups"):
        await conn.add_followup(ref, "x")
    fake.ticket_rights = ALL_TICKET_RIGHTS & ~(TICKET_READALL | TICKET_READMY)
    with pytest.raises(GlpiConfigError) as err:  # GLPI's messageRightError: 401, not a session to renew
        await conn.find_open("vigie:x:1")
    assert (err.value.status, err.value.code) == (401, "ERROR_RIGHT_MISSING") and "may not read" in str(err.value)
    assert fake.count("GET", "initSession") == 1


def _up(t):
    from .helpers import iface

    return iface(t, "up")


# -- the ticket link ----------------------------------------------------------------------------


def test_the_ticket_link_is_built_from_the_web_root_not_by_splitting_on_apirest():
    assert web_root("https://glpi.example.org/api") == "https://glpi.example.org"  # URL rewriting
    assert web_root("https://sd.example.org/glpi/apirest.php/") == "https://sd.example.org/glpi"
    assert web_root("https://api.example.org/apirest.php") == "https://api.example.org"  # host kept
    assert web_root("https://glpi.example.org/api.php/v2") == "https://glpi.example.org"
    rewritten = GlpiConnector("https://glpi.example.org/api", None, "u")
    assert rewritten._ref(42).url == "https://glpi.example.org/front/ticket.form.php?id=42"
    behind = GlpiConnector("http://10.0.0.1/apirest.php", None, "u", web_url="https://support.example.org/")
    assert behind._ref(42).url == "https://support.example.org/front/ticket.form.php?id=42"


# -- check_online -------------------------------------------------------------------------------


async def test_check_online_on_a_glpi_that_allows_everything(fake_factory, connectors):
    fake = await fake_factory()
    checks = await connectors(fake).check_online()
    assert [c.what for c in checks if not c.ok] == []
    assert {"log in", "create tickets in entity 0", "read tickets back", "add follow-ups", "solve tickets",
            "ticket template", "priority of critical tickets", "ticket links"} <= {c.what for c in checks}


async def test_check_online_names_every_problem_before_the_first_alert(fake_factory, connectors):
    fake = await fake_factory(
        ticket_rights=ALL_TICKET_RIGHTS & ~TICKET_CHANGEPRIORITY & ~TICKET_UPDATE,
        url_base="https://support.example.org",
        strip_authorization=True,
    )
    fake.require(0, 7)
    checks = {c.what: c for c in await connectors(fake).check_online()}
    assert "user_token query parameter" in checks["log in"].detail and checks["log in"].ok
    assert checks["create tickets in entity 0"].ok and not checks["solve tickets"].ok
    assert checks["ticket template"].ok is False and "Category (category_id)" in checks["ticket template"].detail
    assert not checks["priority of critical tickets"].ok
    assert "priority 5 (sent 6)" in checks["priority of critical tickets"].detail
    assert checks["priority of warning tickets"].ok  # 3 x 3 -> 3 in GLPI's matrix too
    assert not checks["ticket links"].ok and "web_url" in checks["ticket links"].detail
    assert fake.tickets == {}  # read-only


async def test_check_online_names_an_entity_the_profile_cannot_see(fake_factory, connectors):
    fake = await fake_factory(entities={0})
    checks = {c.what: c for c in await connectors(fake, entities_id=3).check_online()}
    assert not checks["create tickets in entity 3"].ok and "NOT among" in checks["create tickets in entity 3"].detail
    assert not checks["ticket template"].ok and "entity 3 cannot be read" in checks["ticket template"].detail


# -- the fake is as strict as GLPI ---------------------------------------------------------------


async def test_the_fake_is_as_strict_as_glpi(fake_factory):
    fake = await fake_factory()
    base = fake.url
    async with aiohttp.ClientSession() as http:
        hdr = {"App-Token": "app-token", "Authorization": "user_token user-token"}
        async with http.get(f"{base}/initSession", headers=hdr) as r:
            hdr = {"App-Token": "app-token", "Session-Token": (await r.json())["session_token"]}

        async def post(path, body, raw=None):
            async with http.post(f"{base}/{path}", headers=hdr, json=body, data=raw) as r:
                return r.status, await r.json()

        for bad in ({"priority": 7}, {"status": 9}, {"type": 3}):
            status, body = await post("Ticket", {"input": {"name": "t", "content": "c", **bad}})
            assert (status, body[0]) == (400, "ERROR_GLPI_ADD"), bad
        status, body = await post("Ticket", {"input": {"name": "t", "content": "c", "urgency": 9, "impact": 0}})
        assert status == 201 and (fake.tickets[body["id"]]["urgency"], fake.tickets[body["id"]]["impact"]) == (3, 3)
        status, body = await post("Ticket", {"input": [{"name": "a", "content": "c"}, {"name": "b", "priority": 0}]})
        assert status == 207 and body[0] == "ERROR_GLPI_PARTIAL_ADD" and body[1][0]["id"] == 2
        status, body = await post("Ticket", {"input": [{"priority": 0}, {"type": 9}]})
        assert status == 400 and body[0] == "ERROR_GLPI_ADD" and len(body[1]) == 2
        # list input for follow-ups too; the sub-item path does not stand for itemtype/items_id
        status, body = await post("ITILFollowup", {"input": [{"itemtype": "Ticket", "items_id": 1, "content": "x"},
                                                             {"itemtype": "Ticket", "items_id": 2, "content": "y"}]})
        assert status == 201 and [f["items_id"] for f in fake.followups] == [1, 2]
        status, body = await post("Ticket/1/ITILFollowup", {"input": {"content": "no itemtype"}})
        assert (status, body[0]) == (400, "ERROR_GLPI_ADD") and len(fake.followups) == 2
        async with http.post(f"{base}/Ticket", headers={**hdr, "Content-Type": "application/json"},
                             data=b"{not json") as r:
            assert (r.status, (await r.json())[0]) == (400, "ERROR_JSON_PAYLOAD_INVALID")
        async with http.get(f"{base}/NoSuchThing", headers=hdr) as r:
            assert (r.status, (await r.json())[0]) == (400, "ERROR_RESOURCE_NOT_FOUND_NOR_COMMONDBTM")
        for i in range(18):
            await post("Ticket", {"input": {"name": f"bulk {i}", "content": "c"}})
        async with http.get(f"{base}/search/Ticket", headers=hdr) as r:  # no range: the user's 15 per page
            body = await r.json()
            assert r.status == 206 and r.headers["Content-Range"] == "0-14/20" and body["count"] == 15
        async with http.get(f"{base}/Ticket", headers=hdr) as r:
            assert r.status == 206 and len(await r.json()) == 15 and r.headers["Content-Range"] == "0-14/20"
        params = {"criteria[0][field]": "1", "criteria[0][searchtype]": "contains", "criteria[0][value]": "zzz"}
        async with http.get(f"{base}/search/Ticket", headers=hdr, params=params) as r:
            assert r.status == 200 and "Content-Range" not in r.headers and "data" not in await r.json()


# -- TLS ------------------------------------------------------------------------------------------


async def test_glpi_behind_an_internal_ca_needs_its_ca_bundle(tmp_path, clock):
    import ssl

    import trustme

    from agent.api import ReceiverContext, SecretRef
    from agent.plugins import Plugins

    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    fake = FakeGlpi(app_token=None, user_tokens={"u": 2}, clock=clock)
    url = await fake.start(ssl_context=server)
    spec = Plugins.discover().get("ticketing", "glpi")
    context = ReceiverContext("vsgp", "Europe/Paris", "fr", tmp_path, secret=lambda ref: "u")
    try:
        plain = spec.factory(spec.options(url=url, user_token=SecretRef(secret="u"), entity_id=0), context)
        with pytest.raises(GlpiConfigError) as err:
            await plain.find_open("vigie:x:1")
        await plain.close()
        assert err.value.code == "TLS_CERTIFICATE" and not err.value.retryable and "give ca_bundle" in str(err.value)
        trusted = spec.factory(spec.options(url=url, user_token=SecretRef(secret="u"), entity_id=0,
                                            ca_bundle=bundle), context)
        assert await trusted.find_open("vigie:x:1") is None
        await trusted.close()
    finally:
        await fake.stop()
    with pytest.raises(ValueError, match="ca_bundle"):
        spec.factory(spec.options(url=url, user_token=SecretRef(secret="u"), entity_id=0,
                                  ca_bundle=tmp_path / "missing.pem"), context)


# -- the client's contract priority, mapped to GLPI's fields -----------------------------------


async def test_the_alerts_contract_priority_is_what_glpi_gets(fake_factory, connectors, caplog):
    from agent.api.priority import Priority

    fake = await fake_factory(ticket_rights=ALL_TICKET_RIGHTS & ~TICKET_CHANGEPRIORITY)
    conn = connectors(fake)
    overridden = firing_alert("warning")
    overridden.priority = Priority("Critique", "Moyenne", "P2")  # a core device: impact raised by an override
    own_words = firing_alert("minor", fp="1111111111111111")
    own_words.priority = Priority("Faible", "Basse", "P4")  # a client's own vocabulary and a fifth level
    with caplog.at_level(logging.ERROR, logger="alerting"):
        first = await conn.open(overridden)
        second = await conn.open(own_words)
    ticket = fake.tickets[int(first.id)]
    assert (ticket["impact"], ticket["urgency"], ticket["priority"]) == (5, 3, 4)  # matrix[3][5] = 4 = P2's
    ticket = fake.tickets[int(second.id)]
    assert (ticket["impact"], ticket["urgency"]) == (4, 4)  # unknown names: the severity's row
    (logged,) = errors(caplog)  # P4 sent as 2, GLPI's matrix says 4
    assert logged.endswith("P4 minor alerts land in GLPI with priority 4 (sent 2): the API user's profile lacks "
                           "the Ticket 'Change priority' right (GLPI then takes its own urgency x impact matrix)")
