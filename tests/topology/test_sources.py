"""Edge sources are the plugins' declarations (PluginSpec.edge_sources), collected by the registry:
the installed ones, and a plugin's declaration that would clash refused with its name."""

from __future__ import annotations

from agent.api import Edge, EdgeSource, PluginSpec
from agent.plugins import Plugins


def toy(name: str, sources: dict[str, EdgeSource]) -> PluginSpec:
    return PluginSpec(name=name, kind="collector", factory=lambda options, context: None, edge_sources=sources)


def link(client: str, device: str, tags, fields) -> Edge:
    return Edge(client, device, "up", "toy", upstream="up")


def test_the_installed_plugins_declare_the_sources_the_kernel_once_named() -> None:
    sources = Plugins.discover().edge_sources()
    assert {m: (s.origins, s.polled_by, s.controller) for m, s in sources.items()} == {
        "snmp_neighbor": (("lldp", "cdp"), "snmp_system", None),
        "snmp_lldp_local": ((), "snmp_lldp_local", None),
        "meraki_neighbor": (("meraki",), "meraki_device", "meraki"),
        "vsphere_vm": (("vsphere",), "vsphere_vm", "vsphere"),
        "omada_uplink": (("omada",), "omada_uplink", "omada"),
    }


def test_a_clashing_declaration_is_refused_and_named() -> None:
    first = toy("first", {"toy_link": EdgeSource(("toy",), "toy_link", link)})
    second = toy("second", {"toy_link": EdgeSource(("toy2",), "toy_link", link),
                            "toy_pin": EdgeSource(("config",), "toy_pin", link)})
    plugins = Plugins([first, second])
    assert plugins.edge_sources() == {"toy_link": first.edge_sources["toy_link"]}
    assert plugins.problems == [
        "plugin 'second': toy_link is already an edge source of another plugin: ignored",
        "plugin 'second': edge source toy_pin: origin 'config' is the configuration's parents: ignored",
    ]
    assert plugins.extended([]).problems == plugins.problems  # reported once, not again per registry
