"""The Dashboard's answers as typed records, and the fields vigie keeps of them. No I/O, no vigie
import. A member missing or of the wrong type is None, never a made-up 0 or "online"; an item
without the key that identifies it (a device's serial, a network's id) is left out and counted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

STATUSES = ("online", "alerting", "offline", "dormant")
UPLINK_STATUSES = ("active", "ready", "connecting", "not connected", "failed")


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value != "" else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def timestamp(value: Any) -> dt.datetime | None:
    """An ISO 8601 time of the Dashboard (``2024-05-01T10:15:02.123456Z``), None if absent or bad."""
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _tags(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):  # older answers: one space-separated string
        return tuple(value.split())
    return tuple(t for t in value if isinstance(t, str)) if isinstance(value, list) else ()


@dataclass(frozen=True)
class Network:
    id: str
    name: str | None
    tags: tuple[str, ...]


@dataclass(frozen=True)
class DeviceStatus:
    serial: str
    name: str | None
    model: str | None
    product_type: str | None
    network_id: str | None
    status: str | None  # one of STATUSES, None when the Dashboard said something else
    last_reported_at: dt.datetime | None
    lan_ip: str | None
    public_ip: str | None
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Uplink:
    serial: str
    network_id: str | None
    interface: str
    status: str | None
    ip: str | None
    gateway: str | None
    public_ip: str | None
    provider: str | None  # cellular only


@dataclass(frozen=True)
class LossLatency:
    serial: str
    uplink: str
    loss_percent: float | None  # of the latest point with a value
    latency_ms: float | None


@dataclass(frozen=True)
class Neighbor:
    port: str  # the device's own port, e.g. "wired0"
    protocol: str  # "lldp" | "cdp"
    system_name: str | None
    port_id: str | None
    address: str | None


@dataclass
class Parsed:
    """Items of one answer and how many were left out for lacking their identifying key."""

    items: list[Any]
    dropped: int = 0


def _dicts(answer: Any) -> Iterable[Mapping[str, Any]]:
    return (item for item in answer if isinstance(item, dict)) if isinstance(answer, list) else ()


def networks(answer: Any) -> Parsed:
    parsed = Parsed([])
    for item in _dicts(answer):
        if _str(item.get("id")) is None:
            parsed.dropped += 1
            continue
        parsed.items.append(Network(item["id"], _str(item.get("name")), _tags(item.get("tags"))))
    return parsed


def device_statuses(answer: Any) -> Parsed:
    parsed = Parsed([])
    for item in _dicts(answer):
        serial = _str(item.get("serial"))
        if serial is None:
            parsed.dropped += 1
            continue
        status = item.get("status")
        parsed.items.append(
            DeviceStatus(
                serial=serial,
                name=_str(item.get("name")),
                model=_str(item.get("model")),
                product_type=_str(item.get("productType")),
                network_id=_str(item.get("networkId")),
                status=status if status in STATUSES else None,
                last_reported_at=timestamp(item.get("lastReportedAt")),
                lan_ip=_str(item.get("lanIp")),
                public_ip=_str(item.get("publicIp")),
                tags=_tags(item.get("tags")),
            )
        )
    return parsed


def wireless_clients(answer: Any) -> dict[str, int | None]:
    """serial -> clients online on that AP now (``counts.byStatus.online``)."""
    counts: dict[str, int | None] = {}
    for item in _dicts(answer):
        serial = _str(item.get("serial"))
        by_status = (item.get("counts") or {}).get("byStatus") if isinstance(item.get("counts"), dict) else None
        if serial is not None:
            counts[serial] = _int(by_status.get("online")) if isinstance(by_status, dict) else None
    return counts


def appliance_uplinks(answer: Any) -> Parsed:
    parsed = Parsed([])
    for item in _dicts(answer):
        serial = _str(item.get("serial"))
        if serial is None:
            parsed.dropped += 1
            continue
        for uplink in _dicts(item.get("uplinks")):
            interface = _str(uplink.get("interface"))
            if interface is None:
                parsed.dropped += 1
                continue
            status = uplink.get("status")
            parsed.items.append(
                Uplink(
                    serial=serial,
                    network_id=_str(item.get("networkId")),
                    interface=interface,
                    status=status if status in UPLINK_STATUSES else None,
                    ip=_str(uplink.get("ip")),
                    gateway=_str(uplink.get("gateway")),
                    public_ip=_str(uplink.get("publicIp")),
                    provider=_str(uplink.get("provider")),
                )
            )
    return parsed


def loss_latency(answer: Any) -> dict[tuple[str, str], LossLatency]:
    """(serial, uplink) -> the latest point of the window that has a value (points may be null)."""
    found: dict[tuple[str, str], LossLatency] = {}
    for item in _dicts(answer):
        serial, uplink = _str(item.get("serial")), _str(item.get("uplink"))
        if serial is None or uplink is None:
            continue
        loss = latency = None
        for point in _dicts(item.get("timeSeries")):
            loss = _float(point.get("lossPercent")) if point.get("lossPercent") is not None else loss
            latency = _float(point.get("latencyMs")) if point.get("latencyMs") is not None else latency
        found[(serial, uplink)] = LossLatency(serial, uplink, loss, latency)
    return found


def neighbors(answer: Any) -> list[Neighbor]:
    """``GET /devices/{serial}/lldpCdp``: ``{"sourceMac":..., "ports": {PORT: {"lldp": {...},
    "cdp": {...}}}}``; an empty object when the device has heard no neighbour."""
    ports = answer.get("ports") if isinstance(answer, dict) else None
    found: list[Neighbor] = []
    for port, protocols in sorted(ports.items()) if isinstance(ports, dict) else ():
        if not isinstance(protocols, dict):
            continue
        lldp, cdp = protocols.get("lldp"), protocols.get("cdp")
        if isinstance(lldp, dict):
            found.append(
                Neighbor(
                    port, "lldp", _str(lldp.get("systemName")), _str(lldp.get("portId")),
                    _str(lldp.get("managementAddress")),
                )
            )
        if isinstance(cdp, dict):
            found.append(
                Neighbor(port, "cdp", _str(cdp.get("deviceId")), _str(cdp.get("portId")), _str(cdp.get("address")))
            )
    return found


def device_fields(device: DeviceStatus, clients: int | None, now: dt.datetime) -> dict[str, Any]:
    reported = device.last_reported_at
    return {
        "status": device.status,
        "online": None if device.status is None else device.status in ("online", "alerting"),
        "last_reported_at": reported.isoformat() if reported else None,
        "last_reported_age_s": round((now - reported).total_seconds(), 3) if reported else None,
        "lan_ip": device.lan_ip,
        "public_ip": device.public_ip,
        "wireless_clients": clients,
    }


def uplink_fields(uplink: Uplink, measured: LossLatency | None) -> dict[str, Any]:
    return {
        "status": uplink.status,
        "active": None if uplink.status is None else uplink.status == "active",
        "ip": uplink.ip,
        "gateway": uplink.gateway,
        "public_ip": uplink.public_ip,
        "provider": uplink.provider,
        "loss_percent": measured.loss_percent if measured else None,
        "latency_ms": measured.latency_ms if measured else None,
    }


def status_counts(devices: Iterable[DeviceStatus]) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for device in devices:
        if device.status is not None:
            counts[device.status] += 1
    return counts
