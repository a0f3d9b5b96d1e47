"""YAML with line numbers and ``${VAR}`` interpolation, and the location of an error in it.

The loader remembers the line of every mapping key and list item, so every problem found later
(by pydantic, by the cross-checks, by a plugin's options model) can be reported as
"FILE:LINE: field.path: message".
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError


class YamlMap(dict[Any, Any]):
    """A YAML mapping that remembers its own line and the line of each key."""

    line: int
    key_lines: dict[Any, int]


class YamlSeq(list[Any]):
    line: int
    item_lines: list[int]


_INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_STR_TAG = "tag:yaml.org,2002:str"


class _LineLoader(yaml.SafeLoader):
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
    loader = _LineLoader(path.read_text(encoding="utf-8"), environ)
    try:
        data = loader.get_single_data()
    finally:
        loader.dispose()
    return data, loader.problems




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


