"""The ticket of an alert says what changed on its device and its parents in the hour before: a
reboot (sysUpTime), a configuration change, a failover, a maintenance window just ended."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from agent.api import Alert, Sample
from agent.api.ticket_text import ticket_body
from agent.correlation import Correlator
from agent.maintenance import MaintenanceCalendar, MaintenanceWindow
from agent.state import STATE_FIELDS, StateDB, tz_by_client

from .helpers import T0

PARIS = ZoneInfo("Europe/Paris")


def _at(seconds_before: float) -> int:
    return int((T0 - seconds_before) * 1e9)


def test_a_reboot_a_config_change_a_failover_and_a_maintenance_end_are_named(tmp_path) -> None:
    state = StateDB(tmp_path / "state.sqlite", tz_for=tz_by_client({"vsgp": "Europe/Paris"}),
                    state_fields=STATE_FIELDS | {("snmp_ha", "state")})
    base = {"client": "vsgp", "site": "hdv"}
    state.update([
        # the access switch rebooted 20 minutes ago; its parent was reconfigured 35 minutes ago
        Sample("snmp_system", {**base, "device": "sw-acc"}, {"uptime_s": 1200.0}, _at(0)),
        Sample("cisco_cli_config", {**base, "device": "sw-dist"}, {"changed": True, "changed_by": "jdupont"},
               _at(35 * 60)),
        # the firewall above it failed over 50 minutes ago
        Sample("snmp_ha", {**base, "device": "fw"}, {"state": "primary"}, _at(3 * 3600)),
        Sample("snmp_ha", {**base, "device": "fw"}, {"state": "auxiliary"}, _at(50 * 60)),
        Sample("collection", {**base, "device": "sw-dist", "collector": "snmp"}, {"status": "ok"}, _at(0)),
        # an old reboot is not news
        Sample("snmp_system", {**base, "device": "fw"}, {"uptime_s": 9 * 86400.0}, _at(0)),
    ], int(T0 * 1e9))
    ended = datetime.fromtimestamp(T0 - 10 * 60, PARIS)
    window = MaintenanceWindow(name="firmware", client="vsgp", devices=["sw-dist"],
                               start=datetime.fromtimestamp(T0 - 7200, PARIS), end=ended)
    parents = {("vsgp", "sw-acc"): "sw-dist", ("vsgp", "sw-dist"): "fw"}
    correlator = Correlator(state, MaintenanceCalendar([window], {"vsgp": PARIS}), lambda: parents)
    alert = Alert("0" * 16, "interface_down", {**base, "device": "sw-acc"}, "major", "sw-acc Gi1/0/1 down",
                  "firing", started_at=T0 - 30, fired_at=T0)
    lines = correlator.lines(alert, T0, "fr")
    assert lines == [
        "Changements de la dernière heure (équipement et parents) :",
        "- fw : bascule de snmp_ha (auxiliary) il y a 50 min",
        "- sw-dist : configuration modifiée il y a 35 min par jdupont",
        "- sw-acc a redémarré il y a 20 min (sysUpTime)",
        "- sw-dist : fin de la maintenance firmware il y a 10 min",
    ]
    alert.context = lines
    assert "- sw-dist : configuration modifiée il y a 35 min par jdupont" in ticket_body(alert)
    # nothing changed on an unrelated device: no section
    quiet = Alert("1" * 16, "cpu_high", {**base, "device": "srv-9"}, "warning", "cpu", "firing", started_at=T0)
    assert correlator.lines(quiet, T0, "en") == []
