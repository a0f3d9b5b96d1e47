"""The SNMP trap receiver: a service (``agent.services.snmp_traps``) turning SNMPv1, SNMPv2c and
SNMPv3 notifications into ``snmp_trap`` samples for the alert engine. See TRAPS.md.

Per datagram, on the event loop and without I/O: the sender's token bucket (a flood is dropped
before it costs a decode), the BER decode (:func:`collectors.snmp.ber.decode_notification`), the
attribution to an inventory device (by sender address, then the SNMPv1 agent-addr or a proxy's
snmpTrapAddress.0), the notification's definition (traps.yaml). An SNMPv3 trap is attributed by
its sender's address first, then authenticated and decrypted with that device's USM user
(:mod:`collectors.snmp.usm`): a device is never trusted for a trap its own credentials do not
open. What fails a step is counted,
logged with its source, and dropped; the receiver itself never fails on input. An InformRequest
is acknowledged once accepted. The samples are then built by one consumer task, which reads the
polled state in a thread (the interface's name and alias for a linkDown) and submits them in
batches.

A trap never solves what a trap opened (agent/api/events.py): active events are remembered in
``<state_dir>/snmp_traps.db`` and ended only by the device's polled state, checked every
``confirm_interval_s``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from agent.api import DeviceInfo, PluginSpec, Rule, Sample, ServiceContext
from agent.api.events import (
    UNKNOWN_SOURCE,
    Attribution,
    Clearing,
    OpenEvents,
    ReceiverOptions,
    TokenBucket,
    udp_socket,
)
from agent.api.expressions import Expression, compile_expression
from collectors.snmp import ber
from collectors.snmp.usm import Usm, UsmError, UsmUser

log = logging.getLogger(__name__)

DEFINITIONS = Path(__file__).resolve().parent / "traps.yaml"
MEASUREMENT = "snmp_trap"
HEALTH_MEASUREMENT = "snmp_trap_receiver"
SYS_UPTIME_0 = "1.3.6.1.2.1.1.3.0"
SNMP_TRAP_OID_0 = "1.3.6.1.6.3.1.1.4.1.0"
SNMP_TRAP_ADDRESS_0 = "1.3.6.1.6.3.18.1.3.0"  # RFC 3584: the original agent, set by a proxy
SNMP_TRAPS = "1.3.6.1.6.3.1.1.5"  # generic trap N (v1) is SNMP_TRAPS.(N+1) in SNMPv2
MAX_TEXT = 1024  # characters of an OCTET STRING kept as a field
QUEUE_SIZE = 10_000
BATCH = 500
ENRICH_TTL_S = 300.0
LOGGED_SOURCES = 1024  # distinct unknown senders logged by name; the rest are only counted


class TrapOptions(ReceiverOptions):
    """``agent.services.snmp_traps``. Port 162 needs CAP_NET_BIND_SERVICE (TRAPS.md)."""

    port: Annotated[int, Field(ge=1, le=65535)] = 162


# -------------------------------------------------------------------------------- definitions
class _Object(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    tag: str | None = None
    field: str | None = None
    map: dict[Any, str] | None = None


class _Enrich(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    measurement: str
    same: dict[str, str]
    tags: list[str]


class _Clear(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    measurement: str | None = None
    same: dict[str, str] = {}
    match: dict[str, str] = {}
    when: str | None = None
    quiet_s: float | None = None


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    when: str | None = None
    active: bool = False
    clear: _Clear | None = None


class _Notification(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    oid: str
    mib: str
    index: str | None = None
    objects: dict[str, _Object] = {}
    enrich: _Enrich | None = None
    defaults: dict[str, str] = {}
    events: list[_Event]


@dataclass(frozen=True)
class Event:
    name: str
    condition: Expression | None
    active: bool
    clearing: Clearing | None


@dataclass(frozen=True)
class Definition:
    """One notification the receiver knows, compiled from traps.yaml."""

    oid: str
    mib: str
    index: str | None
    objects: Mapping[str, _Object]
    enrich: _Enrich | None
    defaults: Mapping[str, str]
    events: tuple[Event, ...]

    def event(self, fields: Mapping[str, Any]) -> Event | None:
        for event in self.events:
            if event.condition is None or event.condition.evaluate(fields) is True:
                return event
        return None


def load_definitions(path: Path = DEFINITIONS) -> dict[str, Definition]:
    """traps.yaml's notifications by OID; ValueError naming the first bad one."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    found: dict[str, Definition] = {}
    for item in raw["notifications"]:
        spec = _Notification.model_validate(item)
        events = []
        for event in spec.events:
            if event.active and event.clear is None:
                raise ValueError(f"{path}: {spec.mib} event {event.name}: an active event needs its `clear`")
            clearing = Clearing(**event.clear.model_dump()) if event.clear else None
            condition = compile_expression(event.when) if event.when else None
            events.append(Event(event.name, condition, event.active, clearing))
        if spec.oid in found:
            raise ValueError(f"{path}: {spec.oid} defined twice")
        found[spec.oid] = Definition(spec.oid, spec.mib, spec.index, spec.objects, spec.enrich, spec.defaults,
                                     tuple(events))
    return found


def trap_rules(path: Path = DEFINITIONS) -> list[Rule]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [Rule.model_validate(rule) for rule in raw["rules"]]


# -------------------------------------------------------------------------------- decoding
class TrapError(ValueError):
    """A well-formed SNMP message that is not a usable notification (no snmpTrapOID.0)."""


@dataclass(frozen=True)
class Trap:
    """A notification in SNMPv2 terms, whatever version carried it."""

    version: str  # "1" | "2c" | "3"
    oid: str
    uptime_ticks: int | None
    varbinds: list[tuple[str, int, int | bytes | None]]  # after sysUpTime.0 and snmpTrapOID.0
    agent_addresses: tuple[str, ...]  # v1 agent-addr, snmpTrapAddress.0: other names of the sender


def as_trap(notification: ber.Notification) -> Trap:
    varbinds = [(ber.oid_text(oid), tag, value) for oid, tag, value in notification.varbinds]
    addresses = [
        str(ipaddress.IPv4Address(value))
        for oid, tag, value in varbinds
        if oid == SNMP_TRAP_ADDRESS_0 and tag == ber.IP_ADDRESS and isinstance(value, bytes)
    ]
    if notification.version == ber.VERSION_1:
        assert notification.enterprise is not None and notification.agent_address is not None
        generic, specific = notification.generic_trap, notification.specific_trap
        if generic == 6:
            oid = f"{ber.oid_text(notification.enterprise)}.0.{specific}"
        else:
            oid = f"{SNMP_TRAPS}.{(generic or 0) + 1}"
        agent = str(ipaddress.IPv4Address(notification.agent_address))
        return Trap("1", oid, notification.timestamp, varbinds, (agent, *addresses))
    trap_oids = [value for oid, tag, value in varbinds if oid == SNMP_TRAP_OID_0 and tag == ber.OBJECT_IDENTIFIER]
    if not trap_oids:
        raise TrapError("no snmpTrapOID.0 varbind")
    uptime = next((v for o, t, v in varbinds if o == SYS_UPTIME_0 and t == ber.TIMETICKS), None)
    rest = [(o, t, v) for o, t, v in varbinds if o not in (SYS_UPTIME_0, SNMP_TRAP_OID_0)]
    version = "3" if notification.version == ber.VERSION_3 else "2c"
    return Trap(version, ber.oid_text(trap_oids[0]), uptime, rest, tuple(addresses))  # type: ignore[arg-type]


def _frozen(focus: Mapping[str, str] | None) -> frozenset[tuple[str, str]] | None:
    return None if focus is None else frozenset(focus.items())


def _value(tag: int, value: int | bytes | None) -> int | str | None:
    if isinstance(value, int):
        return value
    if value is None:
        return None
    if tag == ber.OBJECT_IDENTIFIER:
        return ber.oid_text(value)
    if tag == ber.IP_ADDRESS:
        return str(ipaddress.IPv4Address(value))
    return value.decode("utf-8", "replace").rstrip("\x00")[:MAX_TEXT]


def read_objects(definition: Definition, trap: Trap) -> tuple[dict[str, str], dict[str, Any]]:
    """The tags and fields the definition's objects make of the trap's varbinds."""
    tags: dict[str, str] = {}
    fields: dict[str, Any] = dict(definition.defaults)
    for oid, tag, raw in trap.varbinds:
        for prefix, spec in definition.objects.items():
            if not oid.startswith(prefix + "."):
                continue
            index = oid[len(prefix) + 1 :]
            if definition.index and index != "0":
                tags[definition.index] = index
            value = _value(tag, raw)
            if spec.map is not None:
                value = spec.map.get(value)
            if spec.tag and value is not None:
                tags[spec.tag] = str(value)
            if spec.field:
                fields[spec.field] = value
            break
    return tags, fields


# -------------------------------------------------------------------------------- the service
@dataclass
class Counters:
    received: int = 0
    accepted: int = 0
    rate_limited: int = 0
    malformed: int = 0
    unknown_source: int = 0
    ambiguous_source: int = 0
    unknown_trap: int = 0
    overflow: int = 0
    informs_acknowledged: int = 0
    # SNMPv3: the message's user is not the sending device's, its digest is wrong, it is a
    # replay, it does not decrypt, its security level is not the user's; or an SNMPv3 inform
    v3_unknown_user: int = 0
    v3_auth_failed: int = 0
    v3_not_in_time_window: int = 0
    v3_decryption_failed: int = 0
    v3_wrong_security_level: int = 0
    v3_unsupported: int = 0
    confirmation_rounds: int = 0
    cleared: int = 0

    def fields(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Accepted:
    device: DeviceInfo
    definition: Definition
    trap: Trap
    source: str
    at: float


@dataclass
class _Enrichment:
    at: float
    rows: list[Mapping[str, str]] = field(default_factory=list)


class TrapReceiver:
    """The ``snmp_traps`` service."""

    def __init__(self, options: TrapOptions, definitions: Mapping[str, Definition] | None = None) -> None:
        self.options = options
        self.definitions = dict(definitions if definitions is not None else load_definitions())
        self.counters = Counters()
        self.port: int | None = None  # bound port, once started
        self._queue: asyncio.Queue[Accepted] = asyncio.Queue(QUEUE_SIZE)
        self._transport: asyncio.DatagramTransport | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._logged: set[tuple[str, ...]] = set()
        self._enrichments: dict[tuple[str, str, str], _Enrichment] = {}

    async def start(self, context: ServiceContext) -> None:
        self.context = context
        self.usm = Usm(context.clock)
        self.attribution = Attribution(context.inventory.devices(), self.options.sources)
        self.buckets = TokenBucket(self.options.rate_per_source, self.options.burst_per_source, context.clock)
        self.events = OpenEvents(Path(context.state_dir) / "snmp_traps.db", context.clock,
                                 self.options.max_open_events)
        loop = asyncio.get_running_loop()
        try:
            sock = udp_socket(self.options.address, self.options.port)
            self._transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=sock)
        except OSError as exc:
            self.events.close()
            hint = " (below 1024 needs CAP_NET_BIND_SERVICE, see TRAPS.md)" if self.options.port < 1024 else ""
            raise OSError(f"snmp_traps: udp {self.options.address}:{self.options.port}: {exc.strerror}{hint}") from None
        self.port = self._transport.get_extra_info("sockname")[1]
        self._consumer = loop.create_task(self._consume(), name="vigie-snmp-traps")
        context.every(self.options.confirm_interval_s, self._confirm, "snmp_traps-confirm")
        context.every(self.options.health_interval_s, self._health, "snmp_traps-health")
        log.info("snmp_traps: listening on udp %s:%d", self.options.address, self.port)

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
        if self._consumer is not None:
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
        self.events.close()

    # -- per datagram (event loop, no I/O) --------------------------------------------------------
    def received(self, data: bytes, address: tuple[Any, ...]) -> None:
        source = str(address[0])
        self.counters.received += 1
        if not self.buckets.allow(source):
            self.counters.rate_limited += 1
            return
        try:
            if ber.is_v3(data):
                opened = self._open_v3(data, source)
                if opened is None:
                    return
                notification, device = opened
                trap = as_trap(notification)
            else:
                notification = ber.decode_notification(data)
                trap = as_trap(notification)
                device = self._device((source, *trap.agent_addresses), source)
                if device is None:
                    return
        except (ber.BerError, TrapError) as exc:
            self.counters.malformed += 1
            log.warning("snmp_traps: malformed trap from %s (%d bytes): %s", source, len(data), exc)
            return
        definition = self.definitions.get(trap.oid)
        if definition is None:
            self.counters.unknown_trap += 1
            log.info("snmp_traps: unknown trap %s from %s (%s/%s), %d varbinds", trap.oid, source, device.client,
                     device.name, len(trap.varbinds))
            return
        try:
            self._queue.put_nowait(Accepted(device, definition, trap, source, self.context.clock()))
        except asyncio.QueueFull:
            self.counters.overflow += 1
            return
        self.counters.accepted += 1
        if notification.pdu_type == ber.INFORM_REQUEST and self._transport is not None:
            assert notification.request_id is not None
            ack = ber.encode_pdu(notification.version, notification.community, ber.RESPONSE,
                                 notification.request_id, notification.varbinds)
            self._transport.sendto(ack, address)
            self.counters.informs_acknowledged += 1

    def _device(self, addresses: tuple[str, ...], source: str) -> DeviceInfo | None:
        device = self.attribution.device(addresses)
        if isinstance(device, str):
            if device == UNKNOWN_SOURCE:
                self.counters.unknown_source += 1
            else:
                self.counters.ambiguous_source += 1
            self._log_source_once(source, device)
            return None
        return device

    def _open_v3(self, data: bytes, source: str) -> tuple[ber.Notification, DeviceInfo] | None:
        """An SNMPv3 datagram -> its notification and the device whose USM user opened it; None
        (counted, logged) when none does. BerError for a malformed message."""
        message = ber.decode_v3_message(data)
        device = self._device((source,), source)
        if device is None:
            return None
        user = UsmUser.from_credentials(self.context.credentials(device.client, device.name, "snmp") or {})
        try:
            if user is None:
                raise UsmError("unknown_user", "the device has no SNMPv3 user in its credentials")
            notification = ber.decode_scoped_notification(self.usm.open(message, data, user))
        except UsmError as exc:
            setattr(self.counters, f"v3_{exc.reason}", getattr(self.counters, f"v3_{exc.reason}") + 1)
            self._log_once((source, exc.reason), "snmp_traps: SNMPv3 traps from %s (%s/%s) refused: %s; counted "
                           "from now on", source, device.client, device.name, exc)
            return None
        if notification.pdu_type == ber.INFORM_REQUEST:
            # acknowledging would make vigie the authoritative engine (discovery, reports)
            self.counters.v3_unsupported += 1
            self._log_once((source, "inform"), "snmp_traps: SNMPv3 informs from %s dropped: not supported (send "
                           "SNMPv3 traps, or SNMPv2c informs); counted from now on", source)
            return None
        return notification, device

    def _log_source_once(self, source: str, why: str) -> None:
        self._log_once((source,), "snmp_traps: traps from %s dropped: %s source (not in the inventory%s); counted "
                       "from now on", source, why, " or shared by several devices" if why != UNKNOWN_SOURCE else "")

    def _log_once(self, key: tuple[str, ...], message: str, *args: Any) -> None:
        """One warning per sender and cause, for a bounded number of them: a flood is counted, not logged."""
        if key in self._logged or len(self._logged) >= LOGGED_SOURCES:
            return
        self._logged.add(key)
        log.warning(message, *args)

    # -- samples (consumer task) -------------------------------------------------------------------
    async def _consume(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            samples: list[tuple[Sample, Event]] = []
            for accepted in batch:
                try:
                    built = await self._sample(accepted)
                except Exception:  # noqa: BLE001 - one bad trap must not end the receiver
                    log.exception("snmp_traps: trap %s from %s not turned into a sample", accepted.trap.oid,
                                  accepted.source)
                    continue
                if built is not None:
                    samples.append(built)
            if not samples:
                continue
            await self.context.submit([sample for sample, _ in samples])
            active = [(sample, event.clearing) for sample, event in samples if event.active and event.clearing]
            # The device confirms what its trap says at once, not at its next turn (a trap is one
            # unauthenticated datagram; the poll is the device's word): only the object the trap
            # names when there is one, the whole device when its traps name several or none.
            foci: dict[tuple[str, str], list[dict[str, str] | None]] = {}
            for sample, clearing in active:
                foci.setdefault((sample.tags["client"], sample.tags["device"]), []).append(clearing.focus(sample.tags))
            for device, wanted in foci.items():
                self.context.poll_now(*device, "snmp", focus=wanted[0] if len(set(map(_frozen, wanted))) == 1 else None)
            if active:
                await asyncio.to_thread(self.events.remember, active)

    async def _sample(self, accepted: Accepted) -> tuple[Sample, Event] | None:
        definition, trap, device = accepted.definition, accepted.trap, accepted.device
        object_tags, fields = read_objects(definition, trap)
        event = definition.event(fields)
        if event is None:
            self.counters.unknown_trap += 1
            log.info("snmp_traps: %s from %s matches none of its events (%s)", definition.mib, accepted.source, fields)
            return None
        base = self.context.tags_for(device.client, device.name) or {}
        tags = {**base, **object_tags, "trap": event.name, "trap_oid": trap.oid}
        if definition.enrich is not None:
            tags.update(await self._enriched(device, definition.enrich, tags))
        fields.update({
            "active": event.active,
            "uptime_s": None if trap.uptime_ticks is None else trap.uptime_ticks / 100,
            "source": accepted.source,
            "version": trap.version,
        })
        return Sample(MEASUREMENT, tags, fields, int(accepted.at * 1e9)), event

    async def _enriched(self, device: DeviceInfo, enrich: _Enrich, tags: Mapping[str, str]) -> dict[str, str]:
        """Tags of the polled series of the same object (its latest poll), cached per device."""
        if any(own not in tags for own in enrich.same.values()):
            return {}
        key = (device.client, device.name, enrich.measurement)
        now = self.context.clock()
        cached = self._enrichments.get(key)
        if cached is None or now - cached.at > ENRICH_TTL_S:
            latest = await asyncio.to_thread(
                self.context.state.latest, enrich.measurement, {"client": device.client, "device": device.name}
            )
            rows = list({tuple(sorted(r.tags.items())): r.tags for r in latest}.values())
            cached = self._enrichments[key] = _Enrichment(now, rows)
        for row in cached.rows:
            if all(row.get(polled) == tags[own] for polled, own in enrich.same.items()):
                return {name: row[name] for name in enrich.tags if name in row}
        return {}

    # -- periodic ---------------------------------------------------------------------------------
    async def _confirm(self) -> None:
        self.counters.cleared += await self.events.confirm(self.context.state.latest, self.context.submit)
        self.counters.confirmation_rounds += 1

    async def _health(self) -> None:
        fields: dict[str, int] = {**self.counters.fields(), "open_events": self.events.count(),
                                  "queued": self._queue.qsize()}
        await self.context.submit([Sample(HEALTH_MEASUREMENT, {"service": "snmp_traps"}, fields,
                                          int(self.context.clock() * 1e9))])


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, receiver: TrapReceiver) -> None:
        self.receiver = receiver

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        try:
            self.receiver.received(data, addr)
        except Exception:  # noqa: BLE001 - never let one datagram close the endpoint
            log.exception("snmp_traps: datagram from %s", addr[0])

    def error_received(self, exc: Exception) -> None:
        log.debug("snmp_traps: socket error %s", exc)


TRAPS = PluginSpec(
    name="snmp_traps",
    kind="service",
    factory=TrapReceiver,
    options=TrapOptions,
    default_rules=trap_rules,
    # APC's and UPS-MIB's "on battery" are one event of one UPS: the OID that said it is descriptive
    descriptive_tags=frozenset({"trap_oid"}),
    description="SNMPv1/v2c trap receiver: link, restart, power, environment and failover events",
)
