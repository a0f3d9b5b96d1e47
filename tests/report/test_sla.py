"""`vigie sla` on the simulated lab day (tests/report/lab_day.py), whose timeline is known to the
second: sw-access down 10:00-10:40 and web down from 22:00 (critical device_unreachable, 120 s
pending, ticketed in the built-in log at the minute they fire), fw's turns skipped 14:00-14:30."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agent.config import load_config
from agent.statedir import StateDir
from alerting.sla import daily_samples, sla_day

from .lab_day import DAY, _at, run, write_config

ROOT_DIR = Path(__file__).resolve().parents[2]


def test_the_figures_match_the_injected_timeline_to_the_second(tmp_path: Path) -> None:
    config_path, secrets = write_config(tmp_path, smtp_port=25, ca_bundle=tmp_path / "none.pem")
    config = load_config(config_path, secrets, environ={})
    files = StateDir(tmp_path / "state")
    run(config, files)
    figures = sla_day(files, config.client("acme"), DAY, _at(12, 0) + 86400)
    # both critical alerts ticketed 120 s after their first failing sample: within 5 minutes
    assert (figures.critical_alerts, figures.ticketed_within_5min, figures.without_ticket) == (2, 2, 0)
    assert (figures.p50_onset_to_ticket_s, figures.p99_onset_to_ticket_s) == (120.0, 120.0)
    # taken in charge (read back from the log): sw-access at 10:04:30, 270 s after 10:00, within 5 min;
    # web at 22:06:10, 370 s after 22:00, not within
    assert (figures.taken_within_5min, figures.not_taken, figures.taken_within_5min_pct) == (1, 0, 50.0)
    assert (figures.p50_onset_to_taken_s, figures.p99_onset_to_taken_s) == (270.0, 370.0)
    # sw-access restored at 10:40 after going down at 10:00, inside Monday's service hours: 40 min
    (restore,) = [r for r in figures.restores if r.rule == "device_unreachable"]
    assert (restore.device, restore.started_at, restore.solved_at) == ("sw-access", _at(10), _at(10, 40))
    assert restore.service_s == 2400 and restore.gtr_s == 4 * 3600 and restore.within_gtr
    by_device = {a.device: a for a in figures.availability}
    # 40 min down in the 10 h of service hours (08:00-18:00): 93.33 %; fw's skipped turns are unknown
    assert round(by_device["sw-access"].service_hours_pct, 2) == 93.33
    assert by_device["fw"].day_pct == 100.0 and by_device["fw"].unknown_pct > 2
    assert figures.services_below_target == 2  # sw-access and web
    (sample,) = daily_samples(figures, int(_at(23, 59) * 1e9))
    assert sample.measurement == "sla_daily" and sample.fields["within_5min_pct"] == 100.0
    assert (sample.fields["taken_within_5min"], sample.fields["taken_within_5min_pct"]) == (1, 50.0)
    assert (sample.fields["p50_onset_to_taken_s"], sample.fields["p99_onset_to_taken_s"]) == (270.0, 370.0)

    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "sla", "--config", str(config_path), "--secrets", str(secrets),
         "--client", "acme", "--since", DAY.isoformat(), "--until", DAY.isoformat(), "--json"],
        capture_output=True, text=True, cwd=ROOT_DIR, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    (day,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert day["day"] == DAY.isoformat() and day["within_5min_pct"] == 100.0
    assert (day["taken_within_5min_pct"], day["p50_onset_to_taken_s"], day["p99_onset_to_taken_s"]) == (50.0, 270, 370)
    assert day["restores_within_gtr"] == len(figures.restores)
    table = subprocess.run(
        [sys.executable, "-m", "agent.cli", "sla", "--config", str(config_path), "--secrets", str(secrets),
         "--client", "acme", "--since", DAY.isoformat(), "--until", DAY.isoformat()],
        capture_output=True, text=True, cwd=ROOT_DIR, timeout=120,
    )
    assert "below 99%: sw-access (tcp) service hours 93.33%" in table.stdout, table.stdout
    (line,) = [row for row in table.stdout.splitlines() if row.startswith(DAY.isoformat())]
    assert line.split()[1:8] == ["2", "50.0%", "270s", "370s", "100.0%", "120s", "120s"], table.stdout


async def test_the_agent_emits_each_day_once_when_it_is_over(tmp_path: Path) -> None:
    import asyncio

    from alerting.sla import DailySla

    config_path, secrets = write_config(tmp_path, smtp_port=25, ca_bundle=tmp_path / "none.pem")
    config = load_config(config_path, secrets, environ={})
    files = StateDir(tmp_path / "state")
    await asyncio.to_thread(run, config, files)
    submitted: list = []

    async def submit(samples) -> None:
        submitted.extend(samples)

    now = [_at(0, 30) + 86400]  # half past midnight, the next day
    daily = DailySla(list(config.clients), files, lambda: now[0], submit)
    await daily.tick()
    await daily.tick()  # the same day again: nothing more
    assert sorted(s.tags["client"] for s in submitted) == ["acme", "beta"]
    (acme,) = [s for s in submitted if s.tags["client"] == "acme"]
    assert acme.fields["critical_alerts"] == 2 and acme.timestamp_ns == int(_at(0) * 1e9) + 86400 * 10**9 - 1
