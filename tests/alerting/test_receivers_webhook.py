"""The signed webhook receiver against a real HTTP server on loopback (aiohttp) that checks the
HMAC-SHA256 signature and the timestamp, and drops a delivery id it has already processed, as the
documented receiver does; driven by the real engine and outbox."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from agent.api import ReceiverContext
from agent.api.outbound import HttpTarget
from agent.api.ticket_text import TicketLocale
from agent.api.tickets import TicketError, TicketRef
from alerting.notifier import TicketDispatcher
from alerting.ticketing.delivery import DeliveryRecord, record_path, ticket_ref
from alerting.ticketing.webhook import WEBHOOK, WebhookOptions, WebhookReceiver

from .helpers import T0, firing_alert, iface
from .test_dispatcher import Crash, crash_at, engine, fire, running, step

SECRET = "whsec-0123456789"
TOLERANCE_S = 300


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Receiver:
    """A webhook receiver as docs/CONFIGURATION.md tells one to write it: signature over
    ``<timestamp>.<body>``, timestamp within 5 minutes, deliveries processed once by id."""

    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    processed: dict[str, dict] = field(default_factory=dict)
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    delay_s: float = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((dict(request.headers), body))
        if self.answers:
            status, headers = self.answers.pop(0)
            return web.Response(status=status, headers=headers, text="scripted")
        timestamp = request.headers.get("X-Vigie-Timestamp", "")
        expected = "sha256=" + hmac.new(SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("X-Vigie-Signature", "")):
            return web.Response(status=401, text="bad signature")
        if abs(time.time() - int(timestamp)) > TOLERANCE_S:
            return web.Response(status=401, text="stale timestamp")
        delivery = request.headers["X-Vigie-Delivery"]
        if delivery not in self.processed:
            self.processed[delivery] = json.loads(body)
        await asyncio.sleep(self.delay_s)
        return web.json_response({"ok": True})


@pytest.fixture
async def hook():
    peer = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/vigie", peer.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    peer.url = f"http://127.0.0.1:{port}/hooks/vigie"
    yield peer
    await runner.cleanup()


def receiver(tmp_path, url, secret=SECRET, checkpoint=None, clock=time.time) -> WebhookReceiver:
    target = HttpTarget(url, verify=True, ca_bundle=None, timeout_s=5, clock=clock)
    record = DeliveryRecord(record_path(tmp_path, "webhook", "vsgp"), clock=clock)
    return WebhookReceiver(target, secret, record, TicketLocale(), checkpoint=checkpoint)


async def test_open_followup_solve_are_three_signed_deliveries(tmp_path, hook, clock):
    ctx = ReceiverContext("vsgp", "Europe/Paris", "fr", tmp_path, lambda ref: {"hook-key": SECRET}[ref.secret])
    conn = WEBHOOK.factory(WebhookOptions(url=hook.url, secret={"secret": "hook-key"}), ctx)
    eng = engine(tmp_path, [T0])
    async with running(TicketDispatcher(str(tmp_path / "links.sqlite"), {"vsgp": conn}, clock=clock)) as disp:
        (link,) = (await step(disp, clock, T0 + 60, await fire(eng))).opened
        ref = TicketRef("webhook", link.ticket_id)
        await conn.add_followup(ref, "Pris en charge.")
        res = await step(disp, clock, T0 + 120, eng.evaluate([iface(T0 + 120, "up")], now=T0 + 120))
        assert len(res.solved) == 1
    await conn.close()

    ticket = ticket_ref(link.key)
    opened, followed, solved = hook.processed.values()
    assert len(hook.processed) == len(hook.received) == 3
    assert opened["schema"] == "vigie.ticket/1" and opened["event"] == "open"
    assert opened["ticket"] == ticket and opened["idempotency_key"] == link.key
    assert opened["delivery_id"] == f"{ticket}-open" and opened["client"] == "vsgp"
    assert opened["title"] == f"[{link.key}] sw-core-1 Gi0/1 down" and "Gravité : critique" in opened["text"]
    alert = opened["alert"]
    assert (alert["rule"], alert["severity"], alert["labels"]["device"]) == ("interface_down", "critical", "sw-core-1")
    assert alert["started_at"] == T0 and alert["fired_at"] == T0 + 60 and alert["resolved_at"] is None
    assert followed["event"] == "followup" and followed["in_reply_to"] == f"{ticket}-open"
    assert followed["text"] == "Pris en charge."
    assert solved["event"] == "solve" and solved["alert"]["resolved_at"] == T0 + 120
    assert solved["text"].startswith("Rétabli : sw-core-1 Gi0/1 down.")
    headers = [h for h, _ in hook.received]
    assert [h["X-Vigie-Event"] for h in headers] == ["open", "followup", "solve"]
    assert all(h["Idempotency-Key"] == h["X-Vigie-Delivery"] for h in headers)
    assert all(h["Content-Type"] == "application/json" for h in headers)


async def test_a_wrong_secret_is_refused_and_not_retried(tmp_path, hook, clock):
    conn = receiver(tmp_path, hook.url, secret="not-the-secret")
    eng = engine(tmp_path, [T0])
    async with running(TicketDispatcher(str(tmp_path / "links.sqlite"), {"vsgp": conn}, clock=clock)) as disp:
        res = await step(disp, clock, T0 + 60, await fire(eng))
        assert "HTTP 401: bad signature" in res.failed[0][1] and disp.links()[0].state == "failed"
    assert hook.processed == {}
    await conn.close()


@pytest.mark.parametrize(
    ("status", "headers", "retryable", "wait_s"),
    [
        (503, {"Retry-After": "120"}, True, 120.0),
        (429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, True, 45.0),  # an HTTP date, 45 s ahead
        (500, {}, True, None),
        (400, {}, False, None),
        (404, {}, False, None),
        (307, {"Location": "http://127.0.0.1:9/elsewhere"}, False, None),  # not followed: the body stays here
    ],
)
async def test_5xx_and_429_are_retried_with_retry_after_4xx_are_not(tmp_path, hook, status, headers, retryable, wait_s):
    now = 1445412435.0  # 2015-10-21 07:27:15 UTC
    conn = receiver(tmp_path, hook.url, clock=lambda: now)
    hook.answers.append((status, headers))
    with pytest.raises(TicketError) as caught:
        await conn.open(firing_alert())
    assert caught.value.retryable is retryable and caught.value.retry_after_s == wait_s
    assert f"HTTP {status}" in str(caught.value) and "/hooks/vigie" in str(caught.value)
    await conn.close()


async def test_the_outbox_waits_what_retry_after_asked_then_delivers(tmp_path, hook, clock):
    conn = receiver(tmp_path, hook.url)
    eng = engine(tmp_path, [T0])
    hook.answers.append((503, {"Retry-After": "600"}))
    async with running(TicketDispatcher(str(tmp_path / "links.sqlite"), {"vsgp": conn}, clock=clock)) as disp:
        res = await step(disp, clock, T0 + 60, await fire(eng))
        assert res.retrying and disp.links()[0].next_attempt_at == T0 + 60 + 600
        assert not await step(disp, clock, T0 + 60 + 599)
        res = await step(disp, clock, T0 + 60 + 600)
        assert len(res.opened) == 1
    (first, _), (again, _) = hook.received
    assert first["X-Vigie-Delivery"] == again["X-Vigie-Delivery"] and len(hook.processed) == 1
    await conn.close()


async def test_an_unreachable_receiver_is_retryable(tmp_path):
    conn = receiver(tmp_path, f"http://127.0.0.1:{free_port()}/hooks/vigie")
    with pytest.raises(TicketError) as caught:
        await conn.open(firing_alert())
    assert caught.value.retryable and "no connection" in str(caught.value)
    await conn.close()


async def test_crash_between_2xx_and_record_sends_the_same_delivery_again(tmp_path, hook, clock):
    links = str(tmp_path / "links.sqlite")
    eng = engine(tmp_path, [T0])
    earlier = time.time() - 60  # the retry, a minute later, is signed afresh at its own time
    crashing = receiver(tmp_path, hook.url, checkpoint=crash_at("after_send"), clock=lambda: earlier)
    async with running(TicketDispatcher(links, {"vsgp": crashing}, clock=clock)) as disp:
        with pytest.raises(Crash):
            await step(disp, clock, T0 + 60, await fire(eng))
    await crashing.close()  # what the process's death does to its sockets and files
    conn = receiver(tmp_path, hook.url)
    async with running(TicketDispatcher(links, {"vsgp": conn}, clock=clock)) as disp:
        res = await disp.settle()  # find_open sends the opening again, finds the ticket: re-attached
        assert len(res.reattached) == 1 and res.opened == [] and disp.links()[0].state == "open"
    await conn.close()
    (first, body), (again, body_again), (note, _) = hook.received
    assert body == body_again and first["X-Vigie-Delivery"] == again["X-Vigie-Delivery"]
    assert first["X-Vigie-Timestamp"] != again["X-Vigie-Timestamp"]
    assert note["X-Vigie-Event"] == "followup"
    assert list(hook.processed)[0] == first["X-Vigie-Delivery"]  # one delivery id, processed once

    crashing = receiver(tmp_path, hook.url, checkpoint=crash_at("after_send"))
    async with running(TicketDispatcher(links, {"vsgp": crashing}, clock=clock)) as disp:
        with pytest.raises(Crash):
            await step(disp, clock, T0 + 120, eng.evaluate([iface(T0 + 120, "up")], now=T0 + 120))
    await crashing.close()
    conn = receiver(tmp_path, hook.url)
    async with running(TicketDispatcher(links, {"vsgp": conn}, clock=clock)) as disp:
        res = await disp.settle()
        assert len(res.solved) == 1
    await conn.close()
    ticket = ticket_ref(res.solved[0].key)
    sent = Counter(h["X-Vigie-Delivery"] for h, _ in hook.received)
    assert sent[f"{ticket}-open"] == sent[f"{ticket}-solve"] == 2 and sorted(sent.values()) == [1, 2, 2]
    assert len(hook.processed) == 3 and {f"{ticket}-open", f"{ticket}-solve"} <= set(hook.processed)


async def test_a_timeout_after_the_request_went_out_sends_the_same_delivery_again(tmp_path, hook):
    target = HttpTarget(hook.url, verify=True, ca_bundle=None, timeout_s=0.5)
    slow = WebhookReceiver(target, SECRET, DeliveryRecord(record_path(tmp_path, "webhook", "vsgp")), TicketLocale())
    hook.delay_s = 1.5  # processed, but the answer comes after the agent gave up
    with pytest.raises(TicketError) as caught:
        await slow.open(firing_alert())
    assert caught.value.retryable and "no response" in str(caught.value)
    hook.delay_s = 0
    assert await slow.find_open(firing_alert().idempotency_key) is not None  # made certain
    await slow.close()
    (first, body), (again, body_again) = hook.received
    assert first["X-Vigie-Delivery"] == again["X-Vigie-Delivery"] and body == body_again
    assert len(hook.processed) == 1


async def test_check_online_says_whether_the_receiver_is_reachable(tmp_path, hook):
    conn = receiver(tmp_path, hook.url)
    (check,) = await conn.check_online()
    assert check.ok and check.what.startswith("reach 127.0.0.1:") and hook.received == []
    await conn.close()
    down = receiver(tmp_path, f"http://127.0.0.1:{free_port()}/hooks/vigie")
    (check,) = await down.check_online()
    assert not check.ok and "ConnectionRefusedError" in check.detail
    await down.close()
