"""The Hyper-V host collector (``hyperv``): a standalone Hyper-V host (no cluster) over Windows
OpenSSH, PowerShell answering JSON (collectors.ssh.powershell): Get-VMHost, Get-VM,
Get-VMReplication and the host's fixed disks.

Enums are read by name or number (/work/shared/contracts/hyperv.md): a VM's State goes out as its
name (``"$($_.State)"``), because VMState's numbers above 32782 moved between Windows releases;
the others as PowerShell emits them. The login must be a local administrator or in "Hyper-V
Administrators"; otherwise Get-VM answers "You do not have the required permission...", which the
run reports naming the cmdlet. Measurements ``hyperv_*`` (docs/METRICS.md, "SSH hosts").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Literal

from agent.api import CollectorContext, PluginSpec, Rule
from collectors.ssh import powershell as ps
from collectors.ssh.client import Result
from collectors.ssh.host import Check, Row, SshCredentials, SshHostCollector, SshOptions, Unparsable, host_key_rule
from collectors.ssh.windows import SHELLS, disk_check

__all__ = ["PLUGIN", "HypervCollector", "HypervOptions", "default_rules"]

HOST, VM, REPLICATION, DISK = "hyperv_host", "hyperv_vm", "hyperv_replication", "hyperv_disk"

# Microsoft.HyperV.PowerShell enums (the contract's tables, current Windows numbering)
VM_STATE = {
    1: "Other", 2: "Running", 3: "Off", 4: "Stopping", 6: "Saved", 9: "Paused", 10: "Starting", 11: "Reset",
    32773: "Saving", 32776: "Pausing", 32777: "Resuming", 32779: "FastSaved", 32780: "FastSaving",
    32781: "ForceShutdown", 32782: "ForceReboot", 32783: "Hibernated", 32784: "ComponentServicing",
    32785: "RunningCritical", 32786: "OffCritical", 32787: "StoppingCritical", 32788: "SavedCritical",
    32789: "PausedCritical", 32790: "StartingCritical", 32791: "ResetCritical", 32792: "SavingCritical",
    32793: "PausingCritical", 32794: "ResumingCritical", 32795: "FastSavedCritical", 32796: "FastSavingCritical",
}
HEARTBEAT = {0: "Unknown", 1: "Disabled", 2: "NoContact", 3: "Error", 4: "LostCommunication",
             5: "OkApplicationsUnknown", 6: "OkApplicationsHealthy", 7: "OkApplicationsCritical", 8: "Paused"}
HEARTBEAT_OK = {"OkApplicationsUnknown": True, "OkApplicationsHealthy": True, "OkApplicationsCritical": False,
                "NoContact": False, "Error": False, "LostCommunication": False}  # others: not a verdict
REPLICATION_HEALTH = {0: "NotApplicable", 1: "Normal", 2: "Warning", 3: "Critical"}
REPLICATION_MODE = {0: "None", 1: "Primary", 2: "Replica", 3: "TestReplica", 4: "ExtendedReplica"}
REPLICATION_STATE = dict(enumerate((
    "Disabled", "ReadyForInitialReplication", "InitialReplicationInProgress", "WaitingForInitialReplication",
    "Replicating", "PreparedForFailover", "FailedOverWaitingCompletion", "FailedOver", "Suspended", "Error",
    "WaitingForStartResynchronize", "Resynchronizing", "ResynchronizeSuspended", "RecoveryInProgress",
    "FailbackInProgress", "FailbackComplete", "WaitingForUpdateCompletion", "UpdateError",
    "WaitingForRepurposeCompletion", "PreparedForSyncReplication", "PreparedForGroupReverseReplication",
    "FiredrillInProgress",
)))

GET_VMHOST = (
    "$h = Get-VMHost; $os = Get-CimInstance Win32_OperatingSystem; "
    "ConvertTo-Json -Compress -InputObject ([pscustomobject]@{Name = $h.Name; "
    "LogicalProcessorCount = $h.LogicalProcessorCount; MemoryCapacity = $h.MemoryCapacity; "
    "FreePhysicalMemory = $os.FreePhysicalMemory})"
)
GET_VM = (
    "ConvertTo-Json -Compress -Depth 3 -InputObject @(Get-VM | Select-Object Name, "
    "@{n='VMId'; e={\"$($_.VMId)\"}}, @{n='State'; e={\"$($_.State)\"}}, Status, Uptime, CPUUsage, "
    "MemoryAssigned, MemoryDemand, Heartbeat, ReplicationHealth, ReplicationState, ReplicationMode)"
)
GET_VMREPLICATION = (
    "ConvertTo-Json -Compress -InputObject @(Get-VMReplication | Select-Object VMName, ReplicationState, "
    "ReplicationHealth, ReplicationMode, PrimaryServerName, ReplicaServerName, ReplicationFrequencySec, "
    "LastReplicationTime)"
)


class HypervOptions(SshOptions):
    # a VM named as an inventory device of the client: its hyperv_vm and hyperv_replication samples
    # go to that device, as vSphere's do. Off by default: a VM that stops is unreachable too, and an
    # unreachable device holds its own alerts, so "VM saved" would hide behind "device unreachable"
    vm_devices: bool = False
    replication: bool = True
    disks: bool = True
    shell: Literal["powershell", "pwsh"] = "powershell"


def parse_vmhost(result: Result) -> list[Row]:
    host = ps.single(result.stdout, "host")
    free_kb = ps.integer(host.get("FreePhysicalMemory"), "FreePhysicalMemory")
    return [(HOST, {
        "name": ps.text(host.get("Name")),
        "logical_processors": ps.integer(host.get("LogicalProcessorCount"), "LogicalProcessorCount"),
        "memory_capacity_bytes": ps.integer(host.get("MemoryCapacity"), "MemoryCapacity"),
        "memory_free_bytes": None if free_kb is None else free_kb * 1024,
    }, {})]


def parse_vms(result: Result) -> list[Row]:
    rows: list[Row] = []
    for vm in ps.objects(result.stdout):
        name = ps.text(vm.get("Name"))
        if name is None:
            raise Unparsable("a VM without Name")
        state = ps.enum(vm.get("State"), VM_STATE, f"{name}: State")
        heartbeat = ps.enum(vm.get("Heartbeat"), HEARTBEAT, f"{name}: Heartbeat")
        uptime = ps.seconds(vm.get("Uptime"), f"{name}: Uptime")
        health = ps.enum(vm.get("ReplicationHealth"), REPLICATION_HEALTH, f"{name}: ReplicationHealth")
        rows.append((VM, {
            "state": state,
            "running": None if state is None else state in ("Running", "RunningCritical"),
            "critical": None if state is None else state.endswith("Critical"),
            "status": ps.text(vm.get("Status")),
            "uptime_s": None if uptime is None else int(uptime),
            "cpu_usage_percent": ps.integer(vm.get("CPUUsage"), f"{name}: CPUUsage"),
            "memory_assigned_bytes": ps.integer(vm.get("MemoryAssigned"), f"{name}: MemoryAssigned"),
            "memory_demand_bytes": ps.integer(vm.get("MemoryDemand"), f"{name}: MemoryDemand"),
            "heartbeat": heartbeat,
            "heartbeat_ok": HEARTBEAT_OK.get(heartbeat or ""),
            "replication_health": health,
            "replication_state": ps.enum(vm.get("ReplicationState"), REPLICATION_STATE, f"{name}: ReplicationState"),
            "replication_mode": ps.enum(vm.get("ReplicationMode"), REPLICATION_MODE, f"{name}: ReplicationMode"),
            "vm_id": ps.text(vm.get("VMId")),
        }, {"vm": name}))
    return rows


def parse_replication(clock: Callable[[], float]) -> Callable[[Result], list[Row]]:
    def parse(result: Result) -> list[Row]:
        rows: list[Row] = []
        for item in ps.objects(result.stdout):
            name = ps.text(item.get("VMName"))
            if name is None:
                raise Unparsable("a replication without VMName")
            last = ps.timestamp(item.get("LastReplicationTime"), f"{name}: LastReplicationTime")
            rows.append((REPLICATION, {
                "state": ps.enum(item.get("ReplicationState"), REPLICATION_STATE, f"{name}: ReplicationState"),
                "health": ps.enum(item.get("ReplicationHealth"), REPLICATION_HEALTH, f"{name}: ReplicationHealth"),
                "mode": ps.enum(item.get("ReplicationMode"), REPLICATION_MODE, f"{name}: ReplicationMode"),
                "primary_server": ps.text(item.get("PrimaryServerName")),
                "replica_server": ps.text(item.get("ReplicaServerName")),
                "frequency_s": ps.integer(item.get("ReplicationFrequencySec"), f"{name}: ReplicationFrequencySec"),
                "last_replication_age_s": None if last is None else round(clock() - last, 1),
            }, {"vm": name}))
        return rows

    return parse


class HypervCollector(SshHostCollector):
    name = "hyperv"
    options: HypervOptions

    def __init__(self, options: HypervOptions, context: CollectorContext) -> None:
        super().__init__(options, context)
        command = partial(ps.command, shell=SHELLS[options.shell])
        piggyback = "vm" if options.vm_devices else None
        checks = [
            Check("Get-VMHost", command(GET_VMHOST), parse_vmhost),
            Check("Get-VM", command(GET_VM), parse_vms, piggyback=piggyback),
        ]
        if options.replication:
            checks.append(Check("Get-VMReplication", command(GET_VMREPLICATION), parse_replication(self.clock),
                                piggyback=piggyback))
        if options.disks:
            checks.append(disk_check(DISK))
        self._checks = tuple(checks)

    def checks(self) -> Sequence[Check]:
        return self._checks


def default_rules() -> list[Rule]:
    return [
        host_key_rule("hyperv"),
        Rule(name="hyperv_vm_critical", measurement=VM, when="critical == True", for_s=60, severity="critical",
             summary="{device}: VM {vm} is {state} ({status})"),
        # a replica VM is Off by design on the replica host
        Rule(name="hyperv_vm_not_running", measurement=VM,
             when="running == False and critical == False and replication_mode != 'Replica'", for_s=300,
             severity="major", summary="{device}: VM {vm} is {state}"),
        Rule(name="hyperv_vm_heartbeat_lost", measurement=VM, when="running == True and heartbeat_ok == False",
             for_s=300, severity="major", summary="{device}: VM {vm} heartbeat {heartbeat}"),
        Rule(name="hyperv_replication_critical", measurement=REPLICATION, when="health == 'Critical'", for_s=300,
             severity="major", summary="{device}: replication of {vm} is Critical ({state})"),
        Rule(name="hyperv_replication_warning", measurement=REPLICATION, when="health == 'Warning'", for_s=3600,
             severity="warning", summary="{device}: replication of {vm} in Warning for an hour ({state})"),
        Rule(name="hyperv_disk_full", measurement=DISK, when="free_percent < 10", for_s=300, severity="major",
             summary="{device}: {drive} has {free_percent} % free"),
    ]


PLUGIN = PluginSpec(
    name="hyperv",
    kind="collector",
    factory=HypervCollector,
    options=HypervOptions,
    credentials=SshCredentials,
    default_rules=default_rules,
    state_fields=frozenset({(VM, "state"), (REPLICATION, "health")}),
    description="Hyper-V hosts over SSH/PowerShell: host, VMs (state, heartbeat, usage), replication, disks",
)
