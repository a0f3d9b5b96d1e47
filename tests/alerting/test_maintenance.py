"""Maintenance windows: an alert firing inside one is recorded and opens no ticket; one still
firing when the window ends opens its ticket then; one resolved inside it never opens any. Windows
are one-off or recurring (cron), per client, site, device or tags, in the client's timezone, from
the config or `vigie maintenance add`."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.maintenance import MaintenanceCalendar, MaintenanceWindow, read_added
from alerting.engine import AlertEngine
from alerting.notifier import TicketDispatcher
from alerting.ticketing.log import TicketLog

from .helpers import IF_DOWN, T0, iface

PARIS = ZoneInfo("Europe/Paris")
ROOT = Path(__file__).resolve().parents[2]


def test_windows_select_their_scope_and_open_in_the_client_zone() -> None:
    saturday_night = MaintenanceWindow(name="weekly", client="vsgp", site="hdv", cron="0 22 * * sat",
                                       duration_s=4 * 3600)
    at = datetime(2026, 12, 5, 23, 30, tzinfo=PARIS).timestamp()  # a Saturday, 23:30 in Paris
    labels = {"client": "vsgp", "site": "hdv", "device": "sw-1", "role": "access"}
    assert saturday_night.span_at(at, PARIS) == (datetime(2026, 12, 5, 22, 0, tzinfo=PARIS).timestamp(),
                                                 datetime(2026, 12, 6, 2, 0, tzinfo=PARIS).timestamp())
    assert saturday_night.span_at(datetime(2026, 12, 6, 2, 0, tzinfo=PARIS).timestamp(), PARIS) is None  # end excluded
    assert saturday_night.span_at(datetime(2026, 12, 5, 22, 0, tzinfo=PARIS).timestamp(), PARIS) is not None
    assert saturday_night.selects(labels) and not saturday_night.selects({**labels, "site": "other"})
    access = MaintenanceWindow(name="access", client="vsgp", match={"role": "access"},
                               start=datetime(2026, 12, 5, 22, 0), end=datetime(2026, 12, 5, 23, 0))
    assert access.selects(labels) and not access.selects({**labels, "role": "core"})
    assert access.span_at(datetime(2026, 12, 5, 22, 30, tzinfo=PARIS).timestamp(), PARIS) is not None
    with pytest.raises(ValueError, match="cron expression"):
        MaintenanceWindow(name="bad", cron="every saturday", duration_s=60)
    with pytest.raises(ValueError, match="start and end"):
        MaintenanceWindow(name="both", cron="0 22 * * sat", duration_s=60, start=datetime(2026, 1, 1))


async def test_no_ticket_inside_the_window_one_at_its_end_none_if_resolved_inside(tmp_path, clock) -> None:
    start, end = T0 - 10, T0 + 600
    window = MaintenanceWindow(name="firmware", client="vsgp", devices=["sw-core-1", "sw-core-2"],
                               start=datetime.fromtimestamp(start, PARIS), end=datetime.fromtimestamp(end, PARIS))
    calendar = MaintenanceCalendar([window], {"vsgp": PARIS})

    def in_maintenance(alert, at):
        covered = calendar.covering(alert.labels, at)
        return None if covered is None else (covered[0].name, covered[1])

    log = TicketLog(str(tmp_path / "log.sqlite"), clock=clock)
    engine = AlertEngine(str(tmp_path / "alerts.sqlite"), [IF_DOWN], clock=clock)
    disp = TicketDispatcher(str(tmp_path / "links.sqlite"), {"vsgp": log}, clock=clock, in_maintenance=in_maintenance)
    await disp.start(engine.firing)
    try:
        # sw-core-1 goes down for good, sw-core-2 flaps back before the window ends
        for device in ("sw-core-1", "sw-core-2"):
            engine.evaluate([iface(T0, "down", device=device)], now=T0)
            clock.t = T0 + 60
            await disp.record(engine.evaluate([iface(T0 + 60, "down", device=device)], now=T0 + 60))
        await disp.settle()
        assert log.list() == []  # recorded, not ticketed
        assert [link.state for link in disp.links()] == ["maintenance", "maintenance"]
        clock.t = T0 + 300
        await disp.record(engine.evaluate([iface(T0 + 300, "up", device="sw-core-2")], now=T0 + 300))
        await disp.reconcile()
        await disp.settle()
        assert log.list() == []
        # the window ends with sw-core-1 still down: its ticket opens then, and only its
        clock.t = end + 1
        await disp.reconcile()
        res = await disp.settle()
        (ticket,) = log.list()
        assert "sw-core-1" in ticket.title and [link.state for link in res.opened] == ["open"]
        assert sorted(link.state for link in disp.links()) == ["cancelled", "open"]
    finally:
        await disp.stop()


def test_vigie_maintenance_add_list_remove(tmp_path) -> None:
    config = tmp_path / "vigie.yaml"
    config.write_text(f"""
agent: {{state_dir: {tmp_path / 'state'}}}
clients:
  - name: ofdt
    display_name: OFDT
    maintenance:
      - {{name: patch-tuesday, cron: "0 20 * * tue", duration_s: 7200, reason: Windows updates}}
    sites:
      - name: siege
        devices:
          - {{name: sw-1, address: 127.0.0.1}}
""")
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text("{}\n")
    secrets.chmod(0o600)

    def vigie(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agent.cli", "maintenance", *args, "--config", str(config),
                               "--secrets", str(secrets)], capture_output=True, text=True, cwd=ROOT, timeout=60)

    added = vigie("add", "--client", "ofdt", "--name", "swap-sw1", "--device", "sw-1", "--for", "2h",
                  "--reason", "switch replaced")
    assert added.returncode == 0, added.stderr
    assert "swap-sw1: ofdt devices sw-1" in added.stdout and "OPEN until" in added.stdout
    (window,) = read_added(tmp_path / "state" / "maintenance.json")
    assert window.end - window.start == (datetime(2026, 1, 1, 2) - datetime(2026, 1, 1))
    listed = vigie("list")
    assert "[config] patch-tuesday: ofdt, cron '0 20 * * tue' for 7200 s" in listed.stdout
    assert "[added] swap-sw1" in listed.stdout
    refused = vigie("add", "--client", "ofdt", "--name", "x", "--device", "sw-9", "--start", "2026-12-05 22:00",
                    "--end", "2026-12-05 21:00")
    assert refused.returncode == 64
    assert "--device sw-9: no such device of ofdt" in refused.stderr and "end after it" in refused.stderr
    assert vigie("remove", "--client", "ofdt", "--name", "patch-tuesday").returncode == 64  # configured
    assert vigie("remove", "--client", "ofdt", "--name", "swap-sw1").returncode == 0
    assert read_added(tmp_path / "state" / "maintenance.json") == []
