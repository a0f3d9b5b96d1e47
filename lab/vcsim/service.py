"""The vCenter of each estate device whose collectors name ``vsphere``, played by govmomi's
simulator (lab.vcsim) in the lab.

The device says what the simulator holds in ``x-lab.vcsim`` (the agent never reads it)::

    x-lab: {vcsim: {datacenter: VSGP, datastores: [vsan-siege, vsan-pra], vms_per_cluster: 27,
                    clusters: {vxrail-siege: [esx-siege-1, ...], vxrail-pra: [...]},
                    vms: {vxrail-siege: [dc1, veeam], vxrail-pra: [dc2]}}}

``vms`` names the first VMs of a cluster (the inventory's own VMs); the rest are vm-<cluster>-NN.
It listens on the collector's ``port`` (``${VIGIE_LAB_VCSIM_PORT:-8989}``) and accepts the login of
the device's credentials secret. When the collector's ``ca_bundle`` is the lab's CA
(lab/graph_tls/ca.pem, as in the estates), it serves the lab's server certificate; otherwise it makes
a self-signed one and writes it where ``ca_bundle`` says (into the lab's runtime directory when it
names none).

Faults (target: the vCenter device): ``vsphere-vm-off VM`` (PowerOffVM_Task through the API),
``vsphere-host-disconnect HOST``, ``vsphere-datastore-full DATASTORE [PCT]`` (95),
``vsphere-snapshot VM AGE_H [COUNT]``, ``vsphere-alarm ENTITY ALARM yellow|red``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.estate import EstateError, expand, is_loopback, variables_in
from lab.graph_fake import LAB_TLS
from lab.probe_services import _probe_devices
from lab.services import Context, Fault, FaultError, FaultKind, LabService
from lab.vcsim import Inventory, SimState, Vcsim, VcsimError, build

DEFAULT_FULL_PCT = 95.0
LAB_ALARMS = ("Host connection and power state", "Datastore usage on disk", "Virtual machine CPU usage",
              "vSphere HA host status")  # main.go's alarmNames


@dataclass
class Instance:
    key: str  # CLIENT/DEVICE of the vCenter
    port: int
    username: str
    password: str
    inventory: Inventory
    ca_file: Path | None  # the collector's ca_bundle, expanded: the simulator writes its certificate there
    variables: dict[str, str] = field(default_factory=dict)  # ${VAR} -> "port" | "ca"
    sim: Vcsim | None = None


def _inventory(key: str, raw: Any) -> Inventory:
    where = f"{key}: x-lab.vcsim"
    if not isinstance(raw, dict) or not isinstance(raw.get("clusters"), dict):
        raise EstateError(f"{where}: give clusters (name -> its hosts), vms_per_cluster, datastores")
    per_cluster = raw.get("vms_per_cluster", 0)
    if not isinstance(per_cluster, int) or per_cluster < 0:
        raise EstateError(f"{where}.vms_per_cluster: a number of VMs")
    named = raw.get("vms") or {}
    vms: dict[str, list[str]] = {}
    for cluster in raw["clusters"]:
        own = [str(v) for v in named.get(cluster) or []]
        if len(own) > per_cluster:
            raise EstateError(f"{where}.vms.{cluster}: more VMs than vms_per_cluster")
        suffix = str(cluster).rsplit("-", 1)[-1]
        vms[str(cluster)] = own + [f"vm-{suffix}-{n:02d}" for n in range(len(own) + 1, per_cluster + 1)]
    try:
        return Inventory(
            datacenter=str(raw.get("datacenter", "DC0")),
            clusters={str(c): [str(h) for h in hosts or []] for c, hosts in raw["clusters"].items()},
            vms=vms,
            datastores=[str(d) for d in raw.get("datastores") or []],
        )
    except VcsimError as exc:
        raise EstateError(f"{where}: {exc}") from None


class VcsimService(LabService):
    name = "vcsim"
    fault_kinds = (
        FaultKind("vsphere-vm-off", "device", "VM", "the vCenter powers VM off (PowerOffVM_Task)"),
        FaultKind("vsphere-host-disconnect", "device", "HOST", "the vCenter loses ESXi host HOST (disconnected)"),
        FaultKind("vsphere-datastore-full", "device", "DATASTORE [PCT]", "DATASTORE is PCT % used (default 95)"),
        FaultKind("vsphere-snapshot", "device", "VM AGE_H [COUNT]", "VM keeps COUNT snapshots, the oldest AGE_H h old"),
        FaultKind("vsphere-alarm", "device", "ENTITY ALARM yellow|red", "the vCenter alarm ALARM triggers on ENTITY"),
    )

    def __init__(self, instances: list[Instance], context: Context) -> None:
        self.instances = {i.key: i for i in instances}
        self.runtime_dir = context.runtime_dir

    @classmethod
    def add_options(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--vcsim-port",
            type=int,
            metavar="N",
            help="TCP port of the vCenter simulator (0: any free port); default: the vsphere collector's "
            "port, read from the environment first",
        )

    @classmethod
    def for_estate(cls, context: Context) -> VcsimService | None:
        override = getattr(context.options, "vcsim_port", None)
        instances = []
        for key, device, options in _probe_devices(context, "vsphere"):
            where = f"{key}: vsphere"
            if not is_loopback(expand(str(device.get("address", "")), context.environ)):
                raise EstateError(f"{where}: address {device.get('address')!r} is not loopback")
            raw_port = str(options.get("port", 443))
            port = expand(raw_port, context.environ)
            if not port.isdigit():
                raise EstateError(f"{where}: port {raw_port!r} is not a number")
            credentials = device.get("credentials")
            name = credentials.get("vsphere") if isinstance(credentials, dict) else credentials
            secret = context.estate.secret(str(name or ""))
            if not isinstance(secret, dict) or not {"username", "password"} <= secret.keys():
                raise EstateError(f"{where}: credentials {name!r}: the lab's secrets give no username and password")
            raw_ca = str(options.get("ca_bundle") or "")
            instance = Instance(
                key, int(port) if override is None else override, str(secret["username"]), str(secret["password"]),
                _inventory(key, (device.get("x-lab") or {}).get("vcsim")),
                Path(expand(raw_ca, context.environ)) if raw_ca else None,
            )  # fmt: skip
            instance.variables.update({v.name: "port" for v in variables_in(raw_port)})
            instance.variables.update({v.name: "ca" for v in variables_in(raw_ca)})
            instances.append(instance)
        return cls(instances, context) if instances else None

    async def start(self) -> None:
        try:
            binary = await asyncio.to_thread(build)
        except VcsimError as exc:
            raise EstateError(str(exc)) from None
        for instance in self.instances.values():
            lab_ca = instance.ca_file is not None and instance.ca_file.resolve() == (LAB_TLS / "ca.pem").resolve()
            instance.sim = Vcsim(
                binary, instance.inventory, self.runtime_dir / "vcsim" / instance.key.replace("/", "-"),
                port=instance.port, username=instance.username, password=instance.password, ca_file=instance.ca_file,
                server_cert=(LAB_TLS / "server.pem", LAB_TLS / "server-key.pem") if lab_ca else None,
            )  # fmt: skip
            instance.sim.spawn()  # from the event loop's thread, which lives as long as the lab
            try:
                await asyncio.to_thread(instance.sim.wait_ready)
            except Exception as exc:  # noqa: BLE001 - the child's log says why; the lab reports it
                hint = ", ".join(v for v, what in instance.variables.items() if what == "port") or "--vcsim-port"
                raise EstateError(f"vcsim for {instance.key} on 127.0.0.1:{instance.port}: {exc} (another lab? "
                                  f"set {hint})") from None
            instance.port = instance.sim.port  # the one it bound (port 0: the kernel's choice)

    async def stop(self) -> None:
        for instance in self.instances.values():
            if instance.sim is not None:
                instance.sim.stop()
                instance.sim = None

    def children(self) -> list:
        return [i.sim.child for i in self.instances.values() if i.sim is not None and i.sim.child is not None]

    def endpoints(self) -> list[str]:
        return [
            f"https https://127.0.0.1:{i.port}/sdk  vCenter simulator ({len(i.inventory.hosts)} hosts, "
            f"{len(i.inventory.all_vms)} VMs)"
            for i in self.instances.values()
        ]

    def devices(self) -> list[tuple[str, str]]:
        return [(key, f"https://127.0.0.1:{i.port}/sdk") for key, i in self.instances.items()]

    def examples(self) -> list[str]:
        return [f"vigie collect --config ESTATE --device {key.split('/', 1)[1]} --json" for key in self.instances][:1]

    def environment(self) -> dict[str, str]:
        out = {}
        for instance in self.instances.values():
            for variable, what in instance.variables.items():
                if what == "port":
                    out[variable] = str(instance.port)
                elif instance.ca_file is not None:
                    out[variable] = str(instance.ca_file)
        return out

    def _instance(self, fault: Fault) -> Instance:
        if fault.target not in self.instances:
            raise FaultError(f"{fault.target}: not a vCenter the lab simulates ({', '.join(self.instances)})")
        return self.instances[fault.target]

    def check_fault(self, fault: Fault) -> str:
        instance = self._instance(fault)
        inv, args = instance.inventory, fault.args

        def need(names: list[str], what: str, value: str) -> None:
            if value not in names:
                raise FaultError(f"{fault.kind}: no {what} {value!r} in {fault.target}")

        if fault.kind == "vsphere-vm-off" and len(args) == 1:
            need(inv.all_vms, "VM", args[0])
            return f"VM {args[0]} powered off"
        if fault.kind == "vsphere-host-disconnect" and len(args) == 1:
            need(inv.hosts, "host", args[0])
            return f"host {args[0]} disconnected"
        if fault.kind == "vsphere-datastore-full" and len(args) in (1, 2):
            need(inv.datastores, "datastore", args[0])
            return f"datastore {args[0]} {_number(fault, args[1:], DEFAULT_FULL_PCT, 100):g} % used"
        if fault.kind == "vsphere-snapshot" and len(args) in (2, 3):
            need(inv.all_vms, "VM", args[0])
            count = int(_number(fault, args[2:], 1, 32))
            return f"VM {args[0]}: {count} snapshot(s), the oldest {_number(fault, args[1:2], 0, 10**5):g} h old"
        if fault.kind == "vsphere-alarm" and len(args) == 3:
            need([*inv.hosts, *inv.all_vms, *inv.datastores, *inv.clusters], "host, VM, datastore or cluster", args[0])
            need(list(LAB_ALARMS), "alarm", args[1])
            if args[2] not in ("yellow", "red"):
                raise FaultError("vsphere-alarm: the status is yellow or red")
            return f"alarm '{args[1]}' {args[2]} on {args[0]}"
        usage = next(k.usage for k in self.fault_kinds if k.name == fault.kind)
        raise FaultError(f"{fault.kind}: give {usage}")

    async def apply_faults(self, faults: Sequence[Fault]) -> None:
        for key, instance in self.instances.items():
            if instance.sim is None:
                continue
            mine = [f for f in faults if f.target == key]
            state = SimState()
            off: set[str] = set()
            for fault in mine:
                args = fault.args
                if fault.kind == "vsphere-vm-off":
                    off.add(args[0])
                elif fault.kind == "vsphere-host-disconnect":
                    state.disconnected_hosts.append(args[0])
                elif fault.kind == "vsphere-datastore-full":
                    state.datastore_used_pct[args[0]] = _number(fault, args[1:], DEFAULT_FULL_PCT, 100)
                elif fault.kind == "vsphere-snapshot":
                    age_s = _number(fault, args[1:2], 0, 10**5) * 3600
                    count = int(_number(fault, args[2:], 1, 32))
                    state.snapshots.append({"vm": args[0], "age_s": age_s, "count": count})
                elif fault.kind == "vsphere-alarm":
                    state.alarms.append({"entity": args[0], "alarm": args[1], "status": args[2]})
            await asyncio.to_thread(instance.sim.set_state, state)
            await asyncio.to_thread(instance.sim.set_powered_off, off)


def _number(fault: Fault, args: Sequence[str], default: float, most: float) -> float:
    if not args:
        return default
    try:
        value = float(args[0])
    except ValueError:
        raise FaultError(f"{fault.kind}: {args[0]!r} is not a number") from None
    if not 0 <= value <= most:
        raise FaultError(f"{fault.kind}: {args[0]} is not within 0-{most:g}")
    return value
