"""The Windows server collector against the lab's fake Windows OpenSSH server (lab/ssh_hosts.py):
a French Windows Server 2019 domain controller and a member file server, recorded in 5.1 form."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from agent.api import Sample
from alerting.engine import AlertEngine
from collectors.ssh import powershell as ps
from collectors.ssh.client import Result
from collectors.ssh.host import Unparsable
from collectors.ssh.windows import (
    PLUGIN,
    EventOptions,
    parse_ad_replication,
    parse_events,
    parse_services,
    parse_time,
)
from lab.ssh_hosts import HostFaults, Login, SshHostFake, load_recording

from .helpers import T0, build, of, run, status, target

NOW = dt.datetime.fromtimestamp(T0, dt.UTC)
PASSWORD = {"user": "vigie", "password": "lab-fake-win"}
DC_OPTIONS = {"ad_replication": True, "services": ["W32Time", "DFSR"],
              "events": {"watch": [{"name": "time-service", "log": "System", "source": "Microsoft-Windows-Time-Service",
                                    "ids": [129, 134]}]}}


def fake(name: str) -> SshHostFake:
    host = SshHostFake(name, load_recording(name), Login("vigie", password="lab-fake-win"), now=lambda: NOW)
    host.start()
    return host


async def test_a_domain_controller(tmp_path: Path) -> None:
    host = fake("windows-dc")
    try:
        samples = await run(PLUGIN, build(PLUGIN, DC_OPTIONS, tmp_path), target(host.port, PASSWORD))
    finally:
        host.stop()
    assert status(samples)["status"] == "ok", status(samples)
    services = {s.tags["service"]: s.fields for s in of(samples, "windows_service")}
    assert list(services) == ["NTDS", "DNS", "DHCPServer", "Netlogon", "Spooler", "LanmanServer", "W32Time", "DFSR"]
    assert all(s["present"] and s["running"] and s["start_type"] == "Automatic" for s in services.values())
    (disk,) = of(samples, "windows_disk")
    assert disk.tags["drive"] == "C:" and disk.fields["free_percent"] == pytest.approx(48.36, abs=0.01)
    (reboot,) = of(samples, "windows_reboot")
    assert reboot.fields == {"pending": False, "reasons": None}
    (update,) = of(samples, "windows_update")
    assert update.fields["last_hotfix"] == "KB5046615" and update.fields["last_install_age_days"] == 20.0
    (replication,) = of(samples, "windows_ad_replication")
    assert replication.fields["failing_partners"] == 0 and replication.fields["partners"] is None
    (clock,) = of(samples, "windows_time")
    assert clock.fields["skew_s"] == pytest.approx(0.0000213) and clock.fields["source"] == "vm-dc.ofdt.lan"
    logs = {s.tags["log"]: s.fields for s in of(samples, "windows_eventlog")}
    assert logs == {"System": {"critical": 0, "errors": 0, "window_s": 3600},
                    "Application": {"critical": 0, "errors": 0, "window_s": 3600}}
    (watched,) = of(samples, "windows_event")
    assert watched.tags["watch"] == "time-service" and watched.fields["count"] == 1
    assert watched.fields["last_id"] == 129


async def test_a_member_server_without_the_dc_roles_and_a_stopped_spooler(tmp_path: Path) -> None:
    host = fake("windows-member")
    try:
        host.set_faults(HostFaults(stopped_services={"Spooler"}))
        samples = await run(PLUGIN, build(PLUGIN, {"services": ["MSSQL$GFI"], "time_source": "vm-dc.ofdt.lan"},
                                          tmp_path), target(host.port, PASSWORD))
        # Get-ADReplicationFailure asked of a server without the AD module: named, the rest kept
        partial = await run(PLUGIN, build(PLUGIN, {"ad_replication": True}, tmp_path / "2"),
                            target(host.port, PASSWORD))
        scripts = [ps.script_of(command) for command in host.commands]
    finally:
        host.stop()
    services = {s.tags["service"]: s.fields for s in of(samples, "windows_service")}
    assert services["NTDS"] == {"present": False, "state": None, "running": None, "start_type": None,
                                "display_name": None}
    assert services["Spooler"]["state"] == "Stopped" and services["Spooler"]["running"] is False
    assert services["MSSQL$GFI"]["running"] is True
    (reboot,) = of(samples, "windows_reboot")
    assert reboot.fields == {"pending": True, "reasons": "WindowsUpdate"}
    (clock,) = of(samples, "windows_time")
    assert clock.fields["skew_s"] == pytest.approx(-0.0184233) and clock.fields["abs_skew_s"] > 0
    logs = {s.tags["log"]: s.fields for s in of(samples, "windows_eventlog")}
    assert logs["Application"]["errors"] == 1 and logs["System"]["errors"] == 0  # warnings are not counted

    engine = AlertEngine(str(tmp_path / "alerts.db"), PLUGIN.default_rules(), clock=lambda: T0)
    engine.evaluate(samples, T0)
    engine.evaluate(samples, T0 + 121)
    assert [(a.rule, a.labels.get("service")) for a in engine.firing()] == [("windows_service_stopped", "Spooler")]
    engine.close()

    assert status(partial)["status"] == "partial"
    assert status(partial)["error"].startswith("Get-ADReplicationFailure: exit status 1: The term "
                                               "'Get-ADReplicationFailure' is not recognized")
    assert of(partial, "windows_service") and not of(partial, "windows_ad_replication")
    # the skew is measured against the configured source, else the domain's PDC emulator
    w32tm = [script for script in scripts if "w32tm" in script]
    assert "$pdc = 'vm-dc.ofdt.lan';" in w32tm[0] and "$pdc = (Get-ADDomain).PDCEmulator;" in w32tm[1]


def _result(stdout: str) -> Result:
    return Result(0, stdout, "", 0.1)


def test_w32tm_offset_in_either_decimal_form_or_its_error() -> None:
    (row,) = parse_time(_result('{"Source":"dc1","Output":["Tracking dc1 [10.0.0.1:123].","Collecting 1 samples.",'
                                '"The current time is 1/15/2027 9:00:00 AM.","09:00:00, +312.5000000s"]}'))
    assert row[1]["skew_s"] == 312.5
    (row,) = parse_time(_result('{"Source":"dc1","Output":["09:00:00, error: 0x800705B4"]}'))
    assert row[1] == {"skew_s": None, "abs_skew_s": None, "source": "dc1", "error": "0x800705B4"}
    with pytest.raises(Unparsable, match="no offset line"):
        parse_time(_result('{"Source":"dc1","Output":["The following error occurred: access denied"]}'))


def test_event_groups_counted_per_log_and_per_watch() -> None:
    options = EventOptions(logs=["System"], watch=[{"name": "disk", "source": "disk", "ids": [7, 153]}])
    rows = parse_events(options)(_result(
        '[{"LogName":"System","ProviderName":"disk","Id":153,"Level":3,"Count":4,"TimeCreated":"2027-01-15T07:50:00Z",'
        '"Message":"The IO operation at logical block address 0x1 was retried."},'
        '{"LogName":"System","ProviderName":"disk","Id":7,"Level":2,"Count":1,"TimeCreated":"2027-01-15T07:55:00Z",'
        '"Message":"The device has a bad block."},'
        '{"LogName":"System","ProviderName":"Service Control Manager","Id":7031,"Level":1,"Count":2,'
        '"TimeCreated":"2027-01-15T07:40:00Z","Message":"The Print Spooler service terminated unexpectedly."}]'))
    by_measurement = {r[0]: r[1] for r in rows}
    assert by_measurement["windows_eventlog"] == {"critical": 2, "errors": 1, "window_s": 3600}
    assert by_measurement["windows_event"]["count"] == 5 and by_measurement["windows_event"]["last_id"] == 7


def test_ad_replication_failures_summed_per_partner() -> None:
    # Get-ADReplicationFailure's shape (Microsoft.ActiveDirectory.Management.ADReplicationFailure)
    parse = parse_ad_replication(lambda: T0)
    (row,) = parse(_result(
        '[{"Server":"VM-DC.ofdt.lan","Partner":"CN=NTDS Settings,CN=DC2,CN=Servers,CN=Siege,CN=Sites,'
        'CN=Configuration,DC=ofdt,DC=lan","FailureCount":12,"FailureType":0,"LastError":1722,'
        '"FirstFailureTime":"2027-01-15T05:00:00.0000000Z"},'
        '{"Server":"VM-DC.ofdt.lan","Partner":"CN=NTDS Settings,CN=DC3","FailureCount":0,"FailureType":0,'
        '"LastError":0,"FirstFailureTime":null}]'))
    assert row[1]["failing_partners"] == 1 and row[1]["failures"] == 12 and row[1]["last_error"] == 1722
    assert row[1]["failing_for_s"] == 3 * 3600 and row[1]["partners"].startswith("CN=NTDS Settings,CN=DC2")


def test_a_disabled_service_stopped_on_purpose_raises_nothing(tmp_path: Path) -> None:
    rows = parse_services(["Spooler", "Netlogon"])(_result(
        '[{"Name":"Spooler","DisplayName":"Spouleur","Status":1,"StartType":4},'
        '{"Name":"Netlogon","DisplayName":"Netlogon","Status":1,"StartType":2}]'))
    samples = [Sample(m, {"client": "ofdt", "site": "siege", "device": "vm-dc", **tags}, fields, int(T0 * 1e9))
               for m, fields, tags in rows]
    engine = AlertEngine(str(tmp_path / "alerts.db"), PLUGIN.default_rules(), clock=lambda: T0)
    engine.evaluate(samples, T0)
    engine.evaluate(samples, T0 + 121)
    assert [(a.rule, a.labels["service"]) for a in engine.firing()] == [("windows_service_stopped", "Netlogon")]
    engine.close()
