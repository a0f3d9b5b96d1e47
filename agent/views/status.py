"""Devices and their state: up, down, unreachable or unknown, with each collector's last turn.

A device's state is the alert engine's reading of its last observed `collection` statuses (the
engine's ``device_status`` table: turns that did not run, ``skipped`` or ``overloaded``, are no
news and are not in it): **down** when one of them is a status in :data:`DOWN_STATUSES` and none
is ``ok`` — the very test by which the engine holds back the device's other alerts — else **up**.
A down device with a parent that is down too is **unreachable** (as Nagios says it: it may be
fine, the way to it is not), named by ``behind``; without the config's parents, the engine's own
``inhibited_by`` on the device's alerts says the same. A device never observed is **unknown**.

Each collector's last turn (status, error, time, duration, samples) comes from the rollups'
``latest`` values of the `collection` measurement (agent/state.py), skipped turns included: they
say what the agent did last.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agent.api import DeviceInfo
from agent.statedir import StateDir
from agent.views.db import as_float, as_int, as_str, read_only, rows

UP, DOWN, UNREACHABLE, UNKNOWN = "up", "down", "unreachable", "unknown"
# What the runner gives the alert engine as "the device did not answer" (unreachable_statuses).
DOWN_STATUSES = frozenset({"unreachable", "timeout"})
COLLECTION = "collection"


@dataclass(frozen=True)
class CollectorStatus:
    """A collector's last turn on a device; ``status`` None: never polled (yet)."""

    collector: str
    status: str | None = None
    at: float | None = None  # epoch seconds
    error: str | None = None
    duration_s: float | None = None
    samples: int | None = None


@dataclass(frozen=True)
class DeviceStatus:
    client: str
    device: str
    site: str | None
    state: str  # up | down | unreachable | unknown
    collectors: tuple[CollectorStatus, ...]
    last_poll_at: float | None = None  # its latest turn, any collector
    behind: str | None = None  # unreachable: the device ("client/device") that is down in front of it
    firing: int = 0  # its alerts firing now


def device_statuses(
    files: StateDir, devices: Sequence[DeviceInfo] | None = None, client: str | None = None
) -> list[DeviceStatus]:
    """Every device of ``devices`` (the config's inventory: never-polled devices show ``unknown``),
    or without it every device the state directory knows; only ``client``'s when given. Sorted by
    client, then device."""
    turns, sites = _last_turns(files)
    observed, inhibitors, firing = _engine_view(files)
    if devices is not None:
        collectors = {(d.client, d.name): tuple(d.collectors) for d in devices}
        sites = {(d.client, d.name): d.site for d in devices}
        parents = {(d.client, d.name): d.parent for d in devices if d.parent}
    else:
        collectors = {key: tuple(sorted({*turns.get(key, {}), *observed.get(key, {})})) for key in {*turns, *observed}}
        parents = {}
    states = {key: _own_state(observed.get(key, {}), names) for key, names in collectors.items()}
    reported = _reported(files) if any(not names for names in collectors.values()) else {}
    for key, names in collectors.items():
        if not names:  # a device a controller or hypervisor reports on (piggyback): no run of its own
            states[key] = _reported_state(reported.get(key), firing.get(key, 0), now=max(reported.values(), default=0))
    found = []
    for key, names in sorted(collectors.items()):
        if client is not None and key[0] != client:
            continue
        state, behind = states[key], None
        if state == DOWN:
            behind = _down_ancestor(key, parents, states) or inhibitors.get(key)
            if behind is not None:
                state = UNREACHABLE
        last = tuple(turns.get(key, {}).get(name, CollectorStatus(name)) for name in names)
        found.append(
            DeviceStatus(
                client=key[0],
                device=key[1],
                site=sites.get(key),
                state=state,
                collectors=last,
                last_poll_at=max((turn.at for turn in last if turn.at is not None), default=None),
                behind=behind,
                firing=firing.get(key, 0),
            )
        )
    return found


def _own_state(statuses: dict[str, str], collectors: Iterable[str]) -> str:
    seen = {statuses[name] for name in collectors if name in statuses}
    if not seen:
        return UNKNOWN
    return DOWN if seen & DOWN_STATUSES and "ok" not in seen else UP


REPORTED_STALE_S = 900.0  # a reported device no sample has spoken of for this long is unknown


def _reported_state(last_at: float | None, firing: int, now: float) -> str:
    """A device with no poll of its own: down while one of its alerts fires, up while samples
    about it keep coming (from its controller), unknown otherwise. ``now``: the newest report of
    any device (the views take no clock: a stopped agent's state reads as it was)."""
    if last_at is None or now - last_at > REPORTED_STALE_S:
        return UNKNOWN
    return DOWN if firing else UP


def _reported(files: StateDir) -> dict[tuple[str, str], float]:
    """(client, device) -> the newest sample about it, whatever its measurement."""
    with read_only(files.state_db) as conn:
        found = rows(conn, "SELECT s.tags, MAX(l.ts) AS ts FROM latest l JOIN series s ON s.id = l.series_id "
                           "GROUP BY s.id")
    newest: dict[tuple[str, str], float] = {}
    for row in found:
        tags = json.loads(row["tags"])
        if tags.get("client") and tags.get("device"):
            key = (tags["client"], tags["device"])
            newest[key] = max(newest.get(key, 0.0), row["ts"] / 1e9)
    return newest


def _down_ancestor(
    key: tuple[str, str], parents: dict[tuple[str, str], str], states: dict[tuple[str, str], str]
) -> str | None:
    client, device = key
    seen = {device}
    while (parent := parents.get((client, device))) is not None and parent not in seen:
        if states.get((client, parent)) in (DOWN, UNREACHABLE):
            return f"{client}/{parent}"
        seen.add(parent)
        device = parent
    return None


def _last_turns(
    files: StateDir,
) -> tuple[dict[tuple[str, str], dict[str, CollectorStatus]], dict[tuple[str, str], str | None]]:
    """(client, device) -> collector -> its last turn; and (client, device) -> its site tag."""
    with read_only(files.state_db) as conn:
        found = rows(
            conn,
            "SELECT s.tags, l.field, l.value, l.ts FROM latest l JOIN series s ON s.id = l.series_id"
            " WHERE s.measurement = ?",
            (COLLECTION,),
        )
    fields: dict[tuple[str, str, str], dict[str, object]] = {}
    stamps: dict[tuple[str, str, str], int] = {}
    sites: dict[tuple[str, str], str | None] = {}
    for row in found:
        tags = json.loads(row["tags"])
        if not tags.get("client") or not tags.get("device"):
            continue
        key = (tags["client"], tags["device"], tags.get("collector", ""))
        fields.setdefault(key, {})[row["field"]] = row["value"]
        stamps[key] = max(stamps.get(key, 0), row["ts"])
        sites[key[:2]] = tags.get("site")
    turns: dict[tuple[str, str], dict[str, CollectorStatus]] = {}
    for (client, device, collector), values in fields.items():
        turns.setdefault((client, device), {})[collector] = CollectorStatus(
            collector=collector,
            status=as_str(values.get("status")),
            at=stamps[(client, device, collector)] / 1e9,
            error=as_str(values.get("error")),
            duration_s=as_float(values.get("duration_s")),
            samples=as_int(values.get("samples")),
        )
    return turns, sites


def _held_by_device(inhibited_by: str | None, key: tuple[str, str]) -> bool:
    """Whether a pending alert of the device ``key`` is held by another device of its client (a
    rule's inhibition names ``<source rule>/<fingerprint>`` instead; the device's own
    unreachability holds its other alerts and says nothing about a parent)."""
    client, device = key
    return inhibited_by is not None and inhibited_by.startswith(f"{client}/") and inhibited_by != f"{client}/{device}"


def _engine_view(
    files: StateDir,
) -> tuple[dict[tuple[str, str], dict[str, str]], dict[tuple[str, str], str], dict[tuple[str, str], int]]:
    """From the alert engine's file: the observed statuses per device and collector, the device
    holding back each device's pending alerts, and how many of its alerts fire."""
    with read_only(files.alerts_db) as conn:
        statuses = rows(conn, "SELECT client, device, collector, status FROM device_status")
        active = rows(conn, "SELECT labels, state, inhibited_by FROM alerts WHERE state IN ('pending', 'firing')")
    observed: dict[tuple[str, str], dict[str, str]] = {}
    for row in statuses:
        observed.setdefault((row["client"], row["device"]), {})[row["collector"]] = row["status"]
    inhibitors: dict[tuple[str, str], str] = {}
    firing: dict[tuple[str, str], int] = {}
    for row in active:
        labels = json.loads(row["labels"])
        key = (labels.get("client", ""), labels.get("device", ""))
        if row["state"] == "firing":
            firing[key] = firing.get(key, 0) + 1
        elif _held_by_device(row["inhibited_by"], key):
            inhibitors[key] = row["inhibited_by"]
    return observed, inhibitors, firing
