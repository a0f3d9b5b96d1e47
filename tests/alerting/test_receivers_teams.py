"""The Teams receiver against a loopback HTTPS server (trustme certificate) standing for a
Workflows "Post to a channel when a webhook request is received" trigger: it checks the message
shape Microsoft documents (one Adaptive Card attachment) and the URL's ``sig``, answers 202."""

from __future__ import annotations

import dataclasses
import json
import socket
import ssl

import pytest
import trustme
from aiohttp import web

from agent.api import ReceiverContext
from agent.api.outbound import MAX_MESSAGE_BYTES, HttpTarget
from agent.api.ticket_text import TicketLocale
from agent.api.tickets import TicketError, TicketRef
from alerting.notifier import TicketDispatcher
from alerting.ticketing.delivery import DeliveryRecord, record_path, ticket_ref
from alerting.ticketing.teams import TEAMS, TeamsOptions, TeamsReceiver

from .helpers import T0, firing_alert, iface
from .test_dispatcher import Crash, crash_at, engine, fire, running, step

SIG = "Zx9-signature"
PATH = "/powerautomate/automations/direct/workflows/0d1e/triggers/manual/paths/invoke"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def card_problems(message: dict) -> list[str]:
    """What the Workflows trigger and Teams would refuse or not render in ``message``."""
    problems = []
    if message.get("type") != "message":
        problems.append("type is not 'message'")
    attachments = message.get("attachments")
    if not isinstance(attachments, list) or len(attachments) != 1:
        return [*problems, "not exactly one attachment"]
    (attachment,) = attachments
    if attachment.get("contentType") != "application/vnd.microsoft.card.adaptive":
        problems.append("contentType")
    if "contentUrl" not in attachment or attachment["contentUrl"] is not None:
        problems.append("contentUrl must be null")
    content = attachment.get("content", {})
    if content.get("type") != "AdaptiveCard" or content.get("$schema") != "http://adaptivecards.io/schemas/adaptive-card.json":
        problems.append("content is not an AdaptiveCard")
    if tuple(int(p) for p in str(content.get("version", "9")).split(".")) > (1, 5):
        problems.append("card version above what Teams renders")
    for block in content.get("body", []):
        if block.get("type") != "TextBlock" or not isinstance(block.get("text"), str) or not block["text"]:
            problems.append(f"body element {block!r}")
    if not content.get("body"):
        problems.append("empty body")
    return problems


class Workflow:
    def __init__(self):
        self.posts: list[dict] = []
        self.answers: list[int] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        if request.query.get("sig") != SIG:
            return web.json_response({"error": {"code": "DirectApiAuthorizationRequired"}}, status=401)
        message = json.loads(await request.read())
        if self.answers:
            return web.Response(status=self.answers.pop(0), text="throttled or failed")
        if problems := card_problems(message):
            return web.json_response({"error": {"code": "InvalidTemplate", "message": "; ".join(problems)}}, status=400)
        self.posts.append(message)
        return web.Response(status=202)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    ca = trustme.CA()
    ca_file = tmp_path_factory.mktemp("pki") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return ca_file, context


@pytest.fixture
async def workflow(pki):
    _, context = pki
    flow = Workflow()
    app = web.Application()
    app.router.add_post(PATH, flow.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    flow.url = f"https://127.0.0.1:{port}{PATH}?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={SIG}"
    yield flow
    await runner.cleanup()


def receiver(tmp_path, url, pki, checkpoint=None) -> TeamsReceiver:
    ca_file, _ = pki
    target = HttpTarget(url, verify=True, ca_bundle=ca_file, timeout_s=5)
    return TeamsReceiver(target, DeliveryRecord(record_path(tmp_path, "teams", "vsgp")), TicketLocale(),
                         checkpoint=checkpoint)


def texts(message: dict) -> list[str]:
    return [block["text"] for block in message["attachments"][0]["content"]["body"]]


async def test_open_followup_solve_post_three_cards_the_later_ones_naming_the_first(tmp_path, workflow, pki, clock):
    ca_file, _ = pki
    ctx = ReceiverContext("vsgp", "Europe/Paris", "fr", tmp_path, lambda ref: {"teams-noc": workflow.url}[ref.secret])
    conn = TEAMS.factory(TeamsOptions(url={"secret": "teams-noc"}, ca_bundle=ca_file), ctx)
    eng = engine(tmp_path, [T0])
    async with running(TicketDispatcher(str(tmp_path / "links.sqlite"), {"vsgp": conn}, clock=clock)) as disp:
        (link,) = (await step(disp, clock, T0 + 60, await fire(eng))).opened
        await conn.add_followup(TicketRef("teams", link.ticket_id), "Pris en charge par le N2.")
        assert len((await step(disp, clock, T0 + 120, eng.evaluate([iface(T0 + 120, "up")], now=T0 + 120))).solved)
    await conn.close()

    opening, followup, solution = workflow.posts
    ref = ticket_ref(link.key)
    title = f"[vigie #{ref}] sw-core-1 Gi0/1 down"
    assert texts(opening)[0] == title and "Gravité : critique (critical)" in texts(opening)
    assert texts(opening)[-1] == f"[{link.key}] {ref}-open"
    assert opening["attachments"][0]["content"]["body"][0]["color"] == "Attention"
    assert texts(followup)[:2] == [f"Re: {title}", "Pris en charge par le N2."]
    assert texts(solution)[0] == f"Re: {title}" and texts(solution)[1].startswith("Rétabli : sw-core-1 Gi0/1 down.")
    assert solution["attachments"][0]["content"]["body"][0]["color"] == "Good"
    assert all(texts(later)[-1].endswith(f"↩ {ref}-open") for later in (followup, solution))


async def test_a_refused_card_is_not_retried_throttling_is(tmp_path, workflow, pki):
    conn = receiver(tmp_path, workflow.url, pki)
    workflow.answers.append(429)
    with pytest.raises(TicketError) as caught:
        await conn.open(firing_alert())
    assert caught.value.retryable and "HTTP 429" in str(caught.value)
    assert SIG not in str(caught.value)  # the URL's credential never shows
    await conn.close()
    wrong = receiver(tmp_path, workflow.url.replace(SIG, "revoked"), pki)
    with pytest.raises(TicketError) as caught:
        await wrong.open(firing_alert())
    assert not caught.value.retryable and "HTTP 401" in str(caught.value) and "revoked" not in str(caught.value)
    await wrong.close()
    assert workflow.posts == []


async def test_an_unknown_certificate_is_refused_and_not_retried(tmp_path, workflow):
    conn = TeamsReceiver(HttpTarget(workflow.url, verify=True, ca_bundle=None, timeout_s=5),
                         DeliveryRecord(tmp_path / "t.sqlite"), TicketLocale())
    with pytest.raises(TicketError) as caught:
        await conn.open(firing_alert())
    assert not caught.value.retryable and "certificate" in str(caught.value)
    await conn.close()


async def test_a_long_configuration_diff_is_cut_to_fit_and_the_facts_stay(tmp_path, workflow, pki):
    alert = firing_alert()
    diff = "\n".join(f"+ interface Gi0/{i}\n+  description {'x' * 200}" for i in range(400))
    alert = dataclasses.replace(alert, summary=f"configuration of sw-core-1 changed\n{diff}\n" + "y" * 5000)
    conn = receiver(tmp_path, workflow.url, pki)
    await conn.open(alert)
    await conn.close()
    (posted,) = workflow.posts
    lines = texts(posted)
    assert len(json.dumps(posted, ensure_ascii=False).encode()) <= MAX_MESSAGE_BYTES
    assert lines[1] == "configuration of sw-core-1 changed" and lines[2] == "+ interface Gi0/0" and "…" in lines
    assert "Gravité : critique (critical)" in lines and "Règle : interface_down" in lines


def test_the_workflow_url_must_be_https(tmp_path):
    ctx = ReceiverContext("vsgp", "Europe/Paris", "fr", tmp_path, lambda ref: "http://prod-00.example/x?sig=a")
    with pytest.raises(ValueError, match="https"):
        TEAMS.factory(TeamsOptions(url={"secret": "teams-noc"}), ctx)


async def test_crash_between_202_and_record_posts_the_same_card_again_never_none(tmp_path, workflow, pki, clock):
    links = str(tmp_path / "links.sqlite")
    eng = engine(tmp_path, [T0])
    crashing = receiver(tmp_path, workflow.url, pki, crash_at("after_send"))
    async with running(TicketDispatcher(links, {"vsgp": crashing}, clock=clock)) as disp:
        with pytest.raises(Crash):
            await step(disp, clock, T0 + 60, await fire(eng))
    await crashing.close()
    conn = receiver(tmp_path, workflow.url, pki)
    async with running(TicketDispatcher(links, {"vsgp": conn}, clock=clock)) as disp:
        res = await disp.settle()
        assert len(res.reattached) == 1 and disp.links()[0].state == "open"
        res = await step(disp, clock, T0 + 120, eng.evaluate([iface(T0 + 120, "up")], now=T0 + 120))
        assert len(res.solved) == 1
    await conn.close()
    first, again, note, solution = workflow.posts
    assert first == again  # the same card, its footer naming the same delivery
    assert "rattaché" in texts(note)[1] and texts(solution)[1].startswith("Rétabli")


async def test_check_online_reaches_the_workflow_over_verified_tls_and_posts_nothing(tmp_path, workflow, pki):
    conn = receiver(tmp_path, workflow.url, pki)
    (check,) = await conn.check_online()
    assert check.ok and "certificate verified" in check.detail and SIG not in check.detail
    untrusted = TeamsReceiver(HttpTarget(workflow.url, verify=True, ca_bundle=None, timeout_s=5),
                              DeliveryRecord(tmp_path / "t.sqlite"), TicketLocale())
    (check,) = await untrusted.check_online()
    assert not check.ok and "TLS certificate refused" in check.detail
    assert workflow.posts == []
    await conn.close()
    await untrusted.close()
