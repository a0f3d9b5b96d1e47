"""The registry of installed plugins, built once at start-up from the entry points.

Every plugin kind is found the same way: an entry point in one of ``GROUPS`` naming a
:class:`~agent.api.PluginSpec`. A plugin that cannot be loaded (import error, not a spec, written
for another API version, a name already taken) does not stop the agent: it is left out and
reported in :attr:`Plugins.problems`, which ``vigie check-config`` prints.

A registry is an instance (STYLE.md: never a mutable class attribute), so two agents in one
process, or a test building its own ``Plugins([...])``, cannot leak plugins into each other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from agent.api import API_VERSION, DeviceMessage, EdgeSource, PluginSpec, Rule
from agent.api.plugin import PluginKind, UrlParser

log = logging.getLogger(__name__)

# entry-point group -> the kind of the specs it holds
GROUPS: Mapping[str, tuple[PluginKind, ...]] = {
    "vigie.collectors": ("collector",),
    "vigie.probes": ("probe",),
    "vigie.ticketing": ("ticketing",),
    "vigie.notifications": ("notification",),
    "vigie.stores": ("store",),
    "vigie.services": ("service",),
}
# Collectors and probes share one namespace: a device's `collectors:` names either.
_NAMESPACE: Mapping[PluginKind, str] = {
    "collector": "collectors",
    "probe": "collectors",
    "ticketing": "ticketing",
    "notification": "notifications",
    "store": "stores",
    "service": "services",
}


class UnknownPlugin(LookupError):
    pass


class Plugins:
    def __init__(self, specs: Iterable[PluginSpec], problems: Iterable[str] = ()) -> None:
        self.problems = list(problems)
        self._by_namespace: dict[str, dict[str, PluginSpec]] = {ns: {} for ns in set(_NAMESPACE.values())}
        for spec in specs:
            if spec.api_version != API_VERSION:
                self.problems.append(
                    f"plugin {spec.name!r} is written for plugin API {spec.api_version}, this vigie has {API_VERSION}"
                )
                continue
            namespace = self._by_namespace[_NAMESPACE[spec.kind]]
            if spec.name in namespace:
                self.problems.append(f"two {_NAMESPACE[spec.kind]} plugins named {spec.name!r}: the second is ignored")
                continue
            namespace[spec.name] = spec
        self._edge_sources: dict[str, EdgeSource] = {}
        for spec in self.all():
            for measurement, source in spec.edge_sources.items():
                refused = None
                if measurement in self._edge_sources:
                    refused = f"{measurement} is already an edge source of another plugin"
                elif "config" in source.origins:
                    refused = f"edge source {measurement}: origin 'config' is the configuration's parents"
                if refused is None:
                    self._edge_sources[measurement] = source
                elif (problem := f"plugin {spec.name!r}: {refused}: ignored") not in self.problems:
                    self.problems.append(problem)  # once: extended() passes the problems on

    @classmethod
    def discover(cls, find: Callable[[str], Iterable[EntryPoint]] = lambda g: entry_points(group=g)) -> Plugins:
        specs: list[PluginSpec] = []
        problems: list[str] = []
        for group, kinds in GROUPS.items():
            for entry in find(group):
                where = f"plugin {entry.name!r} ({group} = {entry.value})"
                try:
                    spec = entry.load()
                except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop the others
                    problems.append(f"{where}: cannot be loaded: {type(exc).__name__}: {exc}")
                    continue
                if not isinstance(spec, PluginSpec):
                    problems.append(f"{where}: names a {type(spec).__name__}, not an agent.api.PluginSpec")
                elif spec.kind not in kinds or spec.name != entry.name:
                    declared = f"declares {spec.kind} {spec.name!r}"
                    problems.append(f"{where}: {declared}, expected a {kinds[0]} {entry.name!r}")
                else:
                    specs.append(spec)
        return cls(specs, problems)

    def extended(self, specs: Iterable[PluginSpec]) -> Plugins:
        """A new registry with these plugins added (an embedding program's own, a test's)."""
        return Plugins([*self.all(), *specs], self.problems)

    # -- lookups ---------------------------------------------------------------------------------

    def names(self, namespace: str) -> list[str]:
        return sorted(self._by_namespace[namespace])

    def get(self, namespace: str, name: str) -> PluginSpec:
        try:
            return self._by_namespace[namespace][name]
        except KeyError:
            known = ", ".join(self.names(namespace)) or "none installed"
            kind = namespace.removesuffix("s")
            raise UnknownPlugin(f"no {kind} plugin named {name!r} (installed: {known})") from None

    def collector(self, name: str) -> PluginSpec:
        return self.get("collectors", name)

    def all(self) -> list[PluginSpec]:
        return [spec for namespace in self._by_namespace.values() for spec in namespace.values()]

    # -- what the kernel learns from the specs ---------------------------------------------------

    def default_rules(self) -> list[Rule]:
        return [rule for spec in self.all() for rule in spec.default_rules()]

    def state_fields(self) -> frozenset[tuple[str, str]]:
        return frozenset().union(*(spec.state_fields for spec in self.all()))

    def counter_fields(self) -> frozenset[tuple[str, str]]:
        return frozenset().union(*(spec.counter_fields for spec in self.all()))

    def descriptive_tags(self) -> frozenset[str]:
        return frozenset().union(*(spec.descriptive_tags for spec in self.all()))

    def edge_sources(self) -> dict[str, EdgeSource]:
        """measurement -> how its samples are links, from every plugin (agent/topology.py)."""
        return dict(self._edge_sources)

    def device_messages(self, state_dir: Path, client: str, device: str, limit: int) -> list[DeviceMessage]:
        """The raw messages every plugin keeps about a device, newest first, at most ``limit``; a
        plugin whose store cannot be read is logged and left out, never the whole view."""
        found: list[DeviceMessage] = []
        for spec in self.all():
            if spec.device_messages is None:
                continue
            try:
                found.extend(spec.device_messages(state_dir, client, device, limit))
            except Exception:  # noqa: BLE001 - one plugin's unreadable store must not hide the others
                log.exception("plugin %s: messages of %s/%s not read", spec.name, client, device)
        return sorted(found, key=lambda m: m.at, reverse=True)[:limit]

    def url_parser(self, scheme: str) -> tuple[str, UrlParser]:
        """The collector name and URL parser of ``vigie collect SCHEME://...``."""
        for spec in self._by_namespace["collectors"].values():
            if scheme in spec.url_schemes:
                return spec.name, spec.url_schemes[scheme]
        known = sorted(s for spec in self._by_namespace["collectors"].values() for s in spec.url_schemes)
        raise UnknownPlugin(f"no collector takes {scheme}:// URLs (known: {', '.join(known) or 'none'})")
