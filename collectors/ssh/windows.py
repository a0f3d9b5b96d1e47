"""The Windows server collector (``windows``): a domain controller, file, print, DNS or DHCP
server over Windows OpenSSH, each check one PowerShell script answering JSON
(collectors.ssh.powershell). Essential services running, disk free %, pending reboot, age of the
last installed update, AD replication failures (domain controllers), time skew against the PDC,
and the System / Application event logs' errors (issue 11 sends event checks through here).

Measurements ``windows_*`` (docs/METRICS.md, "SSH hosts"); the options in docs/CONFIGURATION.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import partial
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from agent.api import CollectorContext, PluginSpec, Rule
from collectors.ssh import powershell as ps
from collectors.ssh.client import Result
from collectors.ssh.host import (
    STRICT,
    Check,
    Row,
    SshCredentials,
    SshHostCollector,
    SshOptions,
    Unparsable,
    host_key_rule,
)

__all__ = ["PLUGIN", "WindowsCollector", "WindowsOptions", "default_rules", "disk_check"]

SERVICE, DISK, REBOOT, UPDATE = "windows_service", "windows_disk", "windows_reboot", "windows_update"
AD_REPLICATION, TIME, EVENTLOG, EVENT = "windows_ad_replication", "windows_time", "windows_eventlog", "windows_event"

# The roles' services the agency's and the public body's servers run; one not installed on a
# server is reported present=false, not as stopped.
ESSENTIAL_SERVICES = ("NTDS", "DNS", "DHCPServer", "Netlogon", "Spooler", "LanmanServer")
# System.ServiceProcess.ServiceControllerStatus and ServiceStartMode, as 5.1 emits them (numbers)
SERVICE_STATUS = {1: "Stopped", 2: "StartPending", 3: "StopPending", 4: "Running", 5: "ContinuePending",
                  6: "PausePending", 7: "Paused"}
START_MODE = {0: "Boot", 1: "System", 2: "Automatic", 3: "Manual", 4: "Disabled"}
LEVELS = {1: "critical", 2: "error"}  # Get-WinEvent's Level; 3 (warning) counts for watched events only
SHELLS = {"powershell": "powershell.exe", "pwsh": "pwsh.exe"}

ServiceName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.$-]{1,80}$")]
LogName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9 _./-]{1,120}$")]
HostName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,253}$")]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]


class WatchedEvent(BaseModel):
    """Events of one source (and ids) in one log, counted over the window: critical, error, warning."""

    model_config = STRICT

    name: Slug  # the sample's `watch` tag, what a rule matches on
    log: LogName = "System"
    source: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9 _.()/-]{1,200}$")]
    ids: list[Annotated[int, Field(ge=0, le=65535)]] = []  # empty: every id of the source


class EventOptions(BaseModel):
    model_config = STRICT

    window_s: Annotated[int, Field(ge=60, le=7 * 86400)] = 3600  # the poll looks this far back
    logs: list[LogName] = ["System", "Application"]  # critical and error counts per log
    watch: list[WatchedEvent] = []


class WindowsOptions(SshOptions):
    essential_services: list[ServiceName] = list(ESSENTIAL_SERVICES)
    services: list[ServiceName] = []  # this server's own, watched besides the essential ones
    disks: bool = True
    pending_reboot: bool = True
    updates: bool = True
    ad_replication: bool = False  # a domain controller: Get-ADReplicationFailure (RSAT AD module)
    time_source: HostName | None = None  # the PDC emulator to measure the skew against; None: the domain's
    time_skew: bool = True
    events: EventOptions | None = EventOptions()
    shell: Literal["powershell", "pwsh"] = "powershell"  # pwsh: PowerShell 7, where it is installed


def _quoted(values: Sequence[str]) -> str:
    return ",".join(f"'{value}'" for value in values)  # names are checked to hold no quote


def disk_check(measurement: str) -> Check:
    """Fixed disks' space (Win32_LogicalDisk, DriveType 3), for Windows and Hyper-V hosts alike."""
    script = ("ConvertTo-Json -Compress -InputObject @(Get-CimInstance Win32_LogicalDisk -Filter 'DriveType=3' "
              "| Select-Object DeviceID, VolumeName, FileSystem, Size, FreeSpace)")

    def parse(result: Result) -> list[Row]:
        rows: list[Row] = []
        for disk in ps.objects(result.stdout):
            drive = ps.text(disk.get("DeviceID"))
            if drive is None:
                raise Unparsable("a disk without DeviceID")
            size, free = ps.integer(disk.get("Size"), "Size"), ps.integer(disk.get("FreeSpace"), "FreeSpace")
            rows.append((measurement, {
                "volume_name": ps.text(disk.get("VolumeName")), "file_system": ps.text(disk.get("FileSystem")),
                "size_bytes": size, "free_bytes": free,
                "free_percent": round(100 * free / size, 2) if size and free is not None else None,
            }, {"drive": drive}))
        return rows

    return Check("Get-CimInstance Win32_LogicalDisk", ps.command(script), parse)


def parse_services(names: Sequence[str]) -> Callable[[Result], list[Row]]:
    def parse(result: Result) -> list[Row]:
        found = {}
        for service in ps.objects(result.stdout):
            name = ps.text(service.get("Name"))
            if name is None:
                raise Unparsable("a service without Name")
            found[name.lower()] = service
        rows: list[Row] = []
        for name in names:
            service = found.get(name.lower())
            state = ps.enum(service.get("Status"), SERVICE_STATUS, "Status") if service else None
            rows.append((SERVICE, {
                "present": service is not None, "state": state,
                "running": None if service is None else state == "Running",
                "start_type": ps.enum(service.get("StartType"), START_MODE, "StartType") if service else None,
                "display_name": ps.text(service.get("DisplayName")) if service else None,
            }, {"service": name}))
        return rows

    return parse


def parse_reboot(result: Result) -> list[Row]:
    item = ps.single(result.stdout, "{Reasons}")
    if not isinstance(item.get("Reasons"), list):
        raise Unparsable("expected {Reasons: [...]}")
    reasons = [str(r) for r in item["Reasons"]]
    return [(REBOOT, {"pending": bool(reasons), "reasons": ", ".join(reasons) or None}, {})]


def parse_updates(clock: Callable[[], float]) -> Callable[[Result], list[Row]]:
    def parse(result: Result) -> list[Row]:
        items = ps.objects(result.stdout)
        if not items:  # a server no update was ever installed on: the age is unknown, and said so
            return [(UPDATE, {"last_install_age_days": None, "last_hotfix": None, "last_install": None}, {})]
        installed = ps.timestamp(items[0].get("InstalledOn"), "InstalledOn")
        return [(UPDATE, {
            "last_install_age_days": None if installed is None else round((clock() - installed) / 86400, 2),
            "last_hotfix": ps.text(items[0].get("HotFixID")),
            "last_install": ps.text(items[0].get("InstalledOn")),
        }, {})]

    return parse


def parse_ad_replication(clock: Callable[[], float]) -> Callable[[Result], list[Row]]:
    def parse(result: Result) -> list[Row]:
        failing = []
        for failure in ps.objects(result.stdout):
            count = ps.integer(failure.get("FailureCount"), "FailureCount")
            if count:
                failing.append((failure, count))
        first = [ps.timestamp(f.get("FirstFailureTime"), "FirstFailureTime") for f, _ in failing]
        oldest = min((t for t in first if t is not None), default=None)
        return [(AD_REPLICATION, {
            "failing_partners": len(failing),
            "failures": sum(count for _, count in failing),
            "partners": ", ".join(sorted(str(f.get("Partner")) for f, _ in failing)) or None,
            "last_error": ps.integer(failing[0][0].get("LastError"), "LastError") if failing else None,
            "failing_for_s": None if oldest is None else round(clock() - oldest, 1),
        }, {})]

    return parse


_OFFSET = re.compile(r",\s*([+-]\d+[.,]\d+)s\s*$")
_W32TM_ERROR = re.compile(r",\s*error:\s*(0x[0-9A-Fa-f]+)")


def parse_time(result: Result) -> list[Row]:
    """``w32tm /stripchart /computer:PDC /samples:1 /dataonly``'s last line: ``09:00:00, +00.0123456s``
    (a comma for the decimal point on a French server), or ``09:00:00, error: 0x800705B4``."""
    item = ps.single(result.stdout, "{Source, Output}")
    if not isinstance(item.get("Output"), list):
        raise Unparsable("expected {Source, Output: [...]}")
    source = ps.text(item.get("Source"))
    for line in reversed([str(line) for line in item["Output"]]):
        offset = _OFFSET.search(line)
        if offset:
            skew = float(offset[1].replace(",", "."))
            return [(TIME, {"skew_s": skew, "abs_skew_s": abs(skew), "source": source, "error": None}, {})]
        failed = _W32TM_ERROR.search(line)
        if failed:
            return [(TIME, {"skew_s": None, "abs_skew_s": None, "source": source, "error": failed[1]}, {})]
    raise Unparsable(f"no offset line in w32tm's output ({len(item['Output'])} lines)")


def events_script(options: EventOptions) -> str:
    logs = sorted({*options.logs, *(w.log for w in options.watch)})
    return (
        f"$since = (Get-Date).AddSeconds(-{options.window_s}); "
        f"$ev = @(foreach ($log in @({_quoted(logs)})) {{ try {{ "
        "Get-WinEvent -FilterHashtable @{LogName=$log; Level=1,2,3; StartTime=$since} -ErrorAction Stop } catch { "
        "if ($_.FullyQualifiedErrorId -notmatch 'NoMatchingEventsFound') { throw } } }); "
        "ConvertTo-Json -Compress -InputObject @($ev | Group-Object LogName, ProviderName, Id, Level "
        "| ForEach-Object { "
        "$l = $_.Group | Sort-Object TimeCreated -Descending | Select-Object -First 1; $m = \"$($l.Message)\"; "
        "[pscustomobject]@{LogName=$l.LogName; ProviderName=$l.ProviderName; Id=$l.Id; Level=[int]$l.Level; "
        "Count=$_.Count; TimeCreated=$l.TimeCreated.ToUniversalTime().ToString('o'); "
        "Message=$m.Substring(0, [Math]::Min(300, $m.Length))} })"
    )


def parse_events(options: EventOptions) -> Callable[[Result], list[Row]]:
    """Groups of (log, source, id, level) -> a count per log and level, and per watched entry."""
    def parse(result: Result) -> list[Row]:
        groups = []
        for group in ps.objects(result.stdout):
            try:
                groups.append((str(group["LogName"]), str(group["ProviderName"]), int(group["Id"]),
                               int(group["Level"]), int(group["Count"]), group))
            except (KeyError, TypeError, ValueError) as exc:
                raise Unparsable(f"an event group without {exc}") from None
        rows: list[Row] = []
        for log in options.logs:
            counts = {level: sum(g[4] for g in groups if g[0].lower() == log.lower() and g[3] == level)
                      for level in LEVELS}
            rows.append((EVENTLOG, {"critical": counts[1], "errors": counts[2], "window_s": options.window_s},
                         {"log": log}))
        for watch in options.watch:
            hits = [g for g in groups if g[0].lower() == watch.log.lower() and g[1].lower() == watch.source.lower()
                    and (not watch.ids or g[2] in watch.ids)]
            latest = max(hits, key=lambda g: ps.timestamp(g[5].get("TimeCreated"), "TimeCreated") or 0, default=None)
            rows.append((EVENT, {
                "count": sum(g[4] for g in hits), "window_s": options.window_s,
                "last_id": latest[2] if latest else None,
                "last_time": ps.text(latest[5].get("TimeCreated")) if latest else None,
                "last_message": ps.text(latest[5].get("Message")) if latest else None,
            }, {"watch": watch.name, "log": watch.log, "source": watch.source}))
        return rows

    return parse


class WindowsCollector(SshHostCollector):
    name = "windows"
    options: WindowsOptions

    def __init__(self, options: WindowsOptions, context: CollectorContext) -> None:
        super().__init__(options, context)
        names = list(dict.fromkeys([*options.essential_services, *options.services]))
        command = partial(ps.command, shell=SHELLS[options.shell])
        checks = []
        if names:
            checks.append(Check("Get-Service", command(
                f"ConvertTo-Json -Compress -InputObject @(Get-Service -Name {_quoted(names)} "
                "-ErrorAction SilentlyContinue | Select-Object Name, DisplayName, Status, StartType)"
            ), parse_services(names)))
        if options.disks:
            checks.append(disk_check(DISK))
        if options.pending_reboot:
            checks.append(Check("pending reboot", command(
                "$r = @(); "
                "if (Test-Path 'HKLM:\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Component Based Servicing"
                "\\RebootPending') { $r += 'ComponentBasedServicing' }; "
                "if (Test-Path 'HKLM:\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\WindowsUpdate\\Auto Update"
                "\\RebootRequired') { $r += 'WindowsUpdate' }; "
                "if ((Get-ItemProperty 'HKLM:\\SYSTEM\\CurrentControlSet\\Control\\Session Manager' "
                "-Name PendingFileRenameOperations -ErrorAction SilentlyContinue).PendingFileRenameOperations) "
                "{ $r += 'PendingFileRenameOperations' }; "
                "ConvertTo-Json -Compress -InputObject ([pscustomobject]@{Reasons = @($r)})"
            ), parse_reboot))
        if options.updates:
            checks.append(Check("Get-HotFix", command(
                "ConvertTo-Json -Compress -InputObject @(Get-HotFix | Where-Object InstalledOn "
                "| Sort-Object InstalledOn -Descending | Select-Object -First 1 HotFixID, "
                "@{n='InstalledOn'; e={$_.InstalledOn.ToUniversalTime().ToString('o')}})"
            ), parse_updates(self.clock)))
        if options.ad_replication:
            checks.append(Check("Get-ADReplicationFailure", command(
                "ConvertTo-Json -Compress -InputObject @(Get-ADReplicationFailure -Target $env:COMPUTERNAME "
                "| Select-Object Server, Partner, FailureCount, FailureType, LastError, "
                "@{n='FirstFailureTime'; e={if ($_.FirstFailureTime) { "
                "$_.FirstFailureTime.ToUniversalTime().ToString('o') }}})"
            ), parse_ad_replication(self.clock)))
        if options.time_skew:
            source = f"'{options.time_source}'" if options.time_source else "(Get-ADDomain).PDCEmulator"
            checks.append(Check("w32tm /stripchart", command(
                f"$pdc = {source}; $out = w32tm /stripchart /computer:$pdc /samples:1 /dataonly; "
                "ConvertTo-Json -Compress -InputObject ([pscustomobject]@{Source = $pdc; Output = @($out)})"
            ), parse_time))
        if options.events is not None:
            checks.append(Check("Get-WinEvent", command(events_script(options.events)), parse_events(options.events)))
        self._checks = tuple(checks)

    def checks(self) -> Sequence[Check]:
        return self._checks


def default_rules() -> list[Rule]:
    return [
        host_key_rule("windows"),
        # a disabled service is stopped on purpose (the Spooler on a domain controller, PrintNightmare)
        Rule(name="windows_service_stopped", measurement=SERVICE, when="running == False and start_type != 'Disabled'",
             for_s=120, severity="major", summary="{device}: service {service} is {state}"),
        Rule(name="windows_disk_full", measurement=DISK, when="free_percent < 10", for_s=300, severity="major",
             summary="{device}: {drive} has {free_percent} % free"),
        Rule(name="windows_disk_low", measurement=DISK, when="free_percent < 20 and free_percent >= 10", for_s=600,
             severity="warning", summary="{device}: {drive} has {free_percent} % free"),
        Rule(name="windows_reboot_pending", measurement=REBOOT, when="pending == True", for_s=7 * 86400,
             severity="warning", summary="{device}: a reboot has been pending for a week ({reasons})"),
        Rule(name="windows_updates_stale", measurement=UPDATE, when="last_install_age_days > 45", for_s=3600,
             severity="minor", summary="{device}: no update installed for {last_install_age_days} days"),
        Rule(name="windows_ad_replication_failing", measurement=AD_REPLICATION, when="failing_partners > 0",
             for_s=900, severity="major",
             summary="{device}: AD replication failing with {partners} (error {last_error})"),
        # Kerberos refuses tickets beyond 5 minutes of skew; warn well before
        Rule(name="windows_time_skew", measurement=TIME, when="abs_skew_s > 60", for_s=600, severity="major",
             summary="{device}: clock {skew_s} s off {source}"),
        Rule(name="windows_event_seen", measurement=EVENT, when="count > 0", for_s=0, severity="warning",
             summary="{device}: {count} events {source} in {log} (last {last_id}: {last_message})"),
    ]


PLUGIN = PluginSpec(
    name="windows",
    kind="collector",
    factory=WindowsCollector,
    options=WindowsOptions,
    credentials=SshCredentials,
    default_rules=default_rules,
    state_fields=frozenset({(SERVICE, "state")}),
    description="Windows servers over SSH/PowerShell: services, disks, pending reboot, updates, AD, time, events",
)

