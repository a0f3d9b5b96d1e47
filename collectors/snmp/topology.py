"""The SNMP collector's links for the topology (agent/topology.py): each LLDP/CDP neighbour row
(``snmp_neighbor``, profiles/lldp.yaml and cdp.yaml) is a sighting matched to an inventory device,
and the device's own LLDP chassis id and system name (``snmp_lldp_local``) are what its
neighbours' rows name it by. Every SNMP poll that answered carries ``snmp_system``: a device
polled without neighbour rows has none any more."""

from __future__ import annotations

from collections.abc import Mapping

from agent.api import DeviceKeys, EdgeSource, FieldValue, Sighting, field_text

NEIGHBOR = "snmp_neighbor"
LLDP_LOCAL = "snmp_lldp_local"
POLLED = "snmp_system"
PROTOCOLS = ("lldp", "cdp")


def neighbor(client: str, device: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue]) -> Sighting | None:
    origin = tags.get("protocol")
    if origin not in PROTOCOLS:
        return None
    return Sighting(client, device, origin, tags.get("local_port"), tags.get("remote_name"),
                    tags.get("remote_port"), tags.get("remote_address"), tags.get("remote_chassis_id"))


def lldp_local(client: str, device: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue]) -> DeviceKeys:
    return DeviceKeys(client, device, field_text(fields.get("chassis_id")), field_text(fields.get("sys_name")))


EDGE_SOURCES = {
    NEIGHBOR: EdgeSource(PROTOCOLS, POLLED, neighbor),
    # its own keys, replaced by each one the device sends: no links to forget
    LLDP_LOCAL: EdgeSource((), LLDP_LOCAL, lldp_local),
}
