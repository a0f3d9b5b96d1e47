"""The main job: inventory -> scheduler -> collectors -> pipeline -> (store, rollups, alerts -> tickets).

`Agent` only wires the parts together; each part is usable (and tested) alone. It owns one state
directory: two agents sharding a NOC (`vigie run --clients A,B`) must be given two directories.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config import Config, RuleSpec, SqliteStoreSpec, StoreSpec
from agent.inventory import Poll, build_polls
from agent.pipeline import Pipeline
from agent.plugins import COLLECTORS, TICKETING, Registry
from agent.api import Sample
from agent.scheduler import Scheduler
from agent.state import StateDB, tz_by_client
from agent.stores import Store, build_store
from agent.stores.sqlite import DEFAULT_RETENTION_DAYS
from alerting.engine import AlertEngine
from alerting.models import AlertTransition
from alerting.notifier import DispatchResult, TicketDispatcher
from alerting.ticketing import TicketConnector
from agent.api import Collector

log = logging.getLogger(__name__)

AlertListener = Callable[[Sequence[AlertTransition], DispatchResult], None]


class CollectorFactory:
    """Builds one collector instance per poll from the `vigie.collectors` entry points."""

    def __init__(self) -> None:
        self.registry = Registry(COLLECTORS)

    def __call__(self, poll: Poll) -> Collector:
        return self.registry.load(poll.collector)(poll.options)


@dataclass
class PollProblems:
    """Polls left out: collectors not installed (a warning: collectors are plugins) and collectors
    that refuse their options (a configuration error)."""

    not_installed: list[str] = field(default_factory=list)
    bad_options: list[str] = field(default_factory=list)


def usable_polls(polls: Sequence[Poll], factory: CollectorFactory) -> tuple[list[Poll], PollProblems]:
    """The polls whose collector is installed and accepts its options, and why the others are not.

    One device naming a collector this installation lacks, or giving it a bad option, must not stop
    the supervision of all the others: it is reported and left out.
    """
    installed = set(factory.registry.names())
    usable: list[Poll] = []
    problems = PollProblems()
    for poll in polls:
        where = f"{poll.target.tags.get('client')}/{poll.target.name}: collector {poll.collector}"
        if poll.collector not in installed:
            problems.not_installed.append(f"{where}: not installed (known: {', '.join(sorted(installed))})")
            continue
        try:
            factory(poll)
        except ValueError as exc:
            problems.bad_options.append(f"{where}: {exc}")
            continue
        usable.append(poll)
    return usable, problems


def rules_by_client(config: Config, clients: Collection[str]) -> list[RuleSpec]:
    """One rule list for the engine: each client's rules scoped to it with a `client` matcher."""
    return [
        rule.model_copy(update={"match": {**rule.match, "client": client}})
        for client in sorted(clients)
        for rule in config.rules_for(client)
    ]


def state_retention_days(spec: StoreSpec) -> float:
    """The rollups' retention: the embedded store's, so reports cover what its points cover; with
    an external TSDB, whose retention is set on its side, the embedded store's default."""
    return spec.retention_days if isinstance(spec, SqliteStoreSpec) else DEFAULT_RETENTION_DAYS


class Agent:
    def __init__(
        self,
        config: Config,
        clients: Collection[str] | None = None,
        state_dir: Path | None = None,
        *,
        clock: Callable[[], float] = time.time,
        health_interval_s: float = 60.0,
    ) -> None:
        self.config = config
        self.collectors = CollectorFactory()
        self.polls, problems = usable_polls(build_polls(config, clients), self.collectors)
        for problem in problems.not_installed:
            log.warning("not polled: %s", problem)
        for problem in problems.bad_options:
            log.error("not polled: %s", problem)
        self.clients = [c.name for c in config.select_clients(clients)]
        self.state_dir = Path(state_dir or config.agent.state_dir)
        self.clock = clock
        self.health_interval_s = health_interval_s
        self.listeners: list[AlertListener] = []
        # Observers of every batch (the demo's live display); called on the alert lane.
        self.sample_listeners: list[Callable[[Sequence[Sample]], None]] = []
        # A last say on each rule before the engine compiles it (the demo's faster pace).
        self.rule_filter: Callable[[RuleSpec], RuleSpec] | None = None
        self._connectors: list[TicketConnector] = []
        self._stop = asyncio.Event()

    # -- assembly ------------------------------------------------------------------------------

    def _ticket_targets(self) -> dict[str, TicketConnector]:
        registry = Registry(TICKETING)
        shared_log: TicketConnector | None = None
        targets: dict[str, TicketConnector] = {}
        for name in self.clients:
            ticketing = self.config.client(name).ticketing
            if ticketing.kind == "log":
                if shared_log is None:
                    shared_log = registry.load("log").from_options({"path": str(self.state_dir / "tickets.sqlite")})
                    self._connectors.append(shared_log)
                targets[name] = shared_log
                continue
            options: dict[str, Any] = {
                "url": ticketing.url,
                "app_token": self.config.secret_text(ticketing.app_token),
                "user_token": self.config.secret_text(ticketing.user_token),
                "entities_id": ticketing.entity_id,
            }
            if ticketing.category_id is not None:
                options["itilcategories_id"] = ticketing.category_id
            if ticketing.requesttype_id is not None:
                options["requesttypes_id"] = ticketing.requesttype_id
            connector = registry.load(ticketing.kind).from_options(options)
            self._connectors.append(connector)
            targets[name] = connector
        return targets

    async def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        spec = self.config.agent.store
        store_config = spec.model_dump()
        if spec.kind == "influxdb":
            store_config["token"] = self.config.secret_text(spec.token)
        self.store: Store = build_store(store_config, self.state_dir)
        zones = {name: self.config.client(name).timezone for name in self.clients}
        self.state = StateDB(
            self.state_dir / "state.sqlite", tz_for=tz_by_client(zones), retention_days=state_retention_days(spec)
        )
        rules = rules_by_client(self.config, self.clients)
        if self.rule_filter is not None:
            rules = [self.rule_filter(rule) for rule in rules]
        self.engine = AlertEngine(
            str(self.state_dir / "alerts.sqlite"),
            rules,
            self.clock,
            parents=self.config.parents(),
            # A hard timeout is a device that did not answer in time: for inhibition it is down.
            unreachable_statuses=("unreachable", "timeout"),
        )
        # What the ticket lanes did since the last batch: handed to the listeners with the next one.
        self._ticket_results = DispatchResult()
        self.dispatcher = TicketDispatcher(
            str(self.state_dir / "ticket-outbox.sqlite"),
            self._ticket_targets(),
            self.clock,
            on_result=self._ticket_results.extend,
        )
        self.pipeline = Pipeline({"store": self.store.write, "state": self._update_state, "alerts": self._alert})
        self.pipeline.start()
        self.scheduler = Scheduler(
            self.polls,
            self.collectors,
            self.pipeline.submit,
            health_interval_s=self.health_interval_s,
            queue_depths=self._depths,
            workers=self.config.agent.threads,
        )
        # The ticket lanes take up what the outbox holds (tickets to open or solve) beside the polls.
        await self.dispatcher.start(self.engine.firing)
        self.scheduler.start()
        log.info("vigie: %d poll(s) for client(s) %s, state in %s", len(self.polls), ", ".join(self.clients),
                 self.state_dir)

    async def stop(self) -> None:
        self.scheduler.stop()
        await self.pipeline.stop()
        await self.dispatcher.stop()  # bounded: calls in flight are cancelled, retried at the next start
        await self.store.close()
        for connector in self._connectors:
            await connector.close()
        self.engine.close()
        self.state.close()

    async def run_forever(self, duration_s: float | None = None) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop.set)
        try:
            await asyncio.wait_for(self._stop.wait(), duration_s) if duration_s else await self._stop.wait()
        except TimeoutError:
            pass
        finally:
            await self.stop()

    # -- pipeline consumers -------------------------------------------------------------------

    def _depths(self) -> dict[str, int]:
        depths = self.pipeline.depths()
        spool = getattr(self.store, "depth", None)
        if spool is not None:
            depths["spool_points"] = spool().points
        return depths

    async def _update_state(self, samples: Sequence[Sample]) -> None:
        await asyncio.to_thread(self.state.update, samples, time.time_ns())

    async def _alert(self, samples: Sequence[Sample]) -> None:
        for listener in self.sample_listeners:
            listener(samples)
        # A skipped run (the previous one overran its interval) observed nothing. Fed to the engine,
        # its `collection` status would read as "not unreachable" and resolve a device_unreachable
        # alert, solving its ticket, while the device is still down.
        observed = [s for s in samples if not (s.measurement == "collection" and s.fields.get("status") == "skipped")]
        transitions = self.engine.evaluate(observed, self.clock())
        await self._dispatch(transitions)

    async def _dispatch(self, transitions: Sequence[AlertTransition]) -> None:
        # Committed to the outbox before the next batch is evaluated; the ticket lanes make the
        # remote calls. A cycle a crash cut between the engine's commit and the outbox's is caught
        # up by the dispatcher's reconciliation with `engine.firing` (at start, then periodically).
        await self.dispatcher.record(transitions, self.clock())
        done = self._ticket_results.drain()
        for listener in self.listeners:
            listener(transitions, done)
