"""Plugin lookup by entry point: collectors, ticket connectors.

Each call builds a fresh mapping (STYLE.md: registries are instances built at start-up, never
mutable class attributes), so two agents in one process cannot leak plugins into each other.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

COLLECTORS = "vigie.collectors"
TICKETING = "vigie.ticketing"


class UnknownPlugin(LookupError):
    pass


class Registry:
    def __init__(self, group: str) -> None:
        self.group = group
        self._entries = {ep.name: ep for ep in entry_points(group=group)}

    def names(self) -> list[str]:
        return sorted(self._entries)

    def load(self, name: str) -> Any:
        try:
            entry = self._entries[name]
        except KeyError:
            known = ", ".join(self.names()) or "none installed"
            raise UnknownPlugin(f"no {self.group} plugin named {name!r} (known: {known})") from None
        return entry.load()


def shipped_rules(registry: Registry) -> list[dict[str, Any]]:
    """The alert rules installed collectors ship (e.g. SNMP's per-family rules), as raw mappings."""
    rules: list[dict[str, Any]] = []
    for name in registry.names():
        rules.extend(getattr(registry.load(name), "default_rules", lambda: [])())
    return rules
