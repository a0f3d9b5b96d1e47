"""The syslog receiver service (``agent.services.syslog``): UDP and TCP, RFC 5424 and RFC 3164,
messages of the inventory's devices kept, and those matching a pattern turned into
``syslog_event`` samples for the alert engine. See README.md.

Per message, on the event loop and without I/O: the sender's token bucket, the parse, the
attribution to an inventory device (by sender address; the HOSTNAME chooses among devices sharing
it). What fails is counted, logged with its source, and dropped. One consumer task then stores the
raw messages (in a thread), matches the patterns, reads the polled state for the objects they name
(in a thread) and submits the samples in batches.

An event is never ended by a message (agent/api/events.py): active ones are remembered in
``<state_dir>/syslog_events.db`` until the device's polled state says they are over, or they stay
quiet for the pattern's ``quiet_s``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import ssl
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.api import DeviceInfo, Rule, Sample, ServiceContext, TagMatcher
from agent.api.events import (
    UNKNOWN_SOURCE,
    Attribution,
    Clearing,
    OpenEvents,
    ReceiverOptions,
    TokenBucket,
    udp_socket,
)
from collectors.syslog.parse import Framer, FramingError, Message, SyslogError, parse
from collectors.syslog.store import STORE_FILE, MessageStore, StoredMessage

log = logging.getLogger(__name__)

PATTERNS = Path(__file__).resolve().parent / "patterns.yaml"
MEASUREMENT = "syslog_event"
HEALTH_MEASUREMENT = "syslog_receiver"
MAX_FIELD_TEXT = 512  # characters of the message kept in the event's sample (the store has it all)
QUEUE_SIZE = 10_000
BATCH = 500
ENRICH_TTL_S = 300.0
LOGGED_SOURCES = 1024
TLS_HANDSHAKE_TIMEOUT_S = 10.0  # a sender that opens a connection and says nothing holds no slot longer


class ClearSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    measurement: str | None = None
    same: dict[str, str] = {}
    match: dict[str, str] = {}
    when: str | None = None
    quiet_s: float | None = None


class EnrichSpec(BaseModel):
    """Find the polled series whose tag or field named in ``polled`` equals the ``group`` captured
    (case-insensitive), and take its ``tags``; none found (the device is not polled, or not yet),
    the captured text becomes the ``fallback`` tag."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    measurement: str
    group: str
    polled: list[str]
    tags: list[str]
    fallback: str | None = None


class BurstSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    count: Annotated[int, Field(ge=2)]
    window_s: Annotated[float, Field(gt=0)]


class PatternSpec(BaseModel):
    """One pattern, built in (patterns.yaml) or configured (``patterns:`` of the options)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    regex: str
    event: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    tags: list[str] = []
    match: dict[str, str] = {}
    enrich: EnrichSpec | None = None
    burst: BurstSpec | None = None
    active: bool = False
    clear: ClearSpec | None = None

    @model_validator(mode="after")
    def _check(self) -> PatternSpec:
        try:
            groups = set(re.compile(self.regex).groupindex)
        except re.error as exc:
            raise ValueError(f"pattern {self.name}: bad regex: {exc}") from None
        missing = [t for t in self.tags if t not in groups]
        if missing:
            raise ValueError(f"pattern {self.name}: tags {', '.join(missing)} are no named group of its regex")
        if self.enrich is not None and self.enrich.group not in groups:
            raise ValueError(f"pattern {self.name}: enrich.group {self.enrich.group} is no named group")
        if self.active and self.clear is None:
            raise ValueError(f"pattern {self.name}: an active event needs its `clear`")
        if self.clear is not None:
            Clearing(**self.clear.model_dump())  # raises for an impossible clearing
        for tag, raw in self.match.items():
            TagMatcher.parse(tag, raw)
        return self


class SyslogOptions(ReceiverOptions):
    """``agent.services.syslog``. Port 514 needs CAP_NET_BIND_SERVICE (README.md)."""

    udp_port: Annotated[int, Field(ge=1, le=65535)] | None = 514
    tcp_port: Annotated[int, Field(ge=1, le=65535)] | None = 514
    # RFC 5425 (syslog over TLS, octet-counted frames; its port is 6514): off unless a port and the
    # server's certificate and key (PEM, the key unencrypted and readable by the agent only) are given
    tls_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    tls_certificate: Path | None = None
    tls_key: Path | None = None
    # mutual TLS: only senders with a certificate this CA signed may connect
    tls_client_ca: Path | None = None
    rate_per_source: Annotated[float, Field(gt=0)] = 50.0
    burst_per_source: Annotated[int, Field(ge=1)] = 500
    # after the built-in ones; one of the same name replaces it
    patterns: list[PatternSpec] = []
    keep_messages_s: Annotated[float, Field(gt=0)] = 7 * 86400.0
    max_messages: Annotated[int, Field(ge=1)] = 500_000
    max_message_bytes: Annotated[int, Field(ge=480, le=65536)] = 8192
    max_tcp_connections: Annotated[int, Field(ge=1)] = 256
    tcp_idle_timeout_s: Annotated[float, Field(gt=0)] = 900.0

    @model_validator(mode="after")
    def _a_port(self) -> SyslogOptions:
        if self.udp_port is None and self.tcp_port is None and self.tls_port is None:
            raise ValueError("udp_port, tcp_port and tls_port cannot all be off")
        if self.tls_port is not None and (self.tls_certificate is None or self.tls_key is None):
            raise ValueError("tls_port needs tls_certificate and tls_key")
        return self

    def server_tls(self) -> ssl.SSLContext | None:
        """The TLS listener's context (TLS 1.2 at least); None without ``tls_port``. Raises
        ValueError naming the file that cannot be read or used."""
        if self.tls_port is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(str(self.tls_certificate), str(self.tls_key))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"tls_certificate {self.tls_certificate} / tls_key {self.tls_key}: {exc}") from None
        if self.tls_client_ca is not None:
            try:
                context.load_verify_locations(str(self.tls_client_ca))
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"tls_client_ca {self.tls_client_ca}: {exc}") from None
            context.verify_mode = ssl.CERT_REQUIRED
        return context


@dataclass(frozen=True)
class Pattern:
    spec: PatternSpec
    regex: re.Pattern[str]
    matchers: tuple[TagMatcher, ...]
    clearing: Clearing | None

    def applies_to(self, tags: Mapping[str, str]) -> bool:
        return all(m.matches(tags) for m in self.matchers)


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def compile_patterns(configured: Sequence[PatternSpec], path: Path = PATTERNS) -> list[Pattern]:
    specs = {raw["name"]: PatternSpec.model_validate(raw) for raw in _load(path)["patterns"]}
    for spec in configured:
        specs[spec.name] = spec
    return [
        Pattern(spec, re.compile(spec.regex), tuple(TagMatcher.parse(t, r) for t, r in spec.match.items()),
                Clearing(**spec.clear.model_dump()) if spec.clear else None)
        for spec in specs.values()
    ]


def syslog_rules(path: Path = PATTERNS) -> list[Rule]:
    return [Rule.model_validate(rule) for rule in _load(path)["rules"]]


@dataclass
class Counters:
    received: int = 0
    accepted: int = 0
    rate_limited: int = 0
    malformed: int = 0
    unknown_source: int = 0
    ambiguous_source: int = 0
    overflow: int = 0
    events: int = 0
    tcp_connections: int = 0
    tcp_refused: int = 0
    confirmation_rounds: int = 0
    cleared: int = 0

    def fields(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Accepted:
    device: DeviceInfo
    message: Message
    source: str
    transport: str
    at: float


@dataclass
class _Enrichment:
    at: float
    series: list[tuple[Mapping[str, str], dict[str, Any]]] = field(default_factory=list)


class SyslogReceiver:
    """The ``syslog`` service."""

    def __init__(self, options: SyslogOptions) -> None:
        self.options = options
        self.patterns = compile_patterns(options.patterns)
        self.counters = Counters()
        # read now: a certificate that cannot be used is refused with the configuration
        self.tls = options.server_tls()
        self.udp_port: int | None = None  # bound ports, once started
        self.tcp_port: int | None = None
        self.tls_port: int | None = None
        self._queue: asyncio.Queue[Accepted] = asyncio.Queue(QUEUE_SIZE)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tls: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._consumer: asyncio.Task[None] | None = None
        self._logged: set[str] = set()
        self._bursts: dict[tuple[str, ...], deque[float]] = {}
        self._enrichments: dict[tuple[str, str, str], _Enrichment] = {}

    async def start(self, context: ServiceContext) -> None:
        self.context = context
        self.attribution = Attribution(context.inventory.devices(), self.options.sources)
        self.buckets = TokenBucket(self.options.rate_per_source, self.options.burst_per_source, context.clock)
        state_dir = Path(context.state_dir)
        self.store = MessageStore(state_dir / STORE_FILE, context.clock, self.options.keep_messages_s,
                                  self.options.max_messages)
        self.events = OpenEvents(state_dir / "syslog_events.db", context.clock, self.options.max_open_events)
        loop = asyncio.get_running_loop()
        address = self.options.address
        try:
            if self.options.udp_port is not None:
                sock = udp_socket(address, self.options.udp_port)
                self._udp, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=sock)
                self.udp_port = self._udp.get_extra_info("sockname")[1]
            if self.options.tcp_port is not None:
                self._tcp = await asyncio.start_server(
                    functools.partial(self._connection, transport="tcp"), address, self.options.tcp_port
                )
                self.tcp_port = self._tcp.sockets[0].getsockname()[1]
            if self.options.tls_port is not None:
                self._tls = await asyncio.start_server(
                    functools.partial(self._connection, transport="tls"), address, self.options.tls_port,
                    ssl=self.tls, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT_S,
                )
                self.tls_port = self._tls.sockets[0].getsockname()[1]
        except OSError as exc:
            await self._close()
            ports = (self.options.udp_port, self.options.tcp_port, self.options.tls_port)
            low = min(p for p in ports if p is not None) < 1024
            hint = " (below 1024 needs CAP_NET_BIND_SERVICE, see collectors/syslog/README.md)" if low else ""
            raise OSError(f"syslog: {address}: {exc.strerror}{hint}") from None
        self._consumer = loop.create_task(self._consume(), name="vigie-syslog")
        context.every(self.options.confirm_interval_s, self._confirm, "syslog-confirm")
        context.every(self.options.health_interval_s, self._health, "syslog-health")
        log.info("syslog: listening on %s udp %s tcp %s tls %s", address, self.udp_port, self.tcp_port, self.tls_port)

    async def stop(self) -> None:
        await self._close()

    async def _close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        for server in (self._tcp, self._tls):
            if server is not None:
                server.close()
        for writer in list(self._connections):
            writer.close()
        if self._consumer is not None:
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
        self.events.close()
        self.store.close()

    # -- per message (event loop, no I/O) ---------------------------------------------------------
    def received(self, data: bytes, source: str, transport: str) -> None:
        self.counters.received += 1
        if not self.buckets.allow(source):
            self.counters.rate_limited += 1
            return
        try:
            message = parse(data)
        except SyslogError as exc:
            self.counters.malformed += 1
            log.warning("syslog: malformed message from %s over %s (%d bytes): %s", source, transport, len(data), exc)
            return
        device = self.attribution.device((source,), message.hostname)
        if isinstance(device, str):
            if device == UNKNOWN_SOURCE:
                self.counters.unknown_source += 1
            else:
                self.counters.ambiguous_source += 1
            if source not in self._logged and len(self._logged) < LOGGED_SOURCES:
                self._logged.add(source)
                log.warning("syslog: messages from %s dropped: %s source (hostname %s); counted from now on", source,
                            device, message.hostname or "none")
            return
        try:
            self._queue.put_nowait(Accepted(device, message, source, transport, self.context.clock()))
        except asyncio.QueueFull:
            self.counters.overflow += 1
            return
        self.counters.accepted += 1

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, transport: str) -> None:
        peer = str(writer.get_extra_info("peername")[0])
        if len(self._connections) >= self.options.max_tcp_connections:
            self.counters.tcp_refused += 1
            writer.close()
            return
        self._connections.add(writer)
        self.counters.tcp_connections += 1
        framer = Framer(self.options.max_message_bytes)
        try:
            while chunk := await asyncio.wait_for(reader.read(65536), self.options.tcp_idle_timeout_s):
                for frame in framer.feed(chunk):
                    self.received(frame, peer, transport)
            for frame in framer.flush():
                self.received(frame, peer, transport)
        except FramingError as exc:
            self.counters.malformed += 1
            log.warning("syslog: %s stream from %s closed: %s", transport, peer, exc)
        except (TimeoutError, ConnectionError, ssl.SSLError):
            pass  # idle past the timeout, reset by the peer, or a TLS session that broke
        finally:
            self._connections.discard(writer)
            writer.close()

    # -- samples (consumer task) -------------------------------------------------------------------
    async def _consume(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            built: list[tuple[Sample, Pattern]] = []
            stored: list[StoredMessage] = []
            for accepted in batch:
                try:
                    found = await self._event(accepted)
                except Exception:  # noqa: BLE001 - one bad message must not end the receiver
                    log.exception("syslog: message from %s not turned into an event", accepted.source)
                    found = None
                if found is not None:
                    built.append(found)
                stored.append(_stored(accepted, found[0].tags["event"] if found else None))
            await asyncio.to_thread(self.store.add, stored)
            if not built:
                continue
            await self.context.submit([sample for sample, _ in built])
            self.counters.events += len(built)
            active = [(sample, pattern.clearing) for sample, pattern in built
                      if sample.fields.get("active") and pattern.clearing is not None]
            if active:
                await asyncio.to_thread(self.events.remember, active)

    async def _event(self, accepted: Accepted) -> tuple[Sample, Pattern] | None:
        device, message = accepted.device, accepted.message
        base = self.context.tags_for(device.client, device.name) or {}
        for pattern in self.patterns:
            if not pattern.applies_to(base):
                continue
            found = pattern.regex.search(message.text)
            if found is None:
                continue
            groups = {k: v for k, v in found.groupdict().items() if v is not None}
            tags = {**base, "event": pattern.spec.event, **{t: groups[t] for t in pattern.spec.tags if t in groups}}
            fields: dict[str, Any] = {k: v for k, v in groups.items() if k not in pattern.spec.tags}
            if pattern.spec.enrich is not None:
                tags.update(await self._enriched(device, pattern.spec.enrich, groups))
            active = pattern.spec.active
            if pattern.spec.burst is not None:
                count = self._burst_count(tags, pattern.spec.burst, accepted.at)
                fields.update(count=count, window_s=pattern.spec.burst.window_s)
                active = active and (count >= pattern.spec.burst.count or self.events.is_open(MEASUREMENT, tags))
            fields.update({
                "active": active,
                "pattern": pattern.spec.name,
                "message": message.text[:MAX_FIELD_TEXT],
                "severity": message.severity_name,
                "facility": message.facility_name,
                "app": message.app,
                "hostname": message.hostname,
                "source": accepted.source,
            })
            return Sample(MEASUREMENT, tags, fields, int(accepted.at * 1e9)), pattern
        return None

    def _burst_count(self, tags: Mapping[str, str], burst: BurstSpec, at: float) -> int:
        key = tuple(sorted(tags.items()))
        seen = self._bursts.setdefault(key, deque(maxlen=burst.count * 4))
        seen.append(at)
        while seen and seen[0] <= at - burst.window_s:
            seen.popleft()
        return len(seen)

    async def _enriched(self, device: DeviceInfo, enrich: EnrichSpec, groups: Mapping[str, str]) -> dict[str, str]:
        wanted = groups.get(enrich.group)
        if wanted is None:
            return {}
        key = (device.client, device.name, enrich.measurement)
        now = self.context.clock()
        cached = self._enrichments.get(key)
        if cached is None or now - cached.at > ENRICH_TTL_S:
            rows = await asyncio.to_thread(
                self.context.state.latest, enrich.measurement, {"client": device.client, "device": device.name}
            )
            series: dict[tuple[tuple[str, str], ...], tuple[Mapping[str, str], dict[str, Any]]] = {}
            for row in rows:
                series.setdefault(tuple(sorted(row.tags.items())), (row.tags, {}))[1][row.field] = row.value
            cached = self._enrichments[key] = _Enrichment(now, list(series.values()))
        for tags, fields in cached.series:
            values = [tags.get(name, fields.get(name)) for name in enrich.polled]
            if any(isinstance(v, str) and v.lower() == wanted.lower() for v in values):
                return {name: tags[name] for name in enrich.tags if name in tags}
        return {enrich.fallback: wanted} if enrich.fallback else {}

    # -- periodic ---------------------------------------------------------------------------------
    async def _confirm(self) -> None:
        self.counters.cleared += await self.events.confirm(self.context.state.latest, self.context.submit)
        self.counters.confirmation_rounds += 1

    async def _health(self) -> None:
        await asyncio.to_thread(self.store.prune)
        now = self.context.clock()
        longest = max((p.spec.burst.window_s for p in self.patterns if p.spec.burst), default=0.0)
        self._bursts = {k: v for k, v in self._bursts.items() if v and v[-1] > now - longest}
        fields: dict[str, int] = {**self.counters.fields(), "open_events": self.events.count(),
                                  "stored_messages": await asyncio.to_thread(self.store.count),
                                  "queued": self._queue.qsize(), "tcp_open": len(self._connections)}
        await self.context.submit([Sample(HEALTH_MEASUREMENT, {"service": "syslog"}, fields, int(now * 1e9))])


def _stored(accepted: Accepted, event: str | None) -> StoredMessage:
    message = accepted.message
    return StoredMessage(accepted.at, accepted.device.client, accepted.device.name, accepted.source,
                         message.facility_name, message.severity_name, message.app, event, message.text)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, receiver: SyslogReceiver) -> None:
        self.receiver = receiver

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        try:
            self.receiver.received(data, str(addr[0]), "udp")
        except Exception:  # noqa: BLE001 - never let one datagram close the endpoint
            log.exception("syslog: datagram from %s", addr[0])

    def error_received(self, exc: Exception) -> None:
        log.debug("syslog: socket error %s", exc)
