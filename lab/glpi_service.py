"""The GLPI of each client whose ticketing is ``kind: glpi``, played by lab.glpi_fake in the lab.

The fake listens where the client's ``url`` points (``${VIGIE_VSGP_GLPI_URL:-http://127.0.0.1:8089/
apirest.php}`` for vsgp) and accepts the tokens of the client's ``app_token`` / ``user_token``
secrets; a client with ``api: v2`` points at ``/api.php`` and its ``client_id`` / ``client_secret``
/ ``username`` / ``password`` become the fake's OAuth client and user. ``--glpi-port N`` (0: any
free port) moves it; the lab prints the URL the agent must read.
Clients whose URLs name the same host and port share one fake. Tickets live in memory: they are
gone when the lab stops.

Besides outages (glpi-error, glpi-hang), the faults play how real GLPIs are set up wrong:
``glpi-auth-dropped`` (the web server drops the Authorization header: vigie falls back to the
user_token parameter and says so), ``glpi-right-missing RIGHT`` (the API profile loses
change-priority, create, update or followup: a critical ticket lands at GLPI's own priority, or
vigie reports a configuration error once) and ``glpi-mandatory-category`` (the root entity's ticket
template makes Category mandatory). ``vigie check-config --online`` names each of them.
``glpi-technician SECONDS`` plays the NOC: a technician takes each ticket in charge SECONDS after it
opened (GLPI's takeintoaccountdate), which the agent reads back for the alert SLA.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from lab.estate import EstateClient, EstateError, expand, is_loopback, variables_in
from lab.glpi_fake import (
    ALL_FOLLOWUP_RIGHTS,
    ALL_TICKET_RIGHTS,
    API,
    FOLLOWUP_ADDALLTICKET,
    FOLLOWUP_ADDMYTICKET,
    HL_API,
    TICKET_CHANGEPRIORITY,
    TICKET_CREATE,
    TICKET_UPDATE,
    FakeGlpi,
)
from lab.glpi_fake import Fault as GlpiFault
from lab.services import Context, Fault, FaultError, FaultKind, LabService

# glpi-error and glpi-hang hold until cleared: as many requests as any lab session will make.
UNTIL_CLEARED = 10**9
SOLVED = (5, 6)  # GLPI ticket statuses "solved" and "closed"
STATUS_NAMES = {1: "new", 2: "assigned", 3: "planned", 4: "waiting", 5: "solved", 6: "closed"}
LISTED_TICKETS = 5  # the latest ones, in `vigie lab status`
# glpi-right-missing RIGHT: (ticket rights taken away, follow-up rights taken away)
RIGHTS = {
    "change-priority": (TICKET_CHANGEPRIORITY, 0),
    "create": (TICKET_CREATE, 0),
    "update": (TICKET_UPDATE, 0),
    "followup": (0, FOLLOWUP_ADDALLTICKET | FOLLOWUP_ADDMYTICKET),
}
CATEGORY = 7  # the Category search option, as ticket templates name mandatory fields


@dataclass
class Instance:
    host: str
    port: int
    app_token: str | None
    user_tokens: dict[str, int]
    clients: list[str]
    variables: list[str]  # the estate's variables that name the legacy API's URL
    fake: FakeGlpi | None = None
    injected: list[GlpiFault] = field(default_factory=list)
    # clients with api: v2 — the variables naming the high-level API's URL, its OAuth clients and users
    hl_variables: list[str] = field(default_factory=list)
    oauth_clients: dict[str, str] = field(default_factory=dict)
    oauth_users: dict[str, tuple[str, int]] = field(default_factory=dict)

    def url(self) -> str:
        return f"http://{self.host}:{self.port}{API}"

    def hl_url(self) -> str:
        return f"http://{self.host}:{self.port}{HL_API}"


class GlpiService(LabService):
    name = "glpi"
    fault_kinds = (
        FaultKind(
            "glpi-error", "client", "STATUS", "the client's GLPI answers every request with HTTP STATUS until cleared"
        ),
        FaultKind("glpi-hang", "client", "", "the client's GLPI reads every request and never answers (until cleared)"),
        FaultKind("glpi-auth-dropped", "client", "",
                  "the web server in front of the client's GLPI drops the Authorization header"),
        FaultKind("glpi-right-missing", "client", "|".join(RIGHTS),
                  "the API profile of the client's GLPI loses that right (Ticket or Follow-up)"),
        FaultKind("glpi-mandatory-category", "client", "",
                  "the client's GLPI requires a Category on new tickets (root entity's ticket template)"),
        FaultKind("glpi-technician", "client", "SECONDS",
                  "a technician takes each ticket of the client's GLPI in charge SECONDS after it opened"),
    )

    def __init__(self, instances: list[Instance]) -> None:
        self.instances = instances
        self.by_client = {client: i for i in instances for client in i.clients}

    @classmethod
    def add_options(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--glpi-port",
            type=int,
            metavar="N",
            help="TCP port of the fake GLPI (0: any free port); default: "
            "the port of the estate's ticketing url, read from the environment first",
        )

    @classmethod
    def for_estate(cls, context: Context) -> GlpiService | None:
        override = getattr(context.options, "glpi_port", None)
        instances: dict[tuple[str, int], Instance] = {}
        for client in context.estate.clients.values():
            if client.ticketing.get("kind") != "glpi":
                continue
            raw = str(client.ticketing.get("url", ""))
            parts = urlsplit(expand(raw, context.environ))
            host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
            where = f"{client.name}: ticketing url {parts.geturl()!r}"
            if not is_loopback(host):
                raise EstateError(f"{where} is not loopback; the lab serves loopback only")
            v2 = client.ticketing.get("api") == "v2"
            root = HL_API if v2 else API
            if parts.scheme != "http" or parts.path.rstrip("/") != root:
                raise EstateError(f"{where}: the fake GLPI answers http://HOST:PORT{root}"
                                  + (" (api: v2)" if v2 else ""))
            if override is not None:
                if not variables_in(raw):
                    raise EstateError(f"{where} is fixed, --glpi-port cannot move it")
                port = override
            app_token, user_token = (cls._token(context, client, key) for key in ("app_token", "user_token"))
            instance = instances.setdefault((host, port), Instance(host, port, app_token, {}, [], []))
            if instance.app_token != app_token:
                raise EstateError(f"{client.name}: shares {host}:{port} with {instance.clients} but not its app token")
            if user_token is not None:
                instance.user_tokens[user_token] = 2  # GLPI's user 2, "glpi", as in the tests
            if v2:
                secret, password = (cls._token(context, client, key) for key in ("client_secret", "password"))
                instance.oauth_clients[str(client.ticketing.get("client_id", ""))] = secret or ""
                if client.ticketing.get("username"):
                    instance.oauth_users[str(client.ticketing["username"])] = (password or "", 2)
            instance.clients.append(client.name)
            (instance.hl_variables if v2 else instance.variables).extend(v.name for v in variables_in(raw))
        return cls(list(instances.values())) if instances else None

    @staticmethod
    def _token(context: Context, client: EstateClient, key: str) -> str | None:
        ref = client.ticketing.get(key)
        if ref is None:
            return None
        name = ref.get("secret") if isinstance(ref, dict) else None
        value = context.estate.secret(name) if name else None
        if not isinstance(value, str):
            raise EstateError(
                f"{client.name}: ticketing {key} needs secret {name!r} as a string "
                f"({context.estate.secrets.where(str(name))})"
            )
        return value

    async def start(self) -> None:
        for instance in self.instances:
            instance.fake = FakeGlpi(app_token=instance.app_token, user_tokens=instance.user_tokens,
                                     oauth_clients=instance.oauth_clients, oauth_users=instance.oauth_users)
            try:
                url = await instance.fake.start(instance.host, instance.port)
            except OSError as exc:
                raise EstateError(
                    f"tcp {instance.host}:{instance.port}: {exc.strerror} (another lab? use "
                    f"--glpi-port N or set {', '.join(instance.variables + instance.hl_variables)})"
                ) from None
            instance.port = urlsplit(url).port or instance.port

    async def stop(self) -> None:
        for instance in self.instances:
            if instance.fake is not None:
                await instance.fake.stop()
                instance.fake = None

    def endpoints(self) -> list[str]:
        return [
            f"http {i.url()}  fake GLPI of {', '.join(i.clients)}" + (f" (api: v2 at {i.hl_url()})" if i.oauth_clients
                                                                       else "")
            for i in self.instances
        ]

    def environment(self) -> dict[str, str]:
        return {
            **{name: i.url() for i in self.instances for name in i.variables},
            **{name: i.hl_url() for i in self.instances for name in i.hl_variables},
        }

    def status(self) -> list[str]:
        lines = []
        for i in self.instances:
            tickets = sorted(i.fake.tickets.values(), key=lambda t: t["id"]) if i.fake is not None else []
            open_ = sum(1 for t in tickets if t.get("status") not in SOLVED)
            lines.append(f"GLPI of {', '.join(i.clients)}: {len(tickets)} tickets, {open_} not solved ({i.url()})")
            lines += [
                f"  #{t['id']} {STATUS_NAMES.get(t.get('status'), t.get('status'))}: {t.get('name')}"
                for t in tickets[-LISTED_TICKETS:]
            ]
        return lines

    def check_fault(self, fault: Fault) -> str:
        instance = self.by_client.get(fault.target)
        if instance is None:
            raise FaultError(f"{fault.target}: no GLPI in the lab for this client")
        if fault.kind == "glpi-right-missing":
            if len(fault.args) != 1 or fault.args[0] not in RIGHTS:
                raise FaultError(f"glpi-right-missing: give one of {', '.join(RIGHTS)}")
            return f"{instance.url()}: the API profile has no {fault.args[0]} right"
        if fault.kind == "glpi-technician":
            return f"{instance.url()}: each ticket is taken in charge {_seconds(fault):g} s after it opened"
        if fault.kind in ("glpi-hang", "glpi-auth-dropped", "glpi-mandatory-category") and fault.args:
            raise FaultError(f"{fault.kind} takes no argument, got {' '.join(fault.args)}")
        if fault.kind == "glpi-hang":
            # Requests already held stay so after a clear: the agent's own deadline ends them.
            return f"{instance.url()} reads every request and answers none"
        if fault.kind == "glpi-auth-dropped":
            return f"{instance.url()}: the Authorization header no longer reaches GLPI"
        if fault.kind == "glpi-mandatory-category":
            return f"{instance.url()}: new tickets need a Category"
        return f"{instance.url()} answers {_status(fault)} to every request"

    async def apply_faults(self, faults: Sequence[Fault]) -> None:
        for instance in self.instances:
            if instance.fake is None:
                continue
            for injected in instance.injected:
                instance.fake.faults.remove(injected)
            instance.injected.clear()
            fake = instance.fake
            # the configuration faults are states: derived afresh from the faults in force
            fake.strip_authorization = False
            fake.ticket_rights, fake.followup_rights = ALL_TICKET_RIGHTS, ALL_FOLLOWUP_RIGHTS
            fake.entity_tree[0] = (-1, 1)
            fake.technician_after_s = None
            for fault in faults:
                if self.by_client.get(fault.target) is not instance:
                    continue
                if fault.kind == "glpi-auth-dropped":
                    fake.strip_authorization = True
                elif fault.kind == "glpi-right-missing":
                    ticket, followup = RIGHTS[fault.args[0]]
                    fake.ticket_rights &= ~ticket
                    fake.followup_rights &= ~followup
                elif fault.kind == "glpi-mandatory-category":
                    fake.require(0, CATEGORY)
                elif fault.kind == "glpi-technician":
                    fake.technician_after_s = _seconds(fault)
                else:
                    if fault.kind == "glpi-hang":
                        fake.hang(UNTIL_CLEARED)
                    else:
                        fake.inject(_status(fault), UNTIL_CLEARED)
                    instance.injected.append(fake.faults[-1])


def _status(fault: Fault) -> int:
    if len(fault.args) != 1 or not fault.args[0].isdigit() or not 400 <= int(fault.args[0]) <= 599:
        raise FaultError("glpi-error: give the HTTP STATUS to answer (400-599, e.g. 503 or 429)")
    return int(fault.args[0])


def _seconds(fault: Fault) -> float:
    try:
        seconds = float(fault.args[0]) if len(fault.args) == 1 else -1.0
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 86_400:
        raise FaultError("glpi-technician: give the SECONDS after which a ticket is taken in charge (0-86400)")
    return seconds
