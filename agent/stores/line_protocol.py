r"""InfluxDB line protocol for samples (the encoding of the InfluxDB store and its spool).

Escaping follows the line-protocol reference (docs.influxdata.com/influxdb/v2/reference/syntax/
line-protocol/, "Special characters" and "Escaping backslashes"), checked against the parser of
VictoriaMetrics (lib/protoparser/influx/parser.go) and a real server in tests/stores:

- A backslash escapes commas and spaces in the measurement; commas, equals signs and spaces in tag
  keys, tag values and field keys; double quotes and backslashes in string field values. A field key
  also gets its double quotes escaped: unescaped, VictoriaMetrics takes them for the start of a
  string and drops the line.
- A backslash in a name stays as it is unless a parser would read it as an escape: before another
  backslash, a comma, an equals sign or a space (or a double quote in a field key), or last. There
  it is doubled (`\\` reads as one backslash), and VictoriaMetrics and the reference give back the
  exact text. InfluxDB 1.x and 2.x OSS do not undo a doubled backslash in names, so there, in those
  places only, a name shows one backslash more; the line stays valid, and a name ending with a
  backslash has no other way in.
- Line protocol has no escape for a line break, and the reference says it does not support one in
  tag or field values. VictoriaMetrics splits the body on every newline, quoted strings included
  (some InfluxDB versions take one inside a quoted string, none in a name), so the safe route is
  taken everywhere, string fields included: CR, LF, tab and the other C0 controls and DEL become
  visible text, `\n`, `\r`, `\t`, `\x00`, as Telegraf's serializer does for the first three. A
  multi-line sysDescr stays one line, and a crafted ifAlias cannot start a line of its own.
- Lone surrogates (text decoded with ``surrogateescape``) are not UTF-8: they become U+FFFD.
- What line protocol cannot carry is left out and reported in ``EncodedLine.left_out``: NaN and
  infinite floats, ints outside int64 (written as floats they would clash with the field's integer
  type and could get the whole batch refused), fields with an empty key. Empty tag keys and values are
  skipped (line protocol has no empty tag: an absent tag is how "unknown" reads). A sample with no
  field left, or with an empty measurement, gives no line.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from typing import NamedTuple

from agent.api import Sample

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
CACHED_TEXT_MAX = 128
CACHED_TEXTS = 1 << 14

_CONTROL_TEXT = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)} | {
    0x09: "\\t",
    0x0A: "\\n",
    0x0D: "\\r",
}
_NOT_WRITABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
# A backslash a parser would read as an escape, or a character to escape (see above).
_MEASUREMENT_ESCAPES = re.compile(r"\\(?=[\\ ,=]|\Z)|[ ,]")
_TAG_ESCAPES = re.compile(r"\\(?=[\\ ,=]|\Z)|[ ,=]")
_FIELD_KEY_ESCAPES = re.compile(r'\\(?=[\\ ,="]|\Z)|[ ,="]')
_STRING_ESCAPES = re.compile(r'[\\"]')


class EncodedLine(NamedTuple):
    text: str | None
    """One line of line protocol, without its newline; None when nothing could be written."""
    left_out: tuple[str, ...]
    """Keys of the known fields line protocol cannot carry (NaN, infinity, beyond int64, empty key)."""


def encode(sample: Sample) -> EncodedLine:
    known = sample.known_fields()
    measurement = _measurement(sample.measurement)
    if not measurement:
        return EncodedLine(None, tuple(sorted(known)))
    fields: list[str] = []
    left_out: list[str] = []
    for key, value in sorted(known.items()):
        formatted = _format_field(value)
        escaped_key = _field_key(key)
        if formatted is None or not escaped_key:
            left_out.append(key)
        else:
            fields.append(f"{escaped_key}={formatted}")
    if not fields:
        return EncodedLine(None, tuple(left_out))
    head = [measurement]
    for key in sorted(sample.tags):
        escaped_key = _tag(key)
        escaped_value = _tag(str(sample.tags[key]))
        if escaped_key and escaped_value:
            head.append(f"{escaped_key}={escaped_value}")
    return EncodedLine(f"{','.join(head)} {','.join(fields)} {sample.timestamp_ns}", tuple(left_out))


def _escaper(escapes: re.Pattern[str]) -> Callable[[str], str]:
    # Names and tag values repeat from one poll to the next (devices, ports, sites): each distinct
    # short one is escaped once. Bounded in entries and in length, so that whatever devices send a
    # cache stays a few MB, and ever-changing text only costs the escaping.
    @functools.lru_cache(maxsize=CACHED_TEXTS)
    def cached(text: str) -> str:
        return _escape(escapes, _writable(text))

    def escape(text: str) -> str:
        return cached(text) if len(text) <= CACHED_TEXT_MAX else _escape(escapes, _writable(text))

    return escape


_measurement = _escaper(_MEASUREMENT_ESCAPES)
_tag = _escaper(_TAG_ESCAPES)
_field_key = _escaper(_FIELD_KEY_ESCAPES)


def _writable(text: str) -> str:
    if _NOT_WRITABLE.search(text) is None:
        return text
    return _NOT_WRITABLE.sub(lambda match: _CONTROL_TEXT.get(ord(match[0]), "\ufffd"), text)


def _escape(pattern: re.Pattern[str], text: str) -> str:
    return pattern.sub(lambda match: "\\" + match[0], text)


def _format_field(value: float | int | str | bool) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i" if INT64_MIN <= value <= INT64_MAX else None
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    return '"' + _STRING_ESCAPES.sub(lambda match: "\\" + match[0], _writable(value)) + '"'
