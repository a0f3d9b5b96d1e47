"""Each client's priority matrix: impact x urgency -> P0..P3 (seed-001 by default), the severity's
placement, a rule's own impact or urgency, the client's overrides by rule, site, device, tags; the
priority rides on the alert queued for its ticket; a matrix that names what it lacks is refused."""

from __future__ import annotations

import pytest

from agent.api import Alert
from agent.api.priority import Priority
from agent.api.rules import Rule
from agent.priority import PrioritySettings
from alerting.notifier import TicketDispatcher
from alerting.ticketing.log import TicketLog

from .helpers import T0, firing_alert


def _alert(severity: str = "major", **labels: str) -> Alert:
    return Alert("f" * 16, "interface_down", {"client": "vsgp", "site": "hdv", "device": "sw-1", **labels}, severity,
                 "sw-1 down", "firing", started_at=T0, fired_at=T0 + 60)


def test_seed_001_places_severities_and_overrides_have_the_last_word() -> None:
    policy = PrioritySettings()
    assert [policy.priority(_alert(s), None).level for s in ("critical", "major", "minor", "warning")] == [
        "P0", "P1", "P2", "P3"]
    rule = Rule(name="interface_down", measurement="snmp_interface", when="oper_status == 'down'", urgency="Moyenne")
    assert policy.priority(_alert("major"), rule) == Priority("Majeur", "Moyenne", "P3")
    vip = PrioritySettings(overrides=[
        {"match": {"role": "core"}, "impact": "Critique"},
        {"site": "hdv", "devices": ["sw-1"], "urgency": "Élevée"},
    ])
    assert vip.priority(_alert("major", role="core"), rule) == Priority("Critique", "Moyenne", "P2")  # first match
    assert vip.priority(_alert("major", role="access"), rule) == Priority("Majeur", "Élevée", "P2")


def test_a_client_matrix_of_its_own_and_its_mistakes_named() -> None:
    agency = PrioritySettings(
        matrix={"Haute": {"Bloquant": "P1", "Gênant": "P2"}, "Basse": {"Bloquant": "P2", "Gênant": "P3"}},
        severities={"critical": ("Bloquant", "Haute"), "major": ("Bloquant", "Basse"),
                    "minor": ("Gênant", "Basse"), "warning": ("Gênant", "Basse")},
    )
    assert agency.priority(_alert("critical"), None).level == "P1"
    with pytest.raises(ValueError, match=r"severities.critical: 'Critique' x 'Sévère' is not in the matrix"):
        PrioritySettings(matrix={"Haute": {"Bloquant": "P1"}})
    with pytest.raises(ValueError, match=r"overrides\[0\].impact: 'Énorme' is none of"):
        PrioritySettings(overrides=[{"impact": "Énorme"}])
    rule = Rule(name="x", measurement="m", when="a == 1", impact="Majeur")
    assert agency.rule_problems(rule) == ["rule x: impact 'Majeur' is none of Bloquant, Gênant"]


class RecordingLog(TicketLog):
    """The built-in log, remembering the priority of each alert it was asked to open."""

    priorities: list[Priority | None]

    async def open(self, alert):
        self.priorities.append(alert.priority)
        return await super().open(alert)


async def test_the_priority_rides_on_the_alert_the_receiver_opens(tmp_path, clock) -> None:
    log = RecordingLog(str(tmp_path / "log.sqlite"), clock=clock)
    log.priorities = []
    policy = PrioritySettings()
    disp = TicketDispatcher(str(tmp_path / "links.sqlite"), {"vsgp": log}, clock=clock,
                            prepare=lambda alert, now: setattr(alert, "priority", policy.priority(alert, None)))
    await disp.start()
    try:
        alert = firing_alert("critical")
        await disp.reconcile(lambda: [alert])
        await disp.settle()
        assert log.priorities == [Priority("Critique", "Sévère", "P0")]
    finally:
        await disp.stop()
