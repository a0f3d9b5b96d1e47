"""Sending a message out: by SMTP, by an HTTPS POST, as a Microsoft Teams card.

The ticket receivers (alerting/ticketing: e-mail, webhook, Teams) and the kernel's notifications
to people (alerting/contacts.py: escalation, on-call, the client's perimeter) send the same way,
so the conversation and the classification of its failures live here once:

- :class:`SmtpRelay`: connect, STARTTLS (certificate verified; ``ca_bundle`` for a private CA),
  AUTH, one mail. A 4xx reply, a refused or dropped connection, a timeout are retryable; a 5xx
  reply (recipient refused, authentication failed), a certificate that does not verify, a server
  without STARTTLS are not (the configuration is wrong).
- :class:`HttpTarget`: one URL JSON is POSTed to; 429/408/5xx and network failures retryable
  (``Retry-After`` read), other 4xx not; the URL's query string (a Teams workflow's ``sig``) never
  shown.
- :func:`card`: a Teams "Post to a channel when a webhook request is received" message, one
  Adaptive Card.

Every failure is a :class:`DeliveryError` saying whether a retry may help and whether the peer
may have taken the message all the same (``unsure``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import smtplib
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from agent.api.tickets import OnlineCheck, TicketError

log = logging.getLogger(__name__)

USER_AGENT = "vigie-ticketing/1"
RETRYABLE_STATUSES = frozenset({408, 429})

CARD_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_VERSION = "1.4"  # below the 1.5 Teams renders: no element of a later version is used
# Teams refuses a message over about 28 KB: a long summary (a configuration diff) is cut to fit
MAX_MESSAGE_BYTES = 26_000
MAX_LINE = 2_000
CUT = "…"


class DeliveryError(TicketError):
    """A message not delivered; ``retryable`` as the peer's answer says. ``unsure``: the peer may
    have taken it all the same (no answer after the message went out)."""

    def __init__(
        self, message: str, *, retryable: bool, retry_after_s: float | None = None, unsure: bool = False
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.unsure = unsure


def tls_context(ca_bundle: Path | None, verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@dataclass(frozen=True)
class SmtpRelay:
    """An SMTP relay and how to log in to it; ``password`` is the secret's value."""

    host: str
    port: int
    starttls: bool = True
    verify: bool = True
    ca_bundle: Path | None = None
    username: str | None = None
    password: str | None = None
    timeout_s: float = 15.0

    @property
    def where(self) -> str:
        return f"smtp {self.host}:{self.port}"

    def session(self) -> smtplib.SMTP:
        """Connected, STARTTLS done, logged in; raises as smtplib does."""
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        try:
            smtp.ehlo()
            if self.starttls:
                smtp.starttls(context=tls_context(self.ca_bundle, self.verify))
                smtp.ehlo()
            if self.username is not None:
                smtp.login(self.username, self.password or "")
        except BaseException:
            quit_smtp(smtp)
            raise
        return smtp

    def send(self, sender: str, recipients: Sequence[str], payload: bytes) -> None:
        """One mail (blocking: run it in a thread); :class:`DeliveryError` when not delivered."""
        try:
            smtp = self.session()
        except (OSError, smtplib.SMTPException) as exc:
            raise self.failure(exc, transferring=False) from None
        try:
            refused = smtp.sendmail(sender, list(recipients), payload)
        except (OSError, smtplib.SMTPException) as exc:
            # from MAIL FROM on, a failure without a reply leaves the mail's fate unknown
            raise self.failure(exc, transferring=True) from None
        finally:
            quit_smtp(smtp)
        if refused:  # some addresses took it: delivered, the others said
            log.warning("%s: mail delivered, but refused for %s", self.where, refused)

    def failure(self, exc: OSError | smtplib.SMTPException, *, transferring: bool) -> DeliveryError:
        where = self.where
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            codes = [code for code, _ in exc.recipients.values()]
            return DeliveryError(f"{where}: recipients refused {exc.recipients}", retryable=all(c < 500 for c in codes))
        if isinstance(exc, smtplib.SMTPResponseException):
            text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
            return DeliveryError(f"{where}: {exc.smtp_code} {text}", retryable=exc.smtp_code < 500)
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return DeliveryError(f"{where}: {exc} (STARTTLS or AUTH not offered)", retryable=False)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return DeliveryError(f"{where}: TLS certificate refused: {exc.verify_message}", retryable=False)
        return DeliveryError(f"{where}: {type(exc).__name__}: {exc}", retryable=True, unsure=transferring)

    async def send_async(self, sender: str, recipients: Sequence[str], payload: bytes) -> None:
        await asyncio.to_thread(self.send, sender, recipients, payload)


def quit_smtp(smtp: smtplib.SMTP) -> None:
    """QUIT, best effort: after the 250 the mail is the peer's, a failed goodbye changes nothing."""
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()


def retry_after_s(value: str | None, now: float) -> float | None:
    """``Retry-After`` in seconds or as an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


class HttpTarget:
    """One URL JSON is POSTed to, its session opened at the first POST. ``label`` names it in
    errors and logs (a Teams workflow URL's query string is its credential: never shown)."""

    def __init__(
        self,
        url: str,
        *,
        verify: bool,
        ca_bundle: Path | None,
        timeout_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        parts = urlsplit(url)
        self.label = f"{parts.scheme}://{parts.netloc}{parts.path}"
        self._query = parts.query
        self.verify = verify
        self.ca_bundle = ca_bundle
        self.timeout_s = timeout_s
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None
        if not verify and parts.scheme == "https":
            log.warning("%s: TLS certificate NOT verified (ticketing.verify: false)", self.label)

    def _ssl(self) -> ssl.SSLContext:
        return tls_context(self.ca_bundle, self.verify)

    def _said(self, text: str) -> str:
        """``text`` as an error may show it: without the URL's query string."""
        return text.replace(self._query, "…") if self._query else text

    async def post(self, body: bytes, headers: Mapping[str, str]) -> None:
        """POST ``body``: done on a 2xx, else :class:`DeliveryError` (a redirect included: the
        body is not sent anywhere else than configured)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                connector=aiohttp.TCPConnector(ssl=self._ssl()),
                headers={"User-Agent": USER_AGENT},
            )
        try:
            async with self._session.post(
                self.url, data=body, headers={"Content-Type": "application/json", **headers}, allow_redirects=False
            ) as response:
                text = (await response.text(errors="replace"))[:200]
                status = response.status
                wait_s = retry_after_s(response.headers.get("Retry-After"), self.clock())
        except aiohttp.ClientConnectorCertificateError as exc:
            raise DeliveryError(f"POST {self.label}: TLS certificate refused: {exc.certificate_error}",
                                retryable=False) from None
        except aiohttp.ClientConnectorError as exc:
            raise DeliveryError(f"POST {self.label}: no connection: {self._said(str(exc))}", retryable=True) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:  # the request may have been taken
            raise DeliveryError(f"POST {self.label}: no response: {type(exc).__name__}: {self._said(str(exc))}",
                                retryable=True, unsure=True) from None
        if 200 <= status < 300:
            return
        raise DeliveryError(
            f"POST {self.label}: HTTP {status}: {self._said(text.strip())}",
            retryable=status >= 500 or status in RETRYABLE_STATUSES,
            retry_after_s=wait_s,
        )

    async def check(self) -> OnlineCheck:
        """Reach the host and, over HTTPS, verify its certificate; POSTs nothing (a POST would be
        an event: the secret and the body's acceptance show at the first ticket)."""
        parts = urlsplit(self.url)
        https = parts.scheme == "https"
        what = f"reach {parts.netloc}" + (" over TLS" if https else "")
        try:
            async with asyncio.timeout(self.timeout_s):
                _, writer = await asyncio.open_connection(
                    parts.hostname, parts.port or (443 if https else 80), ssl=self._ssl() if https else None
                )
        except ssl.SSLCertVerificationError as exc:
            return OnlineCheck(what, False, f"{self.label}: TLS certificate refused: {exc.verify_message}")
        except (OSError, TimeoutError) as exc:
            return OnlineCheck(what, False, f"{self.label}: {type(exc).__name__}: {self._said(str(exc))}")
        tls = writer.get_extra_info("ssl_object")
        writer.close()
        await writer.wait_closed()
        verified = ", certificate verified" if self.verify else ", certificate NOT verified"
        return OnlineCheck(what, True, f"{self.label}" + (f": {tls.version()}{verified}" if tls else ""))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def card(title: str, lines: list[str], colour: str, footer: str, *, keep_last: int = 0) -> bytes:
    """A message with one Adaptive Card, encoded: a bold title, one TextBlock per line (an empty
    line is space), a small footer. Too big for Teams, lines are dropped (marked ``…``) before the
    ``keep_last`` ones (the ticket's facts stay, a long configuration diff is cut)."""
    lines = [line if len(line) <= MAX_LINE else line[:MAX_LINE] + CUT for line in lines]
    while True:
        encoded = json.dumps(_card(title, lines, colour, footer), ensure_ascii=False, separators=(",", ":")).encode()
        cuttable = len(lines) - keep_last
        if len(encoded) <= MAX_MESSAGE_BYTES or cuttable <= 1:
            return encoded
        cut = lines[:cuttable]
        if cut[-1] == CUT:
            cut.pop()
        lines = [*cut[: len(cut) // 2], CUT, *lines[cuttable:]]


def _card(title: str, lines: list[str], colour: str, footer: str) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "color": colour, "wrap": True}
    ]
    gap = False
    for line in lines:
        if not line:
            gap = True
            continue
        body.append({"type": "TextBlock", "text": line, "wrap": True, "spacing": "Medium" if gap else "None"})
        gap = False
    body.append({"type": "TextBlock", "text": footer, "isSubtle": True, "size": "Small", "wrap": True})
    content = {"$schema": CARD_SCHEMA, "type": "AdaptiveCard", "version": CARD_VERSION, "body": body,
               "msteams": {"width": "Full"}}
    return {"type": "message", "attachments": [{"contentType": CARD_TYPE, "contentUrl": None, "content": content}]}
