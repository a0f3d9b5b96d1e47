"""YAML with line numbers and ``${VAR}`` interpolation, and the location of an error in it.

The loader remembers the line of every mapping key and list item, so every problem found later
(by pydantic, by the cross-checks, by a plugin's options model) can be reported as
"FILE:LINE: field.path: message".

A file is read within bounds, whatever is in it: at most ``MAX_FILE_BYTES``, UTF-8 (a BOM
allowed) or UTF-16 with its BOM, nested at most ``MAX_DEPTH`` levels, aliases expanding to at most
``MAX_ALIAS_NODES`` nodes. Anything else is a ConfigError naming the file (and the line), never a
traceback, a hang or a blown stack: the config and the secrets file are both read this way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

from agent.config.errors import ConfigError

# The largest estate the lab ships is 52 KB; 16 MiB is a mistake (a log, a dump), not a config.
MAX_FILE_BYTES = 16 * 1024 * 1024
# An estate nests about 8 levels; without a bound, 5,000 `[` exhaust Python's stack.
MAX_DEPTH = 64
# Nodes an alias stands for, summed over every alias: a 1 KB "billion laughs" file expands to
# 10^9 nodes that every later walk of the tree would visit. Real anchors (shared defaults) stay
# in the hundreds.
MAX_ALIAS_NODES = 100_000


class YamlMap(dict[Any, Any]):
    """A YAML mapping that remembers its own line and the line of each key."""

    line: int
    key_lines: dict[Any, int]


class YamlSeq(list[Any]):
    line: int
    item_lines: list[int]


_INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_STR_TAG = "tag:yaml.org,2002:str"


class _Refused(yaml.MarkedYAMLError):
    """Well-formed YAML beyond a bound, or a value Python cannot build."""


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader with the module's depth and alias bounds, and a value Python cannot build
    (`2024-13-45`, an integer of 5,000 digits) reported at its line like any YAML error."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._alias_nodes = 0
        self._open_anchors: set[str] = set()  # anchors of the nodes being composed
        self._sizes: dict[yaml.Node, int] = {}

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open_anchors:
                # a node containing itself: every walk of the tree would loop forever
                raise _Refused(None, None, f"alias *{event.anchor} is inside the node it names", event.start_mark)
            node = super().compose_node(parent, index)
            self._alias_nodes += self._size(node)
            if self._alias_nodes > MAX_ALIAS_NODES:
                raise _Refused(None, None, f"YAML aliases expand beyond {MAX_ALIAS_NODES:,} nodes", event.start_mark)
            return node
        if self._depth >= MAX_DEPTH:
            raise _Refused(None, None, f"YAML nested deeper than {MAX_DEPTH} levels", event.start_mark)
        anchor = getattr(event, "anchor", None)
        self._depth += 1
        if anchor is not None:
            self._open_anchors.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open_anchors.discard(anchor)

    def _size(self, node: yaml.Node) -> int:
        """The nodes ``node`` stands for once every alias under it is expanded."""
        size = self._sizes.get(node)
        if size is None:
            if isinstance(node, yaml.MappingNode):
                size = 1 + sum(self._size(key) + self._size(value) for key, value in node.value)
            elif isinstance(node, yaml.SequenceNode):
                size = 1 + sum(self._size(item) for item in node.value)
            else:
                size = 1
            self._sizes[node] = size
        return size

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            # the message only: the value may be a secret
            raise _Refused(None, None, f"unreadable value: {exc}", node.start_mark) from None


_Loader = TypeVar("_Loader", bound=_BoundedLoader)


class _LineLoader(_BoundedLoader):
    def __init__(self, stream: str, environ: Mapping[str, str]) -> None:
        super().__init__(stream)
        self.environ = environ
        self.problems: list[tuple[int, str]] = []
        self._in_key = False


def _construct_map(loader: _LineLoader, node: yaml.MappingNode) -> Iterator[YamlMap]:
    data = YamlMap()
    data.line = node.start_mark.line + 1
    data.key_lines = {}
    yield data
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
            continue
        line = key_node.start_mark.line + 1
        if key_node.value in seen:
            loader.problems.append((line, f"duplicate key {key_node.value!r} (first at line {seen[key_node.value]})"))
        seen[key_node.value] = line
    loader.flatten_mapping(node)  # `<<: *anchor` merges; the mapping's own keys come last and win
    for key_node, value_node in node.value:
        loader._in_key = True
        key = loader.construct_object(key_node, deep=True)
        loader._in_key = False
        if isinstance(key, list | dict):
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain value, not a list or a mapping", key_node.start_mark
            )
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_lines[key] = key_node.start_mark.line + 1


def _construct_seq(loader: _LineLoader, node: yaml.SequenceNode) -> Iterator[YamlSeq]:
    data = YamlSeq()
    data.line = node.start_mark.line + 1
    data.item_lines = [item.start_mark.line + 1 for item in node.value]
    yield data
    data.extend(loader.construct_object(item, deep=True) for item in node.value)


def _construct_str(loader: _LineLoader, node: yaml.ScalarNode) -> Any:
    value = loader.construct_scalar(node)
    if loader._in_key or "$" not in value:
        return value
    line = node.start_mark.line + 1

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        found = loader.environ.get(name)
        if found is not None and found != "":
            return found
        if default is not None:
            return default
        loader.problems.append((line, f"environment variable {name} is not set (use ${{{name}:-default}})"))
        return ""

    result = _INTERPOLATION.sub(substitute, value)
    if result == value:
        return value
    # `port: ${PORT:-1161}` must give the int 1161, as if it had been written unquoted.
    tag = loader.resolve(yaml.ScalarNode, result, (True, False))
    if tag == _STR_TAG:
        return result
    return loader.yaml_constructors[tag](loader, yaml.ScalarNode(tag, result))


def _construct_int(loader: _LineLoader, node: yaml.ScalarNode) -> Any:
    # YAML 1.1 reads `18:00` as the base-60 integer 1080; service hours must stay times.
    if ":" in node.value:
        return str(node.value)
    return yaml.SafeLoader.construct_yaml_int(loader, node)


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
_LineLoader.add_constructor(_STR_TAG, _construct_str)
_LineLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def read_yaml(path: Path, environ: Mapping[str, str]) -> tuple[Any, list[tuple[int, str]]]:
    """The file's one document, with the line of every key and item, and the problems found while
    reading it (an unset variable) as (line, message). Raise ConfigError when it cannot be read."""
    data, loader = _single_document(path, read_text(path), lambda text: _LineLoader(text, environ))
    return data, loader.problems


def read_plain_yaml(path: Path) -> Any:
    """The file's one document as plain dicts, lists and scalars, read within the same bounds but
    without interpolation: the secrets file, whose values may hold a literal ``${``. Raise
    ConfigError when it cannot be read; no message quotes the file's content."""
    return _single_document(path, read_text(path, quote_bytes=False), _BoundedLoader)[0]


def _single_document(path: Path, text: str, make_loader: Callable[[str], _Loader]) -> tuple[Any, _Loader]:
    """The one document of ``text`` and the loader that read it."""
    try:
        loader = make_loader(text)  # the reader refuses a control character at once
        try:
            return loader.get_single_data(), loader
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_error(path, text, exc)]) from None


# Byte order marks and what they announce, UTF-32's first (its little-endian BOM starts as UTF-16's).
_BOMS: tuple[tuple[bytes, str | None], ...] = (
    (b"\xff\xfe\x00\x00", None),
    (b"\x00\x00\xfe\xff", None),
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)


def read_text(path: Path, *, quote_bytes: bool = True) -> str:
    """The text of a YAML file: UTF-8, with or without a BOM, or UTF-16 with its BOM (what Windows
    editors save as "Unicode"). ``quote_bytes=False`` leaves the offending byte out of an error
    (a secrets file's bytes are secrets)."""
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except IsADirectoryError:
        raise ConfigError([f"{path}: is a directory, not a YAML file"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError([f"{path}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB: not a configuration file"])
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), "utf-8")
    if encoding is None:
        raise ConfigError([f"{path}: UTF-32 text: save it as UTF-8"])
    offset = data.find(b"\x00") if encoding.startswith("utf-8") else -1
    if offset >= 0:
        line = data.count(b"\n", 0, offset) + 1
        raise ConfigError(
            [f"{path}: NUL byte at offset {offset}, line {line}: not a UTF-8 text file (UTF-16 needs its BOM)"]
        )
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        byte = f"byte 0x{data[exc.start]:02X} at " if quote_bytes else ""
        label = "not UTF-8" if encoding.startswith("utf-8") else "not valid UTF-16"
        raise ConfigError([f"{path}: {label} ({byte}offset {exc.start}, line {line}): save it as UTF-8"]) from None
    return text


def _yaml_error(path: Path, text: str, exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.reader.ReaderError):
        # a control character: the reader knows its offset, not its line
        line = text.count("\n", 0, exc.position) + 1
        return f"{path}:{line}: invalid YAML: control character U+{exc.character:04X} (not a text file?)"
    mark = getattr(exc, "problem_mark", None)
    where = f"{path}:{mark.line + 1}" if mark else str(path)
    problem = getattr(exc, "problem", None) or exc
    return f"{where}: {problem}" if isinstance(exc, _Refused) else f"{where}: invalid YAML: {problem}"


def locate(raw: Any, loc: Sequence[Any]) -> tuple[int, str]:
    """Line and readable path of a pydantic ``loc``: list items are named by their ``name``."""
    node = raw
    line = getattr(raw, "line", 1)
    path = ""
    for part in loc:
        if isinstance(node, YamlMap) and part in node:
            line = node.key_lines.get(part, line)
            path += f".{part}" if path else str(part)
            node = node[part]
        elif isinstance(node, YamlSeq) and isinstance(part, int) and 0 <= part < len(node):
            line = node.item_lines[part]
            item = node[part]
            label = item.get("name") if isinstance(item, dict) else None
            path += f"[{label}]" if isinstance(label, str) else f"[{part}]"
            node = item
        elif isinstance(node, YamlMap) and part == node.get("kind"):
            continue  # the discriminator pydantic inserts for `kind:` unions
        else:
            path += f".{part}" if path else str(part)
            node = None
    return line, path


def pydantic_messages(exc: ValidationError, raw: Any, prefix: Sequence[Any] = ()) -> list[tuple[int, str, str]]:
    """Each error of ``exc`` as (line, field path, message), located in ``raw`` under ``prefix``."""
    found = []
    for error in exc.errors():
        line, path = locate(raw, (*prefix, *error["loc"]))
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see docs/CONFIGURATION.md)"
        elif error["type"] == "missing":
            message = "required key missing"
        found.append((line, path, message))
    return found
