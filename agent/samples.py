"""The one sample model every collector emits and every store / rule consumes.

A sample is a measurement name, string tags (client, site, device, ...), typed fields and a
timestamp in nanoseconds. A field whose value is unknown (absent column, `<private>` value,
unparsable answer) is kept as ``None`` so "unknown" never turns into a silent 0; stores skip
``None`` fields when they write.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

FieldValue = float | int | str | bool | None


@dataclass(frozen=True, slots=True)
class Sample:
    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    timestamp_ns: int

    def known_fields(self) -> dict[str, float | int | str | bool]:
        return {k: v for k, v in self.fields.items() if v is not None}

    def to_json(self) -> str:
        """The stable JSON-lines form printed by `vigie collect --json`."""
        return json.dumps(
            {
                "measurement": self.measurement,
                "tags": dict(sorted(self.tags.items())),
                "fields": dict(self.fields),
                "timestamp": self.timestamp_ns,
            },
            sort_keys=False,
            ensure_ascii=False,
        )

    def to_line_protocol(self) -> str | None:
        """InfluxDB line protocol; ``None`` when no field is known (nothing to write)."""
        known = self.known_fields()
        if not known:
            return None
        head = _escape_key(self.measurement, measurement=True)
        for key in sorted(self.tags):
            value = self.tags[key]
            if value == "":
                continue
            head += f",{_escape_key(key)}={_escape_key(str(value))}"
        body = ",".join(f"{_escape_key(k)}={_format_field(v)}" for k, v in sorted(known.items()))
        return f"{head} {body} {self.timestamp_ns}"


def _escape_key(text: str, measurement: bool = False) -> str:
    text = text.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")
    return text if measurement else text.replace("=", "\\=")


def _format_field(value: float | int | str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


@dataclass
class Sink:
    """What a collector writes into: it adds the target's base tags and the collection time.

    A collector never sees a store or the alert engine, only this.
    """

    base_tags: Mapping[str, str]
    clock_ns: Callable[[], int] = time.time_ns
    samples: list[Sample] = field(default_factory=list)

    def emit(
        self,
        measurement: str,
        fields: Mapping[str, FieldValue],
        tags: Mapping[str, str] | None = None,
        timestamp_ns: int | None = None,
    ) -> Sample:
        merged = dict(self.base_tags)
        if tags:
            merged.update({k: str(v) for k, v in tags.items() if v is not None})
        sample = Sample(measurement, merged, dict(fields), timestamp_ns or self.clock_ns())
        self.samples.append(sample)
        return sample

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)
