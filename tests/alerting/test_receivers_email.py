"""The e-mail receiver against a real SMTP server on loopback (aiosmtpd requiring STARTTLS with a
trustme certificate, and AUTH), driven by the real engine and outbox: one mail per event threaded
by Message-ID / In-Reply-To and the subject's reference, refusals classified, and a crash between
the server's 250 and the record's commit costs neither a mail nor a second Message-ID."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes, policy

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from agent.api import ReceiverContext, SecretRef
from agent.api.ticket_text import TicketLocale
from agent.api.tickets import TicketError, TicketRef
from agent.cli import main
from alerting.notifier import TicketDispatcher
from alerting.ticketing.delivery import DeliveryRecord, record_path, ticket_ref
from alerting.ticketing.email import EMAIL, EmailOptions, EmailReceiver

from .helpers import T0, firing_alert, iface
from .test_dispatcher import Crash, crash_at, engine, fire, running, step

USER, PASSWORD = "vigie", "s3cret-smtp"
GATEWAY = "support@itsm.example.org"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Gateway:
    """What the server saw (envelope, bytes, over TLS?), and replies to give instead of 250."""

    mails: list[tuple[str, list[str], bytes, bool]] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    delay_s: float = 0.0
    unknown: set[str] = field(default_factory=set)  # addresses refused at RCPT TO

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:  # noqa: N802
        if address in self.unknown:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        if self.replies:
            return self.replies.pop(0)
        self.mails.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content,
                           session.ssl is not None))
        await asyncio.sleep(self.delay_s)  # taken, but the 250 may come after the client gave up
        return "250 OK"

    def parsed(self):
        return [message_from_bytes(raw, policy=policy.default) for _, _, raw, _ in self.mails]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    ca = trustme.CA()
    ca_file = tmp_path_factory.mktemp("pki") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return ca_file, context


def serve_gateway(seen: Gateway, tls_context: ssl.SSLContext, port: int) -> Controller:
    """An SMTP server on 127.0.0.1:``port`` for ``seen``: STARTTLS required, then AUTH as USER."""

    def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            USER.encode(), PASSWORD.encode())
        seen.logins.append((auth_data.login.decode() if isinstance(auth_data, LoginPassword) else "?", ok))
        return AuthResult(success=ok, handled=False)

    controller = Controller(
        seen, hostname="127.0.0.1", port=port, tls_context=tls_context, require_starttls=True,
        auth_required=True, auth_require_tls=True, authenticator=authenticator,
    )
    controller.start()
    seen.port = controller.port
    return controller


@pytest.fixture
def gateway(pki):
    _, context = pki
    seen = Gateway()
    controller = serve_gateway(seen, context, free_port())
    yield seen
    controller.stop()


def options(gateway, pki, **changes) -> EmailOptions:
    ca_file, _ = pki
    base = {"to": [GATEWAY], "sender": "noc@vigie.example.net", "host": "127.0.0.1", "port": gateway.port,
            "ca_bundle": str(ca_file), "username": USER, "password": {"secret": "smtp-password"}, "timeout_s": 5}
    return EmailOptions.model_validate({**base, **changes})


def context(tmp_path, secrets=None) -> ReceiverContext:
    secrets = secrets or {"smtp-password": PASSWORD}
    return ReceiverContext("vsgp", "Europe/Paris", "fr", tmp_path, lambda ref: secrets[ref.secret])


def receiver(tmp_path, opts, checkpoint=None) -> EmailReceiver:
    """As the factory builds it, with the test seam."""
    record = DeliveryRecord(record_path(tmp_path, "email", "vsgp"))
    return EmailReceiver(opts, PASSWORD, record, TicketLocale(), checkpoint=checkpoint)


async def test_open_followup_solve_are_three_mails_threaded_as_one_ticket(tmp_path, gateway, pki, clock):
    conn = EMAIL.factory(options(gateway, pki), context(tmp_path))
    assert not (tmp_path / "ticketing").exists()  # building does no I/O
    eng = engine(tmp_path, [T0])
    async with running(TicketDispatcher(str(tmp_path / "links.sqlite"), {"vsgp": conn}, clock=clock)) as disp:
        (link,) = (await step(disp, clock, T0 + 60, await fire(eng))).opened
        ref = TicketRef("email", link.ticket_id)
        assert link.ticket_id == ticket_ref(link.key) and await conn.find_open(link.key) == ref
        await conn.add_followup(ref, "Pris en charge par le N2.")
        await conn.add_followup(ref, "Pris en charge par le N2.")  # asked twice: one mail
        res = await step(disp, clock, T0 + 120, eng.evaluate([iface(T0 + 120, "up")], now=T0 + 120))
        assert len(res.solved) == 1 and await conn.find_open(link.key) is None
    await conn.close()

    opening, followup, solution = gateway.parsed()
    ref_id = link.ticket_id
    assert opening["Subject"] == f"[vigie #{ref_id}] sw-core-1 Gi0/1 down"
    assert followup["Subject"] == solution["Subject"] == f"Re: [vigie #{ref_id}] sw-core-1 Gi0/1 down"
    assert opening["Message-ID"] == f"<{ref_id}-open@vigie.example.net>" and opening["In-Reply-To"] is None
    assert solution["Message-ID"] == f"<{ref_id}-solve@vigie.example.net>"
    for later in (followup, solution):
        assert later["In-Reply-To"] == later["References"] == opening["Message-ID"]
    assert [m["To"] for m in (opening, followup, solution)] == [GATEWAY] * 3
    assert opening["Auto-Submitted"] == "auto-generated"
    text = opening.get_body(("plain",)).get_content()
    assert "Gravité : critique (critical)" in text and text.rstrip().endswith(f"[{link.key}]")
    assert "Gravité : critique (critical)" in opening.get_body(("html",)).get_content()
    assert "Rétabli : sw-core-1 Gi0/1 down." in solution.get_body(("plain",)).get_content()
    assert followup.get_body(("plain",)).get_content().strip() == "Pris en charge par le N2."
    assert all(tls for *_, tls in gateway.mails) and gateway.logins == [(USER, True)] * 3
    assert {(sender, tuple(rcpt)) for sender, rcpt, *_ in gateway.mails} == {("noc@vigie.example.net", (GATEWAY,))}
    assert (tmp_path / "ticketing" / "email" / "vsgp.sqlite").exists()


@pytest.mark.parametrize(
    ("reply", "retryable"), [("550 5.7.1 relaying denied", False), ("451 4.3.0 try again later", True)]
)
async def test_a_refused_mail_is_retried_only_on_a_4xx(tmp_path, gateway, pki, reply, retryable):
    conn = receiver(tmp_path, options(gateway, pki))
    gateway.replies.append(reply)
    with pytest.raises(TicketError) as caught:
        await conn.open(firing_alert())
    assert caught.value.retryable is retryable and reply.split()[0] in str(caught.value)
    assert await conn.find_open(firing_alert().idempotency_key) is None
    if retryable:  # the next attempt sends the same mail
        await conn.open(firing_alert())
        assert len(gateway.mails) == 1 and await conn.find_open(firing_alert().idempotency_key) is not None
    await conn.close()


async def test_a_refusal_fails_the_outbox_row_a_4xx_backs_off(tmp_path, gateway, pki, clock):
    conn = receiver(tmp_path, options(gateway, pki))
    eng = engine(tmp_path, [T0])
    gateway.replies.append("554 5.7.1 rejected")
    async with running(TicketDispatcher(str(tmp_path / "links.sqlite"), {"vsgp": conn}, clock=clock)) as disp:
        res = await step(disp, clock, T0 + 60, await fire(eng))
        assert res.failed and "554" in res.failed[0][1] and disp.links()[0].state == "failed"
    await conn.close()


async def test_connection_refused_is_retryable(tmp_path, gateway, pki):
    conn = receiver(tmp_path, options(gateway, pki, port=free_port()))
    with pytest.raises(TicketError) as caught:
        await conn.open(firing_alert())
    assert caught.value.retryable and "ConnectionRefusedError" in str(caught.value)
    await conn.close()


async def test_a_wrong_password_and_an_unknown_certificate_are_not_retried(tmp_path, gateway, pki):
    wrong = EmailReceiver(options(gateway, pki), "wrong", DeliveryRecord(tmp_path / "a.sqlite"), TicketLocale())
    with pytest.raises(TicketError) as caught:
        await wrong.open(firing_alert())
    assert not caught.value.retryable and "535" in str(caught.value) and set(gateway.logins) == {(USER, False)}
    untrusted = receiver(tmp_path, options(gateway, pki, ca_bundle=None))
    with pytest.raises(TicketError) as caught:
        await untrusted.open(firing_alert())
    assert not caught.value.retryable and "certificate" in str(caught.value)
    assert gateway.mails == []
    await wrong.close()
    await untrusted.close()


def test_options_are_checked_when_the_config_loads(tmp_path, gateway, pki):
    with pytest.raises(ValueError, match="username and password"):
        options(gateway, pki, password=None)
    with pytest.raises(ValueError, match="smtp_host"):
        EmailOptions.model_validate({"to": [GATEWAY], "sender": "noc@x.fr", "smtp_host": "h"})
    assert options(gateway, pki).password == SecretRef(secret="smtp-password")


async def test_crash_between_250_and_record_sends_the_same_message_id_again(tmp_path, gateway, pki, clock):
    """Killed after the server took each mail and before the record said so: after the restart
    the same bytes go again (same Message-ID), the ticket is neither lost nor opened twice."""
    opts = options(gateway, pki)
    links = str(tmp_path / "links.sqlite")
    eng = engine(tmp_path, [T0])
    crashing = receiver(tmp_path, opts, crash_at("after_send"))
    async with running(TicketDispatcher(links, {"vsgp": crashing}, clock=clock)) as disp:
        with pytest.raises(Crash):
            await step(disp, clock, T0 + 60, await fire(eng))
        assert disp.links()[0].state == "opening" and len(gateway.mails) == 1
    await crashing.close()  # what the process's death does to its files
    # restart: the record says 'sending', so find_open sends the recorded mail again, then finds
    # the ticket; the dispatcher re-attaches it (and says so in a follow-up)
    conn = receiver(tmp_path, opts)
    async with running(TicketDispatcher(links, {"vsgp": conn}, clock=clock)) as disp:
        res = await disp.settle()
        assert len(res.reattached) == 1 and res.opened == [] and disp.links()[0].state == "open"
    await conn.close()
    (*_, first, _), (*_, again, _), (*_, note, _) = gateway.mails
    assert first == again  # byte for byte: Message-ID, Date, subject reference
    assert "rattaché" in message_from_bytes(note, policy=policy.default).get_body(("plain",)).get_content()

    # the solution, killed the same way
    crashing = receiver(tmp_path, opts, crash_at("after_send"))
    async with running(TicketDispatcher(links, {"vsgp": crashing}, clock=clock)) as disp:
        with pytest.raises(Crash):
            await step(disp, clock, T0 + 120, eng.evaluate([iface(T0 + 120, "up")], now=T0 + 120))
    await crashing.close()
    conn = receiver(tmp_path, opts)
    async with running(TicketDispatcher(links, {"vsgp": conn}, clock=clock)) as disp:
        res = await disp.settle()
        (link,) = res.solved
        assert link.state == "solved" and not await disp.settle()  # solved once: nothing more to send
    await conn.close()

    ids = Counter(str(m["Message-ID"]) for m in gateway.parsed())
    ref_id = ticket_ref(link.key)
    # one Message-ID per event (a gateway that drops known Message-IDs files two mails)
    assert ids[f"<{ref_id}-open@vigie.example.net>"] == ids[f"<{ref_id}-solve@vigie.example.net>"] == 2
    assert len(ids) == 3 and sorted(ids.values()) == [1, 2, 2]  # and the one follow-up


async def test_crash_after_the_250_then_recovery_before_the_restart_still_solves(tmp_path, gateway, pki, clock):
    """The opening's fate unknown and the alert resolved meanwhile: the ticket is made certain
    (same mail again) and solved, not left open at the gateway."""
    opts = options(gateway, pki)
    links = str(tmp_path / "links.sqlite")
    eng = engine(tmp_path, [T0])
    crashing = receiver(tmp_path, opts, crash_at("after_send"))
    async with running(TicketDispatcher(links, {"vsgp": crashing}, clock=clock)) as disp:
        with pytest.raises(Crash):
            await step(disp, clock, T0 + 60, await fire(eng))
    await crashing.close()
    conn = receiver(tmp_path, opts)
    disp = TicketDispatcher(links, {"vsgp": conn}, clock=clock)
    clock.t = T0 + 90
    await disp.record(eng.evaluate([iface(T0 + 90, "up")], now=T0 + 90), T0 + 90)
    async with running(disp):
        res = await disp.settle()
        assert len(res.solved) == 1 and res.cancelled == []
    await conn.close()
    subjects = [(str(m["Message-ID"]).split("@")[0].split("-")[-1], m["Subject"]) for m in gateway.parsed()]
    assert [event for event, _ in subjects] == ["open", "open", "solve"]


async def test_no_reply_after_the_data_keeps_the_mail_a_refusal_renders_it_anew(tmp_path, gateway, pki):
    slow = receiver(tmp_path, options(gateway, pki, timeout_s=0.5))
    gateway.delay_s = 1.5  # the gateway takes the mail, its 250 comes too late
    with pytest.raises(TicketError) as caught:
        await slow.open(firing_alert())
    assert caught.value.retryable
    await slow.close()
    gateway.delay_s = 0
    conn = receiver(tmp_path, options(gateway, pki))
    assert await conn.find_open(firing_alert().idempotency_key) is not None  # made certain: sent again
    first, again = gateway.parsed()
    assert first["Message-ID"] == again["Message-ID"] and first["Date"] == again["Date"]

    gateway.replies.append("550 5.1.1 mailbox unknown")
    with pytest.raises(TicketError):
        await conn.add_followup(TicketRef("email", ticket_ref(firing_alert().idempotency_key)), "Note.")
    await conn.close()
    fixed = receiver(tmp_path, options(gateway, pki, to=["itsm@vsgp.example.org"]))  # the operator's fix
    await fixed.add_followup(TicketRef("email", ticket_ref(firing_alert().idempotency_key)), "Note.")
    assert gateway.parsed()[-1]["To"] == "itsm@vsgp.example.org"  # refused, so rendered with the new address
    await fixed.close()


async def test_crash_after_the_record_and_before_the_link_reattaches_without_a_second_mail(
    tmp_path, gateway, pki, clock
):
    opts = options(gateway, pki)
    links = str(tmp_path / "links.sqlite")
    eng = engine(tmp_path, [T0])
    conn = receiver(tmp_path, opts)
    async with running(TicketDispatcher(links, {"vsgp": conn}, clock=clock, checkpoint=crash_at("after_open"))) as d:
        with pytest.raises(Crash):
            await step(d, clock, T0 + 60, await fire(eng))
    await conn.close()
    conn = receiver(tmp_path, opts)
    async with running(TicketDispatcher(links, {"vsgp": conn}, clock=clock)) as disp:
        res = await disp.settle()
        assert len(res.reattached) == 1 and res.opened == []
    await conn.close()
    opening, note = gateway.parsed()
    assert opening["Message-ID"] == f"<{res.reattached[0].ticket_id}-open@vigie.example.net>"
    assert note["In-Reply-To"] == opening["Message-ID"] and "rattaché" in note.get_body(("plain",)).get_content()


def test_check_config_online_logs_in_and_asks_the_relay_without_sending(tmp_path, gateway, pki, capsys):
    ca_file, _ = pki
    gateway.unknown.add("old-gateway@itsm.example.org")
    config = tmp_path / "vigie.yaml"
    config.write_text(f"""clients:
  - name: vsgp
    display_name: VSGP
    ticketing: {{kind: email, to: [{GATEWAY}, old-gateway@itsm.example.org], sender: noc@vigie.example.net,
                host: 127.0.0.1, port: {gateway.port}, ca_bundle: "{ca_file}", username: {USER},
                password: {{secret: smtp-password}}}}
    sites:
      - name: s
        devices:
          - {{name: sw, address: 127.0.0.1, credentials: sw, collectors: {{snmp: }}}}
""")
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(f"sw: {{community: public}}\nsmtp-password: {PASSWORD}\n")
    secrets.chmod(0o600)
    assert main(["check-config", str(config), "--secrets", str(secrets), "--online"]) == 2
    out = capsys.readouterr().out
    assert "vsgp: tickets: email: ok: connect, STARTTLS, log in: smtp 127.0.0.1:" in out and "TLSv1." in out
    assert "ok: send as noc@vigie.example.net: 250" in out and f"ok: send to {GATEWAY}: 250" in out
    assert "PROBLEM: send to old-gateway@itsm.example.org: 550 5.1.1 no such mailbox" in out
    assert gateway.mails == [] and gateway.logins == [(USER, True)]  # logged in, nothing sent


async def test_check_online_names_a_refused_login(tmp_path, gateway, pki):
    wrong = EmailReceiver(options(gateway, pki), "wrong", DeliveryRecord(tmp_path / "a.sqlite"), TicketLocale())
    (check,) = await wrong.check_online()
    assert (check.what, check.ok) == ("connect, STARTTLS, log in", False) and "535" in check.detail
    await wrong.close()
