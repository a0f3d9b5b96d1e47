"""The vsphere collector: a vCenter's hosts, VMs, datastores, clusters and triggered alarms, read
with pyvmomi in one PropertyCollector retrieval per collection (README.md beside this file).

Options: ``port`` (443), ``ca_bundle`` (PEM; default the system's trust store), ``verify_tls``
(true; false only by an explicit option, logged), ``timeout_s`` (per API call), ``page_size``
(objects per RetrievePropertiesEx page), ``device_names`` (vSphere name -> inventory device, when the
names differ beyond a domain suffix). Credentials: the device's secret, ``{username, password}``.

Hosts and VMs that are inventory devices of the client (same name, or the name before the first dot,
as is or lowercased) get their samples piggybacked onto that device; the others, the datastores and clusters are tagged
under the vCenter device. A vCenter alarm is one ``vsphere_alarm`` series per (alarm, entity),
however many parents show it; our own rules on the same object hold it back (inhibition), so one
problem is one alert. Measurements: docs/METRICS.md, section "vSphere".
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from agent.api import (
    CollectError,
    CollectorContext,
    Edge,
    EdgeSource,
    FieldValue,
    PluginSpec,
    Rule,
    Sink,
    Target,
    UnknownDevice,
    Unreachable,
)
from agent.api.rules import Inhibition
from collectors.vsphere.client import (
    Inventory,
    ObjectRow,
    VsphereError,
    VsphereSession,
    VsphereTlsError,
    VsphereUnreachable,
)

__all__ = ["PLUGIN", "VsphereCollector", "VsphereCredentials", "VsphereOptions", "default_rules", "evaluate"]

log = logging.getLogger(__name__)

HOST, VM, DATASTORE, CLUSTER, ALARM, VCENTER = (
    "vsphere_host",
    "vsphere_vm",
    "vsphere_datastore",
    "vsphere_cluster",
    "vsphere_alarm",
    "vsphere_vcenter",
)
SNAPSHOT_WARN_S = 72 * 3600
DATASTORE_WARN_PCT = 85
DATASTORE_CRIT_PCT = 95
MIB = 1024 * 1024
MAX_PROBLEMS = 5  # unreadable properties named one by one in the run's status; the rest counted


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


class VsphereOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    port: Annotated[int, Field(ge=1, le=65535), BeforeValidator(_not_bool)] = 443
    ca_bundle: Path | None = None
    verify_tls: bool = True
    timeout_s: Annotated[float, Field(gt=0, le=300), BeforeValidator(_not_bool)] = 20.0
    page_size: Annotated[int, Field(ge=1, le=10_000), BeforeValidator(_not_bool)] = 500
    device_names: dict[str, Annotated[str, StringConstraints(min_length=1)]] = {}


class VsphereCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    username: Annotated[str, StringConstraints(min_length=1)]
    password: Annotated[str, StringConstraints(min_length=1)]


# ---------------------------------------------------------------------------------------------
# evaluate: rows as read -> samples (pure)


@dataclass(frozen=True)
class Reading:
    """One sample to emit: about ``entity`` (a host or VM name that may be an inventory device,
    None for the vCenter's own objects)."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, Any]
    entity: str | None = None


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any) -> int | None:
    # pyvmomi's `long` and friends are int subclasses: plain ints for the samples
    return None if value is None else int(value)


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _mul(value: Any, factor: int) -> int | None:
    return None if value is None else int(value) * factor


def _pct(used: float | None, capacity: float | None) -> float | None:
    if used is None or not capacity:
        return None
    return round(100.0 * used / capacity, 2)


def _snapshots(info: Any) -> Iterator[Any]:
    stack = list(getattr(info, "rootSnapshotList", None) or ())
    while stack:
        tree = stack.pop()
        yield tree
        stack.extend(tree.childSnapshotList or ())


def _timestamp(value: Any) -> dt.datetime | None:
    if not isinstance(value, dt.datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@dataclass
class Names:
    """MoRef id -> name of the hosts and clusters read, to tag VMs with where they run."""

    hosts: dict[str, str] = field(default_factory=dict)
    host_cluster: dict[str, str] = field(default_factory=dict)  # host MoRef -> cluster name
    clusters: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: list[ObjectRow]) -> Names:
        names = cls()
        for row in rows:
            if row.kind == "cluster":
                names.clusters[row.moid] = str(row.props.get("name", row.moid))
        for row in rows:
            if row.kind == "host":
                names.hosts[row.moid] = str(row.props.get("name", row.moid))
                parent = row.props.get("parent")
                if parent is not None and parent._moId in names.clusters:
                    names.host_cluster[row.moid] = names.clusters[parent._moId]
        return names


def _host(row: ObjectRow, names: Names) -> Reading:
    p = row.props
    name = names.hosts[row.moid]
    cpu_capacity = None
    if p.get("summary.hardware.cpuMhz") is not None and p.get("summary.hardware.numCpuCores") is not None:
        cpu_capacity = int(p["summary.hardware.cpuMhz"]) * int(p["summary.hardware.numCpuCores"])
    memory_used = _mul(p.get("summary.quickStats.overallMemoryUsage"), MIB)
    memory_size = _int(p.get("summary.hardware.memorySize"))
    connected = p.get("runtime.connectionState") == "connected"
    # quickStats of a host vCenter cannot reach are last known values (or absent): not current.
    cpu_used = _int(p.get("summary.quickStats.overallCpuUsage")) if connected else None
    memory_used = memory_used if connected else None
    fields = {
        "connection_state": _str(p.get("runtime.connectionState")),
        "power_state": _str(p.get("runtime.powerState")),
        "overall_status": _str(p.get("overallStatus")),
        "in_maintenance_mode": _bool(p.get("runtime.inMaintenanceMode")),
        "reboot_required": _bool(p.get("summary.rebootRequired")),
        "cpu_usage_mhz": cpu_used,
        "cpu_capacity_mhz": cpu_capacity,
        "cpu_usage_pct": _pct(cpu_used, cpu_capacity),
        "memory_usage_bytes": memory_used,
        "memory_capacity_bytes": memory_size,
        "memory_usage_pct": _pct(memory_used, memory_size),
        "uptime_s": _int(p.get("summary.quickStats.uptime")) if connected else None,
    }
    tags = {"entity": name, "host": name, "cluster": names.host_cluster.get(row.moid)}
    return Reading(HOST, {k: v for k, v in tags.items() if v}, fields, entity=name)


def _vm(row: ObjectRow, names: Names, now: dt.datetime) -> Reading:
    p = row.props
    name = str(p.get("name", row.moid))
    host_ref = p.get("runtime.host")
    host_moid = host_ref._moId if host_ref is not None else None
    trees = list(_snapshots(p.get("snapshot")))
    times = [t for t in (_timestamp(tree.createTime) for tree in trees) if t is not None]
    fields = {
        "power_state": _str(p.get("runtime.powerState")),
        "connection_state": _str(p.get("runtime.connectionState")),
        "overall_status": _str(p.get("overallStatus")),
        "guest_heartbeat": _str(p.get("guestHeartbeatStatus")),
        "tools_running_status": _str(p.get("guest.toolsRunningStatus")),
        "tools_status": _str(p.get("guest.toolsStatus")),
        "consolidation_needed": _bool(p.get("runtime.consolidationNeeded")),
        "num_cpu": _int(p.get("summary.config.numCpu")),
        "memory_size_bytes": _mul(p.get("summary.config.memorySizeMB"), MIB),
        "cpu_usage_mhz": _int(p.get("summary.quickStats.overallCpuUsage")),
        "memory_guest_bytes": _mul(p.get("summary.quickStats.guestMemoryUsage"), MIB),
        "memory_host_bytes": _mul(p.get("summary.quickStats.hostMemoryUsage"), MIB),
        "uptime_s": _int(p.get("summary.quickStats.uptimeSeconds")),
        "snapshot_count": len(trees),
        "snapshot_oldest_age_s": round((now - min(times)).total_seconds(), 1) if times else None,
    }
    tags = {
        "entity": name,
        "vm": name,
        "host": names.hosts.get(host_moid or ""),
        "cluster": names.host_cluster.get(host_moid or ""),
    }
    return Reading(VM, {k: v for k, v in tags.items() if v}, fields, entity=name)


def _datastore(row: ObjectRow) -> Reading:
    p = row.props
    capacity, free = _int(p.get("summary.capacity")), _int(p.get("summary.freeSpace"))
    used = capacity - free if capacity is not None and free is not None else None
    fields = {
        "type": _str(p.get("summary.type")),
        "accessible": _bool(p.get("summary.accessible")),
        "maintenance_mode": _str(p.get("summary.maintenanceMode")),
        "overall_status": _str(p.get("overallStatus")),
        "capacity_bytes": capacity,
        "free_bytes": free,
        "used_pct": _pct(used, capacity),
    }
    name = str(p.get("summary.name", row.moid))
    return Reading(DATASTORE, {"entity": name, "datastore": name}, fields)


def _cluster(row: ObjectRow, names: Names) -> Reading:
    p = row.props
    fields = {
        "overall_status": _str(p.get("overallStatus")),
        "num_hosts": _int(p.get("summary.numHosts")),
        "num_effective_hosts": _int(p.get("summary.numEffectiveHosts")),
    }
    name = names.clusters[row.moid]
    return Reading(CLUSTER, {"entity": name, "cluster": name}, fields)


def _entity_name(row: ObjectRow) -> str:
    return str(row.props.get("summary.name") if row.kind == "datastore" else row.props.get("name", row.moid))


def _alarms(rows: list[ObjectRow], alarm_names: Mapping[str, str], names: Names) -> dict[str, Reading]:
    """AlarmState key -> its reading: an alarm shown on several entities (propagated to parents)
    is one series, on the entity it triggered on."""
    by_moid = {row.moid: row for row in rows}
    out: dict[str, Reading] = {}
    for row in rows:
        for state in row.props.get("triggeredAlarmState") or ():
            if state.key in out:
                continue
            entity_moid = state.entity._moId if state.entity is not None else row.moid
            entity_row = by_moid.get(entity_moid, row)
            entity = _entity_name(entity_row)
            alarm_moid = state.alarm._moId if state.alarm is not None else "?"
            tags = {
                "alarm": alarm_names.get(alarm_moid, alarm_moid),
                "entity": entity,
                "entity_type": entity_row.kind,
                entity_row.kind: entity,  # the object's own tag, as on its samples
            }
            if entity_row.kind == "host" and entity_row.moid in names.host_cluster:
                tags["cluster"] = names.host_cluster[entity_row.moid]
            triggered = _timestamp(state.time)
            fields = {
                "status": _str(state.overallStatus),
                "active": True,
                "acknowledged": bool(state.acknowledged),
                "triggered_at": triggered.isoformat() if triggered else None,
            }
            pushed = entity if entity_row.kind in ("host", "vm") else None
            out[state.key] = Reading(ALARM, tags, fields, entity=pushed)
    return out


def evaluate(inventory: Inventory, now: dt.datetime) -> tuple[list[Reading], dict[str, Reading]]:
    """(the readings of hosts, VMs, datastores and clusters; the alarms by AlarmState key)."""
    names = Names.of(inventory.rows)
    readings: list[Reading] = []
    for row in inventory.rows:
        if row.kind == "host":
            readings.append(_host(row, names))
        elif row.kind == "vm" and not row.props.get("config.template"):
            readings.append(_vm(row, names, now))
        elif row.kind == "datastore":
            readings.append(_datastore(row))
        elif row.kind == "cluster":
            readings.append(_cluster(row, names))
    return readings, _alarms(inventory.rows, inventory.alarm_names, names)


# ---------------------------------------------------------------------------------------------
# the collector


def _ssl_context(options: VsphereOptions) -> ssl.SSLContext:
    if not options.verify_tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        return ssl.create_default_context(cafile=str(options.ca_bundle) if options.ca_bundle else None)
    except (OSError, ssl.SSLError) as exc:
        raise CollectError(f"ca_bundle {options.ca_bundle}: {getattr(exc, 'strerror', None) or exc}") from None


class VsphereCollector:
    def __init__(
        self,
        options: VsphereOptions,
        context: CollectorContext,
        *,
        monotonic: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.options = options
        self.clock = context.clock
        self.monotonic = monotonic
        self.device = context.device
        self.session: VsphereSession | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._alarms_seen: dict[str, Reading] = {}  # active at the last read, to say when they clear
        if not options.verify_tls:
            log.warning("vsphere %s/%s: TLS verification disabled by verify_tls: false", context.client, self.device)

    def _session(self, target: Target) -> VsphereSession:
        username, password = target.credentials.get("username"), target.credentials.get("password")
        if not username or not password:
            raise CollectError(f"{target.name}: the vsphere collector needs credentials {{username, password}}")
        port = target.port or self.options.port
        if self.session is None or (self.session.host, self.session.port) != (target.address, port):
            if self.session is not None:
                self.session.close()
            self.session = VsphereSession(
                target.address,
                port,
                username,
                password,
                _ssl_context(self.options),
                self.options.timeout_s,
                self.options.page_size,
            )
        return self.session

    async def collect(self, target: Target, sink: Sink) -> None:
        session = self._session(target)
        if self._executor is None:
            # One worker thread per vCenter: its blocking calls never hold the event loop or
            # another vCenter, and one session is never used by two threads at once.
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"vsphere-{self.device}")
        calls_before, logins_before = session.calls, session.logins
        started = self.monotonic()
        loop = asyncio.get_running_loop()
        try:
            inventory = await loop.run_in_executor(self._executor, session.read)
        except VsphereTlsError as exc:
            hint = f"ca_bundle {self.options.ca_bundle}" if self.options.ca_bundle else "no ca_bundle set"
            raise CollectError(f"{exc} ({hint})") from None
        except VsphereUnreachable as exc:
            raise Unreachable(str(exc)) from None
        except VsphereError as exc:
            raise CollectError(str(exc)) from None
        for problem in inventory.problems[:MAX_PROBLEMS]:
            sink.error(problem)
        if len(inventory.problems) > MAX_PROBLEMS:
            sink.error(f"{session.where}: {len(inventory.problems) - MAX_PROBLEMS} more properties unreadable")
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        readings, alarms = evaluate(inventory, now)
        for reading in [*readings, *alarms.values()]:
            self._emit(sink, reading)
        for key, gone in self._alarms_seen.items():
            if key not in alarms:  # cleared in vCenter: say so once, so its alert resolves
                self._emit(sink, Reading(ALARM, gone.tags, {**gone.fields, "status": "green", "active": False},
                                         gone.entity))
        self._alarms_seen = alarms
        counts = {kind: sum(1 for row in inventory.rows if row.kind == kind) for kind in ("host", "vm", "datastore")}
        sink.emit(
            VCENTER,
            {
                "api_calls": session.calls - calls_before,
                "logins": session.logins - logins_before,
                "hosts": counts["host"],
                "vms": counts["vm"],
                "datastores": counts["datastore"],
                "alarms": len(alarms),
                "read_ms": round((self.monotonic() - started) * 1000, 1),
            },
        )

    def _emit(self, sink: Sink, reading: Reading) -> None:
        sink_for = sink
        if reading.entity is not None:
            device = self._inventory_device(sink, reading.entity)
            if device is not None:
                sink_for = device
        sink_for.emit(reading.measurement, reading.fields, reading.tags)

    def _inventory_device(self, sink: Sink, name: str) -> Sink | None:
        short = name.split(".", 1)[0]  # esx-siege-1.vsgp.local -> esx-siege-1
        candidates = [self.options.device_names.get(name), name, short, short.lower()]
        for candidate in dict.fromkeys(c for c in candidates if c):
            if candidate == self.device:
                continue  # the vCenter itself, as a VM of its own cluster: keep the tags under it
            try:
                return sink.for_device(candidate)
            except UnknownDevice:
                continue
        return None


def default_rules() -> list[Rule]:
    def held(kind: str) -> tuple[Inhibition, ...]:
        # vCenter's own alarm on the same object is the same problem: one alert, ours.
        return tuple(
            Inhibition(rule=alarm, equal=("device", "entity"), match={"entity_type": kind})
            for alarm in ("vsphere_alarm_red", "vsphere_alarm_yellow")
        )

    return [
        Rule(
            name="vsphere_host_disconnected",
            measurement=HOST,
            when="connection_state != 'connected'",
            for_s=60,
            severity="critical",
            summary="{device}: ESXi host {host} is {connection_state} in vCenter",
            inhibits=held("host"),
        ),
        Rule(
            name="vsphere_host_status_red",
            measurement=HOST,
            when="connection_state == 'connected' and overall_status == 'red'",
            for_s=300,
            severity="major",
            summary="{device}: ESXi host {host} status is red",
        ),
        Rule(
            name="vsphere_vm_powered_off",
            measurement=VM,
            when="power_state == 'poweredOff'",
            for_s=60,
            severity="major",
            summary="{device}: VM {vm} is powered off (host {host})",
            inhibits=held("vm"),
        ),
        Rule(
            name="vsphere_vm_heartbeat_lost",
            measurement=VM,
            when="power_state == 'poweredOn' and guest_heartbeat == 'red'",
            for_s=300,
            severity="major",
            summary="{device}: VM {vm} is on but its guest sends no heartbeat",
        ),
        Rule(
            name="vsphere_vm_snapshot_old",
            measurement=VM,
            # `snapshot_count > 0 and`: a VM whose snapshots were deleted resolves (age unknown)
            when=f"snapshot_count > 0 and snapshot_oldest_age_s > {SNAPSHOT_WARN_S}",
            severity="warning",
            summary="{device}: VM {vm} keeps {snapshot_count} snapshot(s), the oldest "
            "{snapshot_oldest_age_s} s old (over 72 h)",
        ),
        Rule(
            name="vsphere_datastore_usage_high",
            measurement=DATASTORE,
            when=f"{DATASTORE_WARN_PCT} <= used_pct < {DATASTORE_CRIT_PCT}",
            severity="warning",
            summary="{device}: datastore {datastore} is {used_pct} % full",
            inhibits=held("datastore"),
        ),
        Rule(
            name="vsphere_datastore_usage_critical",
            measurement=DATASTORE,
            when=f"used_pct >= {DATASTORE_CRIT_PCT}",
            severity="critical",
            summary="{device}: datastore {datastore} is {used_pct} % full",
            inhibits=held("datastore"),
        ),
        Rule(
            name="vsphere_datastore_inaccessible",
            measurement=DATASTORE,
            when="accessible == False",
            for_s=60,
            severity="critical",
            summary="{device}: datastore {datastore} is not accessible",
        ),
        Rule(
            name="vsphere_cluster_degraded",
            measurement=CLUSTER,
            when="num_effective_hosts < num_hosts",
            for_s=300,
            severity="major",
            summary="{device}: cluster {cluster} runs on {num_effective_hosts} of {num_hosts} hosts",
        ),
        Rule(
            name="vsphere_alarm_red",
            measurement=ALARM,
            when="active == True and status == 'red' and acknowledged == False",
            severity="major",
            summary="{device}: vCenter alarm '{alarm}' on {entity_type} {entity} (red)",
        ),
        Rule(
            name="vsphere_alarm_yellow",
            measurement=ALARM,
            when="active == True and status == 'yellow' and acknowledged == False",
            severity="warning",
            summary="{device}: vCenter alarm '{alarm}' on {entity_type} {entity} (yellow)",
        ),
    ]


def _vm_host(client: str, device: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue]) -> Edge | None:
    """A vsphere_vm sample on the VM's device: its host, as vCenter names it, is its parent."""
    host = tags.get("host")
    return Edge(client, device, host, "vsphere", upstream=host) if host else None


PLUGIN = PluginSpec(
    name="vsphere",
    kind="collector",
    factory=VsphereCollector,
    options=VsphereOptions,
    credentials=VsphereCredentials,
    default_rules=default_rules,
    state_fields=frozenset({(HOST, "connection_state"), (VM, "power_state")}),
    # where a VM runs, and in which cluster, describe it: a vMotion must not make it a new series
    # (every sample names its object in `entity`, which identifies it)
    descriptive_tags=frozenset({"host", "cluster"}),
    edge_sources={VM: EdgeSource(("vsphere",), VM, _vm_host, controller="vsphere")},
    description="VMware vCenter: hosts, VMs (snapshots), datastores, clusters and triggered alarms (pyvmomi)",
)
