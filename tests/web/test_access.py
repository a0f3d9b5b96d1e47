"""The web app over a state directory a real agent wrote while polling the lab (two clients, one
device of each gone silent): logins, sessions, CSRF, the login limit, tokens, and client
isolation on every route the app has; exports, the report archive, backup coverage, /metrics.

The app is served in-process (Starlette's TestClient); tests/web/test_wall.py serves it from the
agent under uvicorn to a real browser.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import io
import re
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import openpyxl
import pytest
import trustme
from argon2 import PasswordHasher
from starlette.routing import Route
from starlette.testclient import TestClient

from agent.api import DeviceMessage, Sample
from agent.cli import main
from agent.config import Config
from agent.plugins import Plugins
from agent.report.build import archive, build_daily
from agent.runner import Agent
from agent.statedir import StateDir
from agent.views import alert_rows, device_statuses, ticket_rows
from agent.views.latest import agent_health
from agent.web.app import PUBLIC, WebApp, WebContext
from agent.web.auth import Users, credential_digest

from .conftest import PASSWORDS, TOKENS, Responder, lab_config

WAIT_S = 30
# what only beta's answers may contain; alpha's DSI must never see one of them
BETA_MARKERS = ("beta", "Beta Secret Corp")


@dataclass
class Estate:
    config: Config
    files: StateDir
    web: WebApp
    report_day: dt.date


async def _wait(condition, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_S} s: {what}")
        await asyncio.sleep(0.1)


def _vm_samples(client: str, device: str, vms: list[str], protected: list[str], at: float) -> list[Sample]:
    base = {"client": client, "site": f"{client}-site", "device": device}
    ns = int(at * 1e9)
    samples = [Sample("vsphere_vm", {**base, "vm": vm, "host": "esx1"}, {"power_state": "poweredOn"}, ns)
               for vm in vms]
    samples.append(Sample("veeam_job", {**base, "job": f"{client}-daily"}, {"last_result": "success"}, ns))
    samples += [Sample("veeam_backup_object", {**base, "object": vm}, {"restore_points": 3}, ns) for vm in protected]
    return samples


async def _run_lab(config: Config, state: Path) -> None:
    """Poll until every device was seen, both silent devices alert and their tickets are open."""
    agent = Agent(config, state_dir=state, plugins=Plugins.discover(), health_interval_s=1)
    await agent.start()
    files = StateDir(state)
    try:
        await _wait(lambda: all(s.state != "unknown" for s in device_statuses(files)) and
                    len(device_statuses(files)) == 4, "every device polled")
        await _wait(lambda: len([a for a in alert_rows(files) if a.state == "firing"]) == 2, "two alerts firing")
        await _wait(lambda: len([t for t in ticket_rows(files) if t.status == "open"]) == 2, "two tickets open")
        await _wait(lambda: agent_health(files), "the agent's health sample")
        now = time.time()
        await agent.pipeline.submit(_vm_samples("alpha", "alpha-core", ["vm-a1", "vm-a2"], ["VM-A1"], now)
                                    + _vm_samples("beta", "beta-srv-zz", ["beta-vm-zz"], [], now)
                                    # gone for a day: no longer a VM of alpha
                                    + _vm_samples("alpha", "alpha-core", ["vm-deleted"], [], now - 86400))
        await agent.pipeline.drain()
        await agent._backup_coverage()  # the agent's job, run now rather than in 10 minutes
        await agent.pipeline.drain()
        await _wait(lambda: any(a.rule == "backup_coverage_gap" for a in alert_rows(files)), "the coverage alert")
        await _wait(lambda: len([t for t in ticket_rows(files) if t.status == "open"]) == 3, "its ticket open")
    finally:
        await agent.stop()


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory, responder: Responder) -> Estate:
    tmp = tmp_path_factory.mktemp("web")
    responder.silence("alpha/alpha-fw", "beta/beta-nas-zz")
    config = lab_config(tmp, responder)
    try:
        asyncio.run(_run_lab(config, tmp / "state"))
    finally:
        responder.silence()
    files = StateDir(tmp / "state")
    now = time.time()
    day = dt.datetime.fromtimestamp(now, config.client("alpha").zone).date()
    for name in ("alpha", "beta"):  # the report helper's own archive of the day
        archive(build_daily(files, config.client(name), day, now), files, None, now)
    plugins = Plugins.discover()
    web = WebApp(WebContext(config, files, ["alpha", "beta"], time.time, config.secret_text, plugins.device_messages))
    return Estate(config, files, web, day)


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


def login(web: WebApp, user: str, password: str | None = None, *, https: bool = False) -> TestClient:
    client = TestClient(web, base_url="https://testserver" if https else "http://testserver",
                        follow_redirects=False)
    form = client.get("/login")
    answer = client.post("/login", data={"csrf": _csrf(form.text), "user": user,
                                         "password": password or PASSWORDS[user]})
    assert answer.status_code == 303, answer.text
    return client


def text_of(body: bytes) -> str:
    """What a reader of the answer sees: an XLSX (a zip) unpacked, everything else as text."""
    if body[:2] == b"PK":
        with zipfile.ZipFile(io.BytesIO(body)) as book:
            return "\n".join(book.read(name).decode("utf-8", "replace") for name in book.namelist())
    return body.decode("utf-8", "replace")


# -- sessions, CSRF, the login limit ---------------------------------------------------------


def test_login_opens_an_http_only_same_site_session(estate: Estate) -> None:
    client = TestClient(estate.web, follow_redirects=False)
    form = client.get("/login")
    answer = client.post("/login", data={"csrf": _csrf(form.text), "user": "noc", "password": PASSWORDS["noc"]})
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert "secure" not in cookie  # plain HTTP here: see the TLS test
    assert client.get("/").headers["location"] == "/wall"
    assert client.get("/wall").status_code == 200
    assert answer.headers["x-frame-options"] == "DENY"


def test_session_cookie_is_secure_over_tls(estate: Estate, tmp_path: Path) -> None:
    ca = trustme.CA()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued = ca.issue_cert("127.0.0.1")
    issued.private_key_pem.write_to_path(str(key))
    issued.cert_chain_pems[0].write_to_path(str(cert))
    web_settings = estate.config.agent.web.model_copy(update={"tls_cert": cert, "tls_key": key})
    config = estate.config.model_copy(update={"agent": estate.config.agent.model_copy(update={"web": web_settings})})
    web = WebApp(WebContext(config, estate.files, ["alpha"], time.time, estate.config.secret_text, lambda *a: []))
    client = TestClient(web, base_url="https://testserver", follow_redirects=False)
    form = client.get("/login")
    answer = client.post("/login", data={"csrf": _csrf(form.text), "user": "noc", "password": PASSWORDS["noc"]})
    assert "secure" in answer.headers["set-cookie"].lower()


def test_login_without_its_csrf_token_is_refused(estate: Estate) -> None:
    client = TestClient(estate.web, follow_redirects=False)
    client.get("/login")
    answer = client.post("/login", data={"csrf": "forged", "user": "noc", "password": PASSWORDS["noc"]})
    assert answer.status_code == 403
    assert client.get("/wall").status_code == 303  # not signed in


def test_logout_needs_the_csrf_token(estate: Estate) -> None:
    client = login(estate.web, "noc")
    assert client.post("/logout", data={"csrf": "forged"}).status_code == 403
    assert client.get("/wall").status_code == 200
    page = client.get("/wall")
    assert client.post("/logout", data={"csrf": _csrf(page.text)}).status_code == 303
    assert client.get("/wall").status_code == 303


def test_failed_logins_are_limited_then_even_the_right_password_waits(estate: Estate) -> None:
    web = WebApp(estate.web.context)  # its own limiter
    client = TestClient(web, follow_redirects=False)
    token = _csrf(client.get("/login").text)
    attempts = estate.config.agent.web.login_attempts
    for _ in range(attempts):
        assert client.post("/login", data={"csrf": token, "user": "noc", "password": "wrong"}).status_code == 401
    answer = client.post("/login", data={"csrf": token, "user": "noc", "password": PASSWORDS["noc"]})
    assert answer.status_code == 429
    # another user from the same address is held too: the address is a key of the limit
    answer = client.post("/login", data={"csrf": token, "user": "dsi-alpha", "password": PASSWORDS["dsi-alpha"]})
    assert answer.status_code == 429


def test_a_changed_password_or_a_removed_user_ends_its_sessions(estate: Estate) -> None:
    settings = estate.config.agent.web
    user = next(u for u in settings.users if u.name == "dsi-alpha")
    digest = credential_digest(user)
    assert Users(settings, estate.config.secret_text).from_session("dsi-alpha", digest).client == "alpha"
    changed = settings.model_copy(update={"users": [
        u.model_copy(update={"password_hash": PasswordHasher().hash("another-password-1")}) if u is user else u
        for u in settings.users]})
    assert Users(changed, estate.config.secret_text).from_session("dsi-alpha", digest) is None
    removed = settings.model_copy(update={"users": [u for u in settings.users if u is not user]})
    assert Users(removed, estate.config.secret_text).from_session("dsi-alpha", digest) is None


# -- scope --------------------------------------------------------------------------------------


def _routes(web: WebApp) -> list[Route]:
    routes = [r for r in web.app.routes if isinstance(r, Route)]
    assert len(routes) == len(web.app.routes), "a route that is not a plain Route escapes the test"
    return routes


def _fill(route: Route, values: dict[str, str]) -> str:
    path = route.path
    for name in route.param_convertors:
        path = path.replace("{" + name + "}", values[name])
    assert "{" not in path, path
    return path


def _targets(estate: Estate) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The values alpha may ask for, and the guesses of beta's: beta's own, and alpha's paths
    pointing at beta's device and report file."""
    label = estate.report_day.isoformat()
    alpha = {"client": "alpha", "device": "alpha-core", "label": label, "file": f"alpha-{label}.html",
             "topic": "inventory", "fmt": "xlsx"}
    guesses = [
        {**alpha, "client": "beta", "device": "beta-srv-zz", "file": f"beta-{label}.html"},
        {**alpha, "device": "beta-srv-zz"},
        {**alpha, "file": f"beta-{label}.html"},
        {**alpha, "label": f"..%2F..%2Fbeta%2F{label}", "file": f"beta-{label}.html"},
        {**alpha, "client": "beta", "topic": "alerts", "fmt": "csv"},
    ]
    return alpha, guesses


@pytest.mark.parametrize("how", ["session", "token"])
def test_alpha_reads_nothing_of_beta_on_any_route(estate: Estate, how: str) -> None:
    """Every route of the router, with every way of naming beta, as alpha's DSI: an answer either
    refuses (4xx) or says nothing of beta. The same route with alpha's values answers, so the
    refusals are about scope, not a broken route."""
    if how == "session":
        client = login(estate.web, "dsi-alpha")
    else:
        client = TestClient(estate.web, follow_redirects=False,
                            headers={"Authorization": f"Bearer {TOKENS['dsi-alpha']}"})
    alpha, guesses = _targets(estate)
    checked = set()
    for route in _routes(estate.web):
        for method in sorted(route.methods - {"HEAD"}):
            if route.path == "/logout":
                continue  # ends the session: below, with the others
            own = client.request(method, _fill(route, alpha))
            assert own.status_code < 400 or route.path == "/login", (route.path, own.status_code, own.text[:200])
            for values in guesses:
                for query in ("", "?client=beta", "?client=beta&from=2020-01-01"):
                    url = _fill(route, values) + query
                    answer = client.request(method, url)
                    if answer.status_code < 400:
                        seen = text_of(answer.content)
                        leaked = [m for m in BETA_MARKERS if m.lower() in seen.lower()]
                        assert not leaked, (method, url, answer.status_code, leaked)
            checked.add((route.path, method))
    assert {(r.path, m) for r in _routes(estate.web) for m in r.methods - {"HEAD"}} - checked == {("/logout", "POST")}
    page = client.get("/clients/alpha")
    answer = client.post("/logout", data={"csrf": _csrf(page.text)} if how == "session" else {})
    assert answer.status_code in (303, 403) and "beta" not in answer.text.lower()


def test_beta_is_answered_as_a_client_that_does_not_exist(estate: Estate) -> None:
    client = login(estate.web, "dsi-alpha")
    for url in ("/clients/beta", "/clients/nosuch", "/api/v1/devices?client=beta", "/api/v1/devices?client=nosuch"):
        answer = client.get(url)
        assert answer.status_code == 404, url
    assert client.get("/clients/beta").text == client.get("/clients/nosuch").text
    assert client.get("/").headers["location"] == "/clients/alpha"


def test_the_noc_sees_both_clients(estate: Estate) -> None:
    client = login(estate.web, "noc")
    wall = client.get("/wall").text
    assert "Alpha Hospital" in wall and "Beta Secret Corp" in wall
    assert {d["client"] for d in client.get("/api/v1/devices").json()} == {"alpha", "beta"}
    assert client.get("/clients/beta").status_code == 200
    one = client.get("/wall/tiles?client=beta").text
    assert "Beta Secret Corp" in one and "Alpha Hospital" not in one


def test_without_credentials_only_the_public_routes_answer(estate: Estate) -> None:
    client = TestClient(estate.web, follow_redirects=False)
    alpha, _ = _targets(estate)
    for route in _routes(estate.web):
        for method in route.methods - {"HEAD"}:
            answer = client.request(method, _fill(route, alpha))
            if route.path in PUBLIC:
                assert answer.status_code in (200, 403), (route.path, method)  # 403: the login's CSRF
            elif route.path.startswith("/api/"):
                assert answer.status_code == 401, route.path
            else:
                assert answer.status_code == 303 and answer.headers["location"] == "/login", route.path
    bad = TestClient(estate.web, headers={"Authorization": "Bearer not-a-token"})
    assert bad.get("/api/v1/devices").status_code == 401
    assert bad.get("/clients/alpha").status_code == 401


def test_metrics_and_healthz_name_no_client(estate: Estate) -> None:
    client = TestClient(estate.web)
    assert client.get("/healthz").text == "ok\n"
    metrics = client.get("/metrics").text
    assert re.search(r"^vigie_agent_polls\{agent=\"[^\"]+\"\} 4\.0$", metrics, re.M), metrics
    assert "vigie_web_requests_total" in metrics
    assert "alpha" not in metrics and "beta" not in metrics


# -- what the pages and exports say -------------------------------------------------------------


def test_api_lists_the_lab_state(estate: Estate) -> None:
    client = TestClient(estate.web, headers={"Authorization": f"Bearer {TOKENS['dsi-alpha']}"})
    devices = {d["device"]: d["state"] for d in client.get("/api/v1/devices").json()}
    assert devices == {"alpha-core": "up", "alpha-fw": "down"}
    alerts = client.get("/api/v1/alerts").json()
    assert [(a["device"], a["rule"], a["state"]) for a in alerts] == [
        ("alpha-fw", "device_unreachable", "firing"), ("", "backup_coverage_gap", "firing")]
    assert alerts[1]["summary"] == "1 VM(s) of alpha in no backup: vm-a2"
    tickets = client.get("/api/v1/tickets").json()
    assert [(t["device"], t["rule"], t["status"]) for t in tickets] == [
        ("alpha-fw", "device_unreachable", "open"), ("", "backup_coverage_gap", "open")]
    availability = client.get("/api/v1/availability").json()
    services = {s["device"]: s["day_pct"] for s in availability[0]["services"]}
    assert services["alpha-core"] == 100.0 and services["alpha-fw"] == 0.0
    # down since the lab run started, seconds ago: counted until now, not to its staleness horizon
    down = {s["device"]: s["down_s"] for s in availability[0]["services"]}
    assert 0 < down["alpha-fw"] < 120
    assert client.get("/api/v1/availability?from=2026-13-01").status_code == 400


def test_inventory_reads_the_recorded_devices(estate: Estate) -> None:
    client = TestClient(estate.web, headers={"Authorization": f"Bearer {TOKENS['dsi-alpha']}"})
    rows = {r["device"]: r for r in client.get("/api/v1/inventory").json()}
    core = rows["alpha-core"]
    assert core["site"] == "alpha-site" and core["address"] == "127.0.0.1"
    assert core["version"] == "16.6.7" and "CAT9K_IOSXE" in core["description"]
    assert core["uptime_s"] > 0
    assert rows["alpha-fw"]["uptime_s"] is None  # silent from the start: nothing known, not 0


def test_inventory_export_names_the_hardware_entity_mib_reports(estate: Estate) -> None:
    """The C9300 stack's member (entPhysicalTable chassis row) gives model and serial; the version
    stays the sysDescr's (its entity says "Everest 16.6.7")."""
    client = login(estate.web, "dsi-alpha")
    sheet = openpyxl.load_workbook(io.BytesIO(client.get("/clients/alpha/export/inventory.xlsx").content)).active
    header = [c.value for c in sheet[1]]
    rows = {row[header.index("device")]: row for row in sheet.iter_rows(min_row=2, values_only=True)}
    core = rows["alpha-core"]
    assert (core[header.index("model")], core[header.index("serial")], core[header.index("version")]) == (
        "C9300-48P", "FCW2204L050", "16.6.7")
    assert rows["alpha-fw"][header.index("serial")] is None  # silent from the start: unknown


def test_exports_are_excel_tables_with_typed_columns(estate: Estate) -> None:
    client = login(estate.web, "dsi-alpha")
    for topic in ("inventory", "alerts", "tickets", "availability", "metrics"):
        answer = client.get(f"/clients/alpha/export/{topic}.xlsx")
        assert answer.status_code == 200, topic
        assert answer.headers["content-disposition"].startswith(f'attachment; filename="alpha-{topic}-')
        book = openpyxl.load_workbook(io.BytesIO(answer.content))
        sheet = book.worksheets[0]
        assert len(sheet.tables) == 1 and sheet.freeze_panes == "A2", topic
        header = [c.value for c in sheet[1]]
        assert header and all(isinstance(h, str) for h in header)
    alerts = openpyxl.load_workbook(io.BytesIO(client.get("/clients/alpha/export/alerts.xlsx").content)).active
    header = [c.value for c in alerts[1]]
    row = [c.value for c in alerts[2]]
    assert row[header.index("device")] == "alpha-fw"
    assert isinstance(row[header.index("started_at")], dt.datetime)
    metrics = openpyxl.load_workbook(io.BytesIO(client.get("/clients/alpha/export/metrics.xlsx").content)).active
    header = [c.value for c in metrics[1]]
    first = [c.value for c in metrics[2]]
    # numbers as numbers (Excel keeps 1.0 as 1), days as dates
    assert isinstance(first[header.index("day")], dt.datetime) and isinstance(first[header.index("avg")], int | float)
    assert metrics.max_row > 10  # the lab's interfaces, CPU, memory... one row per field and day


def test_csv_export_for_excel_in_french(estate: Estate) -> None:
    client = login(estate.web, "dsi-alpha")
    answer = client.get("/clients/alpha/export/inventory.csv")
    assert answer.headers["content-type"].startswith("text/csv")
    text = answer.content.decode("utf-8")
    assert text.startswith("\ufeffsite;device;address;model;serial;version")
    assert "alpha-site;alpha-core;127.0.0.1;" in text
    assert client.get("/clients/alpha/export/inventory.pdf").status_code == 404
    assert client.get("/clients/alpha/export/secrets.csv").status_code == 404


def test_client_page_lists_devices_alerts_tickets_reports_and_coverage(estate: Estate) -> None:
    client = login(estate.web, "dsi-alpha")
    page = client.get("/clients/alpha").text
    for expected in ("alpha-core", "alpha-fw", "device_unreachable", "does not answer snmp", "Couverture",
                     f"/clients/alpha/reports/{estate.report_day.isoformat()}/alpha-{estate.report_day}.html"):
        assert expected in page, expected
    coverage = page.split('id="coverage"')[1].split("</section>")[0]
    assert 'data-vm="vm-a2"' in coverage and "vm-a1" not in coverage  # protected, matched case-insensitively
    assert "vm-deleted" not in coverage and "2 VM" not in coverage
    report = client.get(f"/clients/alpha/reports/{estate.report_day}/alpha-{estate.report_day}.html")
    assert report.status_code == 200 and "Alpha Hospital" in report.text
    assert client.get(f"/clients/alpha/reports/{estate.report_day}/delivery.json").json()["sent"] is False
    assert client.get("/clients/alpha?from=2026-02-30").status_code == 400


def test_device_page_shows_its_alerts_and_last_values(estate: Estate) -> None:
    client = login(estate.web, "dsi-alpha")
    page = client.get("/clients/alpha/devices/alpha-fw").text
    assert 'data-state="down"' in page and "device_unreachable" in page
    core = client.get("/clients/alpha/devices/alpha-core").text
    assert "snmp_interface" in core and "16.6.7" in core
    assert client.get("/clients/alpha/devices/nosuch").status_code == 404


def test_device_page_shows_the_messages_plugins_keep_about_it(estate: Estate) -> None:
    asked = []

    def messages(state_dir: Path, client: str, device: str, limit: int) -> list[DeviceMessage]:
        asked.append((state_dir, client, device, limit))
        return [DeviceMessage(time.time(), "syslog", "127.0.0.1", "err", "%LINK-3-UPDOWN: Gi1/0/5 down")]

    web = WebApp(dataclasses.replace(estate.web.context, device_messages=messages))
    page = login(web, "dsi-alpha").get("/clients/alpha/devices/alpha-core").text
    assert "%LINK-3-UPDOWN: Gi1/0/5 down" in page
    assert asked == [(estate.files.path, "alpha", "alpha-core", 200)]


def test_the_web_app_never_writes_the_state_directory(estate: Estate) -> None:
    def snapshot() -> dict[str, str]:
        return {str(p.relative_to(estate.files.path)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(estate.files.path.rglob("*")) if p.is_file()}

    before = snapshot()
    noc = login(estate.web, "noc")
    for url in ("/wall", "/wall/tiles", "/clients/alpha", "/clients/beta/devices/beta-srv-zz",
                "/clients/alpha/export/metrics.xlsx", "/api/v1/availability", "/metrics"):
        assert noc.get(url).status_code == 200, url
    assert snapshot() == before


# -- config and CLI -----------------------------------------------------------------------------


def test_web_users_are_checked_with_the_config() -> None:
    good_hash = PasswordHasher().hash("x" * 12)
    base = {"clients": [{"name": "alpha", "display_name": "A"}]}
    cases = [
        ({"name": "d", "role": "dsi", "password_hash": good_hash}, "needs its client"),
        ({"name": "n", "role": "noc", "client": "alpha", "password_hash": good_hash}, "give no client"),
        ({"name": "d", "role": "dsi", "client": "zeta", "password_hash": good_hash}, "unknown client(s) zeta"),
        ({"name": "d", "role": "dsi", "client": "alpha"}, "password_hash"),
        ({"name": "d", "role": "dsi", "client": "alpha", "password_hash": "plain-text"}, "argon2"),
    ]
    for user, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            Config.model_validate({**base, "agent": {"web": {"users": [user]}}})


def test_hash_password_command_makes_an_argon2_hash() -> None:
    done = subprocess.run([sys.executable, "-m", "agent.cli", "web", "hash-password"], input="a long passphrase\n",
                          capture_output=True, text=True, timeout=30, check=True)
    hashed = done.stdout.strip()
    assert hashed.startswith("$argon2id$") and PasswordHasher().verify(hashed, "a long passphrase")



def test_hash_password_refuses_a_short_password(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert main(["web", "hash-password"]) != 0
    assert "12 characters" in capsys.readouterr().err
