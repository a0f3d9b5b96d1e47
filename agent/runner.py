"""The main job: inventory -> scheduler -> collectors -> pipeline -> (store, rollups, alerts -> tickets).

`Agent` only wires the parts together; each part is usable (and tested) alone. It owns one state
directory: two agents sharding a NOC (`vigie run --clients A,B`) must be given two directories.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from agent import topology
from agent.api import (
    Alert,
    AlertTransition,
    CollectorContext,
    ReceiverContext,
    Rule,
    Sample,
    SecretRef,
    ServiceContext,
    StoreContext,
    TicketConnector,
    TicketRef,
)
from agent.api.outbound import HttpTarget
from agent.api.plugin import PluginSpec
from agent.api.ticket_text import TicketLocale
from agent.config import Config, ConfigError
from agent.correlation import Correlator
from agent.heartbeat import Heartbeat, device_name
from agent.inventory import InventoryView, Poll, build_polls, device_tags
from agent.maintenance import MaintenanceCalendar
from agent.pipeline import Pipeline
from agent.plugins import Plugins
from agent.runlog import FirstRound, log_transitions, plugin_text
from agent.scheduler import NOT_RUN_STATUSES, Scheduler
from agent.services import ServiceHost, StateView
from agent.state import STATE_FIELDS, StateDB, tz_by_client
from agent.statedir import StateDir
from agent.stores import Store
from agent.stores.sqlite import DEFAULT_RETENTION_DAYS
from agent.views.coverage import COVERAGE_INTERVAL_S, coverage_samples
from agent.watchdog import Watchdog
from alerting.acknowledgement import TakeoverReader
from alerting.contacts import ContactNotifier, MailRelay, NotificationLog
from alerting.engine import AlertEngine
from alerting.escalation import Duty
from alerting.notifier import CALL_TIMEOUT_S, DispatchResult, Grouping, TicketDispatcher

log = logging.getLogger(__name__)

SLA_TICK_S = 600.0  # how often the agent looks for a day whose SLA figures are due
DISK_TICK_S = 60.0  # how often the state directory's disk is looked at
DISK_MEASUREMENT = "vigie_disk"
TOPOLOGY_APPLY_S = 5.0  # discovered parents reach the alert engine this soon at most after a change

AlertListener = Callable[[Sequence[AlertTransition], DispatchResult], None]


class CollectorFactory:
    """Builds one collector per poll from its plugin's factory, the poll's validated options and a
    :class:`CollectorContext` (its client's directory under ``<state>/plugins/<collector>/``)."""

    def __init__(
        self,
        plugins: Plugins,
        state_dir: Path,
        secret: Callable[[SecretRef], str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.plugins = plugins
        self.state_dir = Path(state_dir)
        self.secret = secret
        self.clock = clock

    def __call__(self, poll: Poll) -> Any:
        client = poll.target.tags.get("client", "")
        context = CollectorContext(
            client=client,
            device=poll.target.name,
            state_dir=self.state_dir / "plugins" / poll.collector / client,
            secret=self.secret,
            clock=self.clock,
        )
        return self.plugins.collector(poll.collector).factory(poll.options, context)


def checked_polls(config: Config, plugins: Plugins, clients: Collection[str] | None = None) -> list[Poll]:
    """The polls of the selected clients, each collector — and each configured service — built
    once to let it refuse its options (a certificate it cannot read); raise ConfigError naming
    every refusal. ``check-config`` and ``run`` both go through here, so they refuse the same
    configurations."""
    polls = build_polls(config, clients)
    factory = CollectorFactory(plugins, Path(config.agent.state_dir), config.secret_text)
    problems: list[str] = []
    for poll in polls:
        try:
            factory(poll)
        except ValueError as exc:
            problems.append(f"{config.source}: {poll.target.tags.get('client')}/{poll.target.name}: "
                            f"collector {poll.collector}: {exc}")
    for name in config.agent.services:
        try:
            plugins.get("services", name).factory(config.plugin_options("service", name))
        except ValueError as exc:
            problems.append(f"{config.source}: agent.services.{name}: {exc}")
    for client in config.select_clients(clients):
        for name in client.notified_contacts():
            ref = client.contact(name).teams
            if ref is not None and not config.secret_text(ref).startswith("https://"):
                problems.append(f"{config.source}: {client.name}: contact {name!r}: teams (secret {ref.secret!r}) "
                                "must be an https:// workflow URL")
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
        watchdog: Watchdog | None = None,
    ) -> None:
        self.config = config
        self.plugins = plugins or Plugins.discover()
        # raises ConfigError when a collector refuses its options: never run half-watched
        self.polls = checked_polls(config, self.plugins, clients)
        self.clients = [c.name for c in config.select_clients(clients)]
        self.state_dir = Path(state_dir or config.agent.state_dir)
        self.collectors = CollectorFactory(self.plugins, self.state_dir, config.secret_text, clock)
        self.files = StateDir(self.state_dir)
        self.maintenance = MaintenanceCalendar(
            [window.scoped(c.name) for c in config.select_clients(clients) for window in c.maintenance],
            {c.name: c.zone for c in config.clients},
            self.files.maintenance_file,
        )
        self.clock = clock
        self.health_interval_s = health_interval_s
        self.listeners: list[AlertListener] = []
        # Observers of every batch (the demo's live display); called on the alert lane.
        self.sample_listeners: list[Callable[[Sequence[Sample]], None]] = []
        # A last say on each rule before the engine compiles it (the demo's faster pace).
        self.rule_filter: Callable[[Rule], Rule] | None = None
        self._connectors: list[TicketConnector] = []
        self._topology_reported: set[topology.Contradiction] = set()
        self._rules_by_name: dict[tuple[str, str], Rule] = {}
        self._topology_dirty, self._topology_applied_at = False, float("-inf")
        self._stop = asyncio.Event()
        self.web: Any = None  # agent.web.server.WebServer when agent.web_listen is set
        self.heartbeat: Heartbeat | None = None  # when agent.heartbeat_dir is set (agent/heartbeat.py)
        # systemd's notifications (Type=notify, WatchdogSec): a no-op outside systemd
        self.watchdog = watchdog or Watchdog()

    # -- assembly ------------------------------------------------------------------------------

    def _secret(self, ref: SecretRef) -> str:
        return self.config.secret_text(ref)

    def _credentials_lookup(self) -> Callable[[str, str, str], Mapping[str, Any] | None]:
        """(client, device, collector) -> that poll's credentials, for the services."""
        known = {
            (poll.target.tags.get("client", ""), poll.target.name, poll.collector): poll.target.credentials
            for poll in self.polls if poll.target.credentials
        }
        return lambda client, device, collector: known.get((client, device, collector))

    def _ticket_locale(self, client: str) -> TicketLocale:
        found = self.config.client(client)
        return TicketLocale(found.timezone, found.language)

    def _reopen_within_s(self, client: str) -> float:
        return self.config.client(client).reopen_within_s if client in self.clients else 0.0

    def _grouping(self, client: str) -> Grouping | None:
        # a client served elsewhere (the agent's own alerts: a silent peer) has the top-level one
        found = self.config.ticket_grouping_for(client) if client in self.clients else self.config.ticket_grouping
        if not found.grouped:
            return None
        return Grouping(tuple(found.group_by), found.group_wait_s, found.group_interval_s, found.repeat_interval_s)

    def _prepare_ticket(self, alert: Alert, now: float) -> None:
        """An alert queued for its ticket gets its client's contract priority and what changed on
        its device and parents in the hour before (agent/priority.py, agent/correlation.py)."""
        if alert.client not in self.clients:
            return
        if not self._rules_by_name:
            self._rules_by_name = {(c, r.name): r for c in self.clients for r in self.config.all_rules_for(c)}
        client = self.config.client(alert.client)
        alert.priority = client.priority.priority(alert, self._rules_by_name.get((alert.client, alert.rule)))
        alert.context = self.correlator.lines(alert, now, client.language)

    def _in_maintenance(self, alert: Alert, at: float) -> tuple[str, float] | None:
        covered = self.maintenance.covering(alert.labels, at)
        return None if covered is None else (covered[0].name, covered[1])

    def _ticket_after_outage(self, alert: Alert) -> bool:
        return alert.severity in self.config.client(alert.client).ticket_after_outage

    def _contacts(self, targets: Mapping[str, TicketConnector]) -> Duty:
        """Escalation, on-call and the client's perimeter (alerting/escalation.py), sending mails
        through agent.smtp, cards to the contacts' Teams workflows and follow-ups through ``targets``."""
        smtp, teams = self.config.agent.smtp, self.config.agent.teams
        mail = None if smtp is None else MailRelay(
            smtp.relay(self._secret(smtp.password) if smtp.password else None), smtp.sender, smtp.retries + 1)
        workflows: dict[tuple[str, str], HttpTarget] = {}

        def workflow(client: str, contact: str) -> HttpTarget:
            if (client, contact) not in workflows:
                ref = self.config.client(client).contact(contact).teams
                if ref is None:
                    raise ValueError(f"contact {contact!r} of {client} has no teams workflow")
                workflows[client, contact] = HttpTarget(self._secret(ref), verify=teams.verify,
                                                        ca_bundle=teams.ca_bundle, timeout_s=teams.timeout_s)
            return workflows[client, contact]

        async def followup(client: str, ref: TicketRef, text: str) -> None:
            await asyncio.wait_for(targets[client].add_followup(ref, text), CALL_TIMEOUT_S)

        self._workflows = workflows
        notifier = ContactNotifier(NotificationLog(self.files.notifications_db), mail=mail, teams=workflow,
                                   followup=followup, submit=self.pipeline.submit, clock=self.clock)
        return Duty([self.config.client(n) for n in self.clients], self.files.outbox_db, notifier, self.clock,
                    firing=self.engine.firing)

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
        context = StoreContext(self.state_dir, self._secret, self.plugins.counter_fields())
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
        self.correlator = Correlator(self.state, self.maintenance, lambda: self.engine.parents)
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
        # The config's parents are the start; the links of the plugins' samples (LLDP/CDP, a VM's
        # host, ...) the state kept, then those of each poll, update them (agent/topology.py: pins
        # kept, contradictions logged, not applied).
        sources = self.plugins.edge_sources()
        self.topology = topology.from_latest(
            InventoryView(self.config, self.clients).devices(),
            [row for measurement in topology.measurements(sources) for row in self.state.latest(measurement)],
            sources,
        )
        self._apply_topology()
        # What the ticket lanes did since the last batch: handed to the listeners with the next one.
        self._ticket_results = DispatchResult()
        targets = self._ticket_targets()
        self.dispatcher = TicketDispatcher(
            str(self.files.outbox_db),
            targets,
            self.clock,
            on_result=self._ticket_results.extend,
            locale_for=self._ticket_locale,
            ticket_resolved_during_outage=self._ticket_after_outage,
            in_maintenance=self._in_maintenance,
            prepare=self._prepare_ticket,
            reopen_within_s=self._reopen_within_s,
            grouping_for=self._grouping,
        )
        self.pipeline = Pipeline({"store": self.store.write, "state": self._update_state, "alerts": self._alert})
        self.pipeline.start()
        self.duty = self._contacts(targets)
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
        # the alerts of the clients' own equipment are passed on to their contacts, not ticketed
        await self.dispatcher.start(lambda: self.duty.providers(self.engine.firing()))
        self.duty.start()
        # beside them, one task per target reads back when its tickets were taken in charge
        self.takeover = TakeoverReader(self.files.outbox_db, targets, self.dispatcher.record_taken, self.clock)
        await self.takeover.start()
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
                credentials=self._credentials_lookup(),
            )
        )
        log.info("services: %s", ", ".join(self.config.agent.services) or "none")
        # the alert SLA of each client's previous day, once it is over (alerting/sla.py)
        from alerting.sla import DailySla

        daily = DailySla([self.config.client(n) for n in self.clients], self.files, self.clock, self.pipeline.submit)
        self.services.every(SLA_TICK_S, daily.tick, "sla-daily")
        self.services.every(DISK_TICK_S, self._disk, "state-disk")
        if any(self.config.client(name).report.enabled for name in self.clients):
            # the kernel's own: it needs the clients' zones and the SMTP secret (agent/report/service.py)
            from agent.report.service import ReportScheduler

            ReportScheduler(self.config, self.clients, self.files, self.clock, self.pipeline.submit).start(
                self.services.every
            )
        if self.config.agent.web_listen:
            # the kernel's own, as the reports: it reads every client's state (agent/web)
            from agent.web.app import WebContext
            from agent.web.server import WebServer

            self.web = WebServer(WebContext(self.config, self.files, self.clients, self.clock, self._secret,
                                            self.plugins.device_messages), self.config.agent.web_listen)
            await self.web.start()
        # VMs in no backup, as a sample the built-in rule backup_coverage_gap reads (agent/views/coverage.py)
        self.services.every(COVERAGE_INTERVAL_S, self._backup_coverage, "backup_coverage")
        self.heartbeat = self._heartbeat()
        if self.heartbeat is not None:
            await self._beat()
            self.services.every(self.config.agent.heartbeat_interval_s, self._beat, "heartbeat")
        log.info("started in %.1f s; polling", self.clock() - started_at)

    async def stop(self) -> None:
        stopping_at = part_at = self.clock()

        def stopped(part: str) -> None:
            nonlocal part_at
            now = self.clock()
            log.info("stopped: %s (%.1f s)", part, now - part_at)
            part_at = now

        log.info("stopping")
        if self.web is not None:
            await self.web.stop()
            stopped("web app")
        await self.services.stop()
        stopped("services")
        if self.heartbeat is not None:
            await asyncio.to_thread(self.heartbeat.stopped)
        self.scheduler.stop()
        stopped("polls, runs in progress cancelled")
        await self.pipeline.stop()
        stopped("pipeline, batches already queued delivered")
        await self.takeover.stop()  # bounded; it writes through the dispatcher, so stops first
        stopped("taken-in-charge read-back")
        await self.dispatcher.stop()  # bounded: calls in flight are cancelled, retried at the next start
        stopped("ticket lanes")
        await self.duty.stop()  # a message in flight is sent again at the next start, same id
        await asyncio.gather(*(target.close() for target in self._workflows.values()), return_exceptions=True)
        stopped("notifications to contacts")
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
        self.watchdog.ready(f"polling {len(self.polls)} poll(s) of client(s) {', '.join(self.clients)}")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            await asyncio.wait_for(self._stop.wait(), duration_s) if duration_s else await self._stop.wait()
        except TimeoutError:
            pass
        finally:
            await self.watchdog.stopping()
            await self.stop()
            self.watchdog.close()

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("%s received: stopping", sig.name)
        self._stop.set()

    def _heartbeat(self) -> Heartbeat | None:
        settings = self.config.agent
        if settings.heartbeat_dir is None or not self.clients:
            return None
        noc = settings.noc_client if settings.noc_client in self.clients else self.clients[0]
        name = settings.name or "+".join(self.clients)
        log.info("heartbeat: agent %s beats in %s every %.0f s; a peer silent %.0f s is ticketed to client %s",
                 name, settings.heartbeat_dir, settings.heartbeat_interval_s, settings.heartbeat_timeout_s, noc)
        return Heartbeat(settings.heartbeat_dir, name, self.clients, noc, settings.heartbeat_timeout_s, self.clock)

    async def _disk(self) -> None:
        """``vigie_disk``: how full the disk of the state directory is (agent_disk_low fires)."""
        if not self.clients:
            return
        try:
            usage = await asyncio.to_thread(shutil.disk_usage, self.state_dir)
        except OSError as exc:
            log.warning("state disk %s: %s", self.state_dir, exc)
            return
        settings = self.config.agent
        agent = settings.name or "+".join(self.clients)
        tags = {"client": settings.noc_client if settings.noc_client in self.clients else self.clients[0],
                "device": device_name(agent), "agent": agent, "path": str(self.state_dir)}
        fields = {"free_bytes": usage.free, "total_bytes": usage.total,
                  "free_percent": round(100.0 * usage.free / usage.total, 2) if usage.total else None}
        await self.pipeline.submit([Sample(DISK_MEASUREMENT, tags, fields, int(self.clock() * 1e9))])

    async def _beat(self) -> None:
        assert self.heartbeat is not None
        await self.pipeline.submit(await asyncio.to_thread(self.heartbeat.beat))

    # -- pipeline consumers -------------------------------------------------------------------

    def _depths(self) -> dict[str, int]:
        depths = self.pipeline.depths()
        spool = getattr(self.store, "depth", None)
        if spool is not None:
            depths["spool_points"] = spool().points
        return depths

    async def _backup_coverage(self) -> None:
        samples = await asyncio.to_thread(coverage_samples, self.files, self.clients, self.clock())
        if samples:
            await self.pipeline.submit(samples)

    async def _update_state(self, samples: Sequence[Sample]) -> None:
        await asyncio.to_thread(self.state.update, samples, int(self.clock() * 1e9))

    async def _alert(self, samples: Sequence[Sample]) -> None:
        for listener in self.sample_listeners:
            listener(samples)
        # A run that did not happen (skipped: the previous one overran; overloaded: the agent itself
        # was behind) observed nothing. Fed to the engine, its `collection` status would read as
        # "not unreachable" and resolve a device_unreachable alert while the device is still down.
        observed = [
            s for s in samples if not (s.measurement == "collection" and s.fields.get("status") in NOT_RUN_STATUSES)
        ]
        # The whole estate's parent map is rebuilt at most every TOPOLOGY_APPLY_S: at start-up every
        # first poll changes the graph, and a rebuild per batch would cost O(devices) each time.
        self._topology_dirty |= self.topology.observe(observed)
        if self._topology_dirty and self.clock() - self._topology_applied_at >= TOPOLOGY_APPLY_S:
            self._apply_topology()
        # The engine's SQLite transaction runs in a worker thread: the loop keeps serving the
        # shared SNMP socket meanwhile. The lane awaits it, so batches stay in order.
        transitions = await asyncio.to_thread(self.engine.evaluate, observed, self.clock())
        await self._dispatch(transitions)

    def _apply_topology(self) -> None:
        self._topology_dirty, self._topology_applied_at = False, self.clock()
        parents, not_applied = self.topology.parent_map(self.clients)
        self.engine.set_parents(parents)
        for contradiction in set(not_applied) - self._topology_reported:
            log.warning("topology: %s", contradiction.text())
        self._topology_reported = set(not_applied)

    async def _dispatch(self, transitions: Sequence[AlertTransition]) -> None:
        # Committed to the outbox before the next batch is evaluated; the ticket lanes make the
        # remote calls. A cycle a crash cut between the engine's commit and the outbox's is caught
        # up by the dispatcher's reconciliation with `engine.firing` (at start, then periodically).
        log_transitions(transitions)
        await self.dispatcher.record(self.duty.provider_transitions(transitions), self.clock())
        await self.duty.record(transitions)
        done = self._ticket_results.drain()
        for listener in self.listeners:
            listener(transitions, done)
