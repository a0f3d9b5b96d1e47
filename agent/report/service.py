"""The report scheduler in the agent: each client's daily report at ``clients[].report.time`` in the
client's own timezone (07:30 Europe/Paris by default), and on the first of the month the monthly
report, mailed to its recipients and archived.

It runs in the kernel beside the services rather than as a service plugin because it needs what a
``ServiceContext`` does not give and should not: each client's timezone, language, service hours
and holidays, and the SMTP password from the secrets file.

The schedule is computed from the injected clock (a tick every ``TICK_S``, which only looks at the
clock): a report is due once its time has passed on the client's local date and the archive does
not record it as sent, so a restart neither resends one nor forgets one due while it was down (the
latest daily and monthly reports are caught up; older ones are not). A failed mailing is retried
every ``agent.smtp.retry_interval_s``; after ``1 + retries`` failed attempts the `report_delivery`
sample says ``failed`` (the built-in `report_delivery_failed` rule alerts), and the retries go on
until it is sent, which resolves the alert.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from agent.api import Sample
from agent.config import Config
from agent.report.build import Built, archive, build_daily, build_monthly, delivery_sample, mail
from agent.report.data import config_change_rules, was_sent
from agent.report.mail import Delivery
from agent.statedir import StateDir

log = logging.getLogger(__name__)

TICK_S = 60.0


@dataclass
class _Pending:
    built: Built
    recipients: tuple[str, ...]
    attempts: int = 0
    next_at: float = 0.0
    alerted: bool = False


class ReportScheduler:
    def __init__(
        self,
        config: Config,
        clients: Sequence[str],
        files: StateDir,
        clock: Callable[[], float],
        submit: Callable[[Sequence[Sample]], Awaitable[None]],
    ) -> None:
        self.config = config
        self.clients = [c for c in clients if config.client(c).report.enabled]
        self.files = files
        self.clock = clock
        self.submit = submit
        self._pending: dict[tuple[str, str], _Pending] = {}

    def start(self, every: Callable[[float, Callable[[], Awaitable[None]], str], None]) -> None:
        if self.config.agent.smtp is None:
            log.error("reports enabled for %s but no agent.smtp: archived, not mailed", ", ".join(self.clients))
        every(TICK_S, self.tick, "reports")
        log.info("reports: %s", ", ".join(
            f"{c} at {self.config.client(c).report.time:%H:%M} {self.config.client(c).timezone}" for c in self.clients
        ) or "none enabled")

    def due(self, now: float) -> list[tuple[str, str, dt.date]]:
        """(client, kind, date or first of month) of each report whose time has passed and that the
        archive does not record as sent."""
        found = []
        for name in self.clients:
            client = self.config.client(name)
            local = dt.datetime.fromtimestamp(now, client.zone)
            if local.time() < client.report.time:
                local -= dt.timedelta(days=1)  # before today's time: yesterday's run is the latest due
            day = local.date() - dt.timedelta(days=1)
            if not was_sent(self.files, name, day.isoformat()):
                found.append((name, "daily", day))
            if client.report.monthly:
                month = (local.date().replace(day=1) - dt.timedelta(days=1)).replace(day=1)
                if not was_sent(self.files, name, month.strftime("%Y-%m")):
                    found.append((name, "monthly", month))
        return found

    async def tick(self) -> None:
        now = self.clock()
        for name, kind, when in self.due(now):
            label = when.isoformat() if kind == "daily" else when.strftime("%Y-%m")
            pending = self._pending.get((name, label))
            if pending is None:
                client = self.config.client(name)
                if kind == "daily":
                    built = await asyncio.to_thread(build_daily, self.files, client, when, now,
                                                    change_rules=config_change_rules(self.config, name))
                else:
                    built = await asyncio.to_thread(build_monthly, self.files, client, when, now)
                pending = self._pending[(name, label)] = _Pending(built, tuple(client.report.recipients))
            if now >= pending.next_at:
                await self._attempt(pending, now)
        # a report no longer due (sent, or superseded by the next one) is forgotten
        current = {(n, d.isoformat() if k == "daily" else d.strftime("%Y-%m")) for n, k, d in self.due(now)}
        for key in [k for k in self._pending if k not in current]:
            del self._pending[key]

    async def _attempt(self, pending: _Pending, now: float) -> None:
        smtp = self.config.agent.smtp
        built = pending.built
        if smtp is None:
            if pending.attempts == 0:
                await asyncio.to_thread(archive, built, self.files, None, now)
            pending.attempts, pending.next_at = 1, float("inf")
            return
        password = self.config.secret_text(smtp.password) if smtp.password else None
        once = smtp.model_copy(update={"retries": 0})  # the retries are this scheduler's, on its clock
        result = await asyncio.to_thread(mail, built, once, password, pending.recipients, now, lambda _s: None)
        pending.attempts += 1
        pending.next_at = now + smtp.retry_interval_s
        delivery = Delivery(result.sent, pending.attempts, result.error, result.recipients)
        if delivery.sent or pending.attempts >= smtp.retries + 1:
            await asyncio.to_thread(archive, built, self.files, delivery, now)
        if delivery.sent:
            log.info("report %s/%s sent to %s", built.client, built.label, ", ".join(delivery.recipients))
            await self.submit([delivery_sample(built, delivery, now)])
        elif pending.attempts >= smtp.retries + 1 and not pending.alerted:
            log.error("report %s/%s not delivered after %d attempts: %s", built.client, built.label,
                      pending.attempts, delivery.error)
            pending.alerted = True
            await self.submit([delivery_sample(built, delivery, now)])
