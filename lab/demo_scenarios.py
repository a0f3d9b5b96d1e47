"""`vigie demo --scenario cloud|hosts|alerting|all`: the newer sources and the alerting, live against the lab.

Each scenario runs the real lab (`vigie lab up`, a child process on free ports, in the demo's own
runtime directory) on an estate cut from the committed ones (lab/estates/*.yaml: the scenario's
clients, every device kept so parents stay whole, only the scenario's collectors left polling, the
built-in ticket log in place of the client's GLPI), then the agent on embedded defaults in this
process. It injects its faults with `vigie lab fault` (the lab's control socket), waits for each
expected ticket, clears the faults and waits for each ticket to be solved:

- ``cloud``: an AP offline on the Meraki Dashboard, a 4G failover on an Omada gateway, a failed
  Veeam backup job, a Microsoft 365 incident on Exchange Online;
- ``hosts``: a vSphere VM powered off and a datastore 96 % full (govmomi's simulator), a stopped
  Docker container on a Debian host (SSH), a Hyper-V VM in Saved state (PowerShell over SSH), a
  change of a Catalyst's running-config (its masked diff is the ticket's text);
- ``alerting``: an outage of the PRA's core switch and every site behind it as ONE ticket listing
  the devices behind it; a maintenance window (`vigie maintenance add`) holding a device's outage
  back, its ticket opening when the window ends; the alert SLA line of the run (agent/report/data.py).

Demo pace: polls every few seconds and rules' ``for_s`` capped (:class:`Pace`), so a scenario takes
well under a minute once the lab is up; the production values are those of the estate files.
Exit status: 0 when every expected ticket opened and was solved within its bound, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from agent.api import Sample
from agent.api.alerts import Alert, AlertTransition
from agent.config import Config, load_config
from agent.maintenance import read_added
from agent.report.data import SLA_TICKET_WITHIN_S
from agent.runner import Agent
from agent.statedir import StateDir
from alerting.notifier import DispatchResult, TicketLink
from alerting.ticketing.log import TicketLog
from alerting.ticketing.plugins import TICKET_LOG_FILE
from lab.control import request
from lab.estate import ESTATES_DIR, LAB_SECRETS
from lab.services import ServiceRegistry

LAB_START_DEADLINE_S = 120.0  # the first run builds govmomi's simulator (about 30 s)
FIRST_POLL_DEADLINE_S = 60.0
TICKET_DEADLINE_S = 60.0
MAINTENANCE_NAME = "demo-window"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pace:
    interval_s: float = 5.0
    timeout_s: float = 4.0
    for_s_cap: float = 5.0
    # the ticket lanes compare the engine's firing alerts with the outbox every minute in
    # production: that is also when an alert held by a maintenance window that ended opens its ticket
    reconcile_s: float = 3.0


@dataclass(frozen=True)
class Source:
    """A client of a committed estate and the collectors the scenario keeps polling on it."""

    estate: str  # a file of lab/estates without .yaml
    client: str
    collectors: frozenset[str]
    # collector -> options set over the estate's, for the demo's pace (e.g. a config backup per poll)
    options: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()


@dataclass(frozen=True)
class Fault:
    target: str  # CLIENT/DEVICE or CLIENT/SITE
    kind: str
    args: tuple[str, ...] = ()

    def __str__(self) -> str:
        return " ".join((self.target, self.kind, *self.args))


@dataclass(frozen=True)
class Step:
    """What is injected and the ticket it must open: an alert of ``rule`` with ``ident`` among its
    label values (the device, the VM, the datastore, the container, ...)."""

    title: str
    faults: tuple[Fault, ...]
    rule: str
    ident: str
    clear: bool = True  # False: the alert ends by itself (a config change is seen once)
    show_ticket: bool = False  # print the ticket's text from the built-in log
    maintenance_s: float | None = None  # a window on the step's devices added first, lasting this long
    only_ticket: bool = False  # the alert's impacted devices open no ticket of their own


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    sources: tuple[Source, ...]
    steps: tuple[Step, ...]
    pace: Pace = Pace()
    sla: bool = False  # print (and check) the alert SLA line of the run


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "cloud",
            "controller and cloud APIs: Meraki, Omada, Veeam, Microsoft 365",
            (
                Source("vsgp", "vsgp", frozenset({"meraki", "veeam", "m365"})),
                Source("mlhg", "mlhg", frozenset({"omada"})),
            ),
            (
                Step("an AP offline on the Meraki Dashboard", (Fault("vsgp/ap-siege-01", "meraki-ap-offline"),),
                     "meraki_ap_offline", "ap-siege-01"),
                Step("a 4G failover on an Omada gateway", (Fault("mlhg/gw-nord-est", "omada-wan-failover"),),
                     "omada_wan_failover", "gw-nord-est"),
                Step("a failed Veeam backup job",
                     (Fault("vsgp/veeam", "veeam-job-failed", ("Sauvegarde VM Siège",)),),
                     "veeam_job_failed", "Sauvegarde VM Siège"),
                Step("a Microsoft 365 incident on Exchange Online",
                     (Fault("vsgp/m365", "m365-incident", ("Exchange Online",)),), "m365_incident", "Exchange Online"),
            ),
        ),
        Scenario(
            "hosts",
            "hosts, virtualization and network CLI: vSphere, Debian over SSH, Hyper-V, Cisco IOS-XE",
            (
                # a running-config backup at every poll, not daily: the change is seen at the next one
                Source("vsgp", "vsgp", frozenset({"vsphere", "cisco_cli"}),
                       (("cisco_cli", (("backup_interval_s", 5.0),)),)),
                Source("ofdt", "ofdt", frozenset({"hyperv", "linux"})),
            ),
            (
                Step("a vSphere VM powered off", (Fault("vsgp/vcenter", "vsphere-vm-off", ("vm-siege-04",)),),
                     "vsphere_vm_powered_off", "vm-siege-04"),
                Step("a vSphere datastore 96 % full",
                     (Fault("vsgp/vcenter", "vsphere-datastore-full", ("vsan-pra", "96")),),
                     "vsphere_datastore_usage_critical", "vsan-pra"),
                Step("a stopped Docker container on a Debian host",
                     (Fault("ofdt/vm-apps-docker", "linux-container-stopped", ("crawler-worker-1",)),),
                     "linux_docker_container_down", "crawler-worker-1"),
                Step("a Hyper-V VM in Saved state", (Fault("ofdt/hv1", "hyperv-vm-saved", ("vm-gfi",)),),
                     "hyperv_vm_not_running", "vm-gfi"),
                Step("a Catalyst's running-config changed", (Fault("vsgp/sw-siege-03", "ios-config-change"),),
                     "cisco_cli_config_changed", "sw-siege-03", clear=False, show_ticket=True),
            ),
            pace=Pace(interval_s=6.0, timeout_s=5.0),
        ),
        Scenario(
            "alerting",
            "one ticket per outage, a maintenance window, the alert SLA",
            (Source("vsgp-demo", "vsgp", frozenset({"snmp"})),),
            (
                Step("an access switch down inside a maintenance window", (Fault("vsgp/sw-siege-02", "down"),),
                     "device_unreachable", "sw-siege-02", maintenance_s=30.0),
                Step("an outage of the PRA's core switch and of every site behind it",
                     tuple(Fault(f"vsgp/{site}", "site-down") for site in ("pra-clamart", "far-hotel-de-ville",
                                                                            "far-cri")),
                     "core_unreachable", "core-pra", show_ticket=True, only_ticket=True),
            ),
            # a silent device: the SNMP collector's own verdict (unreachable, 2 x 2 s) before the poll's hard timeout
            pace=Pace(interval_s=6.0, timeout_s=5.5),
            sla=True,
        ),
    )
}
ALL = tuple(SCENARIOS)


# -- the scenario's estate ----------------------------------------------------------------------

def scenario_estate(scenario: Scenario, work: Path) -> Path:
    """The scenario's estate, written in ``work``: its clients as committed, every device kept (the
    parents stay whole) but only the scenario's collectors on them, the SNMP recordings of devices
    that no longer poll SNMP dropped (the lab does not play them), the built-in ticket log, and a
    free loopback port for each SSH host (the lab's SSH fakes listen where the estate says)."""
    out: dict[str, Any] = {}
    for source in scenario.sources:
        raw = yaml.safe_load((ESTATES_DIR / f"{source.estate}.yaml").read_text(encoding="utf-8"))
        for key in ("agent", "defaults"):
            out.setdefault(key, raw.get(key, {}))
        client = next(c for c in raw["clients"] if c["name"] == source.client)
        client["ticketing"] = {"kind": "log"}
        for site in client.get("sites") or []:
            for device in site.get("devices") or []:
                _keep_collectors(device, source.collectors)
                for collector, options in source.options:
                    if collector in device["collectors"]:
                        device["collectors"][collector] = {**(device["collectors"][collector] or {}), **dict(options)}
        out.setdefault("clients", []).append(client)
    path = work / f"demo-{scenario.name}.yaml"
    path.write_text(yaml.safe_dump(out, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


SSH_COLLECTORS = ("hyperv", "windows", "linux")


def _keep_collectors(device: dict[str, Any], kept: frozenset[str]) -> None:
    collectors = {k: v for k, v in (device.get("collectors") or {}).items() if k in kept}
    device["collectors"] = collectors
    for name in SSH_COLLECTORS:
        if name in collectors:
            collectors[name] = {**(collectors[name] or {}), "port": free_tcp_port()}
    lab = device.get("x-lab")
    if isinstance(lab, dict) and "snmp" not in collectors:
        lab.pop("walk", None)
        if not lab:
            del device["x-lab"]
    credentials = device.get("credentials")
    if isinstance(credentials, dict):
        device["credentials"] = {k: v for k, v in credentials.items() if k in collectors}
        if not device["credentials"]:
            del device["credentials"]
    elif credentials is not None and not collectors:
        del device["credentials"]


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the lab, as `vigie lab up` runs it ---------------------------------------------------------

class ScenarioLab:
    """`vigie lab up --estate FILE` in a child process on free ports, driven over its control socket."""

    def __init__(self, estate: Path, runtime_dir: Path) -> None:
        self.runtime_dir = runtime_dir
        self.command = [sys.executable, "-m", "lab.cli", "lab", "up", "--estate", str(estate),
                        "--runtime-dir", str(runtime_dir), *_any_free_port()]
        self.lines: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self.environment: dict[str, str] = {}
        self.endpoints: dict[str, list[str]] = {}  # service -> what listens where
        self._ready = threading.Event()

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, env={**_without_vigie_variables(), "PYTHONUNBUFFERED": "1"},
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(LAB_START_DEADLINE_S) or not any(line.startswith("ready") for line in self.lines):
            self.stop()
            error = PortTaken if any("Address already in use" in line for line in self.lines) else RuntimeError
            raise error("the lab did not come up:\n" + "\n".join(self.lines[-30:]))
        info = json.loads((self.runtime_dir / "lab.json").read_text(encoding="utf-8"))
        self.environment = {name: entry["value"] for name, entry in info["environment"].items()
                            if entry["service"] and entry["value"] is not None}
        self.endpoints = info["endpoints"]

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("ready"):
                self._ready.set()
        self._ready.set()  # EOF: the lab exited

    def fault(self, fault: Fault) -> str:
        answer = request(self.runtime_dir, {"op": "fault", "target": fault.target, "kind": fault.kind,
                                            "args": list(fault.args)})
        if not answer.get("ok"):
            raise RuntimeError(f"vigie lab fault {fault}: {answer.get('error')}")
        return str(answer["effect"])

    def clear(self, fault: Fault) -> None:
        answer = request(self.runtime_dir, {"op": "clear", "target": fault.target, "kind": fault.kind})
        if not answer.get("ok"):
            raise RuntimeError(f"vigie lab clear {fault.target} {fault.kind}: {answer.get('error')}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # the lab stops its own children
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class PortTaken(RuntimeError):
    """A port the estate names was taken by another process between being found free and bound."""


LAB_START_ATTEMPTS = 3


def start_lab(write_estate: Callable[[], Path], runtime_dir: Path) -> tuple[Path, ScenarioLab]:
    """The estate ``write_estate`` writes, and its lab, up. Ports the estate names are picked free
    when it is written (the SSH hosts'), and another process (a parallel test, another demo) can
    take one before the lab binds it: the estate is then written again, with fresh ports, up to
    LAB_START_ATTEMPTS times in all."""
    for attempts_left in reversed(range(LAB_START_ATTEMPTS)):
        estate = write_estate()
        lab = ScenarioLab(estate, runtime_dir)
        try:
            lab.start()
            return estate, lab
        except PortTaken:
            if not attempts_left:
                raise
    raise ValueError("LAB_START_ATTEMPTS must be at least 1")


def _any_free_port() -> list[str]:
    """``--X-port 0`` for every port option of the installed lab services: the demo never takes
    a port a running lab, or another demo, holds."""
    parser = argparse.ArgumentParser()
    for service in ServiceRegistry.installed().services.values():
        service.add_options(parser)
    options = [o for action in parser._actions for o in action.option_strings if o.endswith("-port")]
    return [arg for option in options for arg in (option, "0")]


# -- what the agent does ------------------------------------------------------------------------

@dataclass
class StepResult:
    step: Step
    injected_at: float | None = None
    window_end: float | None = None  # the maintenance window's end
    alert: Alert | None = None  # as it fired
    ticket: TicketLink | None = None
    solved_at: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.ticket is not None and self.solved_at is not None and not self.problems

    def matches(self, alert: Alert) -> bool:
        return alert.rule == self.step.rule and self.step.ident in alert.labels.values()


@dataclass
class Run:
    """What the agent showed during one scenario, as it happened (epoch seconds)."""

    scenario: Scenario
    console: Console
    t0: float = field(default_factory=time.time)
    results: list[StepResult] = field(default_factory=list)
    polled: dict[str, str] = field(default_factory=dict)  # device -> status of its last collection
    alerts: dict[str, Alert] = field(default_factory=dict)  # fingerprint -> the alert as last seen
    opened: list[TicketLink] = field(default_factory=list)
    # a ticket's key -> the fingerprints of the alerts it is about (a group's ticket: several)
    covered: dict[str, list[str]] = field(default_factory=dict)
    fingerprints_on: Callable[[TicketLink], list[str]] = lambda link: [link.fingerprint]
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    sla_line: str | None = None
    others: list[Alert] = field(default_factory=list)  # fired, no step's: the lab's own state (recordings)

    def ticketed(self) -> list[tuple[TicketLink, Alert]]:
        """Each ticket opened, with each alert it is about."""
        return [(link, a) for link in self.opened
                for fp in self.covered.get(link.key, [link.fingerprint]) if (a := self.alerts.get(fp))]

    def say(self, text: str) -> None:
        self.console.print(f"[dim]t+{time.time() - self.t0:5.1f}s[/dim] {text}")
        self.changed.set()

    def on_samples(self, samples: Sequence[Sample]) -> None:
        for s in samples:
            if s.measurement == "collection":
                self.polled[s.tags.get("device", "")] = str(s.fields.get("status"))
                self.changed.set()

    def on_alerts(self, transitions: Sequence[AlertTransition], result: DispatchResult) -> None:
        for tr in transitions:
            self.alerts[tr.alert.fingerprint] = tr.alert
            if tr.state == "firing" and not self._watching(tr.alert):
                self.others.append(tr.alert)
            for r in self._watching(tr.alert):
                if tr.state == "firing":
                    r.alert = tr.alert
                    held = " (inside the maintenance window: no ticket yet)" if r.step.maintenance_s else ""
                    self.say(f"alert [bold]{tr.alert.rule}[/bold] firing: {tr.alert.summary.splitlines()[0]}{held}")
                elif tr.state == "resolved":
                    self.say(f"alert {tr.alert.rule} resolved ({r.step.ident})")
        for link in result.opened + result.reattached:
            self.opened.append(link)
            self.covered[link.key] = self.fingerprints_on(link)
            about = [a for fp in self.covered[link.key] if (a := self.alerts.get(fp))]
            for r in [r for alert in about for r in self._watching(alert)]:
                if r.ticket is None:
                    r.ticket = link
                    self.say(f"[green]ticket {link.connector} #{link.ticket_id} opened[/green] for {r.step.title}: "
                             f"{_seconds(_minus(link.opened_at, r.injected_at))} after the fault, "
                             f"{_seconds(link.time_to_ticket_s)} after the first bad sample")
        for link in result.solved:
            for r in self.results:
                if r.ticket is not None and r.ticket.key == link.key and r.solved_at is None:
                    r.solved_at = link.solved_at or time.time()
                    self.say(f"[green]ticket {link.connector} #{link.ticket_id} solved[/green] ({r.step.title})")
        self.changed.set()

    def _watching(self, alert: Alert) -> list[StepResult]:
        return [r for r in self.results if r.injected_at is not None and r.matches(alert)
                and alert.started_at >= r.injected_at - 1.0]

    async def wait_for(self, what: str, done: Callable[[], bool], deadline_s: float) -> bool:
        limit = time.monotonic() + deadline_s
        while not done():
            remaining = limit - time.monotonic()
            if remaining <= 0:
                self.say(f"[red]gave up waiting for {what} after {deadline_s:.0f} s[/red]")
                return False
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), min(remaining, 1.0))
            except TimeoutError:
                pass
        return True


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _seconds(duration_s: float | None) -> str:
    return "-" if duration_s is None else f"{duration_s:.1f} s"


# -- playing a scenario -------------------------------------------------------------------------

async def play(scenario: Scenario, work: Path, state: Path, console: Console | None = None) -> Run:
    """Run ``scenario`` (lab, agent, faults) with its files in ``work`` and the agent's state in
    ``state``; the :class:`Run` says what happened (``ok(run)``: every step went through)."""
    console = console or Console()
    run = Run(scenario, console)
    work.chmod(0o755)  # snmpsim runs as `nobody` when started by root and must reach the lab's data
    secrets = work / "secrets.yaml"
    shutil.copy(LAB_SECRETS, secrets)
    secrets.chmod(0o600)  # git keeps no modes; load_config refuses a readable secrets file, on purpose
    run.say(f"[bold]scenario {scenario.name}[/bold]: {scenario.what}")
    async with AsyncExitStack() as started:
        run.say("starting the lab (vigie lab up) ...")
        estate, lab = await asyncio.to_thread(start_lab, lambda: scenario_estate(scenario, work), work / "lab")
        started.callback(lab.stop)
        listening = [f"{service} {where[0]}" + (f" (+{len(where) - 1} more)" if len(where) > 1 else "")
                     for service, where in lab.endpoints.items() if where]
        run.say("lab up: " + "; ".join(listening))
        environ = {**os.environ, **lab.environment}
        config = load_config(estate, secrets_path=secrets, environ=environ)
        agent = Agent(config, state_dir=state, health_interval_s=30)
        _pace(agent, scenario.pace)
        run.fingerprints_on = lambda link: agent.dispatcher.fingerprints_on(link)  # built by start()
        agent.listeners.append(run.on_alerts)
        agent.sample_listeners.append(run.on_samples)
        await agent.start()
        started.push_async_callback(agent.stop)
        reconciling = asyncio.create_task(_reconcile(agent, scenario.pace.reconcile_s))
        started.callback(reconciling.cancel)
        devices = sorted({p.target.name for p in agent.polls})
        run.say(f"agent started: {len(agent.polls)} polls of {len(devices)} devices every "
                f"{scenario.pace.interval_s:g} s, built-in ticket log")
        if not await run.wait_for("every device's first poll", lambda: all(d in run.polled for d in devices),
                                  FIRST_POLL_DEADLINE_S):
            return run
        run.say("first polls: " + ", ".join(f"{d}={run.polled[d]}" for d in devices))
        await _inject(run, lab, config_path=estate, state=state)
        await run.wait_for("every ticket", lambda: all(r.ticket is not None for r in run.results),
                           TICKET_DEADLINE_S + max((s.maintenance_s or 0 for s in scenario.steps), default=0))
        for r in run.results:
            if r.ticket is None:
                r.problems.append("no ticket")
            _check(run, r, state)
        for r in run.results:
            for fault in r.step.faults if r.step.clear else ():
                await asyncio.to_thread(lab.clear, fault)
                run.say(f"[bold]recovery[/bold]: vigie lab clear {fault.target} {fault.kind}")
        await run.wait_for("every ticket to be solved",
                           lambda: all(r.solved_at is not None for r in run.results if r.ticket), TICKET_DEADLINE_S)
        for r in run.results:
            if r.step.only_ticket:
                _after_recovery(run, r)
        if run.others:
            run.say(f"[dim]also fired, from the lab's own state rather than an injected fault: "
                    f"{', '.join(sorted({f'{a.device} {a.rule}' for a in run.others}))}[/dim]")
        if scenario.sla:
            _sla(run, state, config)
    return run


async def _reconcile(agent: Agent, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            await agent.dispatcher.reconcile()
        except Exception:  # noqa: BLE001 - logged; the agent's own pass and the next one remain
            log.exception("demo: reconciling the ticket lanes failed")


def _after_recovery(run: Run, r: StepResult) -> None:
    """Tickets the impacted devices opened once the outage was over: said, not hidden (a device
    behind the router still timing out when the router answers again fires at once)."""
    impacted = set(r.alert.impacted if r.alert else ())
    late = [(link, a) for link, a in run.ticketed() if a.device in impacted]
    for link, alert in late:
        run.say(f"[yellow]note: {alert.device} opened ticket #{link.ticket_id} ({alert.rule}) as the outage ended: "
                f"its last poll still timed out when {r.step.ident} answered again[/yellow]")


async def _inject(run: Run, lab: ScenarioLab, *, config_path: Path, state: Path) -> None:
    for step in run.scenario.steps:
        result = StepResult(step)
        run.results.append(result)
        if step.maintenance_s is not None:
            devices = sorted({f.target.split("/", 1)[1] for f in step.faults})
            client = step.faults[0].target.split("/", 1)[0]
            added = await asyncio.to_thread(_maintenance_add, config_path, state, client, devices, step.maintenance_s)
            window = next(w for w in read_added(StateDir(state).maintenance_file) if w.name == MAINTENANCE_NAME)
            assert window.end is not None  # `--for` gives a one-off window
            result.window_end = window.end.timestamp()
            run.say(f"[bold]maintenance[/bold]: {added}")
        result.injected_at = time.time()
        for fault in step.faults:
            effect = await asyncio.to_thread(lab.fault, fault)
            run.say(f"[bold]fault injected[/bold] ({step.title}): vigie lab fault {fault} -> {effect}")


def _maintenance_add(config: Path, state: Path, client: str, devices: Sequence[str], duration_s: float) -> str:
    """`vigie maintenance add` as an operator types it; the running agent reads the window at once."""
    command = [sys.executable, "-m", "agent.cli", "maintenance", "add", "--config", str(config),
               "--secrets", str(config.with_name("secrets.yaml")), "--state-dir", str(state), "--client", client,
               "--name", MAINTENANCE_NAME, "--for", f"{int(duration_s)}s", "--reason", "vigie demo",
               *(arg for device in devices for arg in ("--device", device))]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=_without_vigie_variables())
    if done.returncode != 0:
        raise RuntimeError(f"vigie maintenance add: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


def _without_vigie_variables() -> dict[str, str]:
    """The environment less its VIGIE_*: the lab and the CLI read them as the agent does, and the
    demo's estate must take its own values, not the caller's."""
    return {k: v for k, v in os.environ.items() if not k.startswith("VIGIE_")}


def _check(run: Run, r: StepResult, state: Path) -> None:
    """The step's own promises, beyond its ticket: the maintenance held it, the outage was one ticket."""
    if r.ticket is None:
        return
    if r.window_end is not None and r.ticket.opened_at is not None and r.ticket.opened_at < r.window_end:
        r.problems.append(f"ticket opened {r.window_end - r.ticket.opened_at:.1f} s before the window ended")
    elif r.window_end is not None:
        run.say(f"maintenance window ended at t+{r.window_end - run.t0:.1f}s; the alert still firing opened its "
                f"ticket then")
    if r.step.only_ticket:
        impacted = set(r.alert.impacted if r.alert else ())
        if not impacted:
            r.problems.append("the outage's alert lists no impacted device")
        others = [a for _, a in run.ticketed() if a.device in impacted]
        if others:
            r.problems.append("devices behind it opened tickets of their own: "
                              + ", ".join(f"{a.device} {a.rule}" for a in others))
        else:
            run.say(f"one ticket for the outage: {len(impacted)} device(s) behind {r.step.ident} opened none "
                    f"({', '.join(sorted(impacted))})")
    if r.step.show_ticket:
        text = _ticket_text(state, r.ticket)
        if text is None:
            r.problems.append(f"ticket #{r.ticket.ticket_id} not found in the built-in log")
            return
        run.console.print(f"[bold]ticket #{r.ticket.ticket_id}[/bold] as the built-in log holds it:")
        run.console.print(text, markup=False, highlight=False)
        if r.step.only_ticket and r.alert and not all(d in text for d in r.alert.impacted):
            r.problems.append("the ticket's text does not list every impacted device")


def _ticket_text(state: Path, link: TicketLink) -> str | None:
    for path in state.rglob(TICKET_LOG_FILE):
        log = TicketLog(str(path))
        for record in log.list():
            if str(record.id) == link.ticket_id and link.fingerprint in record.idempotency_key:
                return f"{record.title}\n{record.content}"
    return None


def _sla(run: Run, state: Path, config: Config) -> None:
    """The alert SLA of the run as `vigie sla` computes and prints it (alerting/sla.py: KPI 3, a
    critical alert ticketed within 5 minutes of its onset; onset -> ticket p50/p99), from the
    agent's own alert and ticket records; the state directory holds this run only."""
    from alerting.sla import sla_day, table_lines

    files = StateDir(state)
    client = config.client(run.scenario.sources[0].client)
    now = time.time()
    first, last = (dt.datetime.fromtimestamp(at, client.zone).date() for at in (run.t0, now))
    days = [sla_day(files, client, first + dt.timedelta(days=n), now) for n in range((last - first).days + 1)]
    run.say(f"[bold]the alert SLA[/bold], as `vigie sla --client {client.name} --since {first}` prints it:")
    run.console.print("\n".join(table_lines(days)), markup=False, highlight=False)
    critical = sum(d.critical_alerts for d in days)
    in_time = sum(d.ticketed_within_5min for d in days)
    p50, p99 = days[-1].p50_onset_to_ticket_s, days[-1].p99_onset_to_ticket_s
    run.sla_line = (f"alert SLA ({client.name}, this run): {critical} critical alert(s), {in_time} ticketed within "
                    f"{SLA_TICKET_WITHIN_S / 60:g} min, onset -> ticket p50 {_seconds(p50)} p99 {_seconds(p99)}, "
                    f"{sum(d.without_ticket for d in days)} without a ticket")
    if critical == 0 or in_time < critical:
        run.results[0].problems.append(run.sla_line)


def ok(run: Run) -> bool:
    return len(run.results) == len(run.scenario.steps) and all(r.ok for r in run.results)


def summary(run: Run) -> Table:
    def rel(at: float | None) -> str:
        return f"t+{at - run.t0:.1f}s" if at else "-"

    state = "[green]OK[/green]" if ok(run) else "[red]FAILED[/red]"
    table = Table("step (rule)", "ticket", "fault -> ticket", "onset -> ticket", "solved",
                  title=f"vigie demo --scenario {run.scenario.name} — {state}",
                  caption=run.sla_line or f"demo pace: a poll every {run.scenario.pace.interval_s:g} s, rules' "
                  f"for_s capped at {run.scenario.pace.for_s_cap:g} s")
    for r in run.results:
        link = r.ticket
        table.add_row(
            f"{r.step.title}\n[dim]{r.step.rule}[/dim]" + "".join(f"\n[red]{p}[/red]" for p in r.problems),
            f"#{link.ticket_id} {rel(link.opened_at)}" if link else "[red]none[/red]",
            _seconds(_minus(link.opened_at, r.injected_at)) if link else "-",
            _seconds(link.time_to_ticket_s) if link else "-", rel(r.solved_at),
        )
    return table


def _pace(agent: Agent, pace: Pace) -> None:
    agent.polls = [replace(p, interval_s=pace.interval_s, timeout_s=min(p.timeout_s, pace.timeout_s), jitter_s=0.5)
                   for p in agent.polls]
    agent.rule_filter = lambda rule: rule.with_changes(for_s=min(rule.for_s, pace.for_s_cap))


async def run_scenarios(names: Sequence[str], work_and_state: Callable[[str], Any]) -> int:
    """Each scenario in turn, its own files from ``work_and_state(name)`` (a context manager giving
    (work, state)); 0 when every one went through."""
    console = Console()
    failed = []
    for name in names:
        with work_and_state(name) as (work, state):
            try:
                run = await play(SCENARIOS[name], work, state, console)
            except RuntimeError as exc:  # the lab did not come up, a fault was refused
                console.print(f"[red]vigie demo --scenario {name}: {exc}[/red]", highlight=False)
                failed.append(name)
                continue
        console.print(summary(run))
        if not ok(run):
            failed.append(name)
    if len(names) > 1:
        console.print(f"scenarios: {len(names) - len(failed)} of {len(names)} went through"
                      + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
