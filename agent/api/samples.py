"""The one sample model every plugin emits and every store and rule consumes, and the sink a
plugin writes into.

A sample is a measurement name, string tags (client, site, device, ...), typed fields and a
timestamp in nanoseconds. A field whose value is unknown (absent column, `<private>` value,
unparsable answer) is kept as ``None`` so "unknown" never turns into a silent 0; stores skip
``None`` fields when they write.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

FieldValue = float | int | str | bool | None

# The base tags the inventory stamps on every sample of a device.
BASE_TAGS = ("client", "site", "device")


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


class UnknownDevice(LookupError):
    """``Sink.for_device`` was given a name that is not a device of the polled device's client."""


DeviceTags = Callable[[str], Mapping[str, str] | None]


def _no_other_devices(name: str) -> Mapping[str, str] | None:
    return None


@dataclass
class Sink:
    """What a plugin writes into: it adds the target's base tags and the collection time.

    A plugin never sees a store or the alert engine, only this. Three things can be said:

    - ``emit``: a sample about the polled device;
    - ``error(reason)``: part of the collection failed (a walk that died half way, one API call of
      several refused); the run's `collection` sample says ``partial`` with the reasons, while the
      samples already emitted are kept;
    - ``for_device(name)``: a sink for another inventory device of the same client, for the
      samples an organization-wide call returns about it (a controller reporting its APs, a vCenter
      its VMs), like Checkmk's piggyback data. They carry that device's base tags.
    """

    base_tags: Mapping[str, str]
    clock_ns: Callable[[], int]
    device_tags: DeviceTags = _no_other_devices
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def emit(
        self,
        measurement: str,
        fields: Mapping[str, FieldValue],
        tags: Mapping[str, str] | None = None,
        timestamp_ns: int | None = None,
    ) -> Sample:
        merged = dict(self.base_tags)
        if tags:
            merged.update({k: str(v) for k, v in tags.items() if v is not None and k not in BASE_TAGS})
        sample = Sample(measurement, merged, dict(fields), timestamp_ns or self.clock_ns())
        self.samples.append(sample)
        return sample

    def error(self, reason: str) -> None:
        """Record that part of this collection failed; the run ends ``partial`` unless it fails."""
        self.errors.append(reason)

    def for_device(self, name: str) -> Sink:
        """A sink whose samples are about the inventory device ``name`` (same client).

        Raises :class:`UnknownDevice` when the inventory has no such device: the plugin decides
        whether that is worth an ``error``. The child shares this sink's sample and error lists.
        """
        if name == self.base_tags.get("device"):
            return self
        tags = self.device_tags(name)
        if tags is None:
            raise UnknownDevice(f"no device {name!r} in client {self.base_tags.get('client', '?')!r}")
        return Sink(tags, self.clock_ns, self.device_tags, self.samples, self.errors)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)
