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
from pathlib import Path
from typing import Any

from agent.api import (
    Alert,
    AlertTransition,
    ReceiverContext,
    Rule,
    Sample,
    SecretRef,
    ServiceContext,
    StoreContext,
    TicketConnector,
)
from agent.api.plugin import PluginSpec
from agent.api.ticket_text import TicketLocale
from agent.config import Config, ConfigError
from agent.inventory import InventoryView, Poll, build_polls, device_tags
from agent.pipeline import Pipeline
from agent.plugins import Plugins
from agent.runlog import FirstRound, log_transitions, plugin_text
from agent.scheduler import NOT_RUN_STATUSES, Scheduler
from agent.services import ServiceHost, StateView
from agent.state import STATE_FIELDS, StateDB, tz_by_client
from agent.statedir import StateDir
from agent.stores import Store
from agent.stores.sqlite import DEFAULT_RETENTION_DAYS
from alerting.engine import AlertEngine
from alerting.notifier import DispatchResult, TicketDispatcher

log = logging.getLogger(__name__)

AlertListener = Callable[[Sequence[AlertTransition], DispatchResult], None]


class CollectorFactory:
    """Builds one collector per poll from its plugin's factory and the poll's validated options."""

    def __init__(self, plugins: Plugins) -> None:
        self.plugins = plugins

    def __call__(self, poll: Poll) -> Any:
        return self.plugins.collector(poll.collector).factory(poll.options)


def checked_polls(config: Config, plugins: Plugins, clients: Collection[str] | None = None) -> list[Poll]:
    """The polls of the selected clients, each collector built once to let it refuse its options;
    raise ConfigError naming every refusal. ``check-config`` and ``run`` both go through here, so
    they refuse the same configurations."""
    polls = build_polls(config, clients)
    factory = CollectorFactory(plugins)
    problems: list[str] = []
    for poll in polls:
        try:
            factory(poll)
        except ValueError as exc:
            problems.append(f"{config.source}: {poll.target.tags.get('client')}/{poll.target.name}: "
                            f"collector {poll.collector}: {exc}")
    if problems:
        raise ConfigError(problems)
    return polls


def rules_by_client(config: Config, clients: Collection[str]) -> list[Rule]:
    """One rule list for the engine: each client's rules scoped to it with a `client` matcher."""
    return [
        rule.with_changes(match={**rule.match, "client": client})
        for client in sorted(clients)
        for rule in config.all_rules_for(client)  # the engine skips the disabled ones
    ]


def state_retention_days(config: Config) -> float:
    """The rollups' retention: the embedded store's, so reports cover what its points cover; with
    an external TSDB, whose retention is set on its side, the embedded store's default."""
    return float(getattr(config.plugin_options("store"), "retention_days", DEFAULT_RETENTION_DAYS))


class Agent:
    def __init__(
        self,
        config: Config,
        clients: Collection[str] | None = None,
        state_dir: Path | None = None,
        *,
        plugins: Plugins | None = None,
        clock: Callable[[], float] = time.time,
        health_interval_s: float = 60.0,
    ) -> None:
        self.config = config
        self.plugins = plugins or Plugins.discover()
        self.collectors = CollectorFactory(self.plugins)
        # raises ConfigError when a collector refuses its options: never run half-watched
        self.polls = checked_polls(config, self.plugins, clients)
        self.clients = [c.name for c in config.select_clients(clients)]
        self.state_dir = Path(state_dir or config.agent.state_dir)
        self.files = StateDir(self.state_dir)
        self.clock = clock
        self.health_interval_s = health_interval_s
        self.listeners: list[AlertListener] = []
        # Observers of every batch (the demo's live display); called on the alert lane.
        self.sample_listeners: list[Callable[[Sequence[Sample]], None]] = []
        # A last say on each rule before the engine compiles it (the demo's faster pace).
        self.rule_filter: Callable[[Rule], Rule] | None = None
        self._connectors: list[TicketConnector] = []
        self._stop = asyncio.Event()

    # -- assembly ------------------------------------------------------------------------------

    def _secret(self, ref: SecretRef) -> str:
        return self.config.secret_text(ref)

    def _ticket_locale(self, client: str) -> TicketLocale:
        found = self.config.client(client)
        return TicketLocale(found.timezone, found.language)

    def _ticket_after_outage(self, alert: Alert) -> bool:
        return alert.severity in self.config.client(alert.client).ticket_after_outage

    def _ticket_targets(self) -> dict[str, TicketConnector]:
        """One receiver per client, built by its plugin in the client's timezone and language."""
        targets: dict[str, TicketConnector] = {}
        for name in self.clients:
            client = self.config.client(name)
            spec: PluginSpec = self.plugins.get("ticketing", client.ticketing.kind)
            context = ReceiverContext(name, client.timezone, client.language, self.state_dir, self._secret)
            options = self.config.plugin_options("ticketing", name)
            connector = spec.factory(options, context)
            log.info("tickets of %s: %s", name, plugin_text(client.ticketing.kind, options))
            self._connectors.append(connector)
            targets[name] = connector
        return targets

    async def start(self) -> None:
        started_at = self.clock()
        self._lock = self.files.lock()  # a second agent on this state directory stops here
        devices = {(p.target.tags.get("client"), p.target.name) for p in self.polls}
        log.info(
            "starting: config %s, client(s) %s, %d poll(s) of %d device(s), state in %s",
            self.config.source, ", ".join(self.clients), len(self.polls), len(devices), self.state_dir,
        )
        store = self.plugins.get("stores", self.config.agent.store.kind)
        context = StoreContext(self.state_dir, self._secret)
        store_options = self.config.plugin_options("store")
        self.store: Store = store.factory(store_options, context)
        log.info("store: %s", plugin_text(self.config.agent.store.kind, store_options))
        zones = {name: self.config.client(name).timezone for name in self.clients}
        self.state = StateDB(
            self.files.state_db,
            tz_for=tz_by_client(zones),
            retention_days=state_retention_days(self.config),
            state_fields=STATE_FIELDS | self.plugins.state_fields(),
        )
        rules = rules_by_client(self.config, self.clients)
        if self.rule_filter is not None:
            rules = [self.rule_filter(rule) for rule in rules]
        self.engine = AlertEngine(
            str(self.files.alerts_db),
            rules,
            self.clock,
            parents=self.config.parents(),
            non_identifying_tags=self.plugins.descriptive_tags(),
            # A hard timeout is a device that did not answer in time: for inhibition it is down.
            unreachable_statuses=("unreachable", "timeout"),
        )
        # What the ticket lanes did since the last batch: handed to the listeners with the next one.
        self._ticket_results = DispatchResult()
        self.dispatcher = TicketDispatcher(
            str(self.files.outbox_db),
            self._ticket_targets(),
            self.clock,
            on_result=self._ticket_results.extend,
            locale_for=self._ticket_locale,
            ticket_resolved_during_outage=self._ticket_after_outage,
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
            device_tags=device_tags(self.config),
        )
        # The ticket lanes take up what the outbox holds (tickets to open or solve) beside the polls.
        await self.dispatcher.start(self.engine.firing)
        self.sample_listeners.insert(0, FirstRound(self.polls, self.clock))
        self.scheduler.start()
        self.services = ServiceHost(
            [(self.plugins.get("services", name), self.config.plugin_options("service", name))
             for name in self.config.agent.services]
        )
        tags = device_tags(self.config)
        await self.services.start(
            ServiceContext(
                clock=self.clock,
                every=self.services.every,
                inventory=InventoryView(self.config, self.clients),
                state=StateView(self.state.latest, self.engine.alerts),
                submit=self.pipeline.submit,
                tags_for=tags,
                state_dir=self.state_dir,
                poll_now=self.scheduler.poll_now,
            )
        )
        log.info("services: %s", ", ".join(self.config.agent.services) or "none")
        log.info("started in %.1f s; polling", self.clock() - started_at)

    async def stop(self) -> None:
        stopping_at = part_at = self.clock()

        def stopped(part: str) -> None:
            nonlocal part_at
            now = self.clock()
            log.info("stopped: %s (%.1f s)", part, now - part_at)
            part_at = now

        log.info("stopping")
        await self.services.stop()
        stopped("services")
        self.scheduler.stop()
        stopped("polls, runs in progress cancelled")
        await self.pipeline.stop()
        stopped("pipeline, batches already queued delivered")
        await self.dispatcher.stop()  # bounded: calls in flight are cancelled, retried at the next start
        stopped("ticket lanes")
        await self.store.close()
        stopped("store")
        # each close is bounded by its receiver; together, so ten hung ITSMs cost one bound
        await asyncio.gather(*(connector.close() for connector in self._connectors), return_exceptions=True)
        stopped("ticket receivers")
        self.engine.close()
        self.state.close()
        self._lock.close()
        log.info("stopped in %.1f s", self.clock() - stopping_at)

    async def run_forever(self, duration_s: float | None = None) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            await asyncio.wait_for(self._stop.wait(), duration_s) if duration_s else await self._stop.wait()
        except TimeoutError:
            pass
        finally:
            await self.stop()

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("%s received: stopping", sig.name)
        self._stop.set()

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
        # A run that did not happen (skipped: the previous one overran; overloaded: the agent itself
        # was behind) observed nothing. Fed to the engine, its `collection` status would read as
        # "not unreachable" and resolve a device_unreachable alert while the device is still down.
        observed = [
            s for s in samples if not (s.measurement == "collection" and s.fields.get("status") in NOT_RUN_STATUSES)
        ]
        # The engine's SQLite transaction runs in a worker thread: the loop keeps serving the
        # shared SNMP socket meanwhile. The lane awaits it, so batches stay in order.
        transitions = await asyncio.to_thread(self.engine.evaluate, observed, self.clock())
        await self._dispatch(transitions)

    async def _dispatch(self, transitions: Sequence[AlertTransition]) -> None:
        # Committed to the outbox before the next batch is evaluated; the ticket lanes make the
        # remote calls. A cycle a crash cut between the engine's commit and the outbox's is caught
        # up by the dispatcher's reconciliation with `engine.firing` (at start, then periodically).
        log_transitions(transitions)
        await self.dispatcher.record(transitions, self.clock())
        done = self._ticket_results.drain()
        for listener in self.listeners:
            listener(transitions, done)
