"""The registry of measurements, tags and fields: docs/METRICS.md, read as data.

METRICS.md is the registry, not generated from one: each collector's author writes its section
(and its tests check the collector against it), so the document stays where the people who know
a measurement edit it, and a second copy in code could only drift. This module reads it into
`Registry` so the dashboards (and any test) can check a name against it: every `| field | type |
meaning |` table under a measurement's heading gives that measurement's fields and types, every
`| tag | meaning |` table and `Tags:` sentence its tags.

What the document's format allows, and so what is read:

- a heading (`##` to `####`) naming measurements in backquotes before its dash, or after a colon
  (`## Every run: \\`collection\\``), opens them; any other heading closes them;
- inside a heading naming several, a line starting "`name`, ..." or "`name`: ..." says which the
  tables below are;
- a field row may name several fields (`| \\`in_bps\\`, \\`out_bps\\` | float | ... |`); a type may be
  `int/float`;
- `Tag \\`x\\`` / `Tags: \\`x\\`, \\`y\\` (...)` sentences: the names outside parentheses, up to the first
  semicolon or full stop.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

METRICS_MD = Path(__file__).resolve().parents[1] / "docs" / "METRICS.md"
BASE_TAGS = frozenset({"client", "site", "device"})
TYPES = frozenset({"str", "int", "float", "bool"})
# A tag a whole family of measurements carries, said once in its chapter's prose, not per table.
FAMILY_TAGS = {"snmp_": frozenset({"profile"})}

_HEADING = re.compile(r"^(#{2,4}) (.*)$")
_NAMES_BEFORE_DASH = re.compile(r"^((?:`[a-z0-9_]+`(?:, )?)+)(?: —|$)")
_NAMES_AFTER_COLON = re.compile(r":\s+((?:`[a-z0-9_]+`(?:, )?)+)\s*$")
_SOURCE = re.compile(r"(?:collector|probe|service)s? `([a-z0-9_]+)`")
_SUBSECTION = re.compile(r"^`([a-z0-9_]+)`[,:] ")
_ROW = re.compile(r"^\|\s*((?:`[a-z0-9_<>]+`(?:,\s*)?)+)\s*\|([^|]*)\|")
_TAG_SENTENCE = re.compile(r"\bTags?\b:?\s+(?=`)")
_BACKQUOTED = re.compile(r"`([a-z0-9_]+)`")


@dataclass
class Measurement:
    name: str
    source: str | None  # the collector, probe or service the heading names; None for the kernel's
    fields: dict[str, frozenset[str]] = field(default_factory=dict)  # field -> its types
    tags: set[str] = field(default_factory=set)

    @property
    def all_tags(self) -> frozenset[str]:
        family = {tag for prefix, tags in FAMILY_TAGS.items() if self.name.startswith(prefix) for tag in tags}
        return frozenset(self.tags | family | (BASE_TAGS if self.name != "vigie_agent" else set()))

    def numeric(self, name: str) -> bool:
        """Written as a number by line protocol: what a Prometheus-compatible store keeps (bools as 0/1)."""
        return bool(self.fields[name] - {"str"})


class RegistryError(ValueError):
    pass


@dataclass
class Registry:
    measurements: dict[str, Measurement]

    def __getitem__(self, name: str) -> Measurement:
        return self.measurements[name]

    def __contains__(self, name: object) -> bool:
        return name in self.measurements

    def check(self, measurement: str, fields: tuple[str, ...] = (), tags: tuple[str, ...] = ()) -> list[str]:
        """What is wrong with a query of ``fields`` of ``measurement`` grouped or filtered by ``tags``."""
        if measurement not in self.measurements:
            return [f"{measurement}: no such measurement in docs/METRICS.md"]
        known = self.measurements[measurement]
        problems = [f"{measurement}.{f}: no such field" for f in fields if f not in known.fields]
        problems += [f"{measurement}: no tag {t!r}" for t in tags if t not in known.all_tags]
        return problems


def load(path: Path = METRICS_MD) -> Registry:
    return parse(path.read_text(encoding="utf-8"))


def parse(text: str) -> Registry:
    measurements: dict[str, Measurement] = {}
    open_names: list[str] = []  # the measurements the current heading names
    current: list[str] = []  # those the next table is about
    table: str | None = None  # "field", "tag" or None (another table, or none)
    chapter_source: str | None = None
    prose: list[str] = []  # the paragraph being read: a tag sentence may wrap

    def end_paragraph() -> None:
        for found in _TAG_SENTENCE.finditer(paragraph := " ".join(prose)):
            for name in current:
                measurements[name].tags.update(_tag_names(paragraph[found.end():]))
        prose.clear()

    for number, line in enumerate(text.splitlines(), 1):
        heading = _HEADING.match(line)
        if heading or line.startswith("|") or not line.strip():
            end_paragraph()
        if heading:
            level, title = heading.groups()
            names = _heading_names(title)
            source = _SOURCE.search(title)
            if level == "##":
                chapter_source = source.group(1) if source else None
            open_names = names
            for name in names:
                if name in measurements:
                    raise RegistryError(f"METRICS.md:{number}: {name} documented twice")
                measurements[name] = Measurement(name, source.group(1) if source else chapter_source)
            current, table = list(names), None
            continue
        if not open_names:
            continue
        if (sub := _SUBSECTION.match(line)) and sub.group(1) in open_names:
            current, table = [sub.group(1)], None
            continue
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if cells[:2] == ["field", "type"]:
                table = "field"
            elif cells[:2] == ["tag", "meaning"]:
                table = "tag"
            elif set(line) <= set("|-: "):
                pass
            elif table and (row := _ROW.match(line)):
                names = _row_names(row.group(1), line[row.end():])
                for name in current:
                    if table == "field":
                        types = frozenset(row.group(2).strip().split("/"))
                        if not types <= TYPES:
                            raise RegistryError(f"METRICS.md:{number}: {name}: type {row.group(2).strip()!r}")
                        measurements[name].fields.update({f: types for f in names})
                    else:
                        measurements[name].tags.update(names)
            else:
                table = None if not _ROW.match(line) else table
            continue
        table = None
        prose.append(line.strip())
    end_paragraph()
    empty = [name for name, m in measurements.items() if not m.fields]
    if empty:
        raise RegistryError(f"METRICS.md: no field table for {', '.join(empty)}")
    return Registry(measurements)


def _heading_names(title: str) -> list[str]:
    found = _NAMES_BEFORE_DASH.match(title) or _NAMES_AFTER_COLON.search(title)
    return _BACKQUOTED.findall(found.group(1)) if found else []


def _row_names(cell: str, meaning: str) -> list[str]:
    """The names a row documents; a pattern (`queue_<lane>`) stands for the names its meaning lists."""
    names = []
    for name in re.findall(r"`([a-z0-9_<>]+)`", cell):
        if "<" in name:
            pattern = re.escape(name[: name.index("<")]) + r"[a-z0-9_]+"
            names += [n for n in _BACKQUOTED.findall(meaning) if re.fullmatch(pattern, n)]
        else:
            names.append(name)
    return names


def _tag_names(sentence: str) -> list[str]:
    while True:  # parentheses hold examples and values (`wan1`, `cellular`), not tag names
        stripped = re.sub(r"\([^()]*\)", "", sentence)
        if stripped == sentence:
            break
        sentence = stripped
    sentence = re.split(r";|\.(?:\s|$)", sentence, maxsplit=1)[0]
    return _BACKQUOTED.findall(sentence)


# The build runs where docs/ is not (an installed wheel): it reads this snapshot of the registry's
# field types, which `python -m dashboards.registry` rewrites; tests/dashboards checks it is current
# for every field the dashboards read.
SNAPSHOT = Path(__file__).resolve().parent / "fields.json"


def snapshot(registry: Registry) -> str:
    types = {name: {f: sorted(t) for f, t in sorted(m.fields.items())}
             for name, m in sorted(registry.measurements.items())}
    return json.dumps(types, indent=1, sort_keys=True) + "\n"


def field_types() -> dict[str, dict[str, list[str]]]:
    return json.loads(SNAPSHOT.read_text(encoding="utf-8"))


if __name__ == "__main__":
    SNAPSHOT.write_text(snapshot(load()), encoding="utf-8")
    print(f"{SNAPSHOT}: written from {METRICS_MD}")


# Measurements no dashboard, rule or report reads, on purpose: each with why.
INTERNAL: dict[str, str] = {}
