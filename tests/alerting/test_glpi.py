import socket

import aiohttp
import pytest

from alerting.ticketing.glpi import GlpiConnector, GlpiError, parse_error
from alerting.ticketing.priority import DEFAULT_GLPI_MAPPING, priority_for

from .helpers import firing_alert


class Sleeps(list):
    async def __call__(self, delay: float) -> None:  # no real sleeping: record the backoff
        self.append(delay)


@pytest.fixture
async def connector(glpi):
    sleeps = Sleeps()
    conn = GlpiConnector(glpi.url, "app-token", "user-token", entities_id=0, itilcategories_id=7, sleep=sleeps)
    conn.sleeps = sleeps
    yield conn
    await conn.close()


def test_default_priority_mapping_follows_the_contract_matrix():
    assert DEFAULT_GLPI_MAPPING == {
        "critical": {"urgency": 5, "impact": 5, "priority": 6},
        "major": {"urgency": 5, "impact": 4, "priority": 5},
        "minor": {"urgency": 4, "impact": 4, "priority": 4},
        "warning": {"urgency": 3, "impact": 3, "priority": 3},
    }
    assert [priority_for(s).level for s in ("critical", "major", "minor", "warning")] == ["P0", "P1", "P2", "P3"]


async def test_create_followup_solve(glpi, connector):
    alert = firing_alert("major")
    ref = await connector.open(alert)
    ticket = glpi.tickets[int(ref.id)]
    assert alert.idempotency_key in ticket["name"] and alert.idempotency_key in ticket["content"]
    assert (ticket["type"], ticket["urgency"], ticket["impact"], ticket["priority"]) == (1, 5, 4, 5)
    assert (ticket["entities_id"], ticket["itilcategories_id"], ticket["requesttypes_id"]) == (0, 7, 1)
    assert ticket["status"] == 1
    assert ref.url.endswith(f"/front/ticket.form.php?id={ref.id}")

    await connector.add_followup(ref, "On-call notified")
    assert [f["content"] for f in glpi.followups] == ["On-call notified"]

    await connector.solve(ref, alert)
    assert glpi.tickets[int(ref.id)]["status"] == 5
    await connector.solve(ref, alert)  # already solved (400 ERROR_GLPI_ADD): idempotent, no error
    assert len(glpi.solutions) == 1
    assert glpi.count("GET", "initSession") == 1  # one session reused throughout


async def test_find_open_by_key_in_name_or_content(glpi, connector):
    alert = firing_alert()
    assert await connector.find_open(alert.idempotency_key) is None  # zero hits: no "data" key
    ref = await connector.open(alert)
    assert await connector.find_open(alert.idempotency_key) == ref
    # a technician renames the ticket: still found through its content
    glpi.tickets[int(ref.id)]["name"] = "Switch coeur HDV"
    assert await connector.find_open(alert.idempotency_key) == ref
    await connector.solve(ref, alert)
    assert await connector.find_open(alert.idempotency_key) is None  # solved is not open


async def test_expired_session_is_reinitialised_once(glpi, connector, clock):
    ref = await connector.open(firing_alert())
    glpi.expire_sessions()
    await connector.add_followup(ref, "after expiry")
    clock.t += 601  # idle longer than the PHP session lifetime
    await connector.add_followup(ref, "after idle")
    assert glpi.count("GET", "initSession") == 3
    assert glpi.count("POST", "ITILFollowup", 401) == 2
    assert len(glpi.followups) == 2


async def test_bad_user_token_is_a_named_error_not_retried(glpi):
    conn = GlpiConnector(glpi.url, "app-token", "wrong", sleep=Sleeps())
    with pytest.raises(GlpiError) as err:
        await conn.find_open("vigie:x:1")
    await conn.close()
    exc = err.value
    assert (exc.status, exc.code, exc.retryable) == (401, "ERROR_GLPI_LOGIN_USER_TOKEN", False)
    assert exc.message.startswith("parameter user_token seems invalid")
    assert f"{glpi.url}/initSession" in str(exc) and "ERROR_GLPI_LOGIN_USER_TOKEN" in str(exc)
    assert glpi.count("GET", "initSession") == 1


async def test_wrong_app_token(glpi):
    conn = GlpiConnector(glpi.url, "nope", "user-token", sleep=Sleeps())
    with pytest.raises(GlpiError) as err:
        await conn.find_open("vigie:x:1")
    await conn.close()
    assert (err.value.status, err.value.code) == (400, "ERROR_WRONG_APP_TOKEN_PARAMETER")


def test_parse_error_bodies():
    err = parse_error(404, '["ERROR_ITEM_NOT_FOUND", "Item not found"]', "http://g/apirest.php/Ticket/9", "GET")
    assert (err.code, err.message, err.retryable) == ("ERROR_ITEM_NOT_FOUND", "Item not found", False)
    assert str(err) == "GLPI GET http://g/apirest.php/Ticket/9: HTTP 404 ERROR_ITEM_NOT_FOUND: Item not found"
    html = parse_error(503, "<html>busy</html>", "http://g/apirest.php/Ticket", "POST")
    assert (html.code, html.retryable) == ("HTTP_503", True)


async def test_503_is_retried_then_succeeds(glpi, connector):
    ref = await connector.open(firing_alert())
    glpi.inject(503, times=2, path="ITILFollowup")
    await connector.add_followup(ref, "hello")
    assert connector.sleeps == [1.0, 2.0]  # exponential backoff
    assert glpi.count("POST", "ITILFollowup") == 3 and len(glpi.followups) == 1


async def test_429_honours_retry_after(glpi, connector):
    glpi.inject(429, times=1, path="search", retry_after="7")
    assert await connector.find_open("vigie:x:1") is None
    assert connector.sleeps == [7.0]


async def test_400_is_not_retried(glpi, connector):
    from agent.api.tickets import TicketRef

    with pytest.raises(GlpiError) as err:
        await connector.add_followup(TicketRef("glpi", "999"), "no such ticket")
    assert (err.value.status, err.value.code) == (400, "ERROR_GLPI_ADD")
    assert glpi.count("POST", "ITILFollowup") == 1 and connector.sleeps == []


async def test_retries_give_up_with_the_last_error(glpi, connector):
    glpi.inject(503, times=10, path="search")
    with pytest.raises(GlpiError) as err:
        await connector.find_open("vigie:x:1")
    assert err.value.status == 503 and err.value.retryable
    assert glpi.count("GET", "search/Ticket") == 4  # 1 + 3 retries


async def test_ticket_create_whose_answer_was_lost_is_not_duplicated(glpi, connector):
    glpi.inject(503, times=1, method="POST", path="Ticket", after_processing=True)
    ref = await connector.open(firing_alert())
    assert len(glpi.tickets) == 1 and ref.id == "1"  # found by key instead of a second POST
    assert glpi.count("POST", "Ticket") == 1


async def test_ticket_create_refused_before_processing_is_retried(glpi, connector):
    glpi.inject(502, times=1, method="POST", path="Ticket")
    await connector.open(firing_alert())
    assert len(glpi.tickets) == 1 and glpi.count("POST", "Ticket") == 2


async def test_connection_errors_are_retried_then_raised():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    sleeps = Sleeps()
    conn = GlpiConnector(f"http://127.0.0.1:{port}/apirest.php", "a", "u", sleep=sleeps)
    with pytest.raises(GlpiError) as err:
        await conn.find_open("vigie:x:1")
    await conn.close()
    assert err.value.status is None and err.value.retryable and len(sleeps) == 3


async def test_close_kills_the_session(glpi, connector):
    await connector.find_open("vigie:x:1")
    assert len(glpi.sessions) == 1
    await connector.close()
    assert glpi.sessions == {} and glpi.count("GET", "killSession") == 1


async def test_fake_follows_the_contract(glpi):
    base = glpi.url
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/initSession", headers={"Authorization": "user_token user-token"}) as r:
            assert r.status == 400 and (await r.json())[0] == "ERROR_APP_TOKEN_PARAMETERS_MISSING"
        hdr = {"App-Token": "app-token"}
        async with http.get(f"{base}/initSession", headers=hdr) as r:
            assert r.status == 400 and (await r.json())[0] == "ERROR_LOGIN_PARAMETERS_MISSING"
        async with http.get(f"{base}/initSession", headers={**hdr, "Authorization": "user_token user-token"}) as r:
            token = (await r.json())["session_token"]
        async with http.get(f"{base}/Ticket/1", headers=hdr) as r:
            assert r.status == 400 and (await r.json())[0] == "ERROR_SESSION_TOKEN_MISSING"
        hdr["Session-Token"] = token
        async with http.get(f"{base}/Ticket/1", headers=hdr) as r:
            assert r.status == 404 and (await r.json())[0] == "ERROR_ITEM_NOT_FOUND"
        async with http.get(f"{base}/Ticket", headers=hdr, data=b'{"x":1}') as r:
            assert r.status == 400 and (await r.json())[0] == "ERROR_JSON_PAYLOAD_FORBIDDEN"
        for i in range(3):
            async with http.post(f"{base}/Ticket", headers=hdr, json={"input": {"name": f"t{i}", "content": "c"}}) as r:
                assert r.status == 201 and r.headers["Location"].endswith(f"/Ticket/{i + 1}")
        async with http.get(f"{base}/Ticket", headers=hdr, params={"range": "0-1"}) as r:
            assert r.status == 206 and r.headers["Content-Range"] == "0-1/3" and len(await r.json()) == 2
        params = {
            "criteria[0][field]": "12",
            "criteria[0][searchtype]": "equals",
            "criteria[0][value]": "notold",
            "criteria[1][link]": "AND",
            "criteria[1][field]": "1",
            "criteria[1][searchtype]": "contains",
            "criteria[1][value]": "t",
            "range": "0-1",
        }
        async with http.get(f"{base}/search/Ticket", headers=hdr, params=params) as r:
            body = await r.json()
            assert r.status == 206 and r.headers["Content-Range"] == "0-1/3"
            assert body["totalcount"] == 3 and body["count"] == 2 and body["data"][0]["2"] == 1
            assert set(body["data"][0]) >= {"1", "2", "12", "80"}
        async with http.get(f"{base}/search/Ticket", headers=hdr, params={**params, "range": "5-9"}) as r:
            assert r.status == 400 and (await r.json())[0] == "ERROR_RANGE_EXCEED_TOTAL"
        async with http.put(f"{base}/Ticket/2", headers=hdr, json={"input": {"status": 6}}) as r:
            assert await r.json() == [{"2": True, "message": ""}]
        params["criteria[0][value]"] = "old"
        async with http.get(f"{base}/search/Ticket", headers=hdr, params=params) as r:
            body = await r.json()
            assert r.status == 200 and [row["2"] for row in body["data"]] == [2]
        params["criteria[1][value]"] = "zzz"
        async with http.get(f"{base}/search/Ticket", headers=hdr, params=params) as r:
            assert r.status == 200 and "data" not in (await r.json())
        sol = {"input": {"itemtype": "Ticket", "items_id": 1, "content": "fixed"}}
        async with http.post(f"{base}/ITILSolution", headers=hdr, json=sol) as r:
            assert r.status == 201
        async with http.post(f"{base}/Ticket/1/ITILSolution", headers=hdr, json=sol) as r:
            assert r.status == 400 and (await r.json())[0] == "ERROR_GLPI_ADD"
        async with http.get(f"{base}/killSession", headers=hdr) as r:
            assert r.status == 200
        async with http.get(f"{base}/Ticket/1", headers=hdr) as r:
            assert r.status == 401 and (await r.json())[0] == "ERROR_SESSION_TOKEN_INVALID"


async def test_fake_state_survives_a_restart(tmp_path):
    from lab.glpi_fake import FakeGlpi

    path = str(tmp_path / "glpi.json")
    fake = FakeGlpi(data_path=path)
    await fake.start()
    conn = GlpiConnector(fake.url, "app-token", "user-token")
    ref = await conn.open(firing_alert())
    await conn.close()
    await fake.stop()
    again = FakeGlpi(data_path=path)
    assert again.tickets[int(ref.id)]["name"].startswith("[vigie:")
    assert again.next_id["Ticket"] == 2


def test_receivers_load_by_entry_point_with_their_options_model(tmp_path):
    from pydantic import ValidationError

    from agent.api import ReceiverContext, SecretRef
    from agent.api.tickets import TicketConnector
    from agent.plugins import Plugins, UnknownPlugin
    from alerting.ticketing.log import TicketLog

    plugins = Plugins.discover()
    context = ReceiverContext("vsgp", "Europe/Paris", "fr", tmp_path, secret=lambda ref: f"value-of-{ref.secret}")
    log_spec = plugins.get("ticketing", "log")
    log = log_spec.factory(log_spec.options(), context)
    assert isinstance(log, TicketLog) and isinstance(log, TicketConnector)
    glpi_spec = plugins.get("ticketing", "glpi")
    options = glpi_spec.options(url="http://127.0.0.1:1/apirest.php", user_token=SecretRef(secret="u"), entity_id=3)
    glpi = glpi_spec.factory(options, context)
    assert isinstance(glpi, GlpiConnector) and isinstance(glpi, TicketConnector)
    assert glpi.user_token == "value-of-u" and glpi.entities_id == 3
    with pytest.raises(ValidationError, match="entity\n"):
        glpi_spec.options.model_validate({"url": "http://x/apirest.php", "user_token": {"secret": "u"}, "entity": 3})
    with pytest.raises(UnknownPlugin, match="no ticketing plugin named 'jira'"):
        plugins.get("ticketing", "jira")


async def test_ticket_texts_are_in_the_clients_language_and_timezone(glpi, connector):
    alert = firing_alert("critical")
    ref = await connector.open(alert)  # default: French, Europe/Paris
    content = glpi.tickets[int(ref.id)]["content"]
    for line in ("Gravité : critique (critical)", "Règle : interface_down", "device : sw-core-1"):
        assert f"<p>{line}</p>" in content
    # T0 = 2023-11-14 22:13:20 UTC, 23:13:20 in Paris (CET)
    assert "<p>Début : 2023-11-14 23:13:20 CET</p>" in content
    assert "<p>Déclenchement : 2023-11-14 23:14:20 CET</p>" in content
    assert "Severity" not in content and "UTC" not in content
    alert.resolved_at = alert.fired_at + 600
    await connector.solve(ref, alert)
    assert glpi.solutions[0]["content"].startswith("Rétabli : sw-core-1 Gi0/1 down. Fin : 2023-11-14 23:24:20 CET.")

    english = GlpiConnector(glpi.url, "app-token", "user-token", timezone="America/Montreal", language="en")
    ref = await english.open(firing_alert("major", fp="fedcba9876543210"))
    content = glpi.tickets[int(ref.id)]["content"]
    assert "<p>Severity: major</p>" in content and "<p>Started: 2023-11-14 17:13:20 EST</p>" in content
    await english.close()


def test_ticket_text_options_are_checked_when_the_connector_is_built():
    with pytest.raises(ValueError, match="ticket language 'de'"):
        GlpiConnector.from_options({"url": "http://g/apirest.php", "user_token": "u", "language": "de"})
    with pytest.raises(Exception, match="Mars/Olympus"):
        GlpiConnector.from_options({"url": "http://g/apirest.php", "user_token": "u", "timezone": "Mars/Olympus"})


async def test_the_built_in_log_writes_each_client_in_its_own_language(tmp_path):
    from alerting.ticketing.log import TicketLog

    log = TicketLog.from_options(
        {"path": str(tmp_path / "t.sqlite"), "clients": {"abroad": {"language": "en", "timezone": "UTC"}}}
    )
    here = firing_alert()
    away = firing_alert(fp="fedcba9876543210")
    away.labels["client"] = "abroad"
    await log.open(here)
    await log.open(away)
    rows = {ticket.client: ticket.content for ticket in log.list()}
    assert "Règle : interface_down" in rows["vsgp"] and "23:13:20 CET" in rows["vsgp"]
    assert "Rule: interface_down" in rows["abroad"] and "22:13:20 UTC" in rows["abroad"]
    await log.close()


async def test_a_session_invalid_again_right_after_reinit_is_retryable(clock):
    from lab.glpi_fake import FakeGlpi

    fake = FakeGlpi(session_lifetime_s=-1, clock=clock)  # every session is gone by its first use
    await fake.start()
    conn = GlpiConnector(fake.url, "app-token", "user-token", sleep=Sleeps())
    with pytest.raises(GlpiError) as err:
        await conn.find_open("vigie:x:1")
    await conn.close()
    await fake.stop()
    assert (err.value.status, err.value.code, err.value.retryable) == (401, "ERROR_SESSION_TOKEN_INVALID", True)
    assert fake.count("GET", "initSession") == 2  # re-initialised once, not in a loop


async def test_retry_after_as_an_http_date(glpi, clock):
    sleeps = Sleeps()
    conn = GlpiConnector(glpi.url, "app-token", "user-token", sleep=sleeps, clock=clock)
    clock.t = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT
    glpi.inject(503, times=1, path="search", retry_after="Tue, 14 Nov 2023 22:13:32 GMT")
    assert await conn.find_open("vigie:x:1") is None
    assert sleeps == [12.0]
    await conn.close()


async def test_a_retry_after_longer_than_max_backoff_is_handed_up_not_slept(glpi, connector):
    glpi.inject(429, times=1, path="search", retry_after="3600")
    with pytest.raises(GlpiError) as err:
        await connector.find_open("vigie:x:1")
    assert (err.value.status, err.value.retryable, err.value.retry_after_s) == (429, True, 3600.0)
    assert connector.sleeps == [] and glpi.count("GET", "search/Ticket") == 1


async def test_close_is_bounded_when_glpi_hangs(glpi):
    conn = GlpiConnector(glpi.url, "app-token", "user-token", close_timeout_s=0.05)
    await conn.find_open("vigie:x:1")  # a session to kill
    glpi.hang(path="killSession")
    await conn.close()  # returns: the session expires on GLPI's side
    assert glpi.hanging == [("GET", "killSession")]
