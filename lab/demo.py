"""`vigie demo` (`make demo`): the main job on embedded defaults against the lab, with one fault.

What it does, in order, with a live display:
1. starts the lab (`vigie lab up`, a child process on free ports) whose SNMP responder serves the
   real LibreNMS walks that play the public body's demo estate (lab/estates/vsgp-demo.yaml: core and
   access Cisco switches, both Firepower, a UPS);
2. runs the agent on embedded defaults: SQLite store, built-in ticket log (no InfluxDB, no GLPI —
   `--glpi` plays the client's GLPI with the lab's fake instead);
3. once every device has answered, takes an active interface of the distribution switch down
   (`vigie lab fault vsgp/dist-siege port-down IFINDEX`: its ifOperStatus answers down), waits for
   the alert to fire and the ticket to open, and measures the time from the fault to the ticket;
4. brings the interface back and waits for the alert to resolve and the ticket to be solved;
5. prints a summary and exits (0 if every step happened, 1 otherwise), unless `--keep-running`;
6. removes every file it wrote (a temporary directory: the estate, a copy of the lab's secrets,
   the lab's runtime, the agent's state), except the agent's state when asked to keep it
   (`--keep-state`, or `--state-dir DIR`).

Two times are measured, each under its own name wherever it is printed:

- **fault injected -> ticket created** (:attr:`Story.fault_to_ticket_s`): from the moment the fault
  that takes the interface down was applied to the creation of the ticket. What an operator would
  time: the poll that sees the fault, the rule's pending time, the dispatch.
- **first bad sample -> ticket created** (:attr:`Story.onset_to_ticket_s`): the dispatcher's
  ``time_to_ticket_s``, from the alert's ``started_at`` (the first sample that matched the rule),
  the figure of the 5-minute critical-alert SLA; it leaves out the wait for the first poll.

Demo pace: polls every 10 s and rules' `for_s` capped at 10 s, so the story takes about a minute;
the production values are those of the estate file.

That is the default scenario; `vigie demo --scenario cloud|hosts|alerting|all` plays the newer
sources and the alerting instead (lab.demo_scenarios).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from agent.api import Sample
from agent.api.alerts import AlertTransition
from agent.config import load_config
from agent.runner import Agent
from alerting.notifier import DispatchResult
from lab.demo_scenarios import Fault, ScenarioLab, run_scenarios, start_lab

ESTATE = Path(__file__).resolve().parent / "estates" / "vsgp-demo.yaml"
SECRETS = ESTATE.with_name("secrets.yaml")
CLIENT = "vsgp"
VICTIM = "dist-siege"
VICTIM_IF_PREFIX = "StackPort"
POLL_INTERVAL_S = 10.0
POLL_TIMEOUT_S = 9.0
FOR_S_CAP = 10.0
STEP_DEADLINE_S = 120.0


@dataclass
class Story:
    """What the demo saw, in the order it happened (epoch seconds)."""

    t0: float = field(default_factory=time.time)
    events: list[tuple[float, str]] = field(default_factory=list)
    device_status: dict[str, str] = field(default_factory=dict)
    interfaces: dict[str, dict[str, Sample]] = field(default_factory=dict)
    fault_at: float | None = None
    fingerprint: str | None = None
    others_firing: int = 0
    fired_at: float | None = None
    ticket: str | None = None
    ticket_at: float | None = None  # when the ticket was created (the dispatcher's opened_at)
    onset_to_ticket_s: float | None = None  # the dispatcher's time_to_ticket_s
    resolved_at: float | None = None
    solved_at: float | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def fault_to_ticket_s(self) -> float | None:
        """Fault injected -> ticket created."""
        if self.fault_at is None or self.ticket_at is None:
            return None
        return self.ticket_at - self.fault_at

    def log(self, text: str) -> None:
        self.events.append((time.time(), text))
        self.changed.set()


class Demo:
    def __init__(self, agent: Agent, lab: ScenarioLab, story: Story) -> None:
        self.agent, self.lab, self.story = agent, lab, story
        self.victim_if: tuple[int, str] | None = None
        agent.listeners.append(self.on_alerts)
        agent.sample_listeners.append(self.on_samples)

    def on_samples(self, samples: Sequence[Sample]) -> None:
        for s in samples:
            device = s.tags.get("device", "")
            if s.measurement == "collection":
                before = self.story.device_status.get(device)
                self.story.device_status[device] = str(s.fields.get("status"))
                if before != self.story.device_status[device]:
                    self.story.changed.set()
            elif s.measurement == "snmp_interface":
                self.story.interfaces.setdefault(device, {})[s.tags.get("if_index", "")] = s

    def on_alerts(self, transitions: Sequence[AlertTransition], result: DispatchResult) -> None:
        story = self.story
        for tr in transitions:
            labels = tr.alert.labels
            if self.victim_if is None or tr.alert.device != VICTIM or labels.get("if_index") != str(self.victim_if[0]):
                if tr.state == "firing":
                    story.others_firing += 1
                continue
            story.log(f"alert {tr.alert.rule} {tr.state}: {tr.alert.summary}")
            story.fingerprint = tr.alert.fingerprint
            if tr.state == "firing":
                story.fired_at = tr.at
            elif tr.state == "resolved":
                story.resolved_at = tr.at
        on = self.agent.dispatcher.fingerprints_on  # a group's ticket is about its alerts
        for link in result.opened + result.reattached:
            if story.fingerprint in on(link) and story.ticket is None and link.opened_at is not None:
                story.ticket = f"{link.connector} #{link.ticket_id}"
                story.ticket_at = link.opened_at
                story.onset_to_ticket_s = link.time_to_ticket_s
                story.log(f"ticket {story.ticket} created: {_seconds(story.fault_to_ticket_s)} after the fault was "
                          f"injected ({_seconds(story.onset_to_ticket_s)} after the alert's first bad sample)")
        for link in result.solved:
            if story.fingerprint in on(link) and story.ticket is not None:
                story.solved_at = link.solved_at or time.time()
                story.log(f"ticket {story.ticket} solved")

    async def wait_for(self, what: str, predicate, deadline_s: float = STEP_DEADLINE_S) -> bool:
        limit = time.monotonic() + deadline_s
        while not predicate():
            remaining = limit - time.monotonic()
            if remaining <= 0:
                self.story.log(f"[red]gave up waiting for {what} after {deadline_s:.0f} s[/red]")
                return False
            self.story.changed.clear()
            try:
                await asyncio.wait_for(self.story.changed.wait(), min(remaining, 1.0))
            except TimeoutError:
                pass
        return True

    def pick_victim(self) -> tuple[int, str] | None:
        """A stack port of the victim that is administratively up and really up: a real outage, on
        an interface the estate's rules watch (unconnected access ports are not paged)."""
        for index, s in sorted(self.story.interfaces.get(VICTIM, {}).items(), key=lambda kv: int(kv[0] or 0)):
            name = str(s.tags.get("if_name", ""))
            if name.startswith(VICTIM_IF_PREFIX) and s.fields.get("admin_status") == "up" \
                    and s.fields.get("oper_status") == "up":
                return int(index), str(s.tags.get("if_name") or index)
        return None

    async def play(self) -> bool:
        story, devices = self.story, [p.target.name for p in self.agent.polls]
        story.log(f"lab: {'; '.join(self.lab.endpoints.get('snmp', []))}; the agent polls {len(devices)} devices")
        if not await self.wait_for("every device's first poll", lambda: all(d in story.device_status
                                                                              for d in devices), 60):
            return False
        story.log("every device polled once: " + ", ".join(f"{d}={story.device_status[d]}" for d in devices))
        # On a loaded machine the victim's first poll may have timed out or been skipped: its
        # interfaces come with a later poll.
        if not await self.wait_for(f"an interface of {VICTIM} up to take down", lambda: self.pick_victim() is not None):
            return False
        self.victim_if = self.pick_victim()
        index, name = self.victim_if
        fault = Fault(f"{CLIENT}/{VICTIM}", "port-down", (str(index),))
        await asyncio.to_thread(self.lab.fault, fault)
        story.fault_at = time.time()
        story.log(f"[bold]fault injected[/bold]: {VICTIM} {name} (ifIndex {index}) oper-down")
        if not await self.wait_for("the ticket", lambda: story.ticket is not None):
            return False
        await asyncio.to_thread(self.lab.clear, fault)
        story.log(f"[bold]recovery[/bold]: {VICTIM} {name} back up")
        return await self.wait_for("the ticket to be solved", lambda: story.solved_at is not None)


def _render(story: Story) -> Group:
    devices = Table("device", "status", title="devices", box=None)
    for name, status in sorted(story.device_status.items()):
        colour = "green" if status == "ok" else "red"
        devices.add_row(name, f"[{colour}]{status}[/{colour}]")
    timeline = Table("t+s", "event", title="timeline", box=None,
                     caption=f"other alerts firing from the recordings' own state: {story.others_firing}")
    for at, text in story.events[-14:]:
        timeline.add_row(f"{at - story.t0:6.1f}", text)
    return Group(devices, timeline)


def _seconds(duration_s: float | None) -> str:
    return "-" if duration_s is None else f"{duration_s:.1f} s"


def _summary(story: Story, ok: bool) -> Table:
    def rel(at: float | None) -> str:
        return f"t+{at - story.t0:.1f} s" if at else "-"

    table = Table(
        "step", "when", title="vigie demo — " + ("[green]OK[/green]" if ok else "[red]FAILED[/red]"),
        caption=f"demo pace: a poll every {POLL_INTERVAL_S:g} s, then the rule's pending time (capped at "
        f"{FOR_S_CAP:g} s) before it fires",
    )
    table.add_row("fault injected", rel(story.fault_at))
    table.add_row("alert firing", rel(story.fired_at))
    table.add_row(f"ticket created ({story.ticket or '-'})", rel(story.ticket_at))
    table.add_row("alert resolved", rel(story.resolved_at))
    table.add_row("ticket solved", rel(story.solved_at))
    table.add_section()
    table.add_row("fault injected -> ticket created", _seconds(story.fault_to_ticket_s))
    table.add_row("first bad sample -> ticket created\n(the dispatcher's time_to_ticket_s)",
                  _seconds(story.onset_to_ticket_s))
    return table


def _demo_estate(work: Path, glpi: bool) -> Path:
    """The demo estate, as written, or with the built-in ticket log in place of the client's GLPI
    (the embedded default), written beside the demo's other files."""
    if glpi:
        return ESTATE
    raw = yaml.safe_load(ESTATE.read_text(encoding="utf-8"))
    for client in raw.get("clients", []):
        client["ticketing"] = {"kind": "log"}
    estate = work / ESTATE.name
    estate.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return estate


def _demo_pace(agent: Agent) -> None:
    agent.polls = [replace(p, interval_s=POLL_INTERVAL_S, timeout_s=POLL_TIMEOUT_S, jitter_s=1.0)
                   for p in agent.polls]
    agent.rule_filter = lambda rule: rule.with_changes(for_s=min(rule.for_s, FOR_S_CAP))


@contextmanager
def demo_files(keep_state: bool = False, state_dir: Path | None = None) -> Iterator[tuple[Path, Path]]:
    """(work, state): a temporary directory for the demo's files, removed whole on the way out
    however the demo ends, and the agent's state directory: inside it, unless asked to keep the
    state (``keep_state``: a temporary directory of its own, left behind; ``state_dir``: that one)."""
    work = Path(tempfile.mkdtemp(prefix="vigie-demo-"))
    try:
        if state_dir is not None:
            state = state_dir
        elif keep_state:
            state = Path(tempfile.mkdtemp(prefix="vigie-demo-state-"))
        else:
            state = work / "state"
        yield work, state
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def run_demo(
    keep_running: bool = False, state_dir: Path | None = None, glpi: bool = False, keep_state: bool = False
) -> int:
    with demo_files(keep_state, state_dir) as (work, state):
        return await _play(work, state, kept=keep_state or state_dir is not None, keep_running=keep_running, glpi=glpi)


async def _play(work: Path, state: Path, *, kept: bool, keep_running: bool, glpi: bool) -> int:
    console = Console()
    work.chmod(0o755)  # the lab's children may run as `nobody` when started by root and must reach its data
    secrets = work / "secrets.yaml"
    shutil.copy(SECRETS, secrets)
    secrets.chmod(0o600)  # git keeps no modes; load_config refuses a readable secrets file, on purpose
    # Whatever was started is stopped, in reverse order, however the demo ends (a refused config,
    # a lab that does not start, an agent whose state directory is locked, Ctrl-C).
    async with AsyncExitStack() as started:
        # the lab plays the client's GLPI too when the estate names it (--glpi)
        console.print("starting the lab (vigie lab up) ...")
        estate, lab = await asyncio.to_thread(start_lab, lambda: _demo_estate(work, glpi), work / "lab")
        started.callback(lab.stop)
        config = load_config(estate, secrets_path=secrets, environ={**os.environ, **lab.environment})
        agent = Agent(config, state_dir=state, health_interval_s=30)
        _demo_pace(agent)
        story = Story()
        demo = Demo(agent, lab, story)
        await agent.start()
        started.push_async_callback(agent.stop)
        with Live(_render(story), console=console, refresh_per_second=4) as live:
            play = asyncio.create_task(demo.play())
            while not play.done():
                live.update(_render(story))
                await asyncio.sleep(0.25)
            ok = play.result()
            live.update(_render(story))
        console.print(_summary(story, ok))
        if kept:
            console.print(f"state directory kept: {state}  (try: vigie tickets --state-dir {state})")
        else:
            console.print("the demo's files are removed on exit (--keep-state keeps the agent's state)")
        if keep_running:
            console.print("keeping the lab and the agent running; Ctrl-C to stop")
            await asyncio.Event().wait()
    return 0 if ok else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """`vigie demo`, provided by the lab (a development extra, not in the vigie wheel)."""
    from lab.demo_scenarios import ALL, SCENARIOS

    p = subparsers.add_parser("demo", help="lab + agent + injected fault: alert, ticket, recovery, solved")
    p.add_argument("--scenario", choices=("default", *SCENARIOS, "all"), default="default",
                   help="default: an interface of the distribution switch down; "
                   + "; ".join(f"{s.name}: {s.what}" for s in SCENARIOS.values())
                   + f"; all: {', '.join(ALL)} in turn")
    p.add_argument("--keep-running", action="store_true", help="keep the agent and lab running after the demo "
                   "(default scenario)")
    p.add_argument("--state-dir", type=Path, default=None, help="keep the agent's state in this directory")
    p.add_argument("--keep-state", action="store_true", help="keep the agent's state in a temporary directory")
    p.add_argument("--glpi", action="store_true", help="open tickets in the lab's fake GLPI, not the built-in log "
                   "(default scenario)")

    def run(args: argparse.Namespace) -> int:
        if args.scenario == "default":
            return asyncio.run(run_demo(keep_running=args.keep_running, state_dir=args.state_dir, glpi=args.glpi,
                                        keep_state=args.keep_state))
        if args.keep_running or args.glpi:
            p.error("--keep-running and --glpi are options of the default scenario")
        if not getattr(args, "verbose", False):
            logging.getLogger().setLevel(logging.WARNING)  # the story says what the agent's log would
            # a lab SSH fake closing a session is not the demo's news
            logging.getLogger("paramiko.transport").setLevel(logging.CRITICAL)
        names = [*ALL] if args.scenario == "all" else [args.scenario]
        return asyncio.run(run_scenarios(names, lambda name: scenario_files(name, args.keep_state, args.state_dir)))

    p.set_defaults(func=run)


@contextmanager
def scenario_files(name: str, keep_state: bool, state_dir: Path | None) -> Iterator[tuple[Path, Path]]:
    """:func:`demo_files` for one scenario; a kept state directory gets a folder per scenario."""
    with demo_files(keep_state, None if state_dir is None else state_dir / name) as (work, state):
        yield work, state
        if keep_state or state_dir is not None:
            Console().print(f"state directory kept: {state}  (try: vigie tickets --state-dir {state})")
