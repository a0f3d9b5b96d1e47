"""The inventory as the agency's tender asks for its site file: every device of a client with its
model, serial number, firmware or OS version, uptime and where it sits.

Read from the latest values the collectors left (agent/views/latest.py), in a written order of
sources per attribute: the first source that has a value wins. A device's own sample (its `show
version`, its SNMP sysDescr) comes before what a controller says of it; a value nobody reported is
``None`` (shown empty), never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from agent.api import DeviceInfo
from agent.statedir import StateDir
from agent.views.latest import SeriesLatest, latest_series

# attribute -> ((measurement, "field" | "tag", name), ...) in the order they are trusted
SOURCES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "model": (
        ("cisco_cli_device", "field", "model"),
        ("snmp_inventory", "field", "model"),
        ("snmp_stack", "field", "model"),
        ("meraki_device", "tag", "model"),
        ("omada_device", "field", "model"),
    ),
    "serial": (
        ("cisco_cli_device", "field", "serial"),
        ("snmp_inventory", "field", "serial"),
        ("snmp_stack", "field", "serial"),
        ("meraki_device", "tag", "serial"),
        ("omada_device", "tag", "mac"),
    ),
    "version": (
        ("cisco_cli_device", "field", "version"),
        ("omada_device", "field", "firmware"),
        ("omada_controller", "field", "version"),
        ("veeam_server", "field", "build_version"),
        ("postgresql_server", "field", "version"),
    ),
    "description": (("snmp_system", "field", "sys_descr"),),
    "uptime_s": (
        ("snmp_system", "field", "uptime_s"),
        ("cisco_cli_device", "field", "uptime_s"),
        ("omada_device", "field", "uptime_s"),
        ("vsphere_host", "field", "uptime_s"),
    ),
}
READ = tuple(sorted({measurement for sources in SOURCES.values() for measurement, _, _ in sources}))
# The version a sysDescr states in words, as Cisco IOS, IOS-XE, ASA, NX-OS and many others write it
# ("..., Version 16.6.7, RELEASE SOFTWARE"): the last resort when no source reports it as a field.
SYS_DESCR_VERSION = re.compile(r"\bVersion\s+([0-9][\w.()-]*[\w)])", re.IGNORECASE)
# ENTITY-MIB rows (`snmp_inventory`, one per chassis, stack or module) that stand for the device, in
# this order: its chassis (every member of a stack), else the stack, else what the agent did not
# class or put at the top (ESXi's SMBIOS "backplane"); modules only when nothing else says who it is.
ENTITY = "snmp_inventory"
ENTITY_RANK = {"chassis": 0, "stack": 1, "module": 3}
# Rows of one poll are written together; an older row is hardware gone since (a swapped member).
ENTITY_SAME_POLL_S = 60.0


@dataclass(frozen=True)
class InventoryRow:
    client: str
    site: str
    device: str
    address: str
    model: str | None
    serial: str | None
    version: str | None  # firmware / OS version
    description: str | None  # sysDescr: vendor, OS and version in the device's own words
    uptime_s: float | None
    seen_at: float | None  # the newest of the values used, epoch seconds


def inventory_rows(files: StateDir, devices: Sequence[DeviceInfo], client: str) -> list[InventoryRow]:
    """Each of ``client``'s ``devices`` (the config's inventory), by site then name."""
    per_device: dict[str, list[SeriesLatest]] = {}
    # Only the sources' measurements (and one device's when it is the only one asked): all the
    # latest values of a client of a thousand switches are 500 MB in Python and seconds of a core.
    one = devices[0].name if len(devices) == 1 else None
    for series in latest_series(files, client, one, READ):
        per_device.setdefault(series.tags.get("device", ""), []).append(series)
    found = []
    for device in sorted((d for d in devices if d.client == client), key=lambda d: (d.site, d.name)):
        series = _entity_summary(per_device.get(device.name, []))
        values: dict[str, object] = {}
        stamps = []
        for attribute, sources in SOURCES.items():
            value, at = _first(series, sources)
            values[attribute] = value
            if at is not None:
                stamps.append(at)
        uptime = values["uptime_s"]
        if values["version"] is None and isinstance(values["description"], str):
            stated = SYS_DESCR_VERSION.search(values["description"])
            values["version"] = stated.group(1) if stated else None
        if values["version"] is None:
            # after the sysDescr: IOS-XE's entPhysicalSoftwareRev is "Everest 16.6.7" where the
            # sysDescr says "Version 16.6.7"; ProCurve's sysDescr names no "Version", its entity does
            values["version"], _ = _first(series, ((ENTITY, "field", "software_rev"),))
        found.append(InventoryRow(
            client=client, site=device.site, device=device.name, address=device.address,
            model=_text(values["model"]), serial=_text(values["serial"]), version=_text(values["version"]),
            description=_text(values["description"]),
            uptime_s=float(uptime) if isinstance(uptime, int | float) and not isinstance(uptime, bool) else None,
            seen_at=max(stamps, default=None),
        ))
    return found


def _entity_summary(series: list[SeriesLatest]) -> list[SeriesLatest]:
    """``series`` with its ENTITY-MIB rows replaced by one: those of the best rank (ENTITY_RANK), in
    index order, model and serial of each joined with ", " (a stack of three is three serials,
    the site file needs every one), the software revision of the first."""
    entities = [s for s in series if s.measurement == ENTITY]
    if not entities:
        return series
    newest = max(s.at for s in entities)
    current = [s for s in entities if s.at >= newest - ENTITY_SAME_POLL_S]
    best = min(ENTITY_RANK.get(s.tags.get("entity_class", ""), 2) for s in current)
    chosen = sorted((s for s in current if ENTITY_RANK.get(s.tags.get("entity_class", ""), 2) == best),
                    key=lambda s: _index_key(s.tags.get("entity_index", "")))

    def joined(name: str) -> str | None:
        texts = [str(s.fields[name]) for s in chosen if s.fields.get(name) not in (None, "")]
        return ", ".join(texts) or None

    software = next((s.fields["software_rev"] for s in chosen if s.fields.get("software_rev") not in (None, "")), None)
    summary = SeriesLatest(ENTITY, {}, {"model": joined("model"), "serial": joined("serial"), "software_rev": software},
                           max(s.at for s in chosen))
    return [s for s in series if s.measurement != ENTITY] + [summary]


def _index_key(index: str) -> tuple[int, ...]:
    return tuple(int(part) for part in index.split(".") if part.isdigit())


def _first(series: Sequence[SeriesLatest], sources: tuple[tuple[str, str, str], ...]) -> tuple[object, float | None]:
    for measurement, kind, name in sources:
        for one in series:
            if one.measurement != measurement:
                continue
            value = one.tags.get(name) if kind == "tag" else one.fields.get(name)
            if value is not None and value != "":
                return value, one.at
    return None, None


def _text(value: object) -> str | None:
    return None if value is None else str(value)
