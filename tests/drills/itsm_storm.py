"""The ITSM-outage storm drill (issue 14), for every ticket connector: `vigie run` against the
connector's peer on loopback, a storm of devices down (their ports answer nothing) while the peer is
out, the agent SIGKILLed at random moments and restarted, the peer back (more kills while the
openings go out), then the devices back (bench/fastresp.py replays a switch on their ports) and more
kills while the solutions go out. tests/drills/test_itsm_storm.py runs a short storm, bench/bench_drills.py
long ones.

What "exactly once" can mean depends on the peer:

- GLPI is searched (``find_open`` asks it for the alert's key): one ticket per alert, one solution
  per ticket, never a copy.
- The built-in log is the agent's own SQLite: one row per alert.
- A mail gateway, a webhook or a Teams channel cannot be searched: the receiver keeps a record of
  what it sent (alerting/ticketing/delivery.py), one *delivery* per event with an id derived from
  the ticket's reference (``<ref>-open``, ``<ref>-solve``). Killed between the peer's "taken" and the
  record's "sent", the agent sends the same payload again, under the same id (Message-ID,
  ``X-Vigie-Delivery``, the card's footer). So the guarantee is: every delivery at least once, each
  copy byte for byte the first (the id the gateway dedups or threads by), at most one copy per kill;
  and one opening and one solution per alert, the solution after its opening. That is what is
  asserted, from what the peer received.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import ssl
import subprocess
import sys
from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import trustme
import yaml
from aiohttp import web

from lab.glpi_fake import FakeGlpi
from tests.alerting.test_receivers_email import PASSWORD, USER, Gateway, serve_gateway
from tests.alerting.test_receivers_sigkill import _delivery_of
from tests.alerting.test_receivers_teams import PATH, SIG, Workflow
from tests.alerting.test_receivers_webhook import SECRET, Receiver
from tests.e2e.helpers import (
    APP_TOKEN,
    ROOT,
    USER_TOKEN,
    AgentProcess,
    device,
    eventually,
    glpi_ticketing,
    query_sqlite,
    ticket_links,
    unreachable_rule,
    write_estate,
)

CLIENT = "storm"
CONNECTORS = ("glpi", "log", "email", "webhook", "teams")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tls_pair(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A private CA's file (for the agent's ``ca_bundle``) and a server context for 127.0.0.1."""
    ca = trustme.CA()
    ca_file = directory / "storm-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return ca_file, context


@dataclass
class Receipt:
    delivery: str  # <ref>-<event>[-<hash>]
    payload: bytes  # what identifies the copy: the mail's bytes, the webhook's body, the card

    @property
    def ticket(self) -> str:
        return self.delivery.split("-")[0]

    @property
    def event(self) -> str:
        return self.delivery.split("-")[1]


class Peer(ABC):
    """The connector's far end: its ``ticketing`` block and secrets, an outage, what it received."""

    name: str
    searchable = False  # does find_open ask the peer (exactly once), or the local record (copies)?

    @abstractmethod
    def ticketing(self) -> dict[str, Any]:
        """The client's ``ticketing`` block that points the connector at this peer."""

    def secrets(self) -> dict[str, Any]:
        return {}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def outage(self) -> None:
        return None

    async def restore(self) -> None:
        return None

    def receipts(self) -> list[Receipt]:
        """Every message the peer took, in order (copies included)."""
        return []


class GlpiPeer(Peer):
    name = "glpi"
    searchable = True

    def __init__(self) -> None:
        self.glpi = FakeGlpi(app_token=APP_TOKEN, user_tokens={USER_TOKEN: 2})

    def ticketing(self) -> dict[str, Any]:
        return glpi_ticketing(self.glpi.url, CLIENT)

    async def start(self) -> None:
        await self.glpi.start()

    async def stop(self) -> None:
        await self.glpi.stop()

    async def outage(self) -> None:
        self.glpi.inject(503, times=10**6)

    async def restore(self) -> None:
        self.glpi.clear_faults()

    def receipts(self) -> list[Receipt]:
        # GLPI keeps no delivery id: a ticket is an opening, a solution a solve (a second ticket
        # for one alert is one opening too many, a second solution a copy)
        names = Counter(t["name"] for t in self.glpi.tickets.values())
        assert set(names.values()) <= {1}, names
        opened = [Receipt(f"{tid}-open", b"") for tid in self.glpi.tickets]
        return opened + [Receipt(f"{s['items_id']}-solve", b"") for s in self.glpi.solutions]


class LogPeer(Peer):
    """The built-in log: no peer, no outage; the agent's own table is what was "received"."""

    name = "log"
    searchable = True

    def __init__(self, state: Path) -> None:
        self.state = state

    def ticketing(self) -> dict[str, Any]:
        return {"kind": "log"}

    def receipts(self) -> list[Receipt]:
        rows = query_sqlite(self.state / "tickets.sqlite", "SELECT id, status FROM tickets")
        return [Receipt(f"{tid}-open", b"") for tid, _ in rows] + [
            Receipt(f"{tid}-solve", b"") for tid, status in rows if status == "solved"
        ]


class EmailPeer(Peer):
    """An SMTP relay (aiosmtpd, STARTTLS + AUTH); its outage: the relay is gone (connection refused)."""

    name = "email"

    def __init__(self, directory: Path) -> None:
        self.ca_file, self.tls = tls_pair(directory)
        self.port = free_port()
        self.gateway = Gateway()
        self.controller: Any = None

    def ticketing(self) -> dict[str, Any]:
        return {"kind": "email", "to": ["support@itsm.example.org"], "sender": "noc@vigie.example.net",
                "host": "127.0.0.1", "port": self.port, "ca_bundle": str(self.ca_file), "username": USER,
                "password": {"secret": "storm-smtp"}, "timeout_s": 5}

    def secrets(self) -> dict[str, Any]:
        return {"storm-smtp": PASSWORD}

    async def start(self) -> None:
        self.controller = await asyncio.to_thread(serve_gateway, self.gateway, self.tls, self.port)

    async def stop(self) -> None:
        if self.controller is not None:
            await asyncio.to_thread(self.controller.stop)
            self.controller = None

    async def outage(self) -> None:
        await self.stop()

    async def restore(self) -> None:
        await self.start()

    def receipts(self) -> list[Receipt]:
        found = []
        for _, _, raw, _ in self.gateway.mails:
            mail = message_from_bytes(raw, policy=policy.default)
            delivery = str(mail["Message-ID"]).strip("<>").split("@")[0]
            # the gateway threads by the subject's reference: it must name the same ticket
            assert f"[vigie #{delivery.split('-')[0]}]" in str(mail["Subject"]), mail["Subject"]
            found.append(Receipt(delivery, raw))
        return found


class HttpPeer(Peer):
    """A loopback HTTP(S) server whose outage is a 503 to every request."""

    def __init__(self, path: str, tls: ssl.SSLContext | None) -> None:
        self.path, self.tls = path, tls
        self.port = free_port()
        self.down = False
        self.runner: web.AppRunner | None = None
        self.statuses: list[int] = []  # of the requests that reached the real handler

    @abstractmethod
    async def handle(self, request: web.Request) -> web.StreamResponse:
        """What the receiver does with a request that reached it (the peer is up)."""

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        if self.down:
            return web.Response(status=503, text="ITSM down")
        response = await self.handle(request)
        self.statuses.append(response.status)
        return response

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(self.path, self._serve)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=self.tls).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def outage(self) -> None:
        self.down = True

    async def restore(self) -> None:
        self.down = False


class WebhookPeer(HttpPeer):
    """tests/alerting's webhook receiver (HMAC over timestamp.body checked, deliveries processed once)."""

    name = "webhook"

    def __init__(self) -> None:
        super().__init__("/hooks/vigie", None)
        self.receiver = Receiver()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        return await self.receiver.handle(request)

    def ticketing(self) -> dict[str, Any]:
        return {"kind": "webhook", "url": f"http://127.0.0.1:{self.port}/hooks/vigie",
                "secret": {"secret": "storm-hook"}}

    def secrets(self) -> dict[str, Any]:
        return {"storm-hook": SECRET}

    def receipts(self) -> list[Receipt]:
        assert set(self.statuses) <= {200}, Counter(self.statuses)  # every signature checked out
        return [Receipt(headers["X-Vigie-Delivery"], body) for headers, body in self.receiver.received]


class TeamsPeer(HttpPeer):
    """tests/alerting's Workflows trigger (its sig checked, each card validated), over HTTPS."""

    name = "teams"

    def __init__(self, directory: Path) -> None:
        self.ca_file, tls = tls_pair(directory)
        super().__init__(PATH, tls)
        self.workflow = Workflow()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        return await self.workflow.handle(request)

    def ticketing(self) -> dict[str, Any]:
        return {"kind": "teams", "url": {"secret": "storm-flow"}, "ca_bundle": str(self.ca_file)}

    def secrets(self) -> dict[str, Any]:
        return {"storm-flow": f"https://127.0.0.1:{self.port}{PATH}?api-version=1&sig={SIG}"}

    def receipts(self) -> list[Receipt]:
        assert set(self.statuses) <= {202}, Counter(self.statuses)
        return [Receipt(_delivery_of(card), json.dumps(card, sort_keys=True).encode()) for card in self.workflow.posts]


def make_peer(connector: str, directory: Path, state: Path) -> Peer:
    if connector == "glpi":
        return GlpiPeer()
    if connector == "log":
        return LogPeer(state)
    if connector == "email":
        return EmailPeer(directory)
    if connector == "webhook":
        return WebhookPeer()
    if connector == "teams":
        return TeamsPeer(directory)
    raise ValueError(f"no storm peer for connector {connector!r}; there are {', '.join(CONNECTORS)}")


@dataclass
class StormResult:
    connector: str
    devices: int
    kills: int
    receipts: list[Receipt]
    links: list[tuple[str, str, str | None, int]]  # the agent's outbox at the end
    copies: int = 0
    problems: list[str] = field(default_factory=list)


def judge(peer: Peer, devices: int, kills: int, links: list[tuple[str, str, str | None, int]]) -> StormResult:
    """What the peer received, against the agent's outbox (one link per alert it fired: a device's
    poll that times out under load is an alert of its own, legitimately) and the guarantee the
    connector gives (the module's docstring)."""
    receipts = peer.receipts()
    result = StormResult(peer.name, devices, kills, receipts, links)
    problems = result.problems
    by_id: dict[str, list[Receipt]] = defaultdict(list)
    for receipt in receipts:
        by_id[receipt.delivery].append(receipt)
    result.copies = sum(len(copies) - 1 for copies in by_id.values())
    states = {str(ticket): state for _, state, ticket, _ in links}
    openings = {r.ticket for r in receipts if r.event == "open"}
    solutions = {r.ticket for r in receipts if r.event == "solve"}
    if len(links) < devices or len(states) != len(links):
        problems.append(f"{len(links)} links for {devices} devices down, {len(states)} tickets named")
    if unknown := (openings | solutions) - set(states):
        problems.append(f"tickets the agent does not know (a second ticket for an alert): {sorted(unknown)}")
    if lost := set(states) - openings:
        problems.append(f"tickets the agent opened that the peer never got: {sorted(lost)}")
    if unsolved := {t for t, state in states.items() if state == "solved"} - solutions:
        problems.append(f"tickets solved by the agent that the peer never saw solved: {sorted(unsolved)}")
    if early := {t for t, state in states.items() if state != "solved"} & solutions:
        problems.append(f"tickets solved at the peer while their alert fires: {sorted(early)}")
    for delivery, copies in by_id.items():
        if any(c.payload != copies[0].payload for c in copies):
            problems.append(f"{delivery}: a copy that is not the same message")
    for ticket in openings & solutions:
        order = [r.event for r in receipts if r.ticket == ticket]
        if order.index("solve") < order.index("open"):
            problems.append(f"#{ticket}: solved before it was opened")
    if peer.searchable and result.copies:
        problems.append(f"{result.copies} copies from a connector that searches its peer")
    if result.copies > kills:
        problems.append(f"{result.copies} copies for {kills} kills (at most one each)")
    if set(states.values()) != {"solved"}:
        problems.append(f"the outbox ends {Counter(states.values())}")
    return result


async def kill_at_random(agent: AgentProcess, rng: random.Random, times: int, within_s: float) -> None:
    for _ in range(times):
        await asyncio.sleep(rng.uniform(0.2, within_s / times))
        await agent.kill()
        agent.start()


async def storm(
    directory: Path,
    connector: str,
    *,
    devices: int = 6,
    seed: int = 14,
    outage_kills: int = 2,
    opening_kills: int = 1,
    solving_kills: int = 1,
    deadline_s: float = 150,
) -> StormResult:
    rng = random.Random(seed)
    state = directory / "state"
    peer = make_peer(connector, directory, state)
    await peer.start()
    ports = [free_port(socket.SOCK_DGRAM) for _ in range(devices)]
    config, secrets = write_estate(
        directory, {CLIENT: [device(f"sw-{n}", port, interval_s=3, timeout_s=3) for n, port in enumerate(ports)]},
        [unreachable_rule(for_s=0)], {CLIENT: peer.ticketing()},
        {"ticket_grouping": {"group_by": ["..."]}},  # the storm: one ticket per device, not one per site
    )
    # the replayed switch has uplinks down: the storm is the devices' silence, not their ports
    raw = yaml.safe_load(config.read_text())
    raw["clients"][0]["rules"] = [{"name": "interface_down", "enabled": False}]
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    secrets.write_text(yaml.safe_dump({**yaml.safe_load(secrets.read_text()), **peer.secrets()}))
    agent = AgentProcess(config, secrets, state)
    responders: list[subprocess.Popen[bytes]] = []
    kills = outage_kills + opening_kills + solving_kills
    try:
        await peer.outage()  # the ITSM is out while the storm starts
        agent.start()
        await eventually(lambda: ticket_links(state), "the first tickets queued", agents=[agent])
        await kill_at_random(agent, rng, outage_kills, within_s=4 * outage_kills)
        await peer.restore()
        await kill_at_random(agent, rng, opening_kills, within_s=2 * opening_kills)
        await eventually(lambda: len({r.ticket for r in peer.receipts() if r.event == "open"}) >= devices
                         and all(s == "open" for _, s, _, _ in ticket_links(state)),
                         f"{devices} tickets", agents=[agent], deadline_s=deadline_s)
        for n, port in enumerate(ports):  # the devices answer again (the communities write_estate gives)
            responders.append(subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / "fastresp.py"), "--snmprec",
                 str(ROOT / "lab" / "snmprec" / "ios_2960x.snmprec"), "--port", str(port), "--community",
                 f"{CLIENT}/sw-{n}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        await kill_at_random(agent, rng, solving_kills, within_s=2 * solving_kills)
        await eventually(lambda: {s for _, s, _, _ in ticket_links(state)} == {"solved"},
                         "every ticket solved", agents=[agent], deadline_s=deadline_s)
        # the last run up (its outbox and delivery record taken up again): a late copy would show now
        await eventually(lambda: "; polling" in agent.log_text(tail=10**9).rsplit("===== run", 1)[-1],
                         "the last run polling", agents=[agent])
        await asyncio.sleep(3)
        assert await agent.terminate() == 0
        return judge(peer, devices, kills, ticket_links(state))
    finally:
        agent.ensure_stopped()
        for responder in responders:
            responder.terminate()
            responder.wait(10)
        await peer.stop()
