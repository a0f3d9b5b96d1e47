"""What the receivers of unsolicited events share (the SNMP trap receiver, the syslog receiver): a
rate limit per source, the attribution of a sender to an inventory device, and the open events
that only the device itself may close.

Why a trap or a log line never closes what one opened: UDP loses and reorders datagrams (a linkUp
may arrive before the linkDown it follows), and whoever can send a datagram can send "all is
well". So an event's sample says ``active: True`` and the receiver remembers it
(:class:`OpenEvents`, SQLite in the state directory: a restart forgets none); it writes
``active: False`` on the same series only when the event is over by the device's own word: a poll
read well after the event satisfies the event's :class:`Clearing` (the interface answers up
again), or, for what no poll can see (a burst of failed logins, a disk error), the event has not
recurred for ``quiet_s``. Rules over events are written ``active == True``: they fire on an event
and resolve only through that confirmation.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.api.expressions import Expression, compile_expression
from agent.api.samples import Sample
from agent.api.services import DeviceInfo

log = logging.getLogger(__name__)

UNKNOWN_SOURCE = "unknown"
AMBIGUOUS_SOURCE = "ambiguous"



class ReceiverOptions(BaseModel):
    """What every event receiver's options have (``agent.services.snmp_traps``, ``...syslog``):
    where it listens, its per-sender rate limit, extra sender addresses, how often open events are
    checked for confirmation and health reported. A receiver adds its ports and its own keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str = "0.0.0.0"
    # per sender: sustained events/s and the burst above it (a linkDown storm of a 48-port switch)
    rate_per_source: Annotated[float, Field(gt=0)] = 20.0
    burst_per_source: Annotated[int, Field(ge=1)] = 200
    # more sender addresses -> CLIENT/DEVICE (a trap-source loopback, each unit of a firewall pair)
    sources: dict[str, str] = {}
    confirm_interval_s: Annotated[float, Field(gt=0)] = 10.0
    health_interval_s: Annotated[float, Field(gt=0)] = 60.0
    max_open_events: Annotated[int, Field(ge=1)] = 10_000

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        ipaddress.ip_address(value)
        return value

    @field_validator("sources")
    @classmethod
    def _sources(cls, value: dict[str, str]) -> dict[str, str]:
        for address, device in value.items():
            ipaddress.ip_address(address)
            if device.count("/") != 1:
                raise ValueError(f"{address}: {device!r} is not CLIENT/DEVICE")
        return value


class TokenBucket:
    """One token bucket per key (a sender's address): ``rate_per_s`` sustained, ``burst`` at once.

    Buckets idle long enough to be full again are forgotten when more than ``max_keys`` are held;
    if a flood from that many spoofed addresses leaves none idle, all are forgotten (each sender
    gets a fresh burst) rather than letting the table grow."""

    def __init__(self, rate_per_s: float, burst: float, clock: Callable[[], float], max_keys: int = 65536) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate_per_s > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def allow(self, key: str) -> bool:
        now = self.clock()
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate_per_s)
        allowed = tokens >= 1
        if allowed:
            tokens -= 1
        if key not in self._buckets and len(self._buckets) >= self.max_keys:
            self._forget_idle(now)
        self._buckets[key] = (tokens, now)
        return allowed

    def _forget_idle(self, now: float) -> None:
        refill_s = self.burst / self.rate_per_s
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < refill_s}
        if len(self._buckets) >= self.max_keys:
            self._buckets.clear()


RECEIVE_BUFFER = 4 * 1024 * 1024  # bytes; Linux caps it at net.core.rmem_max


def udp_socket(address: str, port: int) -> socket.socket:
    """A UDP socket bound to ``address:port`` with a receive buffer for a burst (a linkDown storm
    of a stack reloading) while the event loop is busy: what overflows it is lost unseen."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.bind((address, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def plain_address(address: str) -> str:
    """``::ffff:10.0.0.1`` (an IPv4 sender seen by a dual-stack socket) -> ``10.0.0.1``."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    mapped = getattr(parsed, "ipv4_mapped", None)
    return str(mapped) if mapped is not None else str(parsed)


class Attribution:
    """Which inventory device sent a message.

    ``sources`` maps more addresses to devices (``10.9.0.1: client/device``): a router sending from
    its loopback while polled on its management address, each unit of a firewall pair polled on
    the pair's address. Otherwise the inventory address is looked up; when several devices share it
    (a NAT'd site, the lab's loopback) the message's ``hostname`` (syslog's HOSTNAME) chooses among
    them by name (the short name before the first dot counts). Inventory addresses are compared
    as written: a device known by a DNS name needs a ``sources`` entry (no lookup is made per
    message)."""

    def __init__(self, devices: Iterable[DeviceInfo], sources: Mapping[str, str] | None = None) -> None:
        self._by_address: dict[str, list[DeviceInfo]] = {}
        by_key: dict[str, DeviceInfo] = {}
        for device in devices:
            self._by_address.setdefault(plain_address(device.address), []).append(device)
            by_key[f"{device.client}/{device.name}"] = device
        self._sources: dict[str, DeviceInfo] = {}
        unknown = sorted(key for key in (sources or {}).values() if key not in by_key)
        if unknown:
            raise ValueError(f"sources name devices the inventory lacks: {', '.join(unknown)}")
        for address, key in (sources or {}).items():
            self._sources[plain_address(address)] = by_key[key]

    def device(self, addresses: Sequence[str], hostname: str | None = None) -> DeviceInfo | str:
        """The device behind the first of ``addresses`` (the sender, then any address the message
        carries: an SNMPv1 agent-addr) that names one, else ``AMBIGUOUS_SOURCE`` when an address
        was shared by several devices the hostname did not tell apart, else ``UNKNOWN_SOURCE``."""
        ambiguous = False
        for address in addresses:
            address = plain_address(address)
            if address in self._sources:
                return self._sources[address]
            found = self._by_address.get(address, [])
            shared = len(found) > 1
            if shared and hostname:
                name = hostname.lower()
                found = [d for d in found if d.name.lower() in (name, name.split(".", 1)[0])]
            if len(found) == 1:
                return found[0]
            ambiguous = ambiguous or shared
        return AMBIGUOUS_SOURCE if ambiguous else UNKNOWN_SOURCE


@dataclass(frozen=True)
class Clearing:
    """How an open event ends, by the device's word.

    ``measurement`` / ``same`` / ``match`` / ``when``: the polled series of ``measurement`` whose
    tags equal the event's as ``same`` pairs them (polled tag -> event tag, e.g. ``{if_index:
    if_index}``; client and device always) and hold ``match`` (polled tag -> value, e.g.
    ``{sensor_class: fan}``) were read ``settle_s`` or more after the event's last occurrence, and
    every one so read satisfies ``when`` (e.g. ``oper_status == 'up'``; for a trap naming no
    sensor, every fan). ``settle_s`` keeps a poll that was already reading when the event happened
    from clearing it. ``quiet_s``: or no recurrence for that long. Either ends it."""

    measurement: str | None = None
    same: Mapping[str, str] = field(default_factory=dict)
    match: Mapping[str, str] = field(default_factory=dict)
    when: str | None = None
    quiet_s: float | None = None
    settle_s: float = 10.0

    def __post_init__(self) -> None:
        if (self.measurement is None) != (self.when is None):
            raise ValueError("a clearing by poll needs both measurement and when")
        if self.measurement is None and self.quiet_s is None:
            raise ValueError("a clearing needs a polled confirmation (measurement, when) or quiet_s")
        if self.when is not None:
            object.__setattr__(self, "_condition", compile_expression(self.when))

    @property
    def condition(self) -> Expression | None:
        return getattr(self, "_condition", None)

    def focus(self, tags: Mapping[str, str]) -> dict[str, str] | None:
        """The one object a poll must read to confirm the event with these tags over, as
        ``ServiceContext.poll_now`` takes it (``{"measurement": "snmp_interface", "if_index":
        "3"}``); None when the clearing names no single object (every fan; a restart)."""
        if self.measurement is None or len(self.same) != 1 or self.match:
            return None
        ((polled, event_tag),) = self.same.items()
        value = tags.get(event_tag)
        return None if value is None else {"measurement": self.measurement, polled: value}

    def to_json(self) -> str:
        return json.dumps({"measurement": self.measurement, "same": dict(self.same), "match": dict(self.match),
                           "when": self.when, "quiet_s": self.quiet_s, "settle_s": self.settle_s}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Clearing:
        return cls(**json.loads(text))


# What OpenEvents reads the agent's state with: StateView.latest (rows with .tags, .field, .value,
# .timestamp_ns).
LatestRows = Callable[[str, Mapping[str, str]], Sequence[Any]]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS open_events (
    key TEXT PRIMARY KEY,
    measurement TEXT NOT NULL,
    tags TEXT NOT NULL,
    clearing TEXT NOT NULL,
    first_at REAL NOT NULL,
    last_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS open_events_last ON open_events(last_at);
"""


class OpenEvents:
    """The active events a receiver submitted, until the device confirms each is over.

    ``remember`` is given the active event samples submitted (a recurrence moves ``last_at``);
    ``confirm`` checks them all against the polled state and submits the ``active: False``
    samples of those that are over. At most ``max_events`` are kept: past it, the oldest are
    dropped (logged), their alerts left firing rather than solved without a confirmation."""

    def __init__(self, path: Path, clock: Callable[[], float], max_events: int = 10_000) -> None:
        self.clock = clock
        self.max_events = max_events
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # a power cut may lose the last events remembered; their alerts then stay firing until an
        # operator acts, which is the safe side
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def remember(self, events: Sequence[tuple[Sample, Clearing]]) -> None:
        """Remember these active event samples (one transaction; blocking: run it in a thread)."""
        rows = []
        for sample, clearing in events:
            tags = json.dumps(dict(sample.tags), sort_keys=True)
            at = sample.timestamp_ns / 1e9
            rows.append((f"{sample.measurement} {tags}", sample.measurement, tags, clearing.to_json(), at, at))
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO open_events(key, measurement, tags, clearing, first_at, last_at) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT(key) DO UPDATE SET last_at = MAX(last_at, excluded.last_at), clearing = excluded.clearing",
                rows,
            )
            (count,) = self._db.execute("SELECT COUNT(*) FROM open_events").fetchone()
            excess = count - self.max_events
            if excess > 0:
                self._db.execute(
                    "DELETE FROM open_events WHERE key IN (SELECT key FROM open_events ORDER BY last_at LIMIT ?)",
                    (excess,),
                )
            self._db.execute("COMMIT")
        if excess > 0:
            log.warning("%d open event(s) dropped unconfirmed: more than %d open", excess, self.max_events)

    def is_open(self, measurement: str, tags: Mapping[str, str]) -> bool:
        key = f"{measurement} {json.dumps(dict(tags), sort_keys=True)}"  # as remember builds it
        with self._lock:
            return self._db.execute("SELECT 1 FROM open_events WHERE key = ?", (key,)).fetchone() is not None

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM open_events").fetchone()[0])

    def over(self, latest: LatestRows) -> list[Sample]:
        """The ``active: False`` samples of the events now over, forgotten at once (blocking:
        it reads the state; run it in a thread)."""
        now = self.clock()
        with self._lock:
            rows = self._db.execute("SELECT key, measurement, tags, clearing, last_at FROM open_events").fetchall()
        ended: list[tuple[str, Sample]] = []
        for key, measurement, tags_json, clearing_json, last_at in rows:
            tags = json.loads(tags_json)
            clearing = Clearing.from_json(clearing_json)
            cleared_by = _cleared_by(clearing, tags, last_at, now, latest)
            if cleared_by is not None:
                fields = {"active": False, "cleared_by": cleared_by}
                ended.append((key, Sample(measurement, tags, fields, int(now * 1e9))))
        if ended:
            with self._lock:
                self._db.executemany("DELETE FROM open_events WHERE key = ?", [(key,) for key, _ in ended])
        return [sample for _, sample in ended]

    async def confirm(self, latest: LatestRows, submit: Callable[[Sequence[Sample]], Awaitable[None]]) -> int:
        """Submit the ``active: False`` samples of the events now over; how many ended."""
        samples = await asyncio.to_thread(self.over, latest)
        if samples:
            await submit(samples)
        return len(samples)


def _cleared_by(clearing: Clearing, tags: Mapping[str, str], last_at: float, now: float,
                latest: LatestRows) -> str | None:
    if clearing.quiet_s is not None and now - last_at >= clearing.quiet_s:
        return "quiet"
    condition = clearing.condition
    if clearing.measurement is None or condition is None:
        return None
    wanted = {**clearing.match, "client": tags.get("client", ""), "device": tags.get("device", "")}
    for polled, own in clearing.same.items():
        if own not in tags:
            return None  # the event does not say which object: no poll can speak for it
        wanted[polled] = tags[own]
    after_ns = (last_at + clearing.settle_s) * 1e9
    series: dict[str, tuple[Mapping[str, str], dict[str, Any]]] = {}
    for row in latest(clearing.measurement, wanted):
        if row.timestamp_ns >= after_ns:
            series.setdefault(json.dumps(row.tags, sort_keys=True), (row.tags, {}))[1][row.field] = row.value
    if series and all(condition.evaluate(fields, polled_tags) is True for polled_tags, fields in series.values()):
        return clearing.measurement
    return None
