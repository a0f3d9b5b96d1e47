"""GLPI connector over GLPI 11's high-level API (``api.php/v2``), chosen by ``api: v2``.

Checked against GLPI 11's ``src/Api/HL`` (ITILController, AbstractController, RSQL/Parser) and
``src/Glpi/OAuth/Server.php``:

- Auth: OAuth2 on ``POST {url}/token`` (form-encoded), grant ``password`` (client id/secret of an
  OAuth client registered in Setup > OAuth clients, plus a GLPI user's login/password) or
  ``client_credentials`` (the client alone), scope ``api``. The access token (GLPI: 1 hour) is
  renewed shortly before it expires, and once at once when the API answers 401.
- Tickets: ``POST {url}/v2/Assistance/Ticket`` (``name``, ``content``, ``type``, ``urgency``,
  ``impact``, ``priority``, ``entity``, ``category``, ``request_type``); read back with ``GET
  .../Ticket/<id>``; follow-ups and solutions ``POST .../Ticket/<id>/Timeline/Followup|Solution``.
- Lookup: ``GET .../Assistance/Ticket?filter=<RSQL>``: not solved/closed
  (``status.id=out=(5,6)``) and the idempotency key in the name or the content (``=like=``).
- Errors are ``{"status", "title", "detail", "additional_messages"}``; OAuth2's
  ``{"error", "error_description"}``. GLPI answers a create its core refused (a mandatory template
  field, ...) with 500 "Failed to create item(s)" and the reason in ``additional_messages``: that
  one is a configuration error like the legacy API's ``ERROR_GLPI_ADD``, not an outage.

- Taken in charge: the HL schema of a Ticket (ITILController) has no ``takeintoaccountdate``;
  it has ``status`` and ``date_mod``. A ticket is taken when its status is one a technician sets
  (2 processing (assigned), 3 processing (planned), 4 pending), at its ``date_mod`` of the first
  reading that shows it: the last change, so an upper bound of the moment (never earlier). A
  ticket assigned at creation by a business rule reads as taken at once: with such rules, the
  legacy API (which reads GLPI's own record) measures the SLA.

Everything else (retries, lookup before a retried create, read-back of priorities, configuration
errors, the ticket link) is the legacy connector's, see :mod:`alerting.ticketing.glpi`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Literal

from agent.api.alerts import Alert
from agent.api.ticket_text import solution_text
from agent.api.tickets import OnlineCheck, TicketRef
from alerting.ticketing.glpi import TICKET_STATUS_CLOSED, TICKET_STATUS_SOLVED, GlpiBase, GlpiError

# the statuses a technician's action gives a ticket: processing (assigned), processing (planned), pending
TAKEN_STATUSES = (2, 3, 4)

log = logging.getLogger(__name__)

TOKEN_MARGIN_S = 60.0  # renew the access token that long before GLPI says it expires
OPEN_STATUSES_FILTER = f"status.id=out=({TICKET_STATUS_SOLVED},{TICKET_STATUS_CLOSED})"

Grant = Literal["password", "client_credentials"]


def parse_hl_error(status: int, text: str, url: str, method: str = "") -> GlpiError:
    """The HL API's ``{status, title, additional_messages}`` or OAuth2's ``{error, error_description}``."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return GlpiError(status, f"HTTP_{status}", text.strip()[:200], url, method)
    if "error" in body and "status" not in body:  # OAuth2 (league/oauth2-server)
        code = f"OAUTH_{str(body['error']).upper()}"
        return GlpiError(status, code, str(body.get("error_description") or body.get("message") or ""), url, method)
    messages = [str(m.get("message", "")) for m in body.get("additional_messages") or [] if isinstance(m, dict)]
    text = "; ".join(filter(None, [str(body.get("title") or ""), str(body.get("detail") or ""), *messages]))
    err = GlpiError(status, str(body.get("status") or f"HTTP_{status}"), text, url, method)
    if status == 500 and messages:
        err.retryable = False  # GLPI's core refused the item and said why: waiting does not change it
    return err


class GlpiV2Connector(GlpiBase):
    """GLPI 11's high-level API. ``url`` is the API root, e.g. ``https://glpi.example/api.php``."""

    SECRET_ATTRS = ("client_secret", "password", "_token")

    def __init__(
        self,
        url: str,
        client_id: str,
        client_secret: str,
        *,
        grant: Grant = "password",
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(url, **kwargs)
        if grant == "password" and not (username and password):
            raise ValueError("glpi v2: the password grant needs username and password")
        self.client_id = client_id
        self.client_secret = client_secret
        self.grant = grant
        self.username = username
        self.password = password
        self._token: str | None = None
        self._token_expires_at = 0.0

    # -- auth ---------------------------------------------------------------------------------

    async def _auth(self, headers: dict[str, str], params: list[tuple[str, str]]) -> None:
        if self._token is None or self._clock() >= self._token_expires_at - TOKEN_MARGIN_S:
            await self._get_token()
        headers["Authorization"] = f"Bearer {self._token}"

    def _auth_expired(self, err: GlpiError) -> bool:
        if err.status != 401:
            return False
        self._token = None
        return True

    def _parse_error(self, status: int, text: str, url: str, method: str) -> GlpiError:
        return parse_hl_error(status, text, url, method)

    async def _get_token(self) -> None:
        form = {"grant_type": self.grant, "client_id": self.client_id, "client_secret": self.client_secret,
                "scope": "api"}
        if self.grant == "password":
            form |= {"username": str(self.username), "password": str(self.password)}
        try:
            _, data, _ = await self._request("POST", "token", form=form, auth=False)
        except GlpiError as exc:
            if exc.status in (400, 401):  # invalid_client, invalid_grant, invalid_scope...
                raise self._configuration(exc, "login") from None
            raise
        token = data.get("access_token") if isinstance(data, dict) else None
        if not token:
            raise GlpiError(200, "BAD_TOKEN", f"no access_token in {data!r}", f"{self.url}/token", "POST")
        self._token = str(token)
        self._token_expires_at = self._clock() + float(data.get("expires_in") or 3600)

    async def close(self) -> None:
        self._token = None
        await self._close_http()

    # -- connector API ------------------------------------------------------------------------

    def ticket_body(self, alert: Alert) -> dict[str, Any]:
        title, content = self.ticket_texts(alert)
        body: dict[str, Any] = {"name": title, "content": content, "type": 1, **self.alert_levels(alert),
                                "entity": self.entities_id}
        if self.itilcategories_id:
            body["category"] = self.itilcategories_id
        if self.requesttypes_id:
            body["request_type"] = self.requesttypes_id
        return body

    async def _create(self, alert: Alert) -> Any:
        _, data, _ = await self._request("POST", "v2/Assistance/Ticket", body=self.ticket_body(alert), retry=False)
        ticket_id = data.get("id") if isinstance(data, dict) else None
        if not ticket_id:
            raise GlpiError(201, "ERROR", f"no ticket id in {data!r}", f"{self.url}/v2/Assistance/Ticket", "POST")
        return ticket_id

    async def get_ticket(self, ticket_id: str | int) -> dict[str, Any]:
        _, data, _ = await self._request("GET", f"v2/Assistance/Ticket/{ticket_id}")
        return data if isinstance(data, dict) else {}

    async def _read_levels(self, ticket_id: Any) -> Mapping[str, Any]:
        return await self.get_ticket(ticket_id)

    async def taken_in_charge(self, ref: TicketRef) -> float | None:
        """The ``date_mod`` of a ticket a technician's status shows taken (module doc), or None."""
        try:
            ticket = await self.get_ticket(ref.id)
        except GlpiError as exc:
            raise self._configuration(exc, "read") from None
        status = ticket.get("status")
        status = status.get("id") if isinstance(status, dict) else status
        try:
            taken = int(status) in TAKEN_STATUSES  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise GlpiError(200, "BAD_VALUE", f"status is not a GLPI status: {ticket.get('status')!r}",
                            f"{self.url}/v2/Assistance/Ticket/{ref.id}", "GET") from None
        if not taken:
            return None
        return self.glpi_time(ticket.get("date_mod"), "date_mod", f"{self.url}/v2/Assistance/Ticket/{ref.id}")

    async def add_followup(self, ref: TicketRef, text: str) -> None:
        try:
            await self._request("POST", f"v2/Assistance/Ticket/{int(ref.id)}/Timeline/Followup",
                                body={"content": text, "is_private": False})
        except GlpiError as exc:
            raise self._configuration(exc, "followup") from None

    async def solve(self, ref: TicketRef, alert: Alert) -> None:
        body = {"content": solution_text(alert, self.locale)}
        try:
            await self._request("POST", f"v2/Assistance/Ticket/{int(ref.id)}/Timeline/Solution", body=body)
        except GlpiError as exc:
            if exc.retryable:
                raise
            # Already solved (by a technician, or by our own earlier attempt whose answer was lost)?
            status = (await self.get_ticket(ref.id)).get("status") or {}
            if int(status.get("id", 0) if isinstance(status, dict) else status) not in (
                TICKET_STATUS_SOLVED, TICKET_STATUS_CLOSED
            ):
                raise self._configuration(exc, "solve") from None

    async def find_open(self, idempotency_key: str) -> TicketRef | None:
        key = _rsql_quote(f"*{idempotency_key}*")
        params = [("filter", f"{OPEN_STATUSES_FILTER};(name=like={key},content=like={key})"), ("start", "0"),
                  ("limit", "50")]
        try:
            _, rows, _ = await self._request("GET", "v2/Assistance/Ticket", params=params)
        except GlpiError as exc:
            raise self._configuration(exc, "read") from None
        ids = []
        for row in rows if isinstance(rows, list) else []:
            try:
                ids.append(int(row.get("id")))
            except (AttributeError, TypeError, ValueError):
                continue
        return self._ref(min(ids)) if ids else None

    async def check_online(self) -> list[OnlineCheck]:
        """Get a token, see the session's entities (``GET v2/session``) and search tickets. The
        HL API shows no profile rights: create / follow-up / solve rights and GLPI's priority
        matrix are seen when the first ticket is opened (read back, logged)."""
        try:
            await self._get_token()
        except GlpiError as exc:
            return [OnlineCheck("log in", False, str(exc))]
        checks = [OnlineCheck("log in", True, f"OAuth2 {self.grant} grant, client {self.client_id!r}")]
        try:
            _, session, _ = await self._request("GET", "v2/session")
        except GlpiError as exc:
            checks.append(OnlineCheck(f"entity {self.entities_id}", False, f"the session cannot be read: {exc}"))
        else:
            session = session if isinstance(session, dict) else {}
            entities = sorted(int(e) for e in session.get("active_entities") or [] if str(e).isdigit())
            profile = (session.get("active_profile") or {}).get("name", "?")
            checks.append(OnlineCheck(
                f"entity {self.entities_id}", self.entities_id in entities,
                f"user {session.get('name', '?')!r}, profile {profile!r}: "
                f"entity {self.entities_id} {'among' if self.entities_id in entities else 'NOT among'} {entities}"))
        try:
            await self.find_open("vigie:check-config")
        except GlpiError as exc:
            checks.append(OnlineCheck("read tickets", False, str(exc)))
        else:
            checks.append(OnlineCheck("read tickets", True, "GET v2/Assistance/Ticket with an RSQL filter answered"))
        return checks


def _rsql_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

