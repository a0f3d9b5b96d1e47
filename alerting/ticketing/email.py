"""Tickets by e-mail to an ITSM's mail gateway (Matrix42's, GLPI's mail collector, the provider's own tool).

One mail per event: the opening, each follow-up, the solution. They thread as one ticket:

- the subject carries a stable reference, ``[vigie #<ref>]`` (``<ref>``: 12 hex digits derived from
  the alert's idempotency key), for a gateway that matches subjects; follow-ups and solution are
  ``Re: [vigie #<ref>] ...``;
- ``Message-ID`` is derived from the delivery (``<<ref>-open@domain>``, ``<<ref>-solve@domain>``...),
  and every later mail has ``In-Reply-To`` / ``References`` naming the opening's, for a gateway that
  threads by headers;
- the body is plain text and HTML (multipart/alternative) in the client's language and timezone,
  its last line the idempotency key.

SMTP with STARTTLS (certificate verified; ``ca_bundle`` for a private CA; ``verify: false``
logged) and AUTH with a password from a secret. Errors: a 4xx reply, a refused or dropped
connection, a timeout are retryable; a 5xx reply (recipient refused, authentication failed), a
certificate that does not verify, a server without STARTTLS are not (the configuration is wrong).

Exactly-once, as far as SMTP allows: each mail is recorded (alerting/ticketing/delivery.py) with
its bytes before it is sent, and marked sent after the server's 250. Killed in between, the agent
sends the same bytes again: same Message-ID, same subject reference. A gateway that drops a
Message-ID it already filed files it once; one that does not files a follow-up's or solution's
copy on the same ticket (In-Reply-To, subject reference), and an opening's copy on the same ticket
only if it matches the subject reference (else as a second ticket). The window is the time
between the server's 250 and one local commit.
"""

from __future__ import annotations

import asyncio
import html
import logging
import smtplib
import ssl
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from agent.api import OnlineCheck, PluginSpec, ReceiverContext, SecretRef
from agent.api.alerts import Alert
from agent.api.outbound import SmtpRelay, quit_smtp
from agent.api.ticket_text import TicketLocale, headline, ticket_body
from alerting.ticketing.delivery import (
    Delivery,
    DeliveryRecord,
    RecordedReceiver,
    record_path,
    ticket_ref,
)

log = logging.getLogger(__name__)

Address = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]


class EmailOptions(BaseModel):
    """``clients[].ticketing: {kind: email, ...}``: the gateway's address and the SMTP relay."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    to: Annotated[list[Address], Field(min_length=1)]
    sender: Address
    host: Annotated[str, StringConstraints(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    starttls: bool = True
    verify: bool = True
    ca_bundle: Path | None = None
    username: str | None = None
    password: SecretRef | None = None
    # the right-hand side of the Message-IDs; default: the sender's domain
    message_id_domain: str | None = None
    # one SMTP conversation's bound (connect, each command)
    timeout_s: Annotated[float, Field(gt=0, le=120)] = 15.0

    @model_validator(mode="after")
    def _auth_pair(self) -> EmailOptions:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self


class EmailReceiver(RecordedReceiver):
    name = "email"

    def __init__(
        self,
        options: EmailOptions,
        password: str | None,
        record: DeliveryRecord,
        locale: TicketLocale,
        **kwargs,
    ) -> None:
        super().__init__(record, locale, **kwargs)
        self.options = options
        self.relay = SmtpRelay(options.host, options.port, options.starttls, options.verify, options.ca_bundle,
                               options.username, password, options.timeout_s)
        self.domain = options.message_id_domain or options.sender.rpartition("@")[2]
        if not options.starttls:
            log.warning("email %s: no STARTTLS (ticketing.starttls: false): mails and password in clear", options.host)
        elif not options.verify:
            log.warning("email %s: TLS certificate NOT verified (ticketing.verify: false)", options.host)

    # -- rendering ----------------------------------------------------------------------------

    def _mail(self, subject: str, text: str, delivery: str, opening: Delivery | None) -> bytes:
        mail = EmailMessage()
        mail["Subject"] = subject
        mail["From"] = self.options.sender
        mail["To"] = ", ".join(self.options.to)
        mail["Date"] = formatdate(self.record.clock(), localtime=False)
        mail["Message-ID"] = self._message_id(delivery)
        if opening is not None:
            first = self._message_id(opening.delivery_id)
            mail["In-Reply-To"] = first
            mail["References"] = first
        mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to the agent
        mail.set_content(text)
        paragraphs = "".join(f"<p>{html.escape(block).replace(chr(10), '<br>')}</p>" for block in text.split("\n\n"))
        mail.add_alternative(f'<html lang="{self.locale.language}"><body>{paragraphs}</body></html>', subtype="html")
        return mail.as_bytes(policy=policy.SMTP)

    def _message_id(self, delivery: str) -> str:
        return f"<{delivery}@{self.domain}>"

    def _reply_subject(self, opening: Delivery) -> str:
        subject = str(message_from_bytes(opening.payload, policy=policy.default)["Subject"])
        return f"Re: {subject}"

    def render_open(self, alert: Alert, delivery: str) -> bytes:
        subject = f"[vigie #{ticket_ref(alert.idempotency_key)}] {headline(alert)}"
        return self._mail(subject, ticket_body(alert, self.locale), delivery, None)

    def render_followup(self, opening: Delivery, delivery: str, text: str) -> bytes:
        return self._mail(self._reply_subject(opening), text, delivery, opening)

    def render_solve(self, opening: Delivery, delivery: str, alert: Alert, text: str) -> bytes:
        return self._mail(self._reply_subject(opening), text, delivery, opening)

    # -- sending ------------------------------------------------------------------------------

    async def transmit(self, delivery: Delivery) -> None:
        await self.relay.send_async(self.options.sender, self.options.to, delivery.payload)

    # -- vigie check-config --online ----------------------------------------------------------

    async def check_online(self) -> list[OnlineCheck]:
        """Connect, STARTTLS, log in, then MAIL FROM and RCPT TO each gateway address and RSET:
        the relay says whether it would take the mails. Sends nothing."""
        return await asyncio.to_thread(self._check)

    def _check(self) -> list[OnlineCheck]:
        how = ", ".join(["connect", *(["STARTTLS"] if self.options.starttls else []),
                         *(["log in"] if self.options.username is not None else [])])
        try:
            smtp = self.relay.session()
        except (OSError, smtplib.SMTPException) as exc:
            return [OnlineCheck(how, False, str(self.relay.failure(exc, transferring=False)))]
        tls = smtp.sock.version() if isinstance(smtp.sock, ssl.SSLSocket) else "no TLS"
        verified = "certificate verified" if self.options.verify else "certificate NOT verified"
        checks = [OnlineCheck(how, True, f"{self.relay.where}: {tls}, {verified}" if self.options.starttls else tls)]
        try:
            code, reply = smtp.mail(self.options.sender)
            checks.append(OnlineCheck(f"send as {self.options.sender}", code == 250, f"{code} {reply.decode()}"))
            if code == 250:
                for address in self.options.to:
                    code, reply = smtp.rcpt(address)
                    checks.append(OnlineCheck(f"send to {address}", code in (250, 251), f"{code} {reply.decode()}"))
            smtp.rset()
        except (OSError, smtplib.SMTPException) as exc:
            checks.append(OnlineCheck("SMTP conversation", False, f"{self.relay.where}: {type(exc).__name__}: {exc}"))
        finally:
            quit_smtp(smtp)
        return checks


def build_email(options: EmailOptions, context: ReceiverContext) -> EmailReceiver:
    password = context.secret(options.password) if options.password is not None else None
    return EmailReceiver(
        options,
        password,
        DeliveryRecord(record_path(context.state_dir, "email", context.client)),
        TicketLocale(context.timezone, context.language),
    )


EMAIL = PluginSpec(
    name="email",
    kind="ticketing",
    factory=build_email,
    options=EmailOptions,
    description="e-mail to an ITSM's mail gateway (SMTP, STARTTLS, AUTH), one mail per event, threaded",
)
