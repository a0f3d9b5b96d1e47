"""The dependency graph of each client's network: devices, the links between them and where each
link came from, and the parent of each device toward its site's uplink.

Sources of links:

- ``config``: a device's ``parent:`` in the YAML. It pins: the derivation never replaces it.
- every other origin is a plugin's: a plugin declares which of its measurements are links
  (``PluginSpec.edge_sources``, agent/api/topology.py), each turning one of its samples into a
  :class:`Sighting` (a neighbour seen from a port, matched to an inventory device: the SNMP
  collector's LLDP/CDP tables, the Meraki dashboard's), an :class:`Edge` that knows its direction
  (a VM's host, an Omada device's uplink: the parent), or the device's own :class:`DeviceKeys`.
  The registry (agent/plugins.py) collects them at start-up; the runner and ``vigie topology``
  hand them to :class:`Topology`. The kernel knows no source by name.

Derivation (:meth:`Topology.derive`), per client and site: the roots are the site's devices of the
first role tier present (``uplink``, else ``firewall``, else ``core``) plus every device whose pinned
parent is in another site (the site's way in); a site without those roles takes the top of its
pinned tree. A breadth-first
search from the roots over every link of the site (discovered and pinned) gives each device its
distance to the uplink; a device's discovered parent is its linked neighbour closest to the roots
(strictly closer than itself, so discovered parents never form a cycle among themselves; ties go to
the name). A pinned device keeps its pin; a discovered parent that differs is a
:class:`Contradiction`, reported (log, ``vigie topology``) and not applied. A discovered parent that
would close a cycle with the pins is refused and reported the same way.

A neighbour is matched to an inventory device of the same client by, in order: management address,
chassis id (the device's own LLDP chassis id, a :class:`DeviceKeys`), name (the inventory name, the
device's own sysName / lldpLocSysName, each also without its domain), case-insensitively. A key two
devices share (every lab device's address is 127.0.0.1; a redacted sysName) matches nothing.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from agent.api import DeviceInfo, DeviceKeys, Edge, EdgeSource, FieldValue, Sample, Sighting
from agent.state import Latest

log = logging.getLogger(__name__)

# Role tags that make a device a root of its site's tree, most upstream first: the first tier a
# site has gives its roots (a site with an uplink router: the router; without: its firewall, ...).
ROOT_TIERS = ("uplink", "firewall", "core")
# Link rows older than the device's last poll of their source (EdgeSource.polled_by) by more than
# this are from an earlier poll: a poll's samples are stamped within its timeout.
STALE_AFTER_S = 60.0


@dataclass(frozen=True)
class Parent:
    device: str
    parent: str
    origin: str
    via: str = ""


@dataclass(frozen=True)
class Contradiction:
    """A discovered parent the derivation did not apply: it contradicts a pin, or closes a cycle."""

    client: str
    device: str
    pinned: str | None
    discovered: str
    origin: str
    via: str
    reason: str

    def text(self) -> str:
        return f"{self.client}/{self.device}: {self.reason}"


@dataclass
class SiteTree:
    site: str
    roots: list[str]
    devices: list[str]


@dataclass
class ClientTopology:
    client: str
    sites: list[SiteTree]
    parents: dict[str, Parent]
    edges: list[Edge]
    contradictions: list[Contradiction]
    unmatched: list[Sighting]

    def children(self, device: str) -> list[str]:
        return sorted(name for name, link in self.parents.items() if link.parent == device)


@dataclass
class _Keys:
    """Match keys of one client's devices: key -> device names that have it."""

    address: dict[str, set[str]] = field(default_factory=dict)
    chassis: dict[str, set[str]] = field(default_factory=dict)
    name: dict[str, set[str]] = field(default_factory=dict)

    @staticmethod
    def add(index: dict[str, set[str]], key: str | None, device: str) -> None:
        if key:
            index.setdefault(key.strip().lower(), set()).add(device)

    @staticmethod
    def one(index: dict[str, set[str]], key: str | None) -> str | None:
        found = index.get(key.strip().lower(), set()) if key else set()
        return next(iter(found)) if len(found) == 1 else None


def _names(name: str | None) -> list[str]:
    """A name and, when it has a domain, the name without it (MX066-SW.example.org -> MX066-SW)."""
    if not name:
        return []
    short = name.split(".", 1)[0]
    return [name] if short == name or not short else [name, short]


def _link(sources: Mapping[str, EdgeSource], client: str, device: str, measurement: str, tags: Mapping[str, str],
          fields: Mapping[str, FieldValue]) -> Sighting | Edge | DeviceKeys | None:
    source = sources.get(measurement)
    return None if source is None else source.convert(client, device, tags, fields)


def measurements(sources: Mapping[str, EdgeSource]) -> tuple[str, ...]:
    """The measurements a topology is rebuilt from (the state's latest values)."""
    return tuple(dict.fromkeys([*sources, *(s.polled_by for s in sources.values())]))


class Topology:
    """The graph of the inventory ``devices``; feed it links (the samples of the plugins'
    ``sources``: :meth:`observe`), then :meth:`derive`."""

    def __init__(self, devices: Iterable[DeviceInfo], sources: Mapping[str, EdgeSource] | None = None) -> None:
        self.devices: dict[tuple[str, str], DeviceInfo] = {(d.client, d.name): d for d in devices}
        self.sources: Mapping[str, EdgeSource] = dict(sources or {})
        self._own: dict[tuple[str, str], dict[str, str]] = {}  # (client, device) -> chassis / sys names
        # (client, device, origin) -> what that source last said of the device (replaced whole)
        self._sightings: dict[tuple[str, str, str], list[Sighting]] = {}
        self._edges: dict[tuple[str, str, str], list[Edge]] = {}
        self._keys: dict[str, _Keys] | None = None

    # -- feeding --------------------------------------------------------------------------------

    def identify(self, client: str, device: str, chassis_id: str | None, sys_name: str | None) -> bool:
        """The device's own LLDP chassis id and system name (a :class:`DeviceKeys`): match keys.
        True when they changed."""
        known = {k: v for k, v in (("chassis_id", chassis_id), ("sys_name", sys_name)) if v}
        if self._own.get((client, device), {}) == known:
            return False
        self._own[(client, device)] = known
        self._keys = None
        return True

    def replace(self, client: str, device: str, origin: str, links: Sequence[Sighting | Edge]) -> bool:
        """What ``origin`` now says of ``device``: its earlier links from that origin are dropped.
        True when that changed anything."""
        key = (client, device, origin)
        sightings = [s for s in links if isinstance(s, Sighting)]
        edges = [e for e in links if isinstance(e, Edge)]
        if self._sightings.get(key, []) == sightings and self._edges.get(key, []) == edges:
            return False
        self._sightings[key], self._edges[key] = sightings, edges
        return True

    def observe(self, samples: Iterable[Sample]) -> bool:
        """Take the links of one batch of samples (the runner's). A device with a source's
        ``polled_by`` sample in the batch gets that source's links replaced by the batch's (none:
        it has none any more). True when something changed."""
        changed = False
        found: dict[tuple[str, str, str], list[Sighting | Edge]] = {}
        for sample in samples:
            client, device = sample.tags.get("client"), sample.tags.get("device")
            if not client or not device:
                continue
            for source in self.sources.values():
                if sample.measurement == source.polled_by:
                    for origin in source.origins:
                        found.setdefault((client, device, origin), [])
            link = _link(self.sources, client, device, sample.measurement, sample.tags, sample.fields)
            if isinstance(link, DeviceKeys):
                changed |= self.identify(client, device, link.chassis_id, link.sys_name)
            elif link is not None:
                found.setdefault((client, device, link.origin), []).append(link)
        for (client, device, origin), links in found.items():
            changed |= self.replace(client, device, origin, links)
        return changed

    # -- matching -------------------------------------------------------------------------------

    def _client_keys(self, client: str) -> _Keys:
        if self._keys is None:
            self._keys = {}
            for (owner, name), device in self.devices.items():
                keys = self._keys.setdefault(owner, _Keys())
                keys.add(keys.address, device.address, name)
                own = self._own.get((owner, name), {})
                keys.add(keys.chassis, own.get("chassis_id"), name)
                for text in {*_names(name), *_names(own.get("sys_name"))}:
                    keys.add(keys.name, text, name)
        return self._keys.get(client, _Keys())

    def match(self, sighting: Sighting) -> str | None:
        """The inventory device the sighting names (the first key that names exactly one), or
        None: unknown or ambiguous. It may be the device itself (a stack's, a VLT pair's links)."""
        keys = self._client_keys(sighting.client)
        candidates = [
            keys.one(keys.address, sighting.remote_address),
            keys.one(keys.chassis, sighting.remote_chassis_id),
            *(keys.one(keys.name, text) for text in _names(sighting.remote_name)),
        ]
        return next((c for c in candidates if c is not None), None)

    # -- derivation -----------------------------------------------------------------------------

    def edges(self, client: str) -> tuple[list[Edge], list[Sighting]]:
        """Every link of ``client``'s devices (one per device pair and origin; pins included) and
        the sightings that matched no inventory device."""
        found: dict[tuple[str, str, str], Edge] = {}
        unmatched: list[Sighting] = []
        for (owner, name), device in sorted(self.devices.items()):
            if owner == client and device.parent is not None and (client, device.parent) in self.devices:
                found[(*sorted((name, device.parent)), "config")] = Edge(client, name, device.parent, "config",
                                                                          upstream=device.parent)
        for (owner, name, origin), sightings in sorted(self._sightings.items()):
            if owner != client or self._from_controller(client, name, origin):
                continue
            for sighting in sightings:
                remote = self.match(sighting)
                if remote is None:
                    unmatched.append(sighting)
                if remote is None or remote == sighting.device:  # its own links are no link
                    continue
                key = (*sorted((sighting.device, remote)), sighting.origin)
                if key not in found:  # one link seen from both ends, or over two ports (a LAG): once
                    found[key] = Edge(client, sighting.device, remote, sighting.origin,
                                      sighting.local_port, sighting.remote_port)
        for (owner, name, origin), edges in sorted(self._edges.items()):
            if owner != client or self._from_controller(client, name, origin):
                continue
            for edge in edges:
                other = edge.b if (client, edge.b) in self.devices else self.match(Sighting(client, edge.a, origin,
                                                                                            remote_name=edge.b))
                if other is None or other == edge.a or (client, edge.a) not in self.devices:
                    continue
                upstream = other if edge.upstream == edge.b else edge.upstream
                found.setdefault((*sorted((edge.a, other)), edge.origin),
                                 Edge(client, edge.a, other, edge.origin, edge.a_port, edge.b_port, upstream))
        return list(found.values()), unmatched

    def _from_controller(self, client: str, device: str, origin: str) -> bool:
        """Links a controller could not place on their device (they landed on its own)."""
        info = self.devices.get((client, device))
        controllers = {s.controller for s in self.sources.values() if origin in s.origins}
        return info is not None and any(c in info.collectors for c in controllers if c)

    def derive(self, client: str) -> ClientTopology:
        devices = {name: d for (owner, name), d in self.devices.items() if owner == client}
        edges, unmatched = self.edges(client)
        parents: dict[str, Parent] = {
            name: Parent(name, d.parent, "config") for name, d in devices.items() if d.parent in devices
        }
        contradictions: list[Contradiction] = []
        sites: list[SiteTree] = []
        by_site: dict[str, list[str]] = {}
        for name, device in sorted(devices.items()):
            by_site.setdefault(device.site, []).append(name)
        for site, members in by_site.items():
            tree, found = self._derive_site(client, site, members, devices, edges, parents)
            sites.append(tree)
            contradictions.extend(found)
        # A discovered parent that closes a cycle with the pins is refused (set_parents would refuse
        # the whole map, and devices down together would hold each other's alerts forever).
        for name in sorted(parents):
            chain = [name]
            while (link := parents.get(chain[-1])) is not None and link.parent not in chain:
                chain.append(link.parent)
            if link is None:
                continue
            cycle = [*chain[chain.index(link.parent):], link.parent]
            culprit = next((parents[d] for d in cycle[:-1] if parents[d].origin != "config"), None)
            if culprit is not None:
                del parents[culprit.device]
                contradictions.append(Contradiction(
                    client, culprit.device, None, culprit.parent, culprit.origin, culprit.via,
                    f"{culprit.origin} parent {culprit.parent} refused: it would close the cycle "
                    f"{' -> '.join(cycle)}"))
        return ClientTopology(client, sites, parents, edges, contradictions, unmatched)

    def _derive_site(
        self,
        client: str,
        site: str,
        members: list[str],
        devices: Mapping[str, DeviceInfo],
        edges: list[Edge],
        parents: dict[str, Parent],
    ) -> tuple[SiteTree, list[Contradiction]]:
        inside = set(members)
        roles = {name: devices[name].tags.get("role") for name in members}
        tier = next((t for t in ROOT_TIERS if t in roles.values()), None)
        pinned_tops = {d.parent for name, d in devices.items() if name in inside and d.parent in inside}
        roots = {name for name in members if tier is not None and roles[name] == tier}
        if not roots:  # no role says where the uplink is: the top of the pinned tree does
            roots = {name for name in pinned_tops if devices[name].parent is None}
        roots |= {name for name in members if devices[name].parent is not None and devices[name].parent not in inside}
        links: dict[str, list[Edge]] = {name: [] for name in members}
        for edge in edges:
            if edge.a in inside and edge.b in inside:
                links[edge.a].append(edge)
                links[edge.b].append(edge)
        # Hops to the roots over every link (a pinned AP below a switch without LLDP is reached),
        # and over discovered links only: what discovery alone says of a pinned device.
        distance = _hops(roots, links, lambda edge: True)
        discovered_distance = _hops(roots, links, lambda edge: edge.origin != "config")
        found: list[Contradiction] = []
        for name in members:
            pin = devices[name].parent
            discovered = self._discovered_parent(name, links[name], distance if pin is None else discovered_distance)
            if discovered is None:
                continue
            via = discovered.via(name)
            parent = discovered.other(name)
            if pin is None:
                parents[name] = Parent(name, parent, discovered.origin, via)
            elif pin != parent:
                found.append(Contradiction(
                    client, name, pin, parent, discovered.origin, via,
                    f"pinned parent {pin} (config), {discovered.origin} says {parent}"
                    + (f" ({via})" if via else "") + ": the pin is kept"))
        return SiteTree(site, sorted(roots), sorted(members)), found

    @staticmethod
    def _discovered_parent(name: str, links: list[Edge], distance: Mapping[str, int]) -> Edge | None:
        """The non-config link toward the roots: a directed one naming its upstream, else the
        neighbour strictly closer to the roots (the closest; ties by name)."""
        discovered = [e for e in links if e.origin != "config"]
        directed = sorted((e for e in discovered if e.upstream == e.other(name)), key=lambda e: e.other(name))
        if directed:
            return directed[0]
        mine = distance.get(name)
        if mine is None:
            return None
        closer = [e for e in discovered if e.upstream is None and distance.get(e.other(name), mine) < mine]
        return min(closer, key=lambda e: (distance[e.other(name)], e.other(name), e.origin), default=None)

    def parent_map(self, clients: Iterable[str]) -> tuple[dict[tuple[str, str], str], list[Contradiction]]:
        """(client, device) -> parent for the alert engine (pins and discovered parents), and
        what was not applied."""
        parents: dict[tuple[str, str], str] = {}
        contradictions: list[Contradiction] = []
        for client in clients:
            derived = self.derive(client)
            parents.update({(client, name): link.parent for name, link in derived.parents.items()})
            contradictions.extend(derived.contradictions)
        return parents, contradictions


def _hops(roots: Iterable[str], links: Mapping[str, list[Edge]], usable: Callable[[Edge], bool]) -> dict[str, int]:
    """Breadth-first distance of each device to the nearest root over the ``usable`` links."""
    distance = dict.fromkeys(roots, 0)
    todo = deque(sorted(distance))
    while todo:
        here = todo.popleft()
        for edge in sorted(links[here], key=lambda e: e.other(here)):
            there = edge.other(here)
            if usable(edge) and there not in distance:
                distance[there] = distance[here] + 1
                todo.append(there)
    return distance


def from_state(devices: Iterable[DeviceInfo], series: Iterable[tuple[str, Mapping[str, str],
               Mapping[str, FieldValue], float]], sources: Mapping[str, EdgeSource]) -> Topology:
    """A topology from the state's latest series ``(measurement, tags, fields, at)`` (the
    rollups of a state directory, read-only): each device's links of its sources' last polls
    (rows older than that poll by more than STALE_AFTER_S are gone from the device's table)."""
    topology = Topology(devices, sources)
    polled_at: dict[tuple[str, str, str], float] = {}  # (client, device, measurement) -> newest
    rows = list(series)
    for measurement, tags, _, at in rows:
        key = (tags.get("client", ""), tags.get("device", ""), measurement)
        polled_at[key] = max(at, polled_at.get(key, at))
    found: dict[tuple[str, str, str], list[Sighting | Edge]] = {}
    for measurement, tags, fields, at in rows:
        client, device = tags.get("client", ""), tags.get("device", "")
        source = sources.get(measurement)
        if source is None or at < polled_at.get((client, device, source.polled_by), at) - STALE_AFTER_S:
            continue
        link = source.convert(client, device, tags, fields)
        if isinstance(link, DeviceKeys):
            topology.identify(client, device, link.chassis_id, link.sys_name)
        elif link is not None:
            found.setdefault((client, device, link.origin), []).append(link)
    for (client, device, origin), links in found.items():
        topology.replace(client, device, origin, links)
    return topology


# -- drawing (vigie topology) -------------------------------------------------------------------


def confirmations(topology: ClientTopology, device: str) -> list[str]:
    """The discovery origins whose links agree with ``device``'s parent (a pin LLDP confirms)."""
    link = topology.parents.get(device)
    if link is None:
        return []
    return sorted({e.origin for e in topology.edges
                   if e.origin != link.origin and {e.a, e.b} == {device, link.parent}})


def _parent_text(topology: ClientTopology, device: str) -> str:
    link = topology.parents[device]
    text = link.origin + (f": {link.via}" if link.via else "")
    agreeing = confirmations(topology, device)
    if agreeing:
        text += f", confirmed by {'/'.join(agreeing)}"
    return f"[{text}]"


def _branch(topology: ClientTopology, inside: set[str], device: str, prefix: str, mark: str,
            lines: list[str]) -> None:
    """``device``'s line and, below it, its children of the same site (box-drawing tree)."""
    note = ""
    if device in topology.parents:
        note = "  " + _parent_text(topology, device)
        if topology.parents[device].parent not in inside:
            note += f" from {topology.parents[device].parent} (another site)"
    lines.append(f"  {prefix}{mark}{device}{note}")
    kids = [c for c in topology.children(device) if c in inside]
    below = prefix + {"": "", "└── ": "    "}.get(mark, "│   ")
    for n, child in enumerate(kids):
        _branch(topology, inside, child, below, "└── " if n == len(kids) - 1 else "├── ", lines)


def text_lines(topology: ClientTopology) -> list[str]:
    """The tree of each site, then the links, what was not applied and what matched nothing."""
    lines: list[str] = []
    for site in topology.sites:
        inside = set(site.devices)
        lines.append(f"{topology.client} / {site.site}  (roots: {', '.join(site.roots) or 'none'})")
        for device in site.devices:
            if device not in topology.parents or topology.parents[device].parent not in inside:
                _branch(topology, inside, device, "", "", lines)
    if topology.edges:
        lines.append("links:")
        for edge in sorted(topology.edges, key=lambda e: (e.origin, e.a, e.b)):
            ports = edge.via(edge.a)
            lines.append(f"  {edge.a} — {edge.b}  {edge.origin}" + (f"  ({ports})" if ports else ""))
    if topology.contradictions:
        lines.append("not applied:")
        lines += [f"  {c.device}: {c.reason}" for c in topology.contradictions]
    if topology.unmatched:
        lines.append("neighbours matching no inventory device:")
        for s in topology.unmatched:
            remote = " ".join(x for x in (s.remote_name, s.remote_address and f"[{s.remote_address}]",
                                          s.remote_chassis_id and f"chassis {s.remote_chassis_id}") if x)
            lines.append(f"  {s.device} {s.local_port or '?'} -> {remote or '?'} "
                         f"port {s.remote_port or '?'} ({s.origin})")
    return lines


def as_json(topology: ClientTopology) -> dict[str, object]:
    return {
        "client": topology.client,
        "sites": [asdict(site) for site in topology.sites],
        "parents": [{**asdict(link), "confirmed_by": confirmations(topology, name)}
                    for name, link in sorted(topology.parents.items())],
        "edges": [asdict(edge) for edge in topology.edges],
        "not_applied": [asdict(c) for c in topology.contradictions],
        "unmatched": [asdict(s) for s in topology.unmatched],
    }


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(topology: ClientTopology, roles: Mapping[str, str | None]) -> str:
    """The client's network schema in Graphviz: a box per site, an arrow parent -> child labelled
    with its origin, a dashed line for a link that is not a parent, red for what was not applied."""
    out = [f"digraph {_quoted(topology.client)} {{",
           f"  graph [rankdir=TB, fontname=Helvetica, label={_quoted(topology.client)}];",
           "  node [shape=box, style=rounded, fontname=Helvetica];",
           "  edge [fontname=Helvetica, fontsize=9];"]
    for n, site in enumerate(topology.sites):
        out.append(f"  subgraph cluster_{n} {{")
        out.append(f"    label={_quoted(site.site)};")
        for device in site.devices:
            role = roles.get(device)
            label = device + (f"\n{role}" if role else "")
            style = ", penwidth=2" if device in site.roots else ""
            out.append(f"    {_quoted(device)} [label={_quoted(label)}{style}];")
        out.append("  }")
    drawn: set[frozenset[str]] = set()
    for device, link in sorted(topology.parents.items()):
        # the parent's port first, as the arrow goes (via is written from the child's side)
        ports = " <-> ".join(reversed(link.via.split(" <-> "))) if link.via else ""
        label = link.origin + (f"\n{ports}" if ports else "")
        out.append(f"  {_quoted(link.parent)} -> {_quoted(device)} [label={_quoted(label)}];")
        drawn.add(frozenset((device, link.parent)))
    for edge in topology.edges:
        if frozenset((edge.a, edge.b)) in drawn:
            continue
        drawn.add(frozenset((edge.a, edge.b)))
        label = edge.origin + (f"\n{edge.via(edge.a)}" if edge.via(edge.a) else "")
        out.append(f"  {_quoted(edge.a)} -> {_quoted(edge.b)} [dir=none, style=dashed, label={_quoted(label)}];")
    for c in topology.contradictions:
        out.append(f"  {_quoted(c.discovered)} -> {_quoted(c.device)} "
                   f"[color=red, fontcolor=red, style=dotted, label={_quoted(c.origin + ' (not applied)')}];")
    out.append("}")
    return "\n".join(out) + "\n"


class DrawingError(RuntimeError):
    """Graphviz is missing or refused the graph."""


def to_svg(dot: str, timeout_s: float = 60.0) -> str:
    """The schema drawn by Graphviz's ``dot -Tsvg`` (Debian package graphviz)."""
    import shutil
    import subprocess

    program = shutil.which("dot")
    if program is None:
        raise DrawingError("`dot` not found: install Graphviz (apt-get install graphviz) or use --format dot")
    try:
        done = subprocess.run([program, "-Tsvg"], input=dot, capture_output=True, text=True, timeout=timeout_s,
                              check=False)
    except subprocess.TimeoutExpired:
        raise DrawingError(f"dot -Tsvg took more than {timeout_s:.0f} s") from None
    if done.returncode != 0:
        raise DrawingError(f"dot -Tsvg failed ({done.returncode}): {done.stderr.strip()[:500]}")
    return done.stdout


def from_latest(devices: Iterable[DeviceInfo], latest: Iterable[Latest], sources: Mapping[str, EdgeSource]
                ) -> Topology:
    """A topology from :meth:`agent.state.StateDB.latest` rows of :func:`measurements`: what the
    agent knew before a restart."""
    series: dict[tuple[str, str], tuple[str, dict[str, str], dict[str, FieldValue], list[float]]] = {}
    for row in latest:
        key = (row.measurement, json.dumps(row.tags, sort_keys=True))
        _, _, fields, at = series.setdefault(key, (row.measurement, row.tags, {}, [0.0]))
        fields[row.field] = row.value
        at[0] = max(at[0], row.timestamp_ns / 1e9)
    return from_state(devices, [(m, tags, fields, at[0]) for m, tags, fields, at in series.values()], sources)
