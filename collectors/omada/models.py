"""The controller's answers read into sample fields: pure functions, no I/O, no vigie import.

A value the controller left out or sent with the wrong type is ``None`` (unknown), never 0:
``tplink-omada-client``'s own model classes answer 0 for the CPU of a disconnected device, so the
raw answers are read here instead. Field names are those the library reads (contract notes:
shared/contracts/omada.md).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# statusCategory (tplink_omada_client.definitions.DeviceStatusCategory)
STATUS_CATEGORIES = {0: "disconnected", 1: "connected", 2: "pending", 3: "heartbeat_missed", 4: "isolated"}
CONNECTED = 1
# a pending device (being adopted) is neither up nor down
DOWN_CATEGORIES = frozenset({0, 3, 4})
# gateway port mode: 0 WAN, 1 LAN, -1 disabled
WAN_MODE = 0
# VPN tunnel status: 1 up, 0 down
VPN_STATES = {0: "down", 1: "up"}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value != "" else None


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _list(value: Any) -> list[Any]:
    """A list the controller sent, or none: a wrong-typed value is no entries, not a crash."""
    return value if isinstance(value, list) else []


@dataclass(frozen=True)
class Device:
    """One entry of ``sites/{site}/devices``."""

    mac: str
    name: str
    type: str  # ap | switch | gateway
    fields: dict[str, Any]

    @property
    def connected(self) -> bool:
        return self.fields["connected"] is True


def device(raw: Mapping[str, Any]) -> Device | None:
    """None for an entry without a MAC or type (the controller's own, or garbage)."""
    mac, kind = _str(raw.get("mac")), _str(raw.get("type"))
    if mac is None or kind is None:
        return None
    category = _int(raw.get("statusCategory"))
    connected = True if category == CONNECTED else False if category in DOWN_CATEGORIES else None
    live = category == CONNECTED  # the controller reports uptime, load and clients of connected devices only
    return Device(
        mac=mac,
        name=_str(raw.get("name")) or mac,
        type=kind,
        fields={
            "status": STATUS_CATEGORIES.get(category, "unknown") if category is not None else "unknown",
            "status_code": _int(raw.get("status")),
            "connected": connected,
            "model": _str(raw.get("showModel")) or _str(raw.get("model")),
            "firmware": _str(raw.get("firmwareVersion")),
            "ip": _str(raw.get("ip")),
            "need_upgrade": _bool(raw.get("needUpgrade")) if live else None,
            "uptime_s": _int(raw.get("uptimeLong")) if live else None,
            "cpu_pct": _num(raw.get("cpuUtil")) if live else None,
            "mem_pct": _num(raw.get("memUtil")) if live else None,
            "clients": _int(raw.get("clientNum")) if live else None,
        },
    )


@dataclass(frozen=True)
class WanPort:
    port: int
    name: str
    fields: dict[str, Any]


def wan_ports(gateway: Mapping[str, Any]) -> list[WanPort]:
    """The WAN ports of ``gateways/{mac}``'s ``portStats``, by port number. The primary is the
    lowest-numbered WAN port (the fibre on ER605/ER7206 set-ups, the USB 4G modem coming later);
    the port carrying traffic is the first one, in that order, that the gateway sees online."""
    ports = []
    for raw in _list(gateway.get("portStats")):
        if not isinstance(raw, Mapping) or _int(raw.get("mode")) != WAN_MODE or _int(raw.get("port")) is None:
            continue
        online = raw.get("internetState")
        ports.append(
            WanPort(
                port=int(raw["port"]),
                name=_str(raw.get("name")) or f"WAN{raw['port']}",
                fields={
                    "link_up": None if _int(raw.get("status")) is None else raw["status"] == 1,
                    "online": None if _int(online) is None else online != 0,
                    "ip": _str(raw.get("ip")),
                    "rx_bytes": _int(raw.get("rx")),
                    "tx_bytes": _int(raw.get("tx")),
                },
            )
        )
    ports.sort(key=lambda p: p.port)
    active = next((p for p in ports if p.fields["online"] is True), None)
    unknown = active is None and any(p.fields["online"] is None for p in ports)
    for index, port in enumerate(ports):
        port.fields["primary"] = index == 0
        port.fields["active"] = None if unknown else port is active
    return ports


def uplink(ports: list[WanPort]) -> dict[str, Any]:
    """Which WAN carries the gateway's traffic: ``on_backup`` is true when it is not the primary."""
    if not ports:
        return {"primary_wan": None, "active_wan": None, "on_backup": None, "wan_ports": 0, "wan_online": 0}
    active = next((p for p in ports if p.fields["active"] is True), None)
    unknown = any(p.fields["active"] is None for p in ports)
    return {
        "primary_wan": ports[0].name,
        "active_wan": active.name if active else None,
        "on_backup": None if unknown else active is not None and active is not ports[0],
        "wan_ports": len(ports),
        "wan_online": sum(1 for p in ports if p.fields["online"] is True),
    }


# the detail field naming what a device is plugged into (tplink_omada_client: OmadaSwitch.uplink,
# OmadaAccessPoint.wired_uplink); a gateway has none: it is its site's way out
UPLINK_FIELDS = {"switch": "uplink", "ap": "wiredUplink"}


@dataclass(frozen=True)
class Uplink:
    mac: str
    name: str | None
    type: str | None
    port: int | None


def device_uplink(kind: str, detail: Mapping[str, Any]) -> Uplink | None:
    """The device the controller sees a switch or a wired AP plugged into, from its details; None
    when it names none (a gateway, a mesh AP over Wi-Fi, a switch at the top)."""
    raw = detail.get(UPLINK_FIELDS.get(kind, ""))
    if not isinstance(raw, Mapping):
        return None
    mac = _str(raw.get("mac")) or _str(raw.get("uplinkMac"))  # the library reads either
    if mac is None:
        return None
    return Uplink(mac, _str(raw.get("name")), _str(raw.get("type")), _int(raw.get("port")))


@dataclass(frozen=True)
class Tunnel:
    name: str
    fields: dict[str, Any]


def tunnel(raw: Mapping[str, Any]) -> Tunnel | None:
    name = _str(raw.get("name"))
    if name is None:
        return None
    state = _int(raw.get("status"))
    return Tunnel(
        name=name,
        fields={
            "status": VPN_STATES.get(state, "unknown") if state is not None else "unknown",
            "up": None if state not in VPN_STATES else state == 1,
            "remote": _str(raw.get("remoteGateway")) or _str(raw.get("peer")),
            "uptime_s": _int(raw.get("uptime")),
            "rx_bytes": _int(raw.get("rx")),
            "tx_bytes": _int(raw.get("tx")),
        },
    )


def ssid_counts(clients: Iterable[Mapping[str, Any]]) -> tuple[Counter[tuple[str, str]], set[str], int, int]:
    """((AP MAC, SSID) -> wireless clients, the SSIDs seen, wireless and wired totals)."""
    per_ap: Counter[tuple[str, str]] = Counter()
    ssids: set[str] = set()
    wireless = wired = 0
    for client in clients:
        if client.get("wireless") is True:
            wireless += 1
            ap, ssid = _str(client.get("apMac")), _str(client.get("ssid"))
            if ap and ssid:
                per_ap[(ap, ssid)] += 1
                ssids.add(ssid)
        elif client.get("wireless") is False:
            wired += 1
    return per_ap, ssids, wireless, wired


def newest(entry: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """(message, ISO time) of a log entry (``time`` in epoch milliseconds)."""
    if not entry:
        return None, None
    stamp = _int(entry.get("time"))
    at = dt.datetime.fromtimestamp(stamp / 1000, dt.UTC).isoformat() if stamp is not None else None
    return _str(entry.get("msg")) or _str(entry.get("content")), at
