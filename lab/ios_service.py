"""The lab's Catalyst switches on the CLI: one lab.ios_device per estate device that names the
``cisco_cli`` collector, listening where its options point (127.0.0.1, ``port``; vsgp writes
``${VIGIE_LAB_IOS_<DEVICE>_PORT:-N}``, and ``--ios-port`` moves them all), logging in the user
the estate gives it (the device's credentials secret for ``cisco_cli``, or the options'
``username`` and ``password`` secret) with the estate's enable secret.

Faults (``vigie lab fault vsgp/sw-siege-03 KIND ...``):

- ``ios-config-change``: an operator rotates the SNMP read community (two lines change, both
  secrets: the backup's diff shows them masked) and IOS stamps the change, by ``lab``;
- ``ios-psu-failed [SLOT]``: power supply SLOT (default 1A) loses its input (``No Input Power``);
- ``ios-fan-failed [SWITCH/FAN]``: that fan (default 1/1) stops (speed 0, ``FAILED``);
- ``ios-port-err-disabled [PORT]``: PORT (default Gi1/0/5) is err-disabled (BPDU guard);
- ``ios-host-key-changed``: the device shows another SSH host key (vigie must refuse it).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import paramiko
import yaml

from lab.estate import EstateError, expand, is_loopback, variables_in
from lab.ios_device import DeviceState, IosDevice
from lab.services import Context, Fault, FaultError, FaultKind, LabService

COLLECTOR = "cisco_cli"


@dataclass
class LabSwitch:
    key: str  # CLIENT/DEVICE
    host: str
    port: int
    username: str
    password: str
    enable_secret: str
    host_key: paramiko.PKey
    variables: list[str] = field(default_factory=list)  # the estate's ${VAR} naming its port
    device: IosDevice | None = None
    other_key: paramiko.PKey | None = None  # shown while ios-host-key-changed is on

    def fresh_state(self) -> DeviceState:
        return DeviceState(self.key.split("/", 1)[1], self.username, self.password, self.enable_secret)


def _secret_text(context: Context, where: str, ref: Any) -> str:
    name = ref.get("secret") if isinstance(ref, dict) else None
    value = context.estate.secret(str(name)) if name else None
    if not isinstance(value, str):
        raise EstateError(f"{where}: {ref!r}: give {{secret: NAME}} naming a string in the lab's secrets file")
    return value


def _switches(context: Context) -> list[LabSwitch]:
    switches = []
    for path in context.estate.paths:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        defaults = ((data.get("defaults") or {}).get("collectors") or {}).get(COLLECTOR) or {}
        for client in data.get("clients") or []:
            for site in client.get("sites") or []:
                for device in site.get("devices") or []:
                    collectors = device.get("collectors") or {}
                    if COLLECTOR not in collectors:
                        continue
                    key = f"{client['name']}/{device['name']}"
                    options = {**defaults, **(collectors[COLLECTOR] or {})}
                    switches.append(_switch(context, key, device, options))
    return switches


def _switch(context: Context, key: str, device: dict[str, Any], options: dict[str, Any]) -> LabSwitch:
    host = expand(str(device.get("address") or ""), context.environ)
    if not is_loopback(host):
        raise EstateError(f"{key}: address {host!r} is not loopback; the lab serves loopback only")
    written_port = str(options.get("port", ""))
    port_text = expand(written_port, context.environ)
    if not port_text.isdigit():
        raise EstateError(f"{key}: {COLLECTOR}.port {options.get('port')!r}: the lab needs a port per device")
    if "username" in options:
        username = str(options["username"])
        password = _secret_text(context, f"{key}: {COLLECTOR}.password", options.get("password"))
        enable = _secret_text(context, f"{key}: {COLLECTOR}.enable_secret", options.get("enable_secret"))
    else:
        written = device.get("credentials")
        name = written.get(COLLECTOR) if isinstance(written, dict) else written  # `{snmp: A, cisco_cli: B}`
        secret = context.estate.secret(str(name))
        if not isinstance(secret, dict) or not {"username", "password", "enable_secret"} <= set(secret):
            raise EstateError(f"{key}: no CLI login: give {COLLECTOR} options username/password/enable_secret")
        username, password, enable = str(secret["username"]), str(secret["password"]), str(secret["enable_secret"])
    return LabSwitch(key, host, int(port_text), username, password, enable, paramiko.ECDSAKey.generate(),
                     [v.name for v in variables_in(written_port)])


class IosService(LabService):
    name = "ios"
    fault_kinds = (
        FaultKind("ios-config-change", "device", "", "the running-config changes (the SNMP community is rotated)"),
        FaultKind("ios-psu-failed", "device", "[SLOT]", "power supply SLOT (1A) shows No Input Power"),
        FaultKind("ios-fan-failed", "device", "[SWITCH/FAN]", "fan SWITCH/FAN (1/1) fails"),
        FaultKind("ios-port-err-disabled", "device", "[PORT]", "PORT (Gi1/0/5) is err-disabled"),
        FaultKind("ios-host-key-changed", "device", "", "the switch shows another SSH host key"),
    )

    def __init__(self, switches: list[LabSwitch]) -> None:
        self.switches = {switch.key: switch for switch in switches}

    @classmethod
    def add_options(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--ios-port", type=int, metavar="N",
            help="TCP port of the first IOS switch, the next ones after it (0: any free ports); default: each "
            "switch's cisco_cli port in the estate, read from the environment first",
        )

    @classmethod
    def for_estate(cls, context: Context) -> IosService | None:
        switches = _switches(context)
        first = getattr(context.options, "ios_port", None)
        if first is not None:
            for n, switch in enumerate(switches):
                switch.port = first + n if first else 0
        return cls(switches) if switches else None

    async def start(self) -> None:
        for switch in self.switches.values():
            switch.device = IosDevice(switch.fresh_state(), switch.host_key)
            try:
                _, switch.port = await asyncio.to_thread(switch.device.start, switch.host, switch.port)
            except OSError as exc:
                raise EstateError(f"tcp {switch.host}:{switch.port}: {exc.strerror} (another lab? set "
                                  f"{', '.join(switch.variables) or 'its cisco_cli port'}, or --ios-port)") from None

    async def stop(self) -> None:
        for switch in self.switches.values():
            if switch.device is not None:
                await asyncio.to_thread(switch.device.stop)
                switch.device = None

    def endpoints(self) -> list[str]:
        # one line per switch, and no devices(): the listing keeps one way to reach a device, and
        # these devices are the SNMP service's too
        return [f"ssh 127.0.0.1:{s.port}  IOS-XE CLI of {key} (user {s.username})" for key, s in self.switches.items()]

    def environment(self) -> dict[str, str]:
        return {name: str(s.port) for s in self.switches.values() for name in s.variables}

    def examples(self) -> list[str]:
        return [f"vigie collect --config ESTATE --device {key.split('/', 1)[1]} --collector {COLLECTOR} --json"
                for key in list(self.switches)[:1]]

    def check_fault(self, fault: Fault) -> str:
        switch = self._switch(fault.target)
        state = switch.fresh_state()
        return self._apply(switch, state, fault)

    async def apply_faults(self, faults: Sequence[Fault]) -> None:
        for switch in self.switches.values():
            if switch.device is None:
                continue
            state = switch.fresh_state()
            key = switch.host_key
            for fault in faults:
                if fault.target != switch.key:
                    continue
                if fault.kind == "ios-host-key-changed":
                    switch.other_key = switch.other_key or paramiko.ECDSAKey.generate()
                    key = switch.other_key
                self._apply(switch, state, fault)
            switch.device.host_key = key
            switch.device.state = state

    def _switch(self, target: str) -> LabSwitch:
        if target not in self.switches:
            raise FaultError(f"{target}: not a switch of the lab's IOS devices ({', '.join(self.switches)})")
        return self.switches[target]

    @staticmethod
    def _apply(switch: LabSwitch, state: DeviceState, fault: Fault) -> str:
        """Change ``state`` as ``fault`` says; what it did, in a few words."""
        args = fault.args
        try:
            if fault.kind == "ios-config-change":
                _no_args(fault)
                state.community = f"{state.community}-rotated"
                state.changed_by = "lab"
                state.changed_at = dt.datetime.fromtimestamp(fault.since, dt.UTC).strftime("%H:%M:%S UTC %a %b %d %Y")
                return f"{switch.key}: the SNMP community is rotated (running-config changed by lab)"
            if fault.kind == "ios-psu-failed":
                psu = state.psu(args[0] if args else "1A")
                if psu.pid is None:
                    raise FaultError(f"{switch.key}: power supply {psu.slot} is not present")
                psu.status, psu.sys_pwr, psu.poe_pwr = "No Input Power", "Bad", "Bad"
                return f"{switch.key}: power supply {psu.slot} has no input power"
            if fault.kind == "ios-fan-failed":
                member, _, number = (args[0] if args else "1/1").partition("/")
                fans = [f for f in state.fans if str(f.switch) == member and str(f.fan) == number]
                if not fans:
                    raise FaultError(f"{switch.key}: no fan {member}/{number} (give SWITCH/FAN, e.g. 1/2)")
                fans[0].state, fans[0].speed = "FAILED", 0
                return f"{switch.key}: fan {member}/{number} failed"
            if fault.kind == "ios-port-err-disabled":
                port = state.port(args[0] if args else "Gi1/0/5")
                port.status = "err-disabled"
                return f"{switch.key}: {port.name} is err-disabled"
            if fault.kind == "ios-host-key-changed":
                _no_args(fault)
                return f"{switch.key}: the SSH host key changes"
        except KeyError as exc:
            raise FaultError(f"{switch.key}: {exc.args[0]}") from None
        raise FaultError(f"ios: no fault {fault.kind!r}")

    def status(self) -> list[str]:
        return [f"{key}: {s.device.logins} SSH logins" for key, s in self.switches.items() if s.device is not None]


def _no_args(fault: Fault) -> None:
    if fault.args:
        raise FaultError(f"{fault.kind} takes no argument")
