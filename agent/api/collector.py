"""The collector contract: validate options without I/O, then collect one target into a sink.

A collector knows nothing about storage, alerting or the scheduler. It raises
:class:`Unreachable` when the target does not answer at all and :class:`CollectError` when it
answered something unusable; it calls ``sink.error`` when only part of the collection failed. The
scheduler turns each outcome into an explicit `collection` sample, so a dead device is never
silence.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.api.samples import Sink


def stable_fraction(key: str) -> float:
    """``key`` as a number in [0, 1), the same in every process and uniform over many keys: where
    a periodic task of each device falls in its period (the scheduler's phases, a collector's own
    slower cadence), so that a fleet's tasks spread out and keep their place across restarts. A
    cryptographic digest rather than ``hash()``, which Python seeds differently in each process."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class CollectError(Exception):
    """The target answered, but not something the collector can use."""


class Unreachable(CollectError):
    """The target did not answer (timeout, refused, no route)."""


@dataclass(frozen=True)
class Target:
    """One device as a collector sees it: where it is, how to log in, which tags to stamp (its
    options are the collector's own, given when it was built).

    ``credentials`` are this collector's own (a device may give SNMP a community and SSH a key).
    """

    name: str
    address: str
    port: int | None = None
    credentials: Mapping[str, Any] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)


class Collector(Protocol):
    """One instance per (device, collector) pair, kept for the agent's lifetime, so it may keep
    per-device state between runs (counter values for rates, discovered indexes).

    A collector may also have ``async def collect_focused(target, sink, focus) -> bool``: read only
    the object ``focus`` names (``{"measurement": "snmp_interface", "if_index": "3"}``, what a
    trap reported), and say False — having read nothing — when it cannot narrow to it; the
    scheduler then runs ``collect``. A narrowed run must not make the objects it did not read
    look gone."""

    async def collect(self, target: Target, sink: Sink) -> None: ...
