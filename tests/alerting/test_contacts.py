"""Escalation, on-call duty and the client's perimeter (alerting/escalation.py, alerting/contacts.py)
against real peers on loopback: an aiosmtpd relay requiring STARTTLS and AUTH, an HTTPS server
standing for a Teams workflow, the real engine, outbox and ticket log; every clock driven."""

from __future__ import annotations

import datetime as dt
import logging
import re
import sqlite3
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pydantic
import pytest

from agent.api import FIRING, RESOLVED, AlertTransition
from agent.api.outbound import HttpTarget, SmtpRelay
from agent.config import Client
from agent.config.schema import BUILTIN_RULES, Config
from agent.statedir import StateDir
from agent.views import transmission_rows
from alerting.contacts import ContactNotifier, MailRelay, NotificationLog
from alerting.engine import AlertEngine
from alerting.escalation import Duty
from alerting.notifier import TicketDispatcher
from alerting.sla import sla_day
from alerting.ticketing.log import TicketLog

from .helpers import T0, firing_alert, iface
from .test_dispatcher import engine, fire, running, step
from .test_receivers_email import PASSWORD, USER, gateway, pki  # noqa: F401 - fixtures
from .test_receivers_teams import texts, workflow  # noqa: F401 - fixture

PARIS = ZoneInfo("Europe/Paris")
SENDER = "noc@vigie.example.net"

CLIENT = {
    "name": "vsgp",
    "display_name": "VSGP",
    "holidays": ["fr"],  # service hours: Mon-Fri 08:00-18:00 by default
    "contacts": [
        {"name": "alice", "email": "alice@vsgp.example.org", "teams": {"secret": "teams-alice"},
         "phone": "+33 1 23 45 67 89"},
        {"name": "bob", "email": "bob@vsgp.example.org"},
        {"name": "carol", "email": "carol@vsgp.example.org"},
        {"name": "dsi", "email": "dsi@vsgp.example.org", "role": "DSI"},
    ],
    "escalation": {"after_min": {"critical": 5}, "contacts": ["alice", "bob", "carol"]},
    "on_call": {
        "weekly": {"from": "2026-11-30", "contacts": ["alice", "bob"]},  # Mondays 08:00
        "ranges": [{"start": "2026-12-24T18:00", "end": "2026-12-28T08:00", "contact": "carol"}],
    },
    "perimeter": {"contacts": ["dsi"], "match": [{"match": {"managed_by": "client"}}]},
    "sites": [
        {"name": "hdv", "devices": [
            {"name": "sw-core-1", "address": "10.0.0.1", "tags": {"role": "core"}},
            {"name": "sw-lab", "address": "10.0.0.9", "tags": {"role": "core", "managed_by": "client"}},
        ]},
        {"name": "annexe", "responsibility": "client", "devices": [
            {"name": "sw-annexe", "address": "10.1.0.1", "tags": {"role": "core"}},
            {"name": "fw-annexe", "address": "10.1.0.254", "responsibility": "provider"},
        ]},
    ],
}


def local(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=PARIS).timestamp()


@dataclass
class Harness:
    duty: Duty
    samples: list
    workflow: HttpTarget

    async def close(self) -> None:
        await self.duty.stop()
        await self.workflow.close()


def harness(tmp_path, clock, gateway, pki, workflow, tickets=None, firing=lambda: (), client=None):  # noqa: F811
    ca_file, _ = pki
    relay = SmtpRelay("127.0.0.1", gateway.port, ca_bundle=ca_file, username=USER, password=PASSWORD, timeout_s=5)
    alice = HttpTarget(workflow.url, verify=True, ca_bundle=ca_file, timeout_s=5)
    samples: list = []

    async def submit(batch):
        samples.extend(batch)

    async def followup(client_name, ref, text):
        await tickets.add_followup(ref, text)

    notifier = ContactNotifier(
        NotificationLog(StateDir(tmp_path).notifications_db), mail=MailRelay(relay, SENDER, 3),
        teams=lambda client_name, contact: alice, followup=followup, submit=submit, clock=clock,
    )
    duty = Duty([client or Client.model_validate(CLIENT)], StateDir(tmp_path).outbox_db, notifier, clock,
                firing=firing)
    return Harness(duty, samples, alice)


def recipients(gateway) -> list[str]:  # noqa: F811
    return [rcpt for _, rcpts, _, _ in gateway.mails for rcpt in rcpts]


def subjects(gateway) -> list[str]:  # noqa: F811
    return [str(m["Subject"]) for m in gateway.parsed()]


# -- the configuration ---------------------------------------------------------------------------


def test_responsibility_follows_the_inventory_lookup_order():
    client = Client.model_validate(CLIENT)
    whose = {device.name: client.responsibility(site, device) for site, device in client.devices()}
    # sw-core-1: nothing says -> provider; sw-lab: its tags; sw-annexe: its site; fw-annexe: its own key wins
    assert whose == {"sw-core-1": "provider", "sw-lab": "client", "sw-annexe": "client", "fw-annexe": "provider"}


@pytest.mark.parametrize(("change", "message"), [
    ({"escalation": {"after_min": {"critical": 5}, "contacts": ["alice", "zoe"]}},
     "escalation.contacts: unknown contact 'zoe'"),
    ({"contacts": [{"name": "alice"}]}, "contact 'alice': give email, teams"),
    ({"on_call": {"weekly": {"from": "2026-12-01", "contacts": ["alice"]}}}, "2026-12-01 is a tue"),
    ({"on_call": {}}, "give the rota"),
    ({"perimeter": {}}, "site annexe is the client's (responsibility: client)"),
    ({"escalation": {"after_min": {"critical": True}, "contacts": ["alice"]}}, "not a boolean"),
    ({"sites": [{"name": "x", "responsibility": "them"}]}, "'provider' or 'client'"),
])
def test_a_bad_duty_setting_is_an_error_naming_it(change, message):
    with pytest.raises(pydantic.ValidationError, match=re.escape(message)):
        Client.model_validate({**CLIENT, **change})


def test_contacts_mailed_need_the_agents_relay():
    with pytest.raises(pydantic.ValidationError, match=r"vsgp/alice.*need agent.smtp"):
        Config.model_validate({"clients": [CLIENT]})
    Config.model_validate({"clients": [CLIENT], "agent": {"smtp": {"host": "127.0.0.1", "sender": SENDER}}})


def test_the_rota_hands_over_on_monday_0800_and_ranges_come_first():
    on_call = Client.model_validate(CLIENT).on_call
    at = lambda text: dt.datetime.fromisoformat(text).replace(tzinfo=PARIS)  # noqa: E731
    assert on_call.on_duty(at("2026-11-30T08:00")) == "alice"
    assert on_call.on_duty(at("2026-12-07T07:59")) == "alice"
    assert on_call.on_duty(at("2026-12-07T08:00")) == "bob"
    assert on_call.on_duty(at("2026-11-30T07:59")) == "bob"  # the week before the first: the list wraps
    assert on_call.on_duty(at("2026-12-21T08:00")) == "bob"
    assert on_call.on_duty(at("2026-12-24T18:00")) == "carol"  # a range: Christmas
    assert on_call.on_duty(at("2026-12-28T08:00")) == "alice"


# -- escalation ----------------------------------------------------------------------------------


async def test_an_untaken_ticket_escalates_down_the_list_a_restart_repeats_nothing(
    tmp_path, clock, gateway, pki, workflow,  # noqa: F811
):
    tickets = TicketLog(str(tmp_path / "log.sqlite"), clock=clock)
    eng = engine(tmp_path, [T0])
    async with running(TicketDispatcher(str(StateDir(tmp_path).outbox_db), {"vsgp": tickets}, clock=clock)) as disp:
        (link,) = (await step(disp, clock, T0 + 60, await fire(eng))).opened
        opened = link.opened_at
        h = harness(tmp_path, clock, gateway, pki, workflow, tickets)

        clock.t = opened + 5 * 60 - 1
        await h.duty.tick()
        assert gateway.mails == [] and workflow.posts == []

        clock.t = opened + 5 * 60
        await h.duty.tick()
        assert recipients(gateway) == ["alice@vsgp.example.org"]
        (subject,) = subjects(gateway)
        assert subject == "[vigie] Escalade 1/3 : ticket log#1 non pris en charge depuis 5 min"
        body = gateway.parsed()[0].get_body(("plain",)).get_content()
        assert "Vous êtes le contact d'escalade 1/3" in body and link.key in body
        assert gateway.mails[0][3]  # over TLS
        (card,) = workflow.posts
        assert texts(card)[0] == subject
        (followup,) = tickets.followups(int(link.ticket_id))
        assert followup.startswith("Escalade 1/3 : ticket non pris en charge après 5 min ; alice prévenu(e) "
                                   "(email, teams).")

        await h.duty.tick()  # asked again: the same rows, nothing more
        assert len(gateway.mails) == 1

        clock.t = opened + 10 * 60
        await h.duty.tick()
        assert recipients(gateway) == ["alice@vsgp.example.org", "bob@vsgp.example.org"]
        assert len(tickets.followups(int(link.ticket_id))) == 2
        await h.close()

        # a restart: a new log on the same file, the same steps due -> nothing sent again
        h = harness(tmp_path, clock, gateway, pki, workflow, tickets)
        h.duty.start()
        await h.duty.tick()
        assert len(gateway.mails) == 2 and len(workflow.posts) == 1
        assert len(tickets.followups(int(link.ticket_id))) == 2

        # taken in charge (the ITSM's read-back writes taken_at): carol is never called
        with sqlite3.connect(StateDir(tmp_path).outbox_db) as db:
            db.execute("UPDATE ticket_links SET taken_at=? WHERE key=?", (opened + 11 * 60, link.key))
        clock.t = opened + 60 * 60
        await h.duty.tick()
        assert len(gateway.mails) == 2
        await h.close()


async def test_the_taken_at_column_is_added_once_whoever_comes_first(tmp_path):
    from alerting.escalation import ensure_taken_at

    await TicketDispatcher(str(tmp_path / "outbox.sqlite"), {}).stop()  # an outbox of before the read-back
    db = sqlite3.connect(tmp_path / "outbox.sqlite")
    ensure_taken_at(db)
    ensure_taken_at(db)
    assert "taken_at" in {r[1] for r in db.execute("PRAGMA table_info(ticket_links)")}


# -- on-call -------------------------------------------------------------------------------------


async def test_on_call_outside_service_hours_across_a_weekend_and_a_holiday(
    tmp_path, clock, gateway, pki, workflow,  # noqa: F811
):
    def fired(text, severity="critical", fp="0123456789abcdef"):
        alert = firing_alert(severity, fp=fp, fired_at=local(text))
        return AlertTransition(alert, "pending", FIRING, alert.fired_at)

    cases = [
        ("2026-12-05T03:00", ["alice@vsgp.example.org"]),  # Saturday night: week of Monday 30 Nov
        ("2026-12-07T07:30", ["alice@vsgp.example.org"]),  # Monday before 08:00: still alice's week
        ("2026-12-07T08:30", []),  # Monday within service hours: the ticket is the whole answer
        ("2026-12-08T20:00", ["bob@vsgp.example.org"]),  # Tuesday evening: bob's week
        ("2026-12-25T10:00", ["carol@vsgp.example.org"]),  # Christmas, a Friday: a holiday; carol's range
        ("2026-12-28T09:00", []),  # Monday after, within service hours
    ]
    h = harness(tmp_path, clock, gateway, pki, workflow)
    for i, (when, expected) in enumerate(cases):
        before = len(gateway.mails)
        clock.t = local(when) + 1
        await h.duty.record([fired(when, fp=f"{i:016x}"), fired(when, "major", fp=f"{i + 100:016x}")])
        await h.duty.tick()
        assert recipients(gateway)[before:] == expected, when
    assert len(workflow.posts) == 2  # alice's two calls, on Teams too
    assert all(s.startswith("[vigie] Astreinte : sw-core-1 Gi0/1 down") for s in subjects(gateway))
    await h.close()

    h = harness(tmp_path, clock, gateway, pki, workflow)  # restarted: the same alerts again call nobody
    await h.duty.record([fired(when, fp=f"{i:016x}") for i, (when, _) in enumerate(cases)])
    await h.duty.tick()
    assert len(gateway.mails) == 4 and len(workflow.posts) == 2
    await h.close()


# -- the client's perimeter ----------------------------------------------------------------------


async def test_the_clients_equipment_is_passed_on_not_ticketed_and_counted_as_transmitted(
    tmp_path, clock, gateway, pki, workflow,  # noqa: F811
):
    tickets = TicketLog(str(tmp_path / "log.sqlite"), clock=clock)
    eng = engine(tmp_path, [T0])
    client = Client.model_validate(CLIENT)
    h = harness(tmp_path, clock, gateway, pki, workflow, tickets, firing=eng.firing, client=client)
    duty = h.duty
    disp = TicketDispatcher(str(StateDir(tmp_path).outbox_db), {"vsgp": tickets}, clock=clock)
    async with running(disp, lambda: duty.providers(eng.firing())):
        down = await fire(eng, device="sw-annexe", site="annexe")
        assert [t.state for t in down] == [FIRING]
        clock.t = T0 + 61
        await disp.record(duty.provider_transitions(down), clock.t)
        await duty.record(down)
        await disp.reconcile()  # the dispatcher's own reconciliation does not ticket it either
        await disp.settle()
        await duty.tick()
        assert tickets.list() == []
        assert recipients(gateway) == ["dsi@vsgp.example.org"]
        assert subjects(gateway) == ["[vigie] Transmis (périmètre client) : sw-annexe Gi0/1 down"]

        (row,) = transmission_rows(StateDir(tmp_path))
        assert (row.device, row.contact, row.channel, row.status) == ("sw-annexe", "dsi", "email", "transmitted")
        assert row.sent_at == clock.t and row.address == "dsi@vsgp.example.org"

        up = eng.evaluate([iface(T0 + 300, "up", device="sw-annexe", site="annexe")], now=T0 + 300)
        assert [t.state for t in up] == [RESOLVED]
        clock.t = T0 + 301
        await disp.record(duty.provider_transitions(up), clock.t)
        await duty.record(up)
        await duty.tick()
        assert subjects(gateway)[1] == "[vigie] Rétabli (périmètre client) : sw-annexe Gi0/1 down"
        assert tickets.list() == []

    day = dt.datetime.fromtimestamp(T0, client.zone).date()
    figures = sla_day(StateDir(tmp_path), client, day, T0 + 3600)
    assert (figures.critical_alerts, figures.transmitted, figures.without_ticket) == (1, 1, 0)
    await h.close()


async def test_a_transmission_lost_to_a_crash_is_caught_up_by_the_reconciliation(
    tmp_path, clock, gateway, pki, workflow,  # noqa: F811
):
    eng = engine(tmp_path, [T0])
    h = harness(tmp_path, clock, gateway, pki, workflow, firing=eng.firing)
    await fire(eng, device="sw-lab", managed_by="client")  # committed by the engine; the agent died before the log
    clock.t = T0 + 90
    await h.duty.tick()
    assert recipients(gateway) == ["dsi@vsgp.example.org"]
    eng.evaluate([iface(T0 + 120, "up", device="sw-lab", managed_by="client")], now=T0 + 120)  # its end lost too
    await h.duty.tick()
    await h.duty.tick()
    assert subjects(gateway)[1:] == ["[vigie] Rétabli (périmètre client) : sw-lab Gi0/1 down"]
    await h.close()


# -- failures ------------------------------------------------------------------------------------


async def test_a_failing_relay_is_retried_with_backoff_and_alerted_naming_the_contact(
    tmp_path, clock, gateway, pki, workflow, caplog,  # noqa: F811
):
    gateway.replies = ["451 4.3.0 try again later"] * 3
    h = harness(tmp_path, clock, gateway, pki, workflow)
    when = local("2026-12-05T03:00")
    alert = firing_alert(fired_at=when)
    clock.t = when
    with caplog.at_level(logging.ERROR, logger="alerting.contacts"):
        await h.duty.record([AlertTransition(alert, "pending", FIRING, when)])
        await h.duty.tick()
    assert len(workflow.posts) == 1  # the Teams card is not held back by the mail relay
    assert any(r.levelname == "ERROR" and "vsgp/alice by email" in r.getMessage() for r in caplog.records)
    mailed = lambda: [s for s in h.samples if s.tags["channel"] == "email"]  # noqa: E731
    assert mailed() == []  # one failure is not yet an alert

    rules = [r for r in BUILTIN_RULES if r.name == "contact_notification_failed"]
    alerts = AlertEngine(str(tmp_path / "engine.sqlite"), rules, clock=clock)
    await h.duty.tick()  # not due yet: the backoff
    clock.t += 29
    await h.duty.tick()
    assert gateway.mails == [] and len(gateway.replies) == 2
    for wait_s in (1, 60):  # 30 s, then 60 s
        clock.t += wait_s
        await h.duty.tick()
    assert gateway.replies == [] and gateway.mails == []
    (sample,) = mailed()
    assert sample.tags == {"client": "vsgp", "contact": "alice", "channel": "email"}
    assert sample.fields["status"] == "failed" and sample.fields["attempts"] == 3
    (fired,) = [t for t in alerts.evaluate(h.samples, now=clock.t) if t.state == FIRING]
    assert fired.alert.summary.startswith(
        "vsgp: alice not reached by email (on_call) after 3 attempt(s): smtp 127.0.0.1:")

    clock.t += 120
    seen = len(h.samples)
    await h.duty.tick()  # the relay takes it now: delivered once, the alert resolved
    assert recipients(gateway) == ["alice@vsgp.example.org"]
    assert [t.state for t in alerts.evaluate(h.samples[seen:], now=clock.t)] == [RESOLVED]
    alerts.close()
    await h.close()


async def test_a_refused_mail_is_alerted_at_once_and_not_retried_before_a_restart(
    tmp_path, clock, gateway, pki, workflow,  # noqa: F811
):
    gateway.unknown = {"bob@vsgp.example.org"}
    h = harness(tmp_path, clock, gateway, pki, workflow)
    when = local("2026-12-08T20:00")  # bob's week
    clock.t = when
    await h.duty.record([AlertTransition(firing_alert(fired_at=when), "pending", FIRING, when)])
    await h.duty.tick()
    (sample,) = h.samples
    assert sample.fields["status"] == "failed" and "550" in sample.fields["error"]
    clock.t += 3600
    await h.duty.tick()
    assert len(h.samples) == 1 and gateway.mails == []
    await h.close()

    gateway.unknown = set()  # the address fixed: the next start tries once more
    h = harness(tmp_path, clock, gateway, pki, workflow)
    h.duty.start()
    await h.duty.tick()
    assert recipients(gateway) == ["bob@vsgp.example.org"]
    await h.close()


# -- in the agent ---------------------------------------------------------------------------------


async def test_the_agent_tickets_the_providers_equipment_and_passes_the_clients_on(
    tmp_path, gateway, pki,  # noqa: F811
):
    import json

    import yaml

    from agent.api import Sample
    from agent.config import load_config
    from agent.runner import Agent

    from ..e2e.helpers import eventually, query_sqlite, unreachable_rule, vigie

    ca_file, _ = pki
    config = {
        "agent": {"state_dir": str(tmp_path / "state"), "store": {"kind": "sqlite"},
                  "smtp": {"host": "127.0.0.1", "port": gateway.port, "username": USER,
                           "password": {"secret": "smtp-password"}, "sender": SENDER, "ca_bundle": str(ca_file)}},
        "rules": [unreachable_rule(for_s=0)],
        "clients": [{
            "name": "vsgp", "display_name": "VSGP",
            "contacts": [{"name": "dsi", "email": "dsi@vsgp.example.org"}],
            "perimeter": {"contacts": ["dsi"]},
            "sites": [{"name": "hdv", "devices": [
                {"name": "sw-core-1", "address": "127.0.0.1"},
                {"name": "sw-etage", "address": "127.0.0.1", "responsibility": "client"},
            ]}],
        }],
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (tmp_path / "secrets.yaml").write_text(yaml.safe_dump({"smtp-password": PASSWORD}))
    (tmp_path / "secrets.yaml").chmod(0o600)
    agent = Agent(load_config(tmp_path / "config.yaml", secrets_path=tmp_path / "secrets.yaml"),
                  state_dir=tmp_path / "state")
    await agent.start()
    try:
        now_ns = int(agent.clock() * 1e9)
        await agent.pipeline.submit([
            Sample("collection", {"client": "vsgp", "site": "hdv", "device": name, "collector": "snmp"},
                   {"status": "unreachable", "duration_s": 0.1, "error": None}, now_ns)
            for name in ("sw-core-1", "sw-etage")
        ])
        await eventually(lambda: recipients(gateway), "the transmission to the client's contact")
        opened = await eventually(
            lambda: query_sqlite(tmp_path / "state" / "tickets.sqlite", "SELECT title FROM tickets"),
            "the provider's ticket")
        # a group of one (ticket_grouping's defaults) reads as its alert, under its group's key
        assert [title.split("] ", 1)[1] for (title,) in opened] == ["sw-core-1 unreachable"]
        assert subjects(gateway) == ["[vigie] Transmis (périmètre client) : sw-etage unreachable"]
    finally:
        await agent.stop()
    assert query_sqlite(tmp_path / "state" / "ticket-outbox.sqlite", "SELECT client, rule FROM ticket_links") == [
        ("vsgp", "device_unreachable")]

    shown = vigie("tickets", "--state-dir", str(tmp_path / "state"), "--json")
    assert shown.returncode == 0, shown.stderr
    rows = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [(r["device"], r["status"]) for r in rows] == [("sw-core-1", "open"), ("sw-etage", "transmitted")]
    assert rows[1]["contact"] == "dsi" and rows[1]["sent_at"] is not None
    text = vigie("tickets", "--state-dir", str(tmp_path / "state")).stdout
    assert "to dsi by email transmitted  vsgp/sw-etage  device_unreachable" in text
    assert "the client's own equipment, no ticket: delivered" in text
