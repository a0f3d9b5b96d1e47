"""The derivation on synthetic graphs: parents toward the site's uplink, pins kept over discovery,
contradictions and cycles reported and not applied, matching by address / chassis id / name."""

from __future__ import annotations

from agent.api import DeviceInfo, Sample
from agent.plugins import Plugins
from agent.topology import Edge, Sighting, Topology, confirmations, text_lines, to_dot

# the edge sources of the installed plugins, as the runner and `vigie topology` collect them
SOURCES = Plugins.discover().edge_sources()


def dev(name: str, *, site: str = "hq", role: str | None = None, parent: str | None = None,
        address: str = "127.0.0.1", client: str = "acme") -> DeviceInfo:
    return DeviceInfo(client, site, name, address, {"role": role} if role else {}, ("snmp",), parent)


def seen(device: str, remote: str | None, origin: str = "lldp", **more: str) -> Sighting:
    return Sighting("acme", device, origin, more.pop("local_port", "p1"), remote, more.pop("remote_port", "p2"), **more)


def feed(topology: Topology, *sightings: Sighting) -> Topology:
    by: dict[tuple[str, str], list[Sighting]] = {}
    for s in sightings:
        by.setdefault((s.device, s.origin), []).append(s)
    for (device, origin), found in by.items():
        topology.replace("acme", device, origin, found)
    return topology


def test_parents_follow_the_links_toward_the_uplink() -> None:
    topology = feed(
        Topology([dev("gw", role="uplink"), dev("core"), dev("sw-1"), dev("sw-2"), dev("ap-1")]),
        seen("core", "gw", local_port="Te1/1", remote_port="ge-0/0/1"),
        seen("sw-1", "core"),
        seen("core", "sw-2", origin="cdp"),
        seen("sw-2", "ap-1", origin="cdp", local_port="Gi1/0/3", remote_port="Gi0"),
        seen("sw-1", "sw-2"),  # a cross link: sw-2 is as far from gw as sw-1, it stays below core
    )
    derived = topology.derive("acme")
    parents = {name: (link.parent, link.origin) for name, link in derived.parents.items()}
    assert parents == {"core": ("gw", "lldp"), "sw-1": ("core", "lldp"), "sw-2": ("core", "cdp"),
                       "ap-1": ("sw-2", "cdp")}
    assert derived.parents["ap-1"].via == "Gi0 <-> Gi1/0/3"  # from ap-1's side
    assert derived.sites[0].roots == ["gw"] and not derived.contradictions
    tree = "\n".join(text_lines(derived))
    assert "└── ap-1  [cdp: Gi0 <-> Gi1/0/3]" in tree and "sw-1 — sw-2  lldp" in tree


def test_a_pin_is_kept_and_a_discovered_edge_against_it_is_reported() -> None:
    topology = feed(
        Topology([dev("gw", role="uplink"), dev("sw-1"), dev("sw-2"), dev("printer", parent="sw-1")]),
        seen("sw-1", "gw"), seen("sw-2", "gw"), seen("sw-2", "printer", local_port="Gi1/0/7"),
    )
    derived = topology.derive("acme")
    assert derived.parents["printer"].parent == "sw-1" and derived.parents["printer"].origin == "config"
    (contradiction,) = derived.contradictions
    assert (contradiction.device, contradiction.pinned, contradiction.discovered) == ("printer", "sw-1", "sw-2")
    assert "pinned parent sw-1 (config), lldp says sw-2 (p2 <-> Gi1/0/7): the pin is kept" in contradiction.reason
    assert "printer: pinned parent sw-1" in "\n".join(text_lines(derived))
    assert '"sw-2" -> "printer" [color=red' in to_dot(derived, {})
    # the engine's map: the pin, never the contradicting discovery
    parents, not_applied = topology.parent_map(["acme"])
    assert parents[("acme", "printer")] == "sw-1" and not_applied == [contradiction]


def test_a_pin_discovery_agrees_with_is_confirmed() -> None:
    topology = feed(Topology([dev("gw", role="uplink"), dev("sw-1", parent="gw")]), seen("sw-1", "gw", origin="cdp"))
    derived = topology.derive("acme")
    assert derived.parents["sw-1"].origin == "config" and confirmations(derived, "sw-1") == ["cdp"]
    assert not derived.contradictions


def test_a_discovered_parent_closing_a_cycle_with_the_pins_is_refused() -> None:
    # x is pinned below y; discovery sees r - x - y, so y's discovered parent would be x: x -> y -> x.
    topology = feed(Topology([dev("r", role="uplink"), dev("x", parent="y"), dev("y")]),
                    seen("x", "r"), seen("y", "x"))
    derived = topology.derive("acme")
    assert "y" not in derived.parents and derived.parents["x"].parent == "y"
    (refused,) = [c for c in derived.contradictions if c.device == "y"]
    assert "lldp parent x refused: it would close the cycle" in refused.reason
    parents, _ = topology.parent_map(["acme"])
    assert parents == {("acme", "x"): "y"}


def test_roots_come_from_the_first_role_tier_and_from_pins_into_another_site() -> None:
    topology = feed(
        Topology([dev("fw", role="firewall"), dev("core-a", role="core"), dev("sw"),
                  dev("core-b", site="annexe", parent="core-a"), dev("sw-b", site="annexe")]),
        seen("core-a", "fw"), seen("sw", "core-a"), seen("sw-b", "core-b"),
        seen("sw-b", "fw"),  # a link to another site gives no parent: the site's way in is core-b
    )
    derived = topology.derive("acme")
    sites = {s.site: s.roots for s in derived.sites}
    assert sites == {"hq": ["fw"], "annexe": ["core-b"]}
    assert {n: link.parent for n, link in derived.parents.items()} == {
        "core-a": "fw", "sw": "core-a", "core-b": "core-a", "sw-b": "core-b"}


def test_a_site_without_a_root_gets_no_discovered_parent() -> None:
    derived = feed(Topology([dev("a"), dev("b")]), seen("a", "b")).derive("acme")
    assert derived.parents == {} and derived.sites[0].roots == [] and len(derived.edges) == 1


def test_matching_by_address_chassis_and_name_unique_keys_only() -> None:
    topology = Topology([
        dev("gw", role="uplink", address="10.0.0.1"),
        dev("sw-a", address="10.0.0.2"), dev("sw-b", address="10.0.0.2"),  # a shared address matches nothing
        dev("ap-1", address="10.0.0.9"), dev("core"),
    ])
    topology.identify("acme", "core", "00:11:22:33:44:55", "CORE-SIEGE")
    assert topology.match(seen("sw-a", "whatever", remote_address="10.0.0.1")) == "gw"
    assert topology.match(seen("gw", None, remote_address="10.0.0.2")) is None
    assert topology.match(seen("gw", None, remote_chassis_id="00:11:22:33:44:55")) == "core"
    assert topology.match(seen("gw", "core-siege.example.org")) == "core"  # its sysName, domain dropped
    assert topology.match(seen("gw", "AP-1.example.org")) == "ap-1"
    assert topology.match(seen("core", "CORE-SIEGE")) == "core"  # itself (a stack's own links): no edge
    assert topology.match(seen("gw", "unknown-host")) is None
    feed(topology, seen("core", "CORE-SIEGE"), seen("core", "unknown-host"))
    derived = topology.derive("acme")
    assert derived.edges == [] and [s.remote_name for s in derived.unmatched] == ["unknown-host"]


def test_a_directed_edge_gives_its_upstream_as_parent() -> None:
    topology = Topology([dev("gw", role="uplink"), dev("esx-1"), dev("vm-1")])
    feed(topology, seen("esx-1", "gw"))
    topology.replace("acme", "vm-1", "vsphere", [Edge("acme", "vm-1", "esx-1", "vsphere", upstream="esx-1")])
    derived = topology.derive("acme")
    assert (derived.parents["vm-1"].parent, derived.parents["vm-1"].origin) == ("esx-1", "vsphere")


def test_other_collectors_samples_feed_the_graph() -> None:
    # vsphere_vm on the VM (piggyback): its host, named as vCenter names it, is its parent;
    # meraki_neighbor on the Meraki switch: a neighbour matched like LLDP's. The same samples
    # left on the controller's own device (not placed) are no link of it.
    vcenter = DeviceInfo("acme", "hq", "vcenter", "127.0.0.1", {}, ("vsphere",), None)
    dashboard = DeviceInfo("acme", "hq", "dashboard", "127.0.0.1", {}, ("meraki",), None)
    topology = Topology([dev("gw", role="uplink", address="10.0.0.1"), dev("esx-1"), dev("vm-1"), dev("ms-1"),
                         vcenter, dashboard], SOURCES)

    def sample(measurement: str, device: str, tags: dict[str, str], fields: dict[str, object]) -> Sample:
        return Sample(measurement, {"client": "acme", "device": device, **tags}, fields, 0)

    vm = {"vm": "vm-1", "host": "ESX-1.example.org"}
    heard = {"serial": "Q2XX", "name": "ms-1", "port": "3", "protocol": "lldp"}
    assert topology.observe([
        sample("vsphere_vm", "vm-1", vm, {"power_state": "poweredOn"}),
        sample("vsphere_vm", "vcenter", {"vm": "vm-9", "host": "esx-1"}, {"power_state": "poweredOn"}),
        sample("meraki_device", "ms-1", {"serial": "Q2XX"}, {"status": "online"}),
        sample("meraki_neighbor", "ms-1", heard, {"system_name": "gw-core", "port_id": "ge-0/0/3",
                                                  "address": "10.0.0.1"}),
        sample("meraki_neighbor", "dashboard", heard, {"system_name": "gw", "port_id": "1", "address": None}),
        sample("snmp_neighbor", "esx-1", {"protocol": "lldp", "local_port": "vmnic0", "remote_name": "gw"},
               {"local_port_index": 1}),
    ])
    derived = topology.derive("acme")
    assert {n: (p.parent, p.origin, p.via) for n, p in derived.parents.items()} == {
        "vm-1": ("esx-1", "vsphere", ""), "ms-1": ("gw", "meraki", "3 <-> ge-0/0/3"),
        "esx-1": ("gw", "lldp", "vmnic0 <-> ?")}
    assert not derived.unmatched


def test_a_poll_without_neighbours_forgets_the_earlier_ones() -> None:
    topology = Topology([dev("gw", role="uplink"), dev("sw")], SOURCES)
    tags = {"client": "acme", "device": "sw"}
    neighbor = Sample("snmp_neighbor", {**tags, "protocol": "lldp", "local_port": "1", "remote_name": "gw"},
                      {"local_port_index": 1}, 0)
    system = Sample("snmp_system", tags, {"uptime_s": 5}, 0)
    assert topology.observe([system, neighbor]) is True
    assert topology.derive("acme").parents["sw"].parent == "gw"
    assert topology.observe([system, neighbor]) is False  # the same again: nothing to redo
    assert topology.observe([Sample("collection", {**tags, "collector": "http"}, {"status": "ok"}, 0)]) is False
    assert topology.observe([system]) is True
    assert topology.derive("acme").parents == {}
