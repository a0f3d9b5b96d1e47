"""Device profiles are data: YAML files validated with pydantic when they are loaded.

The format is documented in collectors/snmp/PROFILES.md. This module loads a directory of
profiles, resolves ``extends`` (mixins first, the profile's own tables last, a table with the same
``id`` merged over the inherited one), checks every expression against the safe language and every
name an expression uses against the table's columns and earlier fields, and picks the profile of a
device from its sysObjectID / sysDescr.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from collectors.snmp.expr import CONDITION_FUNCTIONS, STATEFUL_FUNCTIONS, ExprError, Expression, compile_expression

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
STATES = ("ok", "warn", "crit", "unknown")
_OID = re.compile(r"^\.?[0-9]+(\.[0-9]+)*$")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
# Names every row expression may use besides its columns and earlier fields: the row index
# (OID suffix, dotted), the name of the profile that polls the device and the poll's wall-clock
# time in epoch seconds.
ROW_NAMES = frozenset({"index", "profile", "now"})


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DetectWhen(_Strict):
    """One set of identity conditions, all of which must hold (LibreNMS: one ``discovery:`` entry)."""

    sys_object_id: list[str] = Field(default_factory=list)
    sys_descr: list[str] = Field(default_factory=list)
    # Instance OIDs that must all answer: for agents that share a generic sysObjectID and
    # sysDescr (Synology DSM is plain net-snmp on Linux), probed only when the rest matches.
    oid_exists: list[str] = Field(default_factory=list)
    # Instance OIDs whose value (as text) must be one of the listed ones (LibreNMS ``snmpget`` with
    # ``value``): probed like ``oid_exists``.
    oid_values: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("sys_object_id", "oid_exists")
    @classmethod
    def _oids(cls, value: list[str]) -> list[str]:
        for prefix in value:
            if not _OID.match(prefix):
                raise ValueError(f"{prefix!r} is not a dotted OID")
        return [prefix.lstrip(".") for prefix in value]

    @field_validator("oid_values", mode="before")
    @classmethod
    def _oid_values(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        checked: dict[str, list[str]] = {}
        for oid, wanted in value.items():
            if not _OID.match(str(oid)):
                raise ValueError(f"{oid!r} is not a dotted OID")
            texts = wanted if isinstance(wanted, list) else [wanted]
            if not texts:
                raise ValueError(f"{oid}: list at least one value")
            checked[str(oid).lstrip(".")] = [str(text) for text in texts]
        return checked

    @field_validator("sys_descr")
    @classmethod
    def _regexes(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regex: {exc}") from None
        return value

    @property
    def probed(self) -> list[str]:
        """The instance OIDs this condition set needs fetched before it can be decided."""
        return [*self.oid_exists, *(oid for oid in self.oid_values if oid not in self.oid_exists)]

    def identity(self, sys_object_id: str | None, sys_descr: str | None) -> int | None:
        """Length of the matched sysObjectID prefix (0 if none is listed) when sysObjectID and
        sysDescr match, else ``None`` (probed OIDs are not looked at)."""
        oid = (sys_object_id or "").lstrip(".")
        prefix_len = 0
        if self.sys_object_id:
            hits = [p for p in self.sys_object_id if oid == p or oid.startswith(p.rstrip(".") + ".")]
            if not hits:
                return None
            prefix_len = max(len(p) for p in hits)
        if self.sys_descr and not any(re.search(p, sys_descr or "") for p in self.sys_descr):
            return None
        return prefix_len

    def probes_hold(self, present: Collection[str]) -> bool:
        """``present``: the probed OIDs that answered; a mapping also gives their values."""
        if not all(oid in present for oid in self.oid_exists):
            return False
        values = present if isinstance(present, Mapping) else {}
        for oid, wanted in self.oid_values.items():
            got = values.get(oid)
            text = got.value if hasattr(got, "value") else got
            if got is None or str(text) not in wanted:
                return False
        return True


class Detect(DetectWhen):
    # Alternatives (LibreNMS's list of ``discovery:`` entries): when given, the conditions above
    # must hold and so must at least one of these (e.g. the sysObjectID, or else the sysDescr).
    any_of: list[DetectWhen] = Field(default_factory=list)
    priority: int = 0

    @model_validator(mode="after")
    def _something(self) -> Detect:
        # Every way to match must name sysObjectID or sysDescr: probes are only sent to devices
        # that already look like the family, and nothing matches every device.
        alternatives = self.any_of or [DetectWhen()]
        for n, alt in enumerate(alternatives):
            if not (self.sys_object_id or self.sys_descr or alt.sys_object_id or alt.sys_descr):
                where = f"any_of[{n}]: " if self.any_of else ""
                raise ValueError(f"{where}detect needs sys_object_id and/or sys_descr")
        return self

    def ways(self) -> list[tuple[DetectWhen, DetectWhen | None]]:
        """(own conditions, alternative) pairs, one of which must hold entirely."""
        return [(self, alt) for alt in self.any_of] if self.any_of else [(self, None)]


class Column(_Strict):
    """A column OID. ``join`` makes it a lookup into another table: the expression gives the
    index to read in that column (e.g. entPhysicalName at the row's cpmCPUTotalPhysicalIndex).
    ``walk`` (scalar tables only) reads a whole column as one tuple of its values in index order,
    for a per-device summary over a table (the busiest phase, "is this alarm in the alarm table")."""

    oid: str
    join: str | None = None
    # An index instead of a value: the expression gives an index prefix, and the column's value is
    # the rest of the index (dotted) of the first row of that column below it, for a table whose
    # index carries the data (lldpRemManAddrTable: the neighbour's management address).
    under: str | None = None
    walk: bool = False

    @field_validator("oid")
    @classmethod
    def _oid(cls, value: str) -> str:
        if not _OID.match(value):
            raise ValueError(f"{value!r} is not an OID (absolute, or relative to base with a leading dot)")
        return value


class Value(_Strict):
    """A computed value: an expression, optionally mapped through an enum table."""

    expr: str
    map: dict[str, str | int | float | bool] | None = None
    default: str | int | float | bool | None = None

    @field_validator("map", mode="before")
    @classmethod
    def _keys_as_text(cls, value: Any) -> Any:
        # YAML gives int keys for `1: up`; values are looked up by their text form.
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value


def _as_value(value: Any) -> Any:
    return {"expr": value} if isinstance(value, (str, int, float)) else value


def _as_column(value: Any) -> Any:
    return {"oid": value} if isinstance(value, str) else value


class Table(_Strict):
    id: str
    measurement: str | None = None
    base: str | None = None
    scalar: bool = False
    columns: dict[str, Column] = Field(default_factory=dict)
    vars: dict[str, Value] = Field(default_factory=dict)
    fields: dict[str, Value] = Field(default_factory=dict)
    tags: dict[str, Value] = Field(default_factory=dict)
    filter: str | None = None
    fallback_for: str | None = None
    resets_counters: str | None = None

    @field_validator("columns", mode="before")
    @classmethod
    def _columns(cls, value: Any) -> Any:
        return {k: _as_column(v) for k, v in value.items()} if isinstance(value, dict) else value

    @field_validator("vars", "fields", "tags", mode="before")
    @classmethod
    def _values(cls, value: Any) -> Any:
        return {k: _as_value(v) for k, v in value.items()} if isinstance(value, dict) else value

    @field_validator("base")
    @classmethod
    def _base(cls, value: str | None) -> str | None:
        if value is not None and not _OID.match(value):
            raise ValueError(f"{value!r} is not an OID")
        return value

    @field_validator("id", "measurement")
    @classmethod
    def _snake(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError(f"{value!r} must be snake_case")
        return value


class ProfileFile(_Strict):
    name: str
    description: str = ""
    detect: Detect | None = None
    extends: list[str] = Field(default_factory=list)
    tables: list[Table] = Field(default_factory=list)


@dataclass(frozen=True)
class ResolvedColumn:
    name: str
    oid: str
    join: Expression | None
    walk: bool = False
    under: Expression | None = None


@dataclass(frozen=True)
class ResolvedValue:
    expr: Expression
    map: Mapping[str, Any] | None
    default: Any


@dataclass(frozen=True)
class ResolvedTable:
    id: str
    measurement: str
    scalar: bool
    columns: tuple[ResolvedColumn, ...]
    vars: tuple[tuple[str, ResolvedValue], ...]
    fields: tuple[tuple[str, ResolvedValue], ...]
    tags: tuple[tuple[str, ResolvedValue], ...]
    filter: Expression | None
    fallback_for: str | None
    resets_counters: str | None
    # The filter's leading conjuncts that read only columns and vars, tried before the fields are
    # computed: a row they drop needs no fields (see :func:`_early_filter`).
    early_filter: Expression | None = None
    # The columns the early filter reads, when it reads nothing else (no var, no function of the
    # engine's state) and they are the row's own: read before the others, so a row it drops reads
    # no other column (entPhysicalTable's two of ten). None: every column is read first.
    early_columns: tuple[ResolvedColumn, ...] | None = None

    @property
    def own_columns(self) -> tuple[ResolvedColumn, ...]:
        return tuple(c for c in self.columns if c.join is None and c.under is None)


@dataclass(frozen=True)
class Profile:
    """A profile with its mixins resolved: everything the engine needs, already validated."""

    name: str
    description: str
    detect: Detect | None
    tables: tuple[ResolvedTable, ...]
    source: Path

    def matches(
        self, sys_object_id: str | None, sys_descr: str | None, present: Collection[str] = ()
    ) -> tuple[int, int] | None:
        """``None`` if it does not match, else a sort key (priority, length of the matched prefix).
        ``present``: the probed OIDs that answered (see :meth:`ProfileSet.probes`), a mapping
        OID -> value when ``oid_values`` must be checked."""
        if self.detect is None:
            return None
        best: int | None = None
        for own, alt in self.detect.ways():
            parts = [own] if alt is None else [own, alt]
            lengths = [part.identity(sys_object_id, sys_descr) for part in parts]
            if any(length is None for length in lengths) or not all(p.probes_hold(present) for p in parts):
                continue
            length = max(length or 0 for length in lengths)
            best = length if best is None else max(best, length)
        return None if best is None else (self.detect.priority, best)

    def probes(self, sys_object_id: str | None, sys_descr: str | None) -> list[str]:
        """The OIDs to fetch before :meth:`matches` can decide (empty when sysObjectID / sysDescr
        already rule the profile out)."""
        wanted: dict[str, None] = {}
        for own, alt in self.detect.ways() if self.detect else []:
            parts = [own] if alt is None else [own, alt]
            if all(part.identity(sys_object_id, sys_descr) is not None for part in parts):
                for part in parts:
                    wanted.update(dict.fromkeys(part.probed))
        return list(wanted)


class ProfileSet:
    """All profiles of a directory, resolved and read-only, so one set can serve every collector."""

    def __init__(self, profiles: Mapping[str, Profile]) -> None:
        self.profiles: Mapping[str, Profile] = MappingProxyType(dict(profiles))

    @classmethod
    def load(cls, directory: Path = PROFILES_DIR) -> ProfileSet:
        """The profiles of ``directory``, read once and shared while its files stay the same.

        Every SNMP collector instance (one per device) asks for them: parsing and validating every
        YAML file for each took about 27 s for a 173-poll estate. Checking that the files are
        unchanged (names, sizes, modification times) costs a directory scan, about 40 µs, so a
        profile written since the last call is read again. A directory that fails to load is not
        remembered: the next call reads it again and raises again.
        """
        directory = Path(directory)
        return _load_directory(directory, _files_state(directory))

    def get(self, name: str) -> Profile:
        try:
            return self.profiles[name]
        except KeyError:
            raise KeyError(f"unknown SNMP profile {name!r} (known: {', '.join(sorted(self.profiles))})") from None

    def probes(self, sys_object_id: str | None, sys_descr: str | None) -> list[str]:
        """OIDs to GET before :meth:`detect`: the ``oid_exists`` / ``oid_values`` of the profiles
        that match on sysObjectID and sysDescr (usually none, so detection costs no extra request)."""
        wanted: dict[str, None] = {}
        for profile in self.profiles.values():
            wanted.update(dict.fromkeys(profile.probes(sys_object_id, sys_descr)))
        return list(wanted)

    def detect(
        self,
        sys_object_id: str | None,
        sys_descr: str | None,
        fallback: str = "generic",
        present: Collection[str] = (),
    ) -> Profile:
        best: tuple[tuple[int, int], str] | None = None
        for profile in self.profiles.values():
            key = profile.matches(sys_object_id, sys_descr, present)
            if key is not None and (best is None or (key, profile.name) > best):
                best = (key, profile.name)
        return self.profiles[best[1]] if best else self.get(fallback)


def _files_state(directory: Path) -> tuple[tuple[str, int, int], ...]:
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return ()
    return tuple(
        sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries if e.name.endswith(".yaml"))
    )


# Bounded: a set whose files were rewritten since is never asked for again, and must not stay.
@lru_cache(maxsize=16)
def _load_directory(directory: Path, files_state: tuple[tuple[str, int, int], ...]) -> ProfileSet:
    """``files_state`` is only part of the cache key: files rewritten since give another key."""
    raw: dict[str, tuple[Path, ProfileFile]] = {}
    for path in sorted(directory.glob("*.yaml")):
        parsed = _parse_file(path)
        if parsed.name in raw:
            raise ProfileError(f"{path}: name: {parsed.name!r} already defined in {raw[parsed.name][0]}")
        raw[parsed.name] = (path, parsed)
    return ProfileSet({name: _resolve(name, raw, ()) for name in raw})


class _ProfileLoader(yaml.SafeLoader):
    """SafeLoader without implicit floats, so a relative column OID such as ``.20`` stays the
    string ".20" instead of becoming 0.2 (profiles need no float literals outside expressions)."""


_ProfileLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _parse_file(path: Path) -> ProfileFile:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_ProfileLoader)  # noqa: S506 - safe loader
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from None
    try:
        parsed = ProfileFile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors()
        )
        raise ProfileError(f"{path}: {problems}") from None
    if parsed.name != path.stem:
        raise ProfileError(f"{path}: name: {parsed.name!r} must equal the file name {path.stem!r}")
    return parsed


def _merge(parent: Table, child: Table) -> Table:
    """Child keys replace the parent's; columns, fields and tags merge key by key."""
    given = child.model_dump(exclude_unset=True)
    merged = parent.model_dump()
    for key, value in given.items():
        if key in ("columns", "vars", "fields", "tags"):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return Table.model_validate(merged)


def _raw_tables(
    name: str, raw: Mapping[str, tuple[Path, ProfileFile]], chain: tuple[str, ...]
) -> dict[str, Table]:
    """The profile's tables before resolution: its mixins' tables, then its own merged over them."""
    path, parsed = raw[name]
    if name in chain:
        raise ProfileError(f"{path}: extends: cycle {' -> '.join((*chain, name))}")
    tables: dict[str, Table] = {}
    for position, parent_name in enumerate(parsed.extends):
        if parent_name not in raw:
            raise ProfileError(f"{path}: extends.{position}: unknown profile {parent_name!r}")
        tables.update(_raw_tables(parent_name, raw, (*chain, name)))
    for table in parsed.tables:
        tables[table.id] = _merge(tables[table.id], table) if table.id in tables else table
    return tables


def _resolve(name: str, raw: Mapping[str, tuple[Path, ProfileFile]], chain: tuple[str, ...]) -> Profile:
    path, parsed = raw[name]
    resolved = [_resolve_table(t, f"{path}: tables.{t.id}") for t in _raw_tables(name, raw, chain).values()]
    ids = {t.id for t in resolved}
    for table in resolved:
        if table.fallback_for and table.fallback_for not in ids:
            raise ProfileError(f"{path}: tables.{table.id}.fallback_for: no table {table.fallback_for!r}")
    return Profile(name, parsed.description, parsed.detect, tuple(resolved), path)


def _resolve_table(table: Table, where: str) -> ResolvedTable:
    if table.measurement is None:
        raise ProfileError(f"{where}.measurement: required")
    if not table.columns:
        raise ProfileError(f"{where}.columns: at least one column is required")
    known = set(ROW_NAMES)
    columns = []
    for name, column in table.columns.items():
        # A leading dot means "relative to base" (absolute OIDs are written without one).
        oid = column.oid
        if oid.startswith("."):
            if not table.base:
                raise ProfileError(f"{where}.columns.{name}.oid: relative OID {oid!r} needs a table base")
            oid = table.base.lstrip(".") + oid
        join = _expr(column.join, known, f"{where}.columns.{name}.join") if column.join else None
        under = _expr(column.under, known, f"{where}.columns.{name}.under") if column.under else None
        if table.scalar and join is not None:
            raise ProfileError(f"{where}.columns.{name}.join: scalar tables cannot join")
        if under is not None and (table.scalar or join is not None):
            raise ProfileError(f"{where}.columns.{name}.under: not with join, nor in a scalar table")
        if column.walk and not table.scalar:
            raise ProfileError(f"{where}.columns.{name}.walk: only scalar tables read a column whole")
        columns.append(ResolvedColumn(name, oid.lstrip("."), join, column.walk, under))
        known.add(name)
    variables = []
    for name, value in table.vars.items():
        variables.append((name, _value(value, known, f"{where}.vars.{name}")))
        known.add(name)
    fields = []
    for name, value in table.fields.items():
        fields.append((name, _value(value, known, f"{where}.fields.{name}")))
        known.add(name)
    tags = [(name, _value(value, known, f"{where}.tags.{name}")) for name, value in table.tags.items()]
    filter_expr = _expr(table.filter, known, f"{where}.filter") if table.filter else None
    early_filter = _early_filter(filter_expr, ROW_NAMES | {c.name for c in columns} | dict(variables).keys(), fields)
    early_columns = _early_columns(early_filter, table.scalar, columns, variables)
    if table.resets_counters and table.resets_counters not in table.fields:
        raise ProfileError(f"{where}.resets_counters: no field {table.resets_counters!r}")
    return ResolvedTable(
        table.id,
        table.measurement,
        table.scalar,
        tuple(columns),
        tuple(variables),
        tuple(fields),
        tuple(tags),
        filter_expr,
        table.fallback_for,
        table.resets_counters,
        early_filter,
        early_columns,
    )


# Functions the engine provides per row (they read its state or a column's raw encoding).
ENGINE_FUNCTIONS = STATEFUL_FUNCTIONS | CONDITION_FUNCTIONS
# Functions whose call changes the engine's state for the row: skipping one changes later polls.
_STATE_KEEPING = frozenset({"rate", "went_backwards", "seen_before"})


def _keeps_state(expr: Expression) -> bool:
    return any(isinstance(node, ast.Call) and getattr(node.func, "id", None) in _STATE_KEEPING
               for node in ast.walk(expr.tree))


def _early_filter(filter_expr: Expression | None, before_fields: Collection[str],
                  fields: list[tuple[str, ResolvedValue]]) -> Expression | None:
    """The leading ``and`` terms of ``filter_expr`` that read only names known before the fields
    (the row's columns and vars) and keep no state, as one expression; None when there are none.

    entPhysicalTable rows are mostly ports and sensors the inventory leaves out: its filter's
    first term (the entity's class) drops 169 of a Catalyst's 172 rows, whose 8 fields each were
    computed only to be thrown away. Not when a field keeps state (a rate): its reading must be
    taken on every row, filtered or not. The whole filter is still evaluated on the rows kept."""
    if filter_expr is None or any(_keeps_state(value.expr) for _, value in fields):
        return None
    body = filter_expr.tree.body
    terms = body.values if isinstance(body, ast.BoolOp) and isinstance(body.op, ast.And) else [body]
    field_names = {name for name, _ in fields}
    early = []
    for term in terms:
        text = ast.unparse(term)
        expr = compile_expression(text)
        if not expr.names <= set(before_fields) or expr.names & field_names or _keeps_state(expr):
            break  # the terms after it stay after it: ``and`` reads them in order
        early.append(f"({text})")
    return compile_expression(" and ".join(early)) if early else None


def _early_columns(early_filter: Expression | None, scalar: bool, columns: list[ResolvedColumn],
                   variables: list[tuple[str, ResolvedValue]]) -> tuple[ResolvedColumn, ...] | None:
    """What :attr:`ResolvedTable.early_columns` says, or None. Not when a var keeps state: the
    vars of a dropped row are still computed (its readings taken)."""
    if early_filter is None or scalar or any(_keeps_state(value.expr) for _, value in variables):
        return None
    if any(isinstance(node, ast.Call) and getattr(node.func, "id", None) in ENGINE_FUNCTIONS
           for node in ast.walk(early_filter.tree)):
        return None
    own = {c.name: c for c in columns if c.join is None and c.under is None and not c.walk}
    if not early_filter.names - ROW_NAMES <= own.keys():
        return None
    return tuple(c for c in columns if c.name in early_filter.names)


def _value(value: Value, known: set[str], where: str) -> ResolvedValue:
    return ResolvedValue(_expr(value.expr, known, f"{where}.expr"), value.map, value.default)


def _expr(source: str, known: set[str], where: str) -> Expression:
    try:
        expression = compile_expression(str(source))
    except ExprError as exc:
        raise ProfileError(f"{where}: {exc}") from None
    unknown = expression.names - known
    if unknown:
        raise ProfileError(f"{where}: unknown name(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
    return expression
