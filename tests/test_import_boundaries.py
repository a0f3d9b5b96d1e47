"""The package boundaries of docs/ARCHITECTURE.md, checked on every module's imports.

- agent/api, the plugin API, imports nothing else of vigie;
- a plugin package (collectors/*, probes/*, the ticket receivers in alerting/ticketing) imports of
  vigie only agent.api and itself, so the kernel can change behind the API;
- the kernel (agent/, alerting's engine and dispatcher, dashboards/) names no plugin: it finds
  them through the entry points;
- only lab/, tests/ and bench/ import lab/ (the lab is not in the vigie wheel).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VIGIE = ("agent", "alerting", "collectors", "probes", "dashboards", "lab")
PLUGIN_PACKAGES = ("collectors", "probes", "alerting.ticketing")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.append((node.lineno, ".".join([*base, node.module or ""]).rstrip(".")))
            elif node.module:
                found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name.split(".")[0] in VIGIE]


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _plugin_package(module: str) -> str | None:
    """The plugin package a module belongs to: ``collectors.snmp``, ``alerting.ticketing``..."""
    for prefix in PLUGIN_PACKAGES:
        if _within(module, prefix):
            parts = module.split(".")
            depth = len(prefix.split("."))
            return ".".join(parts[: depth + 1]) if prefix != "alerting.ticketing" and len(parts) > depth else prefix
    return None


def _problem(module: str, imported: str) -> str | None:
    if _within(module, "agent.api"):
        return None if _within(imported, "agent.api") else "the plugin API imports nothing else of vigie"
    if _within(imported, "lab") and not _within(module, "lab"):
        return "only the lab, the tests and the benches import lab/"
    own = _plugin_package(module)
    if own is not None:
        if _within(imported, "agent.api") or _within(imported, own):
            return None
        return f"a plugin ({own}) imports only agent.api and itself"
    if not _within(module, "lab") and _plugin_package(imported) is not None:
        return "the kernel names no plugin (it loads them through entry points)"
    return None


def _sources() -> list[Path]:
    return sorted(p for top in VIGIE for p in (ROOT / top).rglob("*.py"))


def test_every_package_is_checked() -> None:
    assert any(_module(p) == "collectors.snmp" for p in _sources())
    assert _plugin_package("collectors.snmp.client") == "collectors.snmp"
    assert _plugin_package("alerting.ticketing.glpi") == "alerting.ticketing"
    assert _problem("agent.runner", "collectors.snmp") and _problem("collectors.snmp", "agent.config")
    assert _problem("collectors.snmp", "collectors.meraki")
    assert not _problem("collectors.snmp.engine", "collectors.snmp")


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_respect_the_boundaries(path: Path) -> None:
    module = _module(path)
    problems = [
        f"{path.relative_to(ROOT)}:{line}: imports {name}: {why}"
        for line, name in _imports(path)
        if (why := _problem(module, name)) is not None
    ]
    assert not problems, "\n".join(problems)
