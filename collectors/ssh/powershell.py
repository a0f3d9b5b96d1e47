"""PowerShell over Windows OpenSSH: how a script is sent, and how its ConvertTo-Json is read.

Windows OpenSSH runs commands in ``cmd.exe`` unless its DefaultShell says otherwise, so a script
goes as ``powershell.exe ... -EncodedCommand <base64 of UTF-16LE>``: no quoting to get wrong in
either shell. Every script stops on the first error and exits 1 with the message on stderr, so the
exit status means something (/work/shared/contracts/hyperv.md, "Transport").

What ConvertTo-Json emits differs between Windows PowerShell 5.1 and PowerShell 7 (the same
contract, "What ConvertTo-Json emits"): enums as numbers (5.1, and 7 without -EnumsAsStrings) or
names; dates as ``\\/Date(ms)\\/`` (5.1) or ISO 8601 (7); one object bare rather than in an array.
The readers below accept both forms of each.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Any

from collectors.ssh.host import Unparsable

PREAMBLE = (
    "$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue'; "
    "[Console]::OutputEncoding = [Text.Encoding]::UTF8; "
)


def command(script: str, shell: str = "powershell.exe") -> str:
    """The command line that runs ``script`` in Windows PowerShell (or ``pwsh.exe``, PowerShell 7),
    from cmd.exe or PowerShell alike."""
    wrapped = (
        PREAMBLE + "try { " + script + " } catch { [Console]::Error.WriteLine($_.Exception.Message); exit 1 }"
    )
    encoded = base64.b64encode(wrapped.encode("utf-16-le")).decode("ascii")
    return f"{shell} -NoLogo -NoProfile -NonInteractive -EncodedCommand {encoded}"


def script_of(command_line: str) -> str:
    """The script a :func:`command` line carries (what the lab's fake server reads)."""
    encoded = command_line.rsplit(" ", 1)[-1]
    return base64.b64decode(encoded).decode("utf-16-le")


def objects(text: str) -> list[dict[str, Any]]:
    """ConvertTo-Json's output as a list of objects: ``[...]``, one bare object, or nothing (a
    pipeline that yielded nothing prints nothing, or ``null``)."""
    text = text.strip().lstrip("\ufeff")
    if not text or text == "null":
        return []
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise Unparsable(f"not JSON ({exc.msg} at character {exc.pos}): {text[:60]!r}") from None
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, dict) for item in items):
        raise Unparsable(f"expected objects, got {text[:60]!r}")
    return items


def single(text: str, what: str) -> dict[str, Any]:
    """The one object a script prints (``[pscustomobject]@{...}``)."""
    items = objects(text)
    if len(items) != 1:
        raise Unparsable(f"expected one {what} object, got {len(items)}")
    return items[0]


def enum(value: Any, names: Mapping[int, str], what: str) -> str | None:
    """An enum's member name, whether emitted as its number or its name; None for null / ""."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise Unparsable(f"{what}: {value!r} is not an enum value")
    if isinstance(value, int):
        if value not in names:
            raise Unparsable(f"{what}: {value} is not a known value")
        return names[value]
    if isinstance(value, str):
        by_name = {name.lower(): name for name in names.values()}
        if value.lower() in by_name:
            return by_name[value.lower()]
        if value.isdigit() and int(value) in names:
            return names[int(value)]
        raise Unparsable(f"{what}: {value!r} is not a known value")
    raise Unparsable(f"{what}: {value!r} is not an enum value")


_MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


def timestamp(value: Any, what: str) -> float | None:
    """Epoch seconds of a DateTime: ``/Date(ms)/`` (5.1; JSON's ``\\/`` is already ``/`` once
    decoded) or ISO 8601 (7, or a script's ``.ToString('o')``); None for null / ""."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        match = _MS_DATE.match(value)
        if match:
            return int(match[1]) / 1000
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            raise Unparsable(f"{what}: {value!r} is not a date") from None
        if parsed.tzinfo is None:
            raise Unparsable(f"{what}: {value!r} has no time zone")
        return parsed.timestamp()
    raise Unparsable(f"{what}: {value!r} is not a date")


def seconds(value: Any, what: str) -> float | None:
    """A TimeSpan: the object 5.1 and 7 emit ({Ticks, ..., TotalSeconds}), a number of seconds,
    or ``[d.]hh:mm:ss[.fffffff]``; None for null."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        if "TotalSeconds" in value:
            return float(value["TotalSeconds"])
        if "Ticks" in value:
            return int(value["Ticks"]) / 10_000_000
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        match = re.match(r"^(?:(\d+)\.)?(\d+):(\d\d):(\d\d(?:\.\d+)?)$", value)
        if match:
            days, hours, minutes, secs = match.groups()
            return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(secs)
    raise Unparsable(f"{what}: {value!r} is not a duration")


def integer(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise Unparsable(f"{what}: {value!r} is not an integer")


def text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)
