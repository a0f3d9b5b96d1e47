"""The report scheduler on a driven clock: due at the client's time in its zone, mailed once, a
failed mailing retried on the clock and alerted through the real alert engine (built-in rule
report_delivery_failed), resolved by the delivery that finally goes through."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json

from agent.config import BUILTIN_RULES
from agent.report.service import ReportScheduler
from alerting.engine import AlertEngine
from tests.report import lab_day

NEXT_DAY = lab_day.DAY + dt.timedelta(days=1)


def _scheduler(lab, now: list[float]) -> tuple[ReportScheduler, list]:
    submitted: list = []

    async def submit(samples) -> None:
        submitted.extend(samples)

    return ReportScheduler(lab.config, ["acme", "beta"], lab.files, lambda: now[0], submit), submitted


def test_due_at_the_clients_time_in_its_zone(lab) -> None:
    scheduler, _ = _scheduler(lab, [0.0])
    before = lab_day._at(7, 29, NEXT_DAY)  # 06:29 UTC
    after = lab_day._at(7, 30, NEXT_DAY)
    daily = {(c, d) for c, kind, d in scheduler.due(before) if kind == "daily"}
    # before 07:30 the latest report due is the day before's (caught up if it was never sent)
    assert daily == {("acme", lab_day.DAY - dt.timedelta(days=1)), ("beta", lab_day.DAY - dt.timedelta(days=1))}
    due = scheduler.due(after)
    assert ("acme", "daily", lab_day.DAY) in due and ("acme", "monthly", dt.date(2026, 11, 1)) in due


async def test_mailed_once_at_0730_then_not_again(lab, smtp) -> None:
    now = [lab_day._at(7, 30, NEXT_DAY)]
    scheduler, submitted = _scheduler(lab, now)
    await scheduler.tick()
    subjects = sorted(email.message_from_bytes(raw, policy=email.policy.default)["Subject"]
                      for _, _, raw, _ in smtp.mailbox.messages)
    # each client's daily report of the day before and the monthly one of the month before
    assert len(subjects) == 4 and "Daily IT health report — Beta Association — 2026-11-30" in subjects
    assert {(s.tags["client"], s.tags["report"], s.fields["status"]) for s in submitted} == {
        ("acme", "daily", "sent"), ("acme", "monthly", "sent"), ("beta", "daily", "sent"), ("beta", "monthly", "sent")}
    now[0] += 60
    await scheduler.tick()
    assert len(smtp.mailbox.messages) == 4  # sent is sent: the archive says so, across restarts too
    assert scheduler.due(now[0]) == []


async def test_a_failed_mailing_is_retried_on_the_clock_alerted_then_resolved(lab, smtp, tmp_path) -> None:
    smtp.stop()
    lab = lab_with_retries(lab, tmp_path)
    now = [lab_day._at(7, 30, NEXT_DAY)]
    scheduler, submitted = _scheduler(lab, now)
    engine = AlertEngine(str(tmp_path / "alerts.sqlite"), BUILTIN_RULES, lambda: now[0])
    for minute in range(0, 25, 5):  # attempts at 07:30, 07:40, 07:50 (retry_interval_s 600)
        now[0] = lab_day._at(7, 30 + minute, NEXT_DAY)
        await scheduler.tick()
    failed = [s for s in submitted if s.tags["client"] == "acme" and s.tags["report"] == "daily"]
    assert [(s.fields["status"], s.fields["attempts"]) for s in failed] == [("failed", 3)]  # said once
    record = json.loads((lab.files.path / "reports" / "acme" / lab_day.DAY.isoformat() / "delivery.json").read_text())
    assert record["sent"] is False and record["attempts"] == 3
    transitions = engine.evaluate(submitted, now[0])
    firing = {(t.alert.labels["client"], t.alert.labels["report"]) for t in transitions if t.state == "firing"}
    assert ("acme", "daily") in firing
    [alert] = [a for a in engine.firing() if (a.labels["client"], a.labels["report"]) == ("acme", "daily")]
    assert alert.severity == "major" and "not delivered after 3 attempts" in alert.summary
    # the server comes back: the next retry goes through and resolves the alert
    smtp.start()
    submitted.clear()
    now[0] = lab_day._at(8, 0, NEXT_DAY)
    await scheduler.tick()
    assert len(smtp.mailbox.messages) == 4
    transitions = engine.evaluate(submitted, now[0])
    assert ("acme", "daily") in {(t.alert.labels["client"], t.alert.labels["report"]) for t in transitions
                                 if t.state == "resolved"}
    engine.close()


def lab_with_retries(lab, tmp_path):
    from tests.report.conftest import make_lab

    return make_lab(tmp_path, lab.config.agent.smtp.ca_bundle, lab.config.agent.smtp.port, retries=2,
                    retry_interval_s=600)


async def test_the_agent_runs_the_scheduler_for_the_clients_that_enable_reports(lab, caplog) -> None:
    from agent.runner import Agent

    caplog.set_level("INFO", logger="agent.report.service")
    agent = Agent(lab.config, clock=lambda: lab_day._at(7, 0, NEXT_DAY))
    await agent.start()
    try:
        assert "reports: acme at 07:30 Europe/Paris, beta at 07:30 Europe/Paris" in caplog.messages
        assert {task.get_name() for task in agent.services._periodic} >= {"vigie-service-reports"}
    finally:
        await agent.stop()
