"""IOS / IOS-XE command outputs -> typed readings. No vigie import.

``show version``, ``show environment power all`` and ``show interfaces status`` go through
ntc-templates (TextFSM), whose templates were written against recorded outputs of real devices.
ntc-templates has no template for ``show environment all`` (fans and temperatures): that one is
read here, after the layout of IOS-XE Catalyst 9200/9300/9500 (the recorded output in
tests/cisco_cli/fixtures/). Each parser raises :class:`ParseError` naming the command when the
output is not what it knows, so one odd command never loses the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ntc_templates.parse import parse_output
from textfsm import TextFSMError
from textfsm.clitable import CliTableError

PLATFORM = "cisco_ios"  # ntc-templates files IOS-XE's outputs under cisco_ios


class ParseError(Exception):
    """The output of ``command`` is not what the parser knows."""

    def __init__(self, command: str, reason: str) -> None:
        super().__init__(f"{command}: output not understood ({reason})")
        self.command = command


def _textfsm(command: str, text: str) -> list[dict[str, Any]]:
    try:
        rows = parse_output(platform=PLATFORM, command=command, data=text)
    except (TextFSMError, CliTableError) as exc:
        raise ParseError(command, str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    if not isinstance(rows, list):
        raise ParseError(command, "no ntc-templates template")
    return rows


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _text(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


@dataclass(frozen=True)
class Version:
    hostname: str | None
    version: str | None
    software_image: str | None
    running_image: str | None
    rommon: str | None
    hardware: tuple[str, ...]  # one model per stack member
    serials: tuple[str, ...]
    uptime_s: int | None
    reload_reason: str | None
    restarted: str | None


def show_version(text: str) -> Version:
    rows = _textfsm("show version", text)
    if len(rows) != 1 or not rows[0].get("version"):
        raise ParseError("show version", f"{len(rows)} records, expected one with a version")
    row = rows[0]
    units = {"uptime_years": 365 * 86400, "uptime_weeks": 7 * 86400, "uptime_days": 86400,
             "uptime_hours": 3600, "uptime_minutes": 60}
    parts = {key: _int(row.get(key)) for key in units}
    uptime = sum((n or 0) * units[key] for key, n in parts.items()) if any(n is not None for n in parts.values()) \
        else None
    return Version(
        hostname=_text(row.get("hostname")),
        version=_text(row.get("version")),
        software_image=_text(row.get("software_image")),
        running_image=_text(row.get("running_image")),
        rommon=_text(row.get("rommon")),
        hardware=tuple(row.get("hardware") or ()),
        serials=tuple(row.get("serial") or ()),
        uptime_s=uptime,
        reload_reason=_text(row.get("reload_reason")),
        restarted=_text(row.get("restarted")),
    )


@dataclass(frozen=True)
class PowerSupply:
    slot: str  # "1A": stack member 1, bay A
    present: bool
    ok: bool | None  # None: not present
    status: str | None
    pid: str | None
    serial: str | None
    sys_pwr: str | None
    poe_pwr: str | None
    watts: int | None


def show_environment_power(text: str) -> list[PowerSupply]:
    command = "show environment power all"
    supplies = []
    for row in _textfsm(command, text):
        present = row.get("pid") != "Not Present"
        status = _text(row.get("status"))
        supplies.append(PowerSupply(
            slot=row["ps_module"],
            present=present,
            ok=(status == "OK" and row.get("sys_pwr") == "Good") if present else None,
            status=status if present else "Not Present",
            pid=_text(row.get("pid")) if present else None,
            serial=_text(row.get("serial")),
            sys_pwr=_text(row.get("sys_pwr")),
            poe_pwr=_text(row.get("poe_pwr")),
            watts=_int((row.get("watts") or "").split("/")[0]),
        ))
    if not supplies:
        raise ParseError(command, "no power supply listed")
    return supplies


@dataclass(frozen=True)
class FanReading:
    switch: str
    fan: str  # "1".."3", or "PS-1" for a power supply's fan
    state: str
    present: bool
    ok: bool | None
    speed_rpm: int | None


@dataclass(frozen=True)
class TemperatureReading:
    switch: str
    sensor: str  # inlet, outlet, hotspot
    celsius: int | None
    state: str | None  # GREEN, YELLOW, RED
    yellow_c: int | None
    red_c: int | None


@dataclass(frozen=True)
class Environment:
    fans: list[FanReading]
    temperatures: list[TemperatureReading]


_FAN_ROW = re.compile(r"^\s*(?P<switch>\d+)\s+(?P<fan>\d+)\s+(?P<speed>\d+)\s+(?P<state>[A-Za-z][\w ]*?)"
                      r"(?:\s{2,}(?P<airflow>\S.*))?\s*$")
_FAN_LINE = re.compile(r"^Switch (?P<switch>\d+) FAN (?P<fan>\d+) is (?P<state>.+?)\s*$")
_PS_FAN = re.compile(r"^FAN PS-(?P<ps>\d+) is (?P<state>.+?)\s*$")
_SYSTEM_TEMP = re.compile(r"^Switch (?P<switch>\d+): SYSTEM TEMPERATURE is (?P<state>\S+)")
_TEMP_VALUE = re.compile(r"^(?P<sensor>\w+) Temperature Value: (?P<value>\d+) Degree Celsius")
_TEMP_STATE = re.compile(r"^Temperature State: (?P<state>\w+)")
_THRESHOLD = re.compile(r"^(?P<colour>Yellow|Red) Threshold\s*: (?P<value>\d+) Degree Celsius")
# what may stand in `show environment all` besides fans and temperatures: the PSU table, the
# sensor list of newer releases, blank and rule lines
_OLD_FAN = re.compile(r"^FAN is (?P<state>.+?)\s*$")  # Catalyst 2960/3750: one line for all fans
# what else stands in `show environment all`: the PSU table, the sensor list of newer releases
# (indented rows), blank and rule lines, the older one-line states
_OTHER = re.compile(r"^(?:\s*$|\s*-{2,}|SW\s+PID\s|\d+[A-Z]\s|Sensor List|\s+\S|Switch\s+FAN\s|"
                    r"(?:POWER|RPS|TEMPERATURE) is )")


def _fan_state(state: str) -> tuple[bool, bool | None]:
    upper = state.upper()
    present = upper != "NOT PRESENT"
    return present, (upper == "OK") if present else None


def show_environment_all(text: str) -> Environment:
    """Fans (chassis and PSU fans) and temperature sensors; the PSU table in it is left to
    ``show environment power all``. A line that is none of these is an error: a layout not known."""
    command = "show environment all"
    fans: list[FanReading] = []
    temperatures: list[TemperatureReading] = []
    switch = "1"  # fans and sensors of a single switch are listed without a member number
    current: dict[str, Any] | None = None

    def close() -> None:
        nonlocal current
        if current is not None:
            temperatures.append(TemperatureReading(**current))
            current = None

    for line in text.replace("\r", "").split("\n"):
        stripped = line.strip()
        if match := _FAN_ROW.match(line):
            switch = match.group("switch")
            present, ok = _fan_state(match.group("state"))
            fans.append(FanReading(switch, match.group("fan"), match.group("state").strip(), present, ok,
                                   int(match.group("speed"))))
        elif match := _FAN_LINE.match(stripped):
            switch = match.group("switch")
            present, ok = _fan_state(match.group("state"))
            fans.append(FanReading(switch, match.group("fan"), match.group("state"), present, ok, None))
        elif match := _OLD_FAN.match(stripped):
            present, ok = _fan_state(match.group("state"))
            fans.append(FanReading(switch, "system", match.group("state"), present, ok, None))
        elif match := _PS_FAN.match(stripped):
            present, ok = _fan_state(match.group("state"))
            fans.append(FanReading(switch, f"PS-{match.group('ps')}", match.group("state"), present, ok, None))
        elif match := _SYSTEM_TEMP.match(stripped):
            close()
            switch = match.group("switch")
        elif match := _TEMP_VALUE.match(stripped):
            close()
            current = {"switch": switch, "sensor": match.group("sensor").lower(),
                       "celsius": int(match.group("value")), "state": None, "yellow_c": None, "red_c": None}
        elif match := _TEMP_STATE.match(stripped):
            if current is None:  # older switches: "Temperature State" before its value
                current = {"switch": switch, "sensor": "system", "celsius": None, "state": None,
                           "yellow_c": None, "red_c": None}
            current["state"] = match.group("state")
        elif match := _THRESHOLD.match(stripped):
            if current is not None:
                current["yellow_c" if match.group("colour") == "Yellow" else "red_c"] = int(match.group("value"))
        elif not _OTHER.match(line):
            raise ParseError(command, f"unexpected line {stripped[:80]!r}")
    close()
    if not fans and not temperatures:
        raise ParseError(command, "no fan and no temperature listed")
    return Environment(fans, temperatures)


@dataclass(frozen=True)
class PortStatus:
    port: str
    name: str | None  # the description
    status: str
    vlan: str | None
    duplex: str | None
    speed: str | None
    kind: str | None


def show_interfaces_status(text: str) -> list[PortStatus]:
    command = "show interfaces status"
    rows = _textfsm(command, text)
    if not rows:
        raise ParseError(command, "no port listed")
    return [
        PortStatus(row["port"], _text(row.get("name")), row["status"], _text(row.get("vlan_id")),
                   _text(row.get("duplex")), _text(row.get("speed")), _text(row.get("type")))
        for row in rows
    ]
