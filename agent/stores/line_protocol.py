"""InfluxDB line protocol for samples (the encoding of the InfluxDB store and its spool)."""

from __future__ import annotations

from agent.api import Sample


def encode(sample: Sample) -> str | None:
    """One line of line protocol; ``None`` when no field is known (nothing to write)."""
    known = sample.known_fields()
    if not known:
        return None
    head = _escape_key(sample.measurement, measurement=True)
    for key in sorted(sample.tags):
        value = sample.tags[key]
        if value == "":
            continue
        head += f",{_escape_key(key)}={_escape_key(str(value))}"
    body = ",".join(f"{_escape_key(k)}={_format_field(v)}" for k, v in sorted(known.items()))
    return f"{head} {body} {sample.timestamp_ns}"


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
