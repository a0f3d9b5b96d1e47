"""What the estate's devices say unasked: SNMP traps and syslog lines sent to the agent's receivers.

    vigie lab fault vsgp/core-siege trap link-down 3      # linkDown ifIndex 3; cleared: linkUp
    vigie lab fault vsgp/fw-siege syslog ha-failover      # the Sophos HA failover line

The service is there when the estate configures the agent's ``agent.services.snmp_traps`` or
``agent.services.syslog`` (their address and port, ``${VAR:-default}`` read as the agent reads
them): it sends to them, on loopback only. A fault sends once when applied (again when applied
again) and, when cleared, the message saying it is over, if the event has one (linkUp after
linkDown, the power supply back to normal); the receivers never take that message as the end of
the alert, only the polls (collectors/snmp/TRAPS.md), which the snmp service's faults drive:
``port-down 3`` with ``trap link-down 3`` is the whole story.

Messages leave from the device's own address (Linux answers for all of 127.0.0.0/8), or from the
address ``snmp_traps.sources`` / ``syslog.sources`` give it, so the agent attributes them as it
would a real device's. A syslog line carries the device name as HOSTNAME, which tells apart devices
sharing one address (the estates' 127.0.0.1); a trap has no such name: a trap for such a device
needs a ``sources`` entry, and the fault says so.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel

from collectors.snmp import ber
from collectors.snmp.traps import TrapOptions
from collectors.syslog import SyslogOptions
from lab.estate import EstateDevice, EstateError, expand, is_loopback
from lab.services import Context, Fault, FaultError, FaultKind, LabService

SYS_UPTIME_0 = "1.3.6.1.2.1.1.3.0"
SNMP_TRAP_OID_0 = "1.3.6.1.6.3.1.1.4.1.0"
IF_TABLE = "1.3.6.1.2.1.2.2.1"
SUPPLY = "1.3.6.1.4.1.9.9.13.1.5.1"
FAN = "1.3.6.1.4.1.9.9.13.1.4.1"
UPS_ALARM_DESCR = "1.3.6.1.2.1.33.1.6.2.1.2"
UPS_LOW_BATTERY = "1.3.6.1.2.1.33.1.6.3.3"
ENVMON_CRITICAL, ENVMON_NORMAL = 3, 1
UPTIME_TICKS = 8_640_000  # a day: what a device up for a while says

Varbinds = list[tuple[str, int, Any]]


@dataclass(frozen=True)
class TrapEvent:
    help: str
    arguments: str  # usage: "IFINDEX", "[INDEX]" or ""
    trap: Callable[[int], tuple[str, Varbinds]]
    recovery: Callable[[int], tuple[str, Varbinds]] | None = None
    default: int = 1


def _link(oid: str, oper: int) -> Callable[[int], tuple[str, Varbinds]]:
    def build(if_index: int) -> tuple[str, Varbinds]:
        return oid, [(f"{IF_TABLE}.1.{if_index}", ber.INTEGER, if_index), (f"{IF_TABLE}.7.{if_index}", ber.INTEGER, 1),
                     (f"{IF_TABLE}.8.{if_index}", ber.INTEGER, oper)]
    return build


def _envmon(oid: str, table: str, what: str, state: int) -> Callable[[int], tuple[str, Varbinds]]:
    def build(index: int) -> tuple[str, Varbinds]:
        return oid, [(f"{table}.2.{index}", ber.OCTET_STRING, f"{what} {index}".encode()),
                     (f"{table}.3.{index}", ber.INTEGER, state)]
    return build


def _plain(oid: str, varbinds: Varbinds | None = None) -> Callable[[int], tuple[str, Varbinds]]:
    return lambda _: (oid, list(varbinds or []))


def _ups_alarm(oid: str) -> Callable[[int], tuple[str, Varbinds]]:
    return lambda _: (oid, [(f"{UPS_ALARM_DESCR}.1", ber.OBJECT_IDENTIFIER, ber.encode_oid(UPS_LOW_BATTERY))])


TRAPS: dict[str, TrapEvent] = {
    "link-down": TrapEvent("linkDown (IF-MIB); cleared: linkUp", "IFINDEX", _link("1.3.6.1.6.3.1.1.5.3", 2),
                           _link("1.3.6.1.6.3.1.1.5.4", 1)),
    "cold-start": TrapEvent("coldStart", "", _plain("1.3.6.1.6.3.1.1.5.1")),
    "warm-start": TrapEvent("warmStart", "", _plain("1.3.6.1.6.3.1.1.5.2")),
    "auth-failure": TrapEvent("authenticationFailure", "", _plain("1.3.6.1.6.3.1.1.5.5")),
    "psu-failed": TrapEvent(
        "ciscoEnvMonSuppStatusChangeNotif critical; cleared: normal", "[INDEX]",
        _envmon("1.3.6.1.4.1.9.9.13.3.0.9", SUPPLY, "Power Supply", ENVMON_CRITICAL),
        _envmon("1.3.6.1.4.1.9.9.13.3.0.9", SUPPLY, "Power Supply", ENVMON_NORMAL)),
    "fan-failed": TrapEvent(
        "ciscoEnvMonFanStatusChangeNotif critical; cleared: normal", "[INDEX]",
        _envmon("1.3.6.1.4.1.9.9.13.3.0.8", FAN, "Fan", ENVMON_CRITICAL),
        _envmon("1.3.6.1.4.1.9.9.13.3.0.8", FAN, "Fan", ENVMON_NORMAL)),
    "ups-on-battery": TrapEvent("upsTrapOnBattery (UPS-MIB)", "",
                                _plain("1.3.6.1.2.1.33.2.1", [("1.3.6.1.2.1.33.1.2.3.0", ber.INTEGER, 25)])),
    "ups-battery-low": TrapEvent("upsTrapAlarmEntryAdded upsAlarmLowBattery; cleared: its removal", "",
                                 _ups_alarm("1.3.6.1.2.1.33.2.3"), _ups_alarm("1.3.6.1.2.1.33.2.4")),
    "apc-on-battery": TrapEvent("APC upsOnBattery; cleared: powerRestored", "", _plain("1.3.6.1.4.1.318.0.5"),
                                _plain("1.3.6.1.4.1.318.0.9")),
    "failover": TrapEvent("FortiGate fgTrapHaSwitch", "", _plain("1.3.6.1.4.1.12356.101.2.0.401")),
}


@dataclass(frozen=True)
class SyslogEvent:
    help: str
    arguments: str
    lines: Callable[[str], list[str]]  # the MSG parts (after the header) for the argument
    recovery: Callable[[str], list[str]] | None = None
    default: str = ""


def _count(argument: str) -> int:
    if not argument.isdigit() or not 1 <= int(argument) <= 1000:
        raise FaultError(f"COUNT is an integer from 1 to 1000, got {argument}")
    return int(argument)


SYSLOG: dict[str, SyslogEvent] = {
    "link-down": SyslogEvent(
        "Cisco %LINK-3-UPDOWN down; cleared: up", "IFNAME",
        lambda name: [f"%LINK-3-UPDOWN: Interface {name}, changed state to down"],
        lambda name: [f"%LINK-3-UPDOWN: Interface {name}, changed state to up"]),
    "restart": SyslogEvent("Cisco %SYS-5-RESTART", "", lambda _: ["%SYS-5-RESTART: System restarted --"]),
    "auth-failure": SyslogEvent(
        "COUNT sshd failed passwords (default 10: a burst)", "[COUNT]",
        lambda count: ["sshd[4242]: Failed password for invalid user admin from 192.0.2.66 port 52311 ssh2"]
        * _count(count), default="10"),
    "ha-failover": SyslogEvent(
        "Sophos SFOS HA failover", "",
        lambda _: ['device="SFW" log_type="Event" log_component="HA" log_subtype="System" status="Successful" '
                   'message="HA: Auxiliary became primary, failover completed"']),
    "disk-error": SyslogEvent("Linux kernel I/O error", "[DISK]",
                              lambda disk: [f"kernel: blk_update_request: I/O error, dev {disk}, sector 2048 "
                                            "op 0x0:(READ) flags 0x0 phys_seg 1 prio class 0"], default="sda"),
}


@dataclass(frozen=True)
class Receiver:
    host: str
    port: int
    transport: str  # "udp" | "tcp"
    sources: Mapping[str, str]  # CLIENT/DEVICE -> the address it sends from


class NotificationService(LabService):
    name = "notifications"
    fault_kinds = (
        FaultKind("trap", "device", "EVENT [ARG]",
                  "send an SNMP trap to the agent's snmp_traps: " + ", ".join(TRAPS) + " (see lab/notify_service.py)"),
        FaultKind("syslog", "device", "EVENT [ARG]",
                  "send a syslog line to the agent's syslog: " + ", ".join(SYSLOG)),
    )

    def __init__(self, context: Context, traps: Receiver | None, syslog: Receiver | None) -> None:
        self.context = context
        self.receivers = {"trap": traps, "syslog": syslog}
        self._sent: dict[tuple[str, str, tuple[str, ...]], Fault] = {}
        self._request_id = 0

    @classmethod
    def for_estate(cls, context: Context) -> NotificationService | None:
        services: dict[str, Any] = {}
        for path in context.estate.paths:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            services.update((data.get("agent") or {}).get("services") or {})
        traps = _receiver(services.get("snmp_traps"), "snmp_traps", context, {"port": "udp"}, TrapOptions)
        syslog = _receiver(services.get("syslog"), "syslog", context, {"udp_port": "udp", "tcp_port": "tcp"},
                           SyslogOptions)
        if traps is None and syslog is None:
            return None
        return cls(context, traps, syslog)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def endpoints(self) -> list[str]:
        return [f"sends {what}s to {r.transport} {r.host}:{r.port}" for what, r in self.receivers.items() if r]

    def examples(self) -> list[str]:
        device = next(iter(self.context.estate.devices()), None)
        if device is None:
            return []
        if self.receivers["trap"] is not None:
            return [f"vigie lab fault {device.key} trap link-down 1"]
        return [f"vigie lab fault {device.key} syslog link-down GigabitEthernet1/0/1"]

    # -- faults -------------------------------------------------------------------------------

    def check_fault(self, fault: Fault) -> str:
        receiver = self.receivers[fault.kind]
        if receiver is None:
            what = "snmp_traps" if fault.kind == "trap" else "syslog"
            raise FaultError(f"{fault.kind}: the estate configures no agent.services.{what}")
        if not fault.args:
            raise FaultError(f"{fault.kind} takes EVENT [ARG]; EVENT is one of {', '.join(self._events(fault))}")
        event, argument = self._event(fault)
        device = self.context.estate.device(fault.target)
        source = self._source(fault.kind, receiver, device)
        if fault.kind == "trap":
            assert isinstance(event, TrapEvent)
            oid, _ = event.trap(_index(argument, event))
            return f"{fault.target}: trap {oid} from {source} to {receiver.transport} {receiver.host}:{receiver.port}"
        assert isinstance(event, SyslogEvent)
        lines = event.lines(argument)
        return (f"{fault.target}: {len(lines)} syslog line(s) from {source} to {receiver.transport} "
                f"{receiver.host}:{receiver.port}: {lines[0]}")

    async def apply_faults(self, faults: Sequence[Fault]) -> None:
        current = {(f.target, f.kind, f.args): f for f in faults}
        for key, fault in list(self._sent.items()):
            if key not in current:
                del self._sent[key]
                self._send(fault, recovery=True)
        for key, fault in current.items():
            if self._sent.get(key) != fault:  # new, or applied again (a new `since`)
                self._sent[key] = fault
                self._send(fault, recovery=False)

    def _events(self, fault: Fault) -> Mapping[str, TrapEvent | SyslogEvent]:
        return TRAPS if fault.kind == "trap" else SYSLOG

    def _event(self, fault: Fault) -> tuple[TrapEvent | SyslogEvent, str]:
        events = self._events(fault)
        name, *rest = fault.args
        if name not in events:
            raise FaultError(f"{fault.kind}: no event {name!r}; one of {', '.join(events)}")
        event = events[name]
        if len(rest) > 1 or (not rest and not event.arguments.startswith("[") and event.arguments):
            raise FaultError(f"{fault.kind} {name} takes {event.arguments or 'no argument'}")
        if rest and not event.arguments:
            raise FaultError(f"{fault.kind} {name} takes no argument")
        return event, rest[0] if rest else str(event.default)

    def _source(self, kind: str, receiver: Receiver, device: EstateDevice) -> str:
        if device.key in receiver.sources:
            return receiver.sources[device.key]
        address = expand(device.address or "", self.context.environ)
        if not is_loopback(address):
            raise FaultError(f"{device.key}: address {address!r} is not loopback; the lab sends from loopback only")
        if kind == "trap":
            sharing = [d.key for d in self.context.estate.devices()
                       if d.key != device.key and expand(d.address or "", self.context.environ) == address]
            if sharing:
                raise FaultError(
                    f"{device.key} shares {address} with {len(sharing)} other device(s): the agent could not tell "
                    f"whose trap it is; give it an address of its own in agent.services.snmp_traps.sources"
                )
        return address

    def _send(self, fault: Fault, recovery: bool) -> None:
        receiver = self.receivers[fault.kind]
        assert receiver is not None
        event, argument = self._event(fault)
        device = self.context.estate.device(fault.target)
        source = self._source(fault.kind, receiver, device)
        if isinstance(event, TrapEvent):
            build = event.recovery if recovery else event.trap
            if build is None:
                return
            self._request_id += 1
            _send_udp(_trap_datagram(*build(_index(argument, event)), self._request_id), source, receiver)
            return
        if recovery:
            lines = event.recovery(argument) if event.recovery else []
        else:
            lines = event.lines(argument)
        messages = [f"<187>1 - {device.name} - - - - {text}".encode() for text in lines]
        if receiver.transport == "udp":
            for message in messages:
                _send_udp(message, source, receiver)
        else:
            with socket.create_connection((receiver.host, receiver.port), timeout=5, source_address=(source, 0)) as s:
                s.sendall(b"".join(f"{len(m)} ".encode() + m for m in messages))


def _index(argument: str, event: TrapEvent) -> int:
    if not argument.isdigit():
        raise FaultError(f"{event.arguments.strip('[]')} is an integer, got {argument}")
    return int(argument)


def _trap_datagram(oid: str, varbinds: Varbinds, request_id: int) -> bytes:
    head = [(ber.encode_oid(SYS_UPTIME_0), ber.TIMETICKS, UPTIME_TICKS),
            (ber.encode_oid(SNMP_TRAP_OID_0), ber.OBJECT_IDENTIFIER, ber.encode_oid(oid))]
    body = [(ber.encode_oid(o), tag, value) for o, tag, value in varbinds]
    return ber.encode_pdu(ber.VERSION_2C, b"public", ber.TRAP_V2, request_id, head + body)


def _send_udp(datagram: bytes, source: str, receiver: Receiver) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.sendto(datagram, (receiver.host, receiver.port))


def _receiver(options: Any, name: str, context: Context, ports: Mapping[str, str],
              defaults: type[BaseModel]) -> Receiver | None:
    """Where the agent's receiver ``name`` listens, as the estate configures it (the receiver's own
    defaults for what it leaves out); None when it configures none."""
    if options is None:
        return None
    if not isinstance(options, dict):
        raise EstateError(f"agent.services.{name}: expected a mapping")
    options = {**{key: defaults.model_fields[key].default for key in ports}, **options}
    host = expand(str(options.get("address", "127.0.0.1")), context.environ)
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if not is_loopback(host):
        raise EstateError(f"agent.services.{name}.address {host!r} is not loopback; the lab sends to loopback only")
    for key, transport in ports.items():
        if options.get(key) is not None:
            port = expand(str(options[key]), context.environ)
            if not port.isdigit():
                raise EstateError(f"agent.services.{name}.{key}: {port!r} is not a port")
            sources = {str(device): str(address) for address, device in (options.get("sources") or {}).items()}
            return Receiver(host, int(port), transport, sources)
    return None
