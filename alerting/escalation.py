"""Who is told beside the ticket, and when (the settings: agent/duty.py; the sending: alerting/contacts.py).

- **Escalation.** The ticket outbox (alerting/notifier.py, ``ticket_links``) says which tickets
  are open and, in ``taken_at`` (epoch seconds, read back from the ITSM), which were taken in
  charge. A link ``open`` with ``taken_at IS NULL`` whose ticket is older than the client's
  ``escalation.after_min[severity]`` gets step 1: a follow-up on the ticket and a notification to
  the first contact of the list; twice that, step 2 and the second contact; down the list.
- **On-call.** An alert of ``on_call.severities`` that fires outside the client's service hours
  (its calendar: agent/config/calendar.py, holidays included) notifies the contact on duty then.
- **The client's perimeter.** An alert on equipment that is the client's (``responsibility``)
  opens no provider ticket (the agent keeps it out of the dispatcher): it is passed on at once to
  ``perimeter.contacts``, and its end too.

Each decision is a message with an id derived from what it is, queued in the notification log:
asked again (every tick, after a restart, by the reconciliation with the engine's firing alerts
that covers a crash between the engine's commit and the log's) it is the same row, never a second
message. Time comes from ``clock``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from agent.api import FIRING, RESOLVED, Alert, AlertTransition
from agent.api.ticket_text import TicketLocale, headline, solution_text, ticket_body
from agent.config import Client
from alerting.contacts import EMAIL, TEAMS, TICKET, ContactNotifier, Message

log = logging.getLogger(__name__)

TICK_S = 15.0  # how often open tickets are looked at for escalation
ESCALATION, ON_CALL, TRANSMISSION, TRANSMISSION_END = "escalation", "on_call", "transmission", "transmission_end"
ON_CALL_CATCH_UP_S = 3600.0  # an alert found fired out of hours without its call (a crash): called if this recent

_TEXT = {
    "fr": {
        ESCALATION: "[vigie] Escalade {level}/{levels} : ticket {ticket} non pris en charge depuis {minutes} min",
        ON_CALL: "[vigie] Astreinte : {headline}",
        TRANSMISSION: "[vigie] Transmis (périmètre client) : {headline}",
        TRANSMISSION_END: "[vigie] Rétabli (périmètre client) : {headline}",
        "escalation_body": "Le ticket {ticket} ouvert le {opened} n'est pas pris en charge après {minutes} min. "
                           "Vous êtes le contact d'escalade {level}/{levels}.",
        "escalation_followup": "Escalade {level}/{levels} : ticket non pris en charge après {minutes} min ; "
                               "{contact} prévenu(e) ({channels}).",
        "on_call_body": "Alerte hors heures de service : vous êtes d'astreinte.",
        "transmission_body": "Équipement sous la responsabilité du client : l'alerte vous est transmise, "
                             "aucun ticket n'est ouvert chez le prestataire.",
    },
    "en": {
        ESCALATION: "[vigie] Escalation {level}/{levels}: ticket {ticket} not taken in charge for {minutes} min",
        ON_CALL: "[vigie] On call: {headline}",
        TRANSMISSION: "[vigie] Passed on (client's perimeter): {headline}",
        TRANSMISSION_END: "[vigie] Recovered (client's perimeter): {headline}",
        "escalation_body": "Ticket {ticket} opened at {opened} is not taken in charge after {minutes} min. "
                           "You are escalation contact {level}/{levels}.",
        "escalation_followup": "Escalation {level}/{levels}: ticket not taken in charge after {minutes} min; "
                               "{contact} notified ({channels}).",
        "on_call_body": "Alert outside service hours: you are on call.",
        "transmission_body": "Equipment under the client's responsibility: the alert is passed on to you, no "
                             "ticket is opened at the provider's.",
    },
}


def ensure_taken_at(db: sqlite3.Connection) -> None:
    """The ``taken_at`` column, added when the outbox predates the read-back of taking in charge."""
    have = {r[1] for r in db.execute("PRAGMA table_info(ticket_links)")}
    if have and "taken_at" not in have:
        try:
            db.execute("ALTER TABLE ticket_links ADD COLUMN taken_at REAL")
        except sqlite3.OperationalError as exc:  # added meanwhile by the dispatcher's own migration
            if "duplicate column" not in str(exc):
                raise


class Duty:
    """The decisions, per client; ``firing()``: the engine's firing alerts (the reconciliation)."""

    def __init__(
        self,
        clients: Sequence[Client],
        outbox: Path,
        notifier: ContactNotifier,
        clock: Callable[[], float] = time.time,
        *,
        firing: Callable[[], Iterable[Alert]] = lambda: (),
        tick_s: float = TICK_S,
    ) -> None:
        self.clients = {c.name: c for c in clients}
        # (client, device) -> whose: looked up once, asked for every transition
        self._whose = {(c.name, device.name): c.responsibility(site, device)
                       for c in clients for site, device in c.devices()}
        self.outbox = outbox
        self.notifier = notifier
        self.clock = clock
        self.firing = firing
        self.tick_s = tick_s
        self._known: set[str] | None = None  # ids in the log: what need not be asked again
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._busy = asyncio.Lock()  # one pass at a time: two would both send what is due

    # -- what is whose ------------------------------------------------------------------------

    def is_clients(self, alert: Alert) -> bool:
        """Whether ``alert`` is on equipment the client runs itself (its perimeter); an alert on
        no inventory device (a trap, a site) by its site, then its labels."""
        client = self.clients.get(alert.client)
        if client is None:
            return False
        whose = self._whose.get((alert.client, alert.device))
        if whose is not None:
            return whose == "client"
        site = next((s for s in client.sites if s.name == alert.labels.get("site")), None)
        if site is not None and site.responsibility is not None:
            return site.responsibility == "client"
        return client.perimeter.by_tags(alert.labels) == "client"

    def providers(self, alerts: Iterable[Alert]) -> list[Alert]:
        """The alerts that go the provider's way (tickets): what the dispatcher reconciles with."""
        return [a for a in alerts if not self.is_clients(a)]

    def provider_transitions(self, transitions: Sequence[AlertTransition]) -> list[AlertTransition]:
        return [t for t in transitions if not self.is_clients(t.alert)]

    # -- messages -----------------------------------------------------------------------------

    def _messages(self, client: Client, contact_name: str, purpose: str, step: str, alert: Alert,
                  subject: str, body: str) -> list[Message]:
        contact = client.contact(contact_name)
        channels = [(EMAIL, contact.email)] if contact.email else []
        channels += [(TEAMS, contact.name)] if contact.teams else []
        return [
            Message(f"{purpose}:{alert.idempotency_key}:{step}:{contact.name}:{channel}", client.name, purpose,
                    alert.idempotency_key, alert.to_dict(), contact.name, channel, address, subject, body)
            for channel, address in channels
        ]

    def _transmission(self, client: Client, alert: Alert, purpose: str) -> list[Message]:
        words = _TEXT[client.language]
        locale = TicketLocale(client.timezone, client.language)
        subject = words[purpose].format(headline=headline(alert))
        body = (f"{words['transmission_body']}\n\n{ticket_body(alert, locale)}" if purpose == TRANSMISSION
                else solution_text(alert, locale))
        return [m for name in client.perimeter.contacts
                for m in self._messages(client, name, purpose, "0", alert, subject, body)]

    def _on_call(self, client: Client, alert: Alert) -> list[Message]:
        on_call = client.on_call
        if on_call is None or alert.fired_at is None or alert.severity not in on_call.severities:
            return []
        fired = dt.datetime.fromtimestamp(alert.fired_at, client.zone)
        if client.in_service(fired):
            return []  # within service hours the ticket is the whole answer
        contact = on_call.on_duty(fired)
        if contact is None:
            log.error("on-call of %s: nobody on duty at %s (the rota's ranges leave a gap, no weekly rota): "
                      "%s not called [%s]", client.name, fired.isoformat(), headline(alert), alert.idempotency_key)
            return []
        words = _TEXT[client.language]
        body = f"{words['on_call_body']}\n\n{ticket_body(alert, TicketLocale(client.timezone, client.language))}"
        return self._messages(client, contact, ON_CALL, "0", alert,
                              words[ON_CALL].format(headline=headline(alert)), body)

    def _for_transition(self, transition: AlertTransition, known: set[str]) -> list[Message]:
        alert = transition.alert
        client = self.clients.get(alert.client)
        if client is None:
            return []
        if self.is_clients(alert):
            if transition.state == FIRING:
                return self._transmission(client, alert, TRANSMISSION)
            transmitted = any(i.startswith(f"{TRANSMISSION}:{alert.idempotency_key}:") for i in known)
            if transition.state == RESOLVED and transmitted:
                return self._transmission(client, alert, TRANSMISSION_END)
            return []
        return self._on_call(client, alert) if transition.state == FIRING else []

    # -- intake -------------------------------------------------------------------------------

    async def _ids(self) -> set[str]:
        if self._known is None:
            self._known = await asyncio.to_thread(self.notifier.log.ids)
        return self._known

    async def _queue(self, messages: list[Message]) -> None:
        known = await self._ids()
        fresh = [m for m in messages if m.id not in known]
        if fresh:
            await self.notifier.queue(fresh)
            known.update(m.id for m in fresh)
            self._wake.set()

    async def record(self, transitions: Sequence[AlertTransition]) -> None:
        """What these transitions call for, queued (committed) before this returns."""
        known = await self._ids()
        await self._queue([m for t in transitions for m in self._for_transition(t, known)])

    async def tick(self) -> None:
        """Escalations due, the reconciliation with the engine, then every message due sent."""
        async with self._busy:
            now = self.clock()
            await self._queue(await asyncio.to_thread(self._escalations, now) + await self._reconcile(now))
            await self.notifier.send_due()

    async def _reconcile(self, now: float) -> list[Message]:
        found = []
        firing = {a.idempotency_key: a for a in self.firing() if a.fired_at is not None}
        for alert in firing.values():
            client = self.clients.get(alert.client)
            if client is None:
                continue
            if self.is_clients(alert):
                found += self._transmission(client, alert, TRANSMISSION)
            elif now - (alert.fired_at or now) <= ON_CALL_CATCH_UP_S:
                found += self._on_call(client, alert)
        # a transmission whose alert no longer fires and whose end was not sent: its end now
        for key, data in await asyncio.to_thread(self.notifier.log.unanswered, TRANSMISSION, TRANSMISSION_END):
            alert = Alert.from_dict(data)
            client = self.clients.get(alert.client)
            if key in firing or client is None:
                continue
            alert.resolved_at = alert.resolved_at or now
            found += self._transmission(client, alert, TRANSMISSION_END)
        return found

    # -- escalation ---------------------------------------------------------------------------

    def _escalations(self, now: float) -> list[Message]:
        if not self.outbox.exists():
            return []
        db = sqlite3.connect(self.outbox, timeout=10.0, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            ensure_taken_at(db)
            # one row per ticket not taken: the alerts of a group share their ticket (its oldest
            # alert speaks for it), and one of them taken means the ticket is
            rows = db.execute(
                "SELECT key, client, alert, connector, ticket_id, ticket_url, MIN(opened_at) AS opened_at "
                "FROM ticket_links WHERE state='open' AND opened_at IS NOT NULL AND ticket_id IS NOT NULL "
                "GROUP BY client, connector, ticket_id HAVING COUNT(taken_at) = 0"
            ).fetchall()
        finally:
            db.close()
        found = []
        for row in rows:
            client = self.clients.get(row["client"])
            if client is None or not client.escalation.after_min:
                continue
            alert = Alert.from_dict(json.loads(row["alert"]))
            due = client.escalation.levels_due(alert.severity, row["opened_at"], now)
            for level in range(1, due + 1):
                found += self._escalation(client, alert, row, level)
        return found

    def _escalation(self, client: Client, alert: Alert, link: sqlite3.Row, level: int) -> list[Message]:
        escalation = client.escalation
        contact = client.contact(escalation.contacts[level - 1])
        minutes = int(escalation.after_min[alert.severity] * level)  # type: ignore[index]
        words = _TEXT[client.language]
        locale = TicketLocale(client.timezone, client.language)
        ticket = f"{link['connector']}#{link['ticket_id']}"
        facts = {"level": level, "levels": len(escalation.contacts), "minutes": minutes, "ticket": ticket}
        body = words["escalation_body"].format(opened=locale.time(link["opened_at"]), **facts)
        if link["ticket_url"]:
            body += f"\n{link['ticket_url']}"
        messages = self._messages(client, contact.name, ESCALATION, str(level), alert,
                                  words[ESCALATION].format(**facts), f"{body}\n\n{ticket_body(alert, locale)}")
        channels = ", ".join(m.channel for m in messages)
        ref = json.dumps({"connector": link["connector"], "id": link["ticket_id"], "url": link["ticket_url"]})
        followup = words["escalation_followup"].format(contact=contact.name, channels=channels, **facts)
        messages.append(Message(f"{ESCALATION}:{alert.idempotency_key}:{level}:{contact.name}:{TICKET}", client.name,
                                ESCALATION, alert.idempotency_key, alert.to_dict(), contact.name, TICKET, ref,
                                words[ESCALATION].format(**facts), f"{followup} [{alert.idempotency_key}]"))
        return messages

    # -- the lane in the agent ----------------------------------------------------------------

    def start(self) -> None:
        restarted = self.notifier.log.retry_failed()
        if restarted:
            log.info("contacts: %d notification(s) refused before this start are tried again", restarted)
        self._task = asyncio.create_task(self._run(), name="contacts")

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - a bug must not stop the notifications for good
                log.exception("contacts: a pass failed; the next one comes in %.0f s", self.tick_s)
            wait_s = self.tick_s
            next_due = await asyncio.to_thread(self.notifier.log.next_due)
            if next_due is not None:
                wait_s = min(wait_s, max(0.0, next_due - self.clock()))
            try:
                await asyncio.wait_for(self._wake.wait(), wait_s)
            except TimeoutError:
                pass

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await asyncio.to_thread(self.notifier.log.close)
