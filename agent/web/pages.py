"""What the web pages show, gathered from the state directory through the read-only views
(agent/views) and the report's data layer (agent/report/data.py), scoped to the clients the
caller may see. Plain dataclasses: the templates, the JSON API and the exports draw the same ones.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from agent.api import SEVERITIES, DeviceInfo
from agent.config import Client, Config
from agent.inventory import InventoryView
from agent.report import data as report_data
from agent.report import sources
from agent.statedir import StateDir
from agent.views import DOWN, UNKNOWN, UNREACHABLE, AlertRow, DeviceStatus, TicketRow, alert_rows, device_statuses
from agent.views import ticket_rows as all_ticket_rows

CHANGES_WINDOW_S = 3600.0
CHANGES_SHOWN = 40
MAX_PERIOD_DAYS = 400
# A tile's level, worst first: a device that does not answer, then its worst firing alert.
LEVELS = ("down", "critical", "unreachable", "major", "minor", "warning", "unknown", "ok")


@dataclass(frozen=True)
class ActiveAlert:
    alert: AlertRow
    age_s: float  # since it entered its state (fired, or started while pending)
    ticket: TicketRow | None


@dataclass(frozen=True)
class Tile:
    status: DeviceStatus
    level: str
    alerts: tuple[ActiveAlert, ...]


@dataclass(frozen=True)
class SiteTiles:
    name: str
    level: str
    tiles: tuple[Tile, ...]


@dataclass(frozen=True)
class ClientWall:
    name: str
    display_name: str
    level: str
    sites: tuple[SiteTiles, ...]
    alerts: tuple[ActiveAlert, ...]
    counts: dict[str, int] = field(default_factory=dict)  # level -> devices


@dataclass(frozen=True)
class Change:
    at: float
    client: str
    device: str
    what: str  # fired | resolved | pending | ticket opened | ticket solved
    text: str
    severity: str | None = None


def rank(level: str) -> int:
    return LEVELS.index(level) if level in LEVELS else len(LEVELS)


def tile_level(status: DeviceStatus, alerts: Sequence[AlertRow]) -> str:
    if status.state == DOWN:
        return "down"
    firing = [a.severity for a in alerts if a.state == "firing"]
    worst = min(firing, key=lambda s: SEVERITIES.index(s) if s in SEVERITIES else len(SEVERITIES), default=None)
    if worst == "critical":
        return "critical"
    if status.state == UNREACHABLE:
        return "unreachable"
    if worst is not None:
        return worst
    return "unknown" if status.state == UNKNOWN else "ok"


def ticket_for(alert: AlertRow, tickets: Sequence[TicketRow]) -> TicketRow | None:
    """The ticket opened for ``alert``: same device and rule, started by the same first bad sample."""
    return next((t for t in tickets if (t.client, t.device, t.rule, t.started_at)
                 == (alert.client, alert.device, alert.rule, alert.started_at)), None)


class Pages:
    def __init__(self, config: Config, files: StateDir, clients: Sequence[str], clock: Callable[[], float]) -> None:
        self.config = config
        self.files = files
        self.clock = clock
        self.clients = list(clients)  # the agent's, in the config's order
        self.inventory = InventoryView(config, clients)

    def client(self, name: str) -> Client:
        return self.config.client(name)

    def devices(self, client: str) -> list[DeviceInfo]:
        return self.inventory.devices(client)

    def device(self, client: str, name: str) -> DeviceInfo | None:
        return self.inventory.find(client, name)

    def statuses(self, client: str) -> list[DeviceStatus]:
        return device_statuses(self.files, self.devices(client), client=client)

    def alerts(self, client: str, *, include_resolved: bool = False) -> list[AlertRow]:
        return alert_rows(self.files, include_resolved=include_resolved, client=client)

    def tickets(self, client: str) -> list[TicketRow]:
        return all_ticket_rows(self.files, client=client)

    # -- the wall ------------------------------------------------------------------------------

    def wall(self, clients: Sequence[str], now: float) -> list[ClientWall]:
        """The clients' tiles, worst client, site and device first."""
        walls = []
        for name in clients:
            alerts = self.alerts(name)
            tickets = self.tickets(name)
            active = [ActiveAlert(a, max(0.0, now - a.since), ticket_for(a, tickets)) for a in alerts]
            by_device: dict[str, list[ActiveAlert]] = {}
            for one in active:
                by_device.setdefault(one.alert.device, []).append(one)
            per_site: dict[str, list[Tile]] = {}
            for status in self.statuses(name):
                mine = by_device.get(status.device, [])
                tile = Tile(status, tile_level(status, [a.alert for a in mine]), tuple(mine))
                per_site.setdefault(status.site or "", []).append(tile)
            sites = []
            for site, tiles in per_site.items():
                tiles.sort(key=lambda t: (rank(t.level), t.status.device))
                sites.append(SiteTiles(site, tiles[0].level, tuple(tiles)))
            sites.sort(key=lambda s: (rank(s.level), s.name))
            counts: dict[str, int] = {}
            for site in sites:
                for tile in site.tiles:
                    counts[tile.level] = counts.get(tile.level, 0) + 1
            level = sites[0].level if sites else "unknown"
            walls.append(ClientWall(name, self.client(name).display_name, level, tuple(sites),
                                    tuple(a for a in active if a.alert.state == "firing"), counts))
        return sorted(walls, key=lambda w: (rank(w.level), w.name))

    def changes(self, clients: Sequence[str], now: float, window_s: float = CHANGES_WINDOW_S) -> list[Change]:
        """Alerts that started, fired or resolved, tickets opened or solved, in the last hour; newest first."""
        since = now - window_s
        found = []
        for name in clients:
            for alert in self.alerts(name, include_resolved=True):
                for what, at in (("fired", alert.fired_at), ("resolved", alert.resolved_at)):
                    if at is not None and since <= at <= now:
                        found.append(Change(at, name, alert.device, what, alert.summary, alert.severity))
            for ticket in self.tickets(name):
                for what, at in (("ticket opened", ticket.opened_at), ("ticket solved", ticket.solved_at)):
                    if at is not None and since <= at <= now:
                        found.append(Change(at, name, ticket.device, what,
                                            f"{ticket.ticket_id or ''} {ticket.title}".strip(), ticket.severity))
        found += self._answer_changes(clients, since, now)
        return sorted(found, key=lambda c: -c.at)[:CHANGES_SHOWN]

    def _answer_changes(self, clients: Sequence[str], since: float, now: float) -> list[Change]:
        """A collector that stopped answering a device, or answers again, in the window: from the
        rollups' `collection.status` intervals (turns not run and unknown time are no change)."""
        db = report_data.open_rollups(self.files)
        if db is None:
            return []
        try:
            found = []
            for name in clients:
                intervals = db.intervals(sources.COLLECTION.measurement, sources.COLLECTION_STATUS,
                                         int((since - CHANGES_WINDOW_S) * 1e9), int(now * 1e9), {"client": name})
                last: dict[tuple[str, str], str] = {}
                for interval in intervals:  # per series, in time order
                    key = (interval.tags.get("device", ""), interval.tags.get("collector", ""))
                    answered = _answered(interval.value)
                    if answered is None:
                        continue
                    before = last.get(key)
                    last[key] = answered
                    if before is not None and before != answered and interval.start_ns / 1e9 >= since:
                        what = "answers again" if answered == "up" else "stopped answering"
                        found.append(Change(interval.start_ns / 1e9, name, key[0], what,
                                            f"{key[1]}: {interval.value}", None))
            return found
        finally:
            db.close()

    # -- a client's period ---------------------------------------------------------------------

    def period_window(self, client: Client, first: dt.date, last: dt.date) -> report_data.Window:
        """The local days ``first`` to ``last``, up to now."""
        start, end = report_data.day_window(client, first)[0], report_data.day_window(client, last)[1]
        return report_data.until_now((start, end), self.clock())

    def availability(self, client: Client, first: dt.date, last: dt.date) -> list[report_data.Availability]:
        db = report_data.open_rollups(self.files)
        try:
            return report_data.availability(db, client, self.period_window(client, first, last),
                                            report_data.service_windows(client, first, last),
                                            client.report.target_pct)
        finally:
            if db is not None:
                db.close()

    def sla(self, client: Client, first: dt.date, last: dt.date) -> report_data.Sla:
        return report_data.sla(self.alerts(client.name, include_resolved=True), self.tickets(client.name),
                               self.period_window(client, first, last))


def parse_period(client: Client, now: float, first: str | None, last: str | None,
                 default_days: int = 7) -> tuple[dt.date, dt.date]:
    """The ``from`` and ``to`` dates of a request (local dates of the client, both included);
    raise ValueError naming the bad one."""
    today = dt.datetime.fromtimestamp(now, client.zone).date()
    try:
        end = dt.date.fromisoformat(last) if last else today
    except ValueError:
        raise ValueError(f"to: not a date (YYYY-MM-DD): {last!r}") from None
    try:
        start = dt.date.fromisoformat(first) if first else end - dt.timedelta(days=default_days - 1)
    except ValueError:
        raise ValueError(f"from: not a date (YYYY-MM-DD): {first!r}") from None
    if start > end:
        raise ValueError("from: after to")
    if (end - start).days >= MAX_PERIOD_DAYS:
        raise ValueError(f"the period is longer than {MAX_PERIOD_DAYS} days")
    return start, end


def _answered(status: str | None) -> str | None:
    if status in sources.UP_STATUSES:
        return "up"
    return "down" if status in sources.DOWN_STATUSES else None
