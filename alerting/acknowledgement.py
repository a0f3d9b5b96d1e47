"""TakeoverReader: read back from each ITSM when its tickets were taken in charge.

The contract's KPI 3 is "a critical monitoring alert is taken in charge within 5 minutes, 95 % of
the time": the moment counts when someone took the ticket in the ITSM (a technician assigned to
it in GLPI, ``vigie tickets take`` in the built-in log), not when vigie opened it. Each receiver
that can say it (``agent.api.TakeoverReadable``) is asked about the tickets of the outbox
(``ticket_links``) that are open, or solved within the last ``solved_recheck_s`` and not read
since (the technician may have acted between the last pass and the solution), and have no
``taken_at`` yet; the first answer is kept there (:meth:`TicketDispatcher.record_taken`), so a
restart keeps it and asks only about the others. ``alerting/sla.py`` measures from it, and the
escalation of tickets nobody takes reads ``taken_at IS NULL``.

How it keeps off the other work:

- One asyncio task per ticket target, as the dispatcher's lanes: a GLPI that accepts and never
  answers holds its own task. Each call has a deadline (``call_timeout_s``); a pass asks about
  ``per_pass`` tickets at most (the ones read longest ago first), every ``interval_s``.
- A failed call that says the ITSM is out (5xx, 429, network, the deadline) ends that target's
  pass: one WARNING and the next pass after a backoff doubling from ``interval_s`` to
  ``max_backoff_s``; the tickets are asked about again then. A refusal about one ticket (deleted,
  out of the API user's entities) is one ERROR for that ticket, and the pass goes on with the
  others. Nothing is written for them; a ticket just asked about goes last in the next pass.
- A take before the alert's onset is an earlier occurrence's: a ticket reopened for an alert that
  fired again keeps, in GLPI, the date of its first take, so its new occurrence reads as not taken.
- Read-only towards the ITSM (``taken_in_charge`` never changes a ticket); the outbox is read
  with its own read-only connection and written through the dispatcher's writer.

Time comes from ``clock``; :meth:`TakeoverReader.read_pass` runs one pass of every target at
once (tests drive it), :meth:`start` runs them periodically and :meth:`wake` starts a pass now.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.api.tickets import TakeoverReadable, TicketConnector, TicketError, TicketRef
from agent.views.db import read_only, rows

log = logging.getLogger(__name__)

INTERVAL_S = 30.0
PER_PASS = 20
CALL_TIMEOUT_S = 20.0
MAX_BACKOFF_S = 900.0
SOLVED_RECHECK_S = 3600.0
STOP_TIMEOUT_S = 5.0
ITSM_RESOLUTION_S = 1.0  # GLPI keeps dates to the second: a take in the onset's second may read before it


@dataclass(frozen=True)
class Taken:
    """A ticket the ITSM says was taken in charge at ``taken_at``."""

    key: str
    client: str
    connector: str
    ticket_id: str
    taken_at: float
    started_at: float


@dataclass(eq=False)
class _Target:
    """One receiver and the clients it serves; its own pace, backoff and bookkeeping."""

    connector: Any  # a TicketConnector that is TakeoverReadable
    clients: set[str]
    read_at: dict[str, float] = field(default_factory=dict)  # key -> when it was last asked about
    refused: set[str] = field(default_factory=set)  # keys whose ticket the ITSM refused to show (logged once)
    failures: int = 0
    next_pass_at: float = 0.0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return f"{self.connector.name} for {', '.join(sorted(self.clients))}"


class TakeoverReader:
    def __init__(
        self,
        outbox_path: Path | str,
        targets: Mapping[str, TicketConnector],
        record: Callable[[str, float], Awaitable[bool]],
        clock: Callable[[], float] = time.time,
        *,
        interval_s: float = INTERVAL_S,
        per_pass: int = PER_PASS,
        call_timeout_s: float = CALL_TIMEOUT_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        solved_recheck_s: float = SOLVED_RECHECK_S,
        stop_timeout_s: float = STOP_TIMEOUT_S,
        on_taken: Callable[[Taken], None] | None = None,
    ) -> None:
        """``targets``: client -> receiver (those that are not ``TakeoverReadable`` are left out;
        clients sharing a receiver share its task). ``record(key, taken_at)``: keeps the answer
        (the dispatcher's :meth:`~alerting.notifier.TicketDispatcher.record_taken`)."""
        self.outbox_path = Path(outbox_path)
        self.record = record
        self.clock = clock
        self.interval_s = interval_s
        self.per_pass = per_pass
        self.call_timeout_s = call_timeout_s
        self.max_backoff_s = max_backoff_s
        self.solved_recheck_s = solved_recheck_s
        self.stop_timeout_s = stop_timeout_s
        self.on_taken = on_taken
        grouped: dict[int, _Target] = {}
        for client, connector in targets.items():
            if isinstance(connector, TakeoverReadable):
                grouped.setdefault(id(connector), _Target(connector, set())).clients.add(client)
        self.targets = list(grouped.values())
        self._stopping = False

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        for target in self.targets:
            target.task = asyncio.create_task(self._run(target), name=f"takeover: {target.name}")
        if self.targets:
            log.info("taken-in-charge read-back: %s, every %.0f s", "; ".join(t.name for t in self.targets),
                     self.interval_s)

    async def stop(self) -> None:
        """Bounded: a call in flight is cancelled (nothing was written for it)."""
        self._stopping = True
        tasks = [t.task for t in self.targets if t.task is not None]
        for target in self.targets:
            target.wake.set()
        if not tasks:
            return
        _, busy = await asyncio.wait(tasks, timeout=self.stop_timeout_s)
        for task in busy:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def wake(self) -> None:
        """Start a pass of every target now (a test moved its clock, or a ticket just opened)."""
        for target in self.targets:
            target.next_pass_at = min(target.next_pass_at, self.clock())
            target.wake.set()

    async def _run(self, target: _Target) -> None:
        while not self._stopping:
            target.wake.clear()
            if self.clock() >= target.next_pass_at:
                try:
                    await self._pass(target)
                except Exception:  # noqa: BLE001 - a bug must not end this target's read-back for good
                    log.exception("taken-in-charge read-back of %s failed", target.name)
                    self._failed(target)
            wait_s = target.next_pass_at - self.clock()
            if wait_s <= 0 or target.wake.is_set():
                continue
            try:
                await asyncio.wait_for(target.wake.wait(), wait_s)
            except TimeoutError:
                pass

    # -- one pass -----------------------------------------------------------------------------

    async def read_pass(self) -> list[Taken]:
        """One pass of every target at once (each bounded by its own deadlines); what was taken."""
        found = await asyncio.gather(*(self._pass(target) for target in self.targets))
        return [taken for part in found for taken in part]

    async def _pass(self, target: _Target) -> list[Taken]:
        now = self.clock()
        candidates = await asyncio.to_thread(self._candidates, target, now)
        found: list[Taken] = []
        for row in candidates:
            if self._stopping:
                break
            ref = TicketRef(str(row["connector"]), str(row["ticket_id"]), row["ticket_url"])
            target.read_at[row["key"]] = now  # asked: the others go first next time, whatever the answer
            try:
                async with asyncio.timeout(self.call_timeout_s):
                    taken_at = await target.connector.taken_in_charge(ref)
            except TimeoutError:
                self._failed(target, f"no answer about ticket {ref.connector}#{ref.id} within "
                                     f"{self.call_timeout_s:g} s")
                return found
            except TicketError as exc:
                if exc.retryable:  # the ITSM is out: the rest of the pass would fail the same
                    self._failed(target, f"ticket {ref.connector}#{ref.id}: {exc}")
                    return found
                # this ticket only (deleted, moved out of the entity, a right on it): the others go on
                if row["key"] not in target.refused:
                    target.refused.add(row["key"])
                    log.error("taken-in-charge read-back of %s: ticket %s#%s cannot be read, asked again at later "
                              "passes: %s [%s]", target.name, ref.connector, ref.id, exc, row["key"])
                continue
            if taken_at is None or taken_at < row["started_at"] - ITSM_RESOLUTION_S:
                # before this alert's onset: a reopened ticket's earlier take (GLPI records a take once)
                continue
            if await self.record(row["key"], float(taken_at)):
                taken = Taken(row["key"], row["client"], ref.connector, ref.id, float(taken_at), row["started_at"])
                found.append(taken)
                log.info("ticket %s#%s of %s taken in charge at %s, %.0f s after the first bad sample [%s]",
                         ref.connector, ref.id, row["client"], time.strftime("%Y-%m-%d %H:%M:%S %Z",
                                                                             time.localtime(taken_at)),
                         taken.taken_at - taken.started_at, taken.key)
                if self.on_taken is not None:
                    self.on_taken(taken)
        if target.failures:
            log.info("taken-in-charge read-back of %s works again", target.name)
        target.failures = 0
        target.next_pass_at = now + self.interval_s
        return found

    def _failed(self, target: _Target, why: str = "") -> None:
        target.failures += 1
        delay = min(self.interval_s * 2 ** (target.failures - 1), self.max_backoff_s)
        target.next_pass_at = self.clock() + delay
        if why:
            log.warning("taken-in-charge read-back of %s failed, next try in %.0f s: %s", target.name, delay, why)

    def _candidates(self, target: _Target, now: float) -> list[Any]:
        """This target's tickets to ask about, read longest ago first, ``per_pass`` at most."""
        clients = sorted(target.clients)
        marks = ",".join("?" for _ in clients)
        with read_only(self.outbox_path) as conn:
            found = rows(
                conn,
                "SELECT key, client, connector, ticket_id, ticket_url, state, started_at, solved_at FROM ticket_links "
                f"WHERE client IN ({marks}) AND ticket_id IS NOT NULL AND taken_at IS NULL "
                "AND (state IN ('open', 'to_solve') OR (state = 'solved' AND solved_at >= ?)) "
                "ORDER BY started_at, queued_at",
                (*clients, now - self.solved_recheck_s),
            )
        # one question per ticket: the alerts of a group share it (its oldest alert asks, the
        # answer is kept for all of them)
        first: dict[tuple[str, str, str], Any] = {}
        for r in found:
            first.setdefault((str(r["client"]), str(r["connector"]), str(r["ticket_id"])), r)
        # a solved ticket is asked about once more after its solution, not at every pass
        never = float("-inf")
        due = [r for r in first.values()
               if r["state"] != "solved" or target.read_at.get(r["key"], never) < r["solved_at"]]
        live = {r["key"] for r in found}
        for key in [k for k in target.read_at if k not in live]:
            del target.read_at[key]  # taken, or out of the window: nothing to remember
            target.refused.discard(key)
        due.sort(key=lambda r: (target.read_at.get(r["key"], never), r["started_at"]))
        return due[: self.per_pass]
