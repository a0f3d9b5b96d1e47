"""What the operator is told: `vigie run`'s log (start-up, each alert firing and resolving, each
ticket opened and solved, shutdown) and the read-only views (`vigie status`, `vigie alerts`,
`vigie tickets`) run beside the live agent, against the lab's snmpsim.

The estate: a switch the lab plays, a device behind it on a port nobody answers, and one behind
that one:

    fb/sw (lab: up)  <-  fb/gone (down)  <-  fb/behind (unreachable: behind fb/gone)
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from agent.api.alerts import Alert, AlertTransition
from agent.config import load_config
from agent.runner import Agent
from alerting.notifier import DispatchResult, TicketLink
from lab.demo import VICTIM, Demo, Story, _summary, demo_files
from lab.snmpsim import SnmpLab

from .helpers import (
    DEADLINE_S,
    POLL_S,
    UP_IF_INDEX,
    UP_IF_NAME,
    WALK,
    AgentProcess,
    device,
    eventually,
    query_sqlite,
    unreachable_rule,
    uplink_rule,
    vigie,
    write_estate,
)

CLIENT = "fb"
LAB_DEVICES = {f"{CLIENT}/sw": WALK}


def dead_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def estate(tmp_path: Path, lab: SnmpLab) -> tuple[Path, Path]:
    gone, behind = device("gone", dead_port()), device("behind", dead_port())
    gone["parent"], behind["parent"] = "sw", "gone"
    # `for_s` over one interval: behind's alert comes due once gone's status is known, whichever
    # of the two the first round polled first (an alert due before its parent was ever observed
    # is not held back).
    # The switch's poll has room for a loaded machine's snmpsim (two 2 s tries within 5 s): one
    # slow answer must not make it look down.
    sw = device("sw", lab.port, interval_s=5, timeout_s=5)
    sw["collectors"]["snmp"]["timeout_s"] = 2
    rules = [uplink_rule(), unreachable_rule(for_s=3)]
    return write_estate(tmp_path, {CLIENT: [sw, gone, behind]}, rules)


def messages(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def one(caplog: pytest.LogCaptureFixture, start: str, level: int = logging.INFO) -> str:
    found = [m for m in messages(caplog, level) if m.startswith(start)]
    assert len(found) == 1, f"{start!r}: {found}\n" + "\n".join(messages(caplog))
    return found[0]


def json_lines(result) -> list[dict]:
    assert result.returncode == 0, result.stdout + result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


async def view_until(what: str, ok: Callable[[list[dict]], bool], *args: str) -> list[dict]:
    """Run a view command (``vigie ARGS --json``) until what it prints satisfies ``ok``: the agent
    beside it moves on between two runs. The command runs in a thread, the agent's loop goes on."""
    limit = time.monotonic() + DEADLINE_S
    while True:
        found = json_lines(await asyncio.to_thread(vigie, *args, "--json"))
        if ok(found):
            return found
        assert time.monotonic() < limit, f"gave up waiting {DEADLINE_S:.0f} s for {what}; last seen: {found}"
        await asyncio.sleep(POLL_S)


def with_ticket(caplog: pytest.LogCaptureFixture, text: str) -> Callable[[], list[str]]:
    return lambda: [m for m in messages(caplog) if m.startswith("ticket log#") and text in m]


async def test_the_run_says_what_it_does_and_the_views_show_it_live(
    tmp_path: Path, lab: SnmpLab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="agent.runlog")
    config, secrets = estate(tmp_path, lab)
    state = tmp_path / "state"
    agent = Agent(load_config(config, secrets_path=secrets), state_dir=state)
    await agent.start()
    try:
        assert one(caplog, "starting: ") == (
            f"starting: config {config}, client(s) {CLIENT}, 3 poll(s) of 3 device(s), state in {state}"
        )
        assert one(caplog, "store: ") == "store: sqlite"
        assert one(caplog, f"tickets of {CLIENT}: ") == f"tickets of {CLIENT}: log"
        assert one(caplog, "services: ") == "services: none"
        assert one(caplog, "started in ").endswith("; polling")

        first = await eventually(
            lambda: [m for m in messages(caplog) if m.startswith("first poll round done")], "the first poll round"
        )
        assert ": 3 poll(s), " in first[0] and f"{CLIENT}/gone " in first[0].split("; not ok: ")[1], first
        await eventually(with_ticket(caplog, f" opened for {CLIENT}/gone device_unreachable "), "gone's ticket")
        assert one(caplog, f"alert firing: {CLIENT}/gone device_unreachable (critical): ").endswith("gone unreachable")
        # behind's alert is held by gone: pending, said at DEBUG only
        assert one(caplog, f"alert pending: {CLIENT}/behind device_unreachable (critical)", logging.DEBUG)
        assert not [m for m in messages(caplog) if m.startswith(f"alert firing: {CLIENT}/behind")]

        await eventually(
            lambda: query_sqlite(state / "alerts.sqlite", "SELECT 1 FROM alerts WHERE inhibited_by = 'fb/gone'"),
            "behind's alert, come due, held by gone",
        )

        # The views, in their own processes, beside the agent writing its files; no secrets given.
        view = ("--config", str(config), "--state-dir", str(state))
        expected = {"behind": ("unreachable", f"{CLIENT}/gone"), "gone": ("down", None), "sw": ("up", None)}
        statuses = await view_until(
            f"the states {expected}",
            lambda found: {s["device"]: (s["state"], s["behind"]) for s in found} == expected,
            "status",
            *view,
        )
        sw = next(s for s in statuses if s["device"] == "sw")
        assert [(c["collector"], c["status"]) for c in sw["collectors"]] == [("snmp", "ok")]
        table = await asyncio.to_thread(vigie, "status", *view)
        assert "3 device(s) of fb: " in table.stdout and "behind fb/gone (down)" in table.stdout, table.stdout
        alerts = json_lines(await asyncio.to_thread(vigie, "alerts", *view, "--json"))
        assert [(a["device"], a["state"], a["inhibited_by"]) for a in alerts if a["device"] != "sw"] == [
            ("gone", "firing", None),
            ("behind", "pending", f"{CLIENT}/gone"),
        ]

        # A fault on the switch: its uplink goes down, then comes back.
        await asyncio.to_thread(lab.set_oper_status, f"{CLIENT}/sw", UP_IF_INDEX, "down")
        await eventually(with_ticket(caplog, f" opened for {CLIENT}/sw uplink_down "), "the uplink's ticket")
        assert one(caplog, f"alert firing: {CLIENT}/sw uplink_down (critical): ") == (
            f"alert firing: {CLIENT}/sw uplink_down (critical): sw {UP_IF_NAME} down"
        )
        await asyncio.to_thread(lab.set_oper_status, f"{CLIENT}/sw", UP_IF_INDEX, "up")
        await eventually(with_ticket(caplog, f" solved for {CLIENT}/sw uplink_down "), "the uplink's ticket solved")
        (resolved,) = [m for m in messages(caplog) if m.startswith("alert resolved after ") and "uplink_down" in m]
        assert resolved.endswith(f" s: {CLIENT}/sw uplink_down (critical): sw {UP_IF_NAME} down"), resolved

        tickets = json_lines(await asyncio.to_thread(vigie, "tickets", *view, "--json"))
        by_alert = {(t["device"], t["rule"]): (t["receiver"], t["status"]) for t in tickets}
        assert by_alert[("gone", "device_unreachable")] == ("log", "open")
        assert by_alert[("sw", "uplink_down")] == ("log", "solved")
        assert ("behind", "device_unreachable") not in by_alert  # held by gone: no ticket
    finally:
        await agent.stop()
        await asyncio.to_thread(lab.set_oper_status, f"{CLIENT}/sw", UP_IF_INDEX, "up")
    runner = [r.getMessage() for r in caplog.records if r.name == "agent.runner"]
    shutdown = runner[runner.index("stopping") :]
    assert [m.split(",")[0].split(" (")[0] for m in shutdown[:-1]] == [
        "stopping",
        "stopped: services",
        "stopped: polls",
        "stopped: pipeline",
        "stopped: taken-in-charge read-back",
        "stopped: ticket lanes",
        "stopped: notifications to contacts",
        "stopped: store",
        "stopped: ticket receivers",
    ]
    assert shutdown[-1].startswith("stopped in ") and shutdown[-1].endswith(" s")


async def test_a_signal_stops_the_run_and_says_so(tmp_path: Path, lab: SnmpLab) -> None:
    config, secrets = estate(tmp_path, lab)
    agent = AgentProcess(config, secrets, tmp_path / "state")
    try:
        agent.start()
        await eventually(lambda: "first poll round done" in agent.log_text(), "the first poll round", agents=[agent])
        assert await agent.terminate() == 0
        log = agent.log_text()
        assert "INFO agent.runner: SIGTERM received: stopping" in log
        assert "INFO agent.runner: stopped in " in log.splitlines()[-1], log
    finally:
        agent.ensure_stopped()


# -- vigie demo --------------------------------------------------------------------------------


def test_the_demo_removes_its_files_unless_asked_to_keep_its_state(tmp_path: Path) -> None:
    with demo_files() as (work, state):
        (work / "secrets.yaml").write_text("lab-vsgp-core: {community: vsgp/core}\n")
        state.mkdir()
        (state / "alerts.sqlite").write_bytes(b"")
    assert not work.exists() and not state.exists()

    with pytest.raises(RuntimeError), demo_files() as (work, state):
        raise RuntimeError("the lab did not start")
    assert not work.exists()

    with demo_files(keep_state=True) as (work, state):
        state.joinpath("alerts.sqlite").write_bytes(b"")
    try:
        assert not work.exists() and (state / "alerts.sqlite").exists()
        assert not state.is_relative_to(work)
    finally:
        shutil.rmtree(state)

    mine = tmp_path / "mine"
    with demo_files(state_dir=mine) as (work, state):
        assert state == mine
    assert not work.exists()


def test_the_demo_names_its_two_times_and_prints_each_the_same_everywhere() -> None:
    t0 = 1_700_000_000.0
    story = Story(t0=t0)
    # ungrouped tickets: each is about its own alert
    dispatcher = SimpleNamespace(fingerprints_on=lambda link: [link.fingerprint])
    agent = SimpleNamespace(listeners=[], sample_listeners=[], dispatcher=dispatcher)
    demo = Demo(agent, lab=None, story=story)  # type: ignore[arg-type]
    demo.victim_if = (70, "StackPort1")
    story.fault_at = t0 + 10.0
    alert = Alert(
        "f" * 16,
        "core_interface_down",
        {"client": "vsgp", "device": VICTIM, "if_index": "70"},
        "critical",
        "dist-siege StackPort1 down",
        "firing",
        started_at=t0 + 23.5,
        fired_at=t0 + 33.5,
    )
    link = TicketLink(
        key="vigie:ffff",
        fingerprint=alert.fingerprint,
        client="vsgp",
        rule=alert.rule,
        state="open",
        connector="log",
        ticket_id="1",
        ticket_url=None,
        reused=False,
        started_at=alert.started_at,
        fired_at=alert.fired_at,
        opened_at=t0 + 38.5,
        time_to_ticket_s=15.0,
        resolved_at=None,
        solved_at=None,
        attempts=1,
        last_error=None,
        failures=0,
        next_attempt_at=0.0,
    )
    demo.on_alerts([AlertTransition(alert, "pending", "firing", t0 + 33.5)], DispatchResult(opened=[link]))

    assert (story.fault_to_ticket_s, story.onset_to_ticket_s) == (28.5, 15.0)
    assert story.events[-1][1] == (
        "ticket log #1 created: 28.5 s after the fault was injected (15.0 s after the alert's first bad sample)"
    )
    console = Console(width=100, record=True, file=io.StringIO())
    console.print(_summary(story, ok=True))
    summary = console.export_text()
    assert re.search(r"fault injected -> ticket created\s+│ 28\.5 s", summary), summary
    assert re.search(r"first bad sample -> ticket created\s+│ 15\.0 s", summary), summary
    assert re.search(r"ticket created \(log #1\)\s+│ t\+38\.5 s", summary), summary
