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
from collections.abc import Callable, Mapping
from typing import NamedTuple

from agent.api import Sample

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
CACHED_TEXT_MAX = 128
CACHED_TEXTS = 1 << 14
# About 2 kB a series at most (the key holds its tag texts): 64 MB for a full cache.
CACHED_SERIES = 1 << 15

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
    head = _heads.get(sample.measurement, sample.tags)
    fields = sample.fields
    if head is None:
        return EncodedLine(None, tuple(sorted(key for key, value in fields.items() if value is not None)))
    parts: list[str] = []
    left_out: list[str] = []
    for key, prefix in _field_order(tuple(fields)):
        value = fields[key]
        kind = type(value)
        # The common types first, by exact type (a bool is an int, a numpy float a float: the
        # general path takes those).
        if kind is float:
            # False for NaN and both infinities, which have no line-protocol form.
            text = repr(value) if value - value == 0.0 else None
        elif kind is str:
            text = _string_field(value)
        elif kind is int:
            text = f"{value}i" if INT64_MIN <= value <= INT64_MAX else None
        elif value is None:
            continue
        else:
            text = _format_field(value)
        if text is None or prefix is None:
            left_out.append(key)
        else:
            parts.append(prefix + text)
    if not parts:
        return EncodedLine(None, tuple(left_out))
    return EncodedLine(f"{head} {','.join(parts)} {sample.timestamp_ns}", tuple(left_out))


class _SeriesHeads:
    """The escaped ``measurement,tag=value,...`` of each series, cached: series repeat every poll.

    Entries are taken until the cache holds ``size`` of them, then none: with more live series than
    that (they come back in a cycle, which defeats any eviction by recency) the first ``size`` keep
    hitting and the rest cost the per-text escaping. Once the full cache has missed more than it hit
    (and at least ``size`` times), its series are mostly gone (renamed ports, removed devices): it
    is emptied and refilled. Only all-str tag sets are cached, so that a key equal to another
    (``1 == True``) cannot stand for a different text.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._heads: dict[tuple[str, tuple[tuple[str, str], ...]], str | None] = {}
        self._hits_when_full = 0
        self._misses_when_full = 0

    def get(self, measurement: str, tags: Mapping[str, str]) -> str | None:
        key = (measurement, tuple(tags.items()))
        try:
            head = self._heads[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable tag value
            return _head(measurement, tags)
        else:
            self._hits_when_full += len(self._heads) >= self.size
            return head
        head = _head(measurement, tags)
        if len(self._heads) < self.size:
            if type(measurement) is str and all(type(k) is str and type(v) is str for k, v in key[1]):
                self._heads[key] = head
        else:
            self._misses_when_full += 1
            if self._misses_when_full >= max(self.size, self._hits_when_full):
                self._heads.clear()
                self._hits_when_full = self._misses_when_full = 0
        return head


def _head(measurement: str, tags: Mapping[str, str]) -> str | None:
    escaped = _measurement(measurement)
    if not escaped:
        return None
    head = [escaped]
    for key in sorted(tags):
        escaped_key = _tag(key)
        escaped_value = _tag(str(tags[key]))
        if escaped_key and escaped_value:
            head.append(f"{escaped_key}={escaped_value}")
    return ",".join(head)


@functools.lru_cache(maxsize=CACHED_TEXTS)
def _field_order(keys: tuple[str, ...]) -> tuple[tuple[str, str | None], ...]:
    # Each field key with its escaped ``key=``, in key order; None for a key that cannot be written.
    # A measurement's field set repeats with every sample of it.
    return tuple((key, f"{_field_key(key)}=" if key else None) for key in sorted(keys))


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
_heads = _SeriesHeads(CACHED_SERIES)


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
        return repr(float(value)) if math.isfinite(value) else None
    return _string_field(value)


def _quoted(text: str) -> str:
    return '"' + _STRING_ESCAPES.sub(lambda match: "\\" + match[0], _writable(text)) + '"'


_cached_quoted = functools.lru_cache(maxsize=CACHED_TEXTS)(_quoted)


def _string_field(text: str) -> str:
    # Status texts ("up", "down", "ok") repeat as much as names do.
    return _cached_quoted(text) if len(text) <= CACHED_TEXT_MAX else _quoted(text)
