"""A simulated day of a small estate, written through the agent's real consumers on a driven clock:
the rollups (StateDB, as the agent's state lane), the alert engine with the config's rules (as the
alert lane: turns not run are not fed to it) and the ticket dispatcher with the built-in log
receiver. One sample round a minute, 30 days of capacity history before it.

The day of client `acme` (Europe/Paris), on the local date ``DAY``:
- sw-access does not answer 10:00-10:40 (device_unreachable, critical: ticketed, then solved);
- fw's turns are skipped 14:00-14:30 (the agent was behind: unknown, never down);
- web does not answer from 22:00 on (its ticket is still open when the report is made);
- the NOC takes sw-access's ticket in charge at 10:04:30 (270 s after its onset: within 5 minutes)
  and web's at 22:06:10 (370 s: not within), with `vigie tickets take` (TicketLog.take); the
  read-back worker copies each into the outbox at the next round;
- backups: one job failed, one warning, one success, one without a success within its 26 h
  (missing), one disabled (left out);
- capacity grows a point a day on the datastore and the backup repository;
- a certificate expires in 12 days; M365: one incident open, one resolved that day, one closed
  days before; a configuration change on sw-core at 16:12 (its 4th archived version).
Client `beta` has one device and nothing else: its sections say "not supervised".
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.api import Sample
from agent.config import Config
from agent.runner import rules_by_client
from agent.scheduler import NOT_RUN_STATUSES
from agent.state import STATE_FIELDS, StateDB, tz_by_client
from agent.statedir import StateDir
from alerting.acknowledgement import TakeoverReader
from alerting.engine import AlertEngine
from alerting.notifier import TicketDispatcher
from alerting.ticketing.log import TicketLog

DAY = dt.date(2026, 11, 30)  # a Monday
ZONE = ZoneInfo("Europe/Paris")
STEP_S = 60
HISTORY_DAYS = 30

CONFIG = """
agent:
  state_dir: {state_dir}
  smtp:
    host: 127.0.0.1
    port: {smtp_port}
    sender: vigie@noc.example.org
    username: vigie
    password: {{secret: smtp-password}}
    ca_bundle: {ca_bundle}
    retries: {retries}
    retry_interval_s: {retry_interval_s}
    timeout_s: 5
clients:
  - name: acme
    display_name: Agence ACME
    report: {{enabled: true, recipients: [dsi@acme.example.org], time: "07:30"}}
    sites:
      - name: siege
        devices:
          - {{name: sw-core, address: 127.0.0.1, collectors: {{tcp: {{ports: [9]}}}}}}
          - {{name: sw-access, address: 127.0.0.1, parent: sw-core, collectors: {{tcp: {{ports: [9]}}}}}}
          - {{name: fw, address: 127.0.0.1, collectors: {{tcp: {{ports: [9]}}}}}}
          - {{name: srv-files, address: 127.0.0.1, collectors: {{tcp: {{ports: [9]}}}}}}
          - {{name: web, address: 127.0.0.1, collectors: {{tcp: {{ports: [9]}}}}}}
          - {{name: veeam, address: 127.0.0.1, collectors: {{tcp: {{ports: [9]}}}}}}
          - {{name: vcenter, address: 127.0.0.1, collectors: {{tcp: {{ports: [9]}}}}}}
  - name: beta
    display_name: Beta Association
    language: en
    report: {{enabled: true, recipients: [it@beta.example.org]}}
    sites:
      - name: office
        devices:
          - {{name: router, address: 127.0.0.1, collectors: {{tcp: {{ports: [9]}}}}}}
"""

DEVICES = {"acme": ("sw-core", "sw-access", "fw", "srv-files", "web", "veeam", "vcenter"), "beta": ("router",)}


def write_config(folder: Path, *, smtp_port: int, ca_bundle: Path, retries: int = 2,
                 retry_interval_s: float = 0.05) -> tuple[Path, Path]:
    config = folder / "estate.yaml"
    config.write_text(CONFIG.format(state_dir=folder / "state", smtp_port=smtp_port, ca_bundle=ca_bundle,
                                    retries=retries, retry_interval_s=retry_interval_s), encoding="utf-8")
    secrets = folder / "secrets.yaml"
    secrets.write_text("smtp-password: s3cret-smtp\n", encoding="utf-8")
    secrets.chmod(0o600)
    return config, secrets


def _at(hour: int, minute: int = 0, day: dt.date = DAY) -> float:
    return dt.datetime.combine(day, dt.time(hour, minute), ZONE).timestamp()


def _tags(client: str, device: str, **more: str) -> dict[str, str]:
    site = "siege" if client == "acme" else "office"
    return {"client": client, "site": site, "device": device, **more}


def _taken(t: float) -> dict[str, float]:
    """The tickets the NOC takes in charge during the round that starts at ``t``: device -> when."""
    takes = {"sw-access": _at(10, 4) + 30, "web": _at(22, 6) + 10}
    return {device: at for device, at in takes.items() if t <= at < t + STEP_S}


def _status(device: str, t: float) -> str:
    if device == "sw-access" and _at(10) <= t < _at(10, 40):
        return "unreachable"
    if device == "fw" and _at(14) <= t < _at(14, 30):
        return "skipped"
    if device == "web" and t >= _at(22):
        return "timeout"
    return "ok"


def _capacity(t: float, days_before: float) -> list[Sample]:
    ns = int(t * 1e9)
    size = 4 * 2**40
    used_pct = 80.0 - days_before * 1.0  # one point a day: 80 % today, full in 20 days
    free_tib = 3.0 + days_before * 0.1  # the repository: a point a day too, 70 % today
    return [
        Sample("vsphere_datastore", _tags("acme", "vcenter", datastore="ds-prod"),
               {"used_pct": used_pct, "capacity_bytes": size, "free_bytes": int(size * (1 - used_pct / 100))}, ns),
        Sample("snmp_storage", _tags("acme", "srv-files", storage="D:"),
               {"usage_percent": 55.0, "total_bytes": 2**40, "used_bytes": int(0.55 * 2**40),
                "free_bytes": int(0.45 * 2**40)}, ns),
        Sample("veeam_repository", _tags("acme", "veeam", repository="repo-nas", repository_type="LinuxHardened"),
               {"capacity_bytes": 10 * 2**40, "free_bytes": int(free_tib * 2**40), "used_pct": 100 - 10 * free_tib,
                "online": True}, ns),
        Sample("m365_license", _tags("acme", "m365", sku="ENTERPRISEPACK"), {"consumed": 180, "prepaid": 200}, ns),
    ]


def _job(ns: int, name: str, result: str, success_age_h: float, disabled: bool = False) -> Sample:
    return Sample("veeam_job", _tags("acme", "veeam", job=name, job_type="Backup"),
                  {"last_result": result, "disabled": disabled, "status": "disabled" if disabled else "inactive",
                   "last_success_age_s": success_age_h * 3600, "max_success_age_s": 26 * 3600.0}, ns)


def _day_facts(t: float) -> list[Sample]:
    ns = int(t * 1e9)
    return [
        _job(ns, "srv-files-daily", "success", 5),
        _job(ns, "sql-nightly", "failed", 30),
        _job(ns, "exchange", "warning", 20),
        _job(ns, "archive-copy", "success", 50),  # beyond its 26 h: missing
        _job(ns, "old-nas", "failed", 900, disabled=True),  # left out
        Sample("tls_certificate", _tags("acme", "web", server_name="intranet.acme.example", port="443"),
               {"expires_in_days": 12.5, "subject": "intranet.acme.example", "issuer": "CN=R11,O=Let's Encrypt,C=US",
                "not_after": "2026-12-13T12:00:00+00:00", "chain_valid": True, "hostname_valid": True}, ns),
        Sample("rdap_domain", _tags("acme", "web", domain="acme.example"), {"expires_in_days": 200.0}, ns),
        Sample("m365_issue", _tags("acme", "m365", issue_id="EX1234", service="Exchange Online",
                                   classification="incident"),
               {"status": "serviceDegradation", "is_resolved": False, "title": "Retards de distribution des messages",
                "last_modified": int(_at(9, 15))}, ns),
        Sample("m365_issue", _tags("acme", "m365", issue_id="TM5678", service="Microsoft Teams",
                                   classification="incident"),
               {"status": "serviceRestored", "is_resolved": True, "title": "Réunions Teams interrompues",
                "last_modified": int(_at(11, 40))}, ns),
        Sample("m365_issue", _tags("acme", "m365", issue_id="SP0001", service="SharePoint Online",
                                   classification="advisory"),  # closed before the day: not shown
               {"status": "serviceRestored", "is_resolved": True, "title": "Lenteurs SharePoint",
                "last_modified": int(_at(11, 0, DAY - dt.timedelta(days=3)))}, ns),
    ]


def _config(t: float) -> Sample:
    """sw-core's configuration archive (collector cisco_cli): 3 versions, a 4th at 16:12."""
    fields: dict = {"changed": False, "versions": 3, "commit": "0a1b2c3d4e5f", "backup_age_s": 60.0}
    if t >= _at(16, 12):
        fields["versions"] = 4
    if t == _at(16, 12):
        fields.update(changed=True, lines_added=3, lines_removed=1, diff="+ vlan 42\n+  name voip\n- vlan 41",
                      changed_at="16:11:40 CET Mon Nov 30 2026", changed_by="admin")
    return Sample("cisco_cli_config", _tags("acme", "sw-core"), fields, int(t * 1e9))


async def simulate(config: Config, files: StateDir, end: float | None = None) -> None:
    """The day (and its history) into ``files``; the clock stops at ``end`` (default 24:00)."""
    files.create()
    clients = [c.name for c in config.clients]
    now = [_at(0, 0, DAY - dt.timedelta(days=HISTORY_DAYS))]
    clock = lambda: now[0]  # noqa: E731 - the driven clock every consumer shares
    state = StateDB(files.state_db, tz_for=tz_by_client({c: "Europe/Paris" for c in clients}),
                    state_fields=STATE_FIELDS)
    engine = AlertEngine(str(files.alerts_db), rules_by_client(config, clients), clock,
                         parents=config.parents(), unreachable_statuses=("unreachable", "timeout"))
    log = TicketLog(str(files.path / "tickets.sqlite"), clock)
    dispatcher = TicketDispatcher(str(files.outbox_db), {c: log for c in clients}, clock, reconcile_interval_s=3600)
    await dispatcher.start(engine.firing)
    takeover = TakeoverReader(files.outbox_db, {c: log for c in clients}, dispatcher.record_taken, clock)
    try:
        for days_before in range(HISTORY_DAYS, 0, -1):
            now[0] = _at(12, 0, DAY - dt.timedelta(days=days_before))
            state.update([*_capacity(now[0], days_before), _config(now[0])], int(now[0] * 1e9))
        t, stop = _at(0), end or _at(0, 0, DAY + dt.timedelta(days=1))
        while t < stop:
            now[0] = t
            ns = int(t * 1e9)
            samples = [
                Sample("collection", _tags(client, device, collector="tcp"),
                       {"status": (status := _status(device, t)), "reachable": None if status == "skipped"
                        else status == "ok", "duration_s": 0.01, "samples": 1}, ns)
                for client, devices in DEVICES.items() for device in devices
            ]
            if t % 3600 == 0:
                samples += _capacity(t, 0) + _day_facts(t)
            if t % 3600 == 0 or t == _at(16, 12):
                samples.append(_config(t))
            state.update(samples, ns)
            observed = [s for s in samples
                        if not (s.measurement == "collection" and s.fields["status"] in NOT_RUN_STATUSES)]
            transitions = engine.evaluate(observed, t)
            if transitions:
                await dispatcher.record(transitions, t)
                await dispatcher.settle()
            for device, at in _taken(t).items():
                (ticket,) = [r for r in log.list(status="open") if f" {device} " in f" {r.title} "]
                log.take(ticket.id, by="noc", at=at)
                await takeover.read_pass()
            t += STEP_S
    finally:
        await dispatcher.stop()
        await log.close()
        engine.close()
        state.close()


def run(config: Config, files: StateDir) -> None:
    asyncio.run(simulate(config, files))
