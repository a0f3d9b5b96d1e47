"""What a plugin tells the topology (agent/topology.py): which of its measurements are links.

A plugin declares ``PluginSpec.edge_sources``: measurement -> :class:`EdgeSource`. The kernel
collects them from every loaded plugin at start-up and turns each sample of such a measurement
into what its ``convert`` gives:

- a :class:`Sighting`: a neighbour a device sees from a port (LLDP, CDP, the Meraki dashboard's
  LLDP/CDP table), matched to an inventory device by management address, chassis id or name;
- an :class:`Edge` that knows its direction (a VM's host, an Omada device's uplink): ``b`` is an
  inventory name, or a name matched like a sighting's;
- a :class:`DeviceKeys`: the device's own chassis id and system name, the keys its neighbours'
  sightings name it by.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from agent.api.samples import FieldValue


@dataclass(frozen=True)
class Sighting:
    """A neighbour that ``device`` sees on ``local_port``, as a discovery protocol tells it."""

    client: str
    device: str
    origin: str
    local_port: str | None = None
    remote_name: str | None = None
    remote_port: str | None = None
    remote_address: str | None = None
    remote_chassis_id: str | None = None


@dataclass(frozen=True)
class Edge:
    """A link between two inventory devices of one client. ``upstream`` (a or b) when the source
    knows the direction (a VM's host); discovery protocols do not."""

    client: str
    a: str
    b: str
    origin: str
    a_port: str | None = None
    b_port: str | None = None
    upstream: str | None = None

    def other(self, device: str) -> str:
        return self.b if device == self.a else self.a

    def port_of(self, device: str) -> str | None:
        return self.a_port if device == self.a else self.b_port

    def via(self, device: str) -> str:
        """'Gi1/0/1 <-> Te1/1/1' from ``device``'s side; '' when no port is known."""
        mine, theirs = self.port_of(device), self.port_of(self.other(device))
        return "" if mine is None and theirs is None else f"{mine or '?'} <-> {theirs or '?'}"


@dataclass(frozen=True)
class DeviceKeys:
    """``device``'s own LLDP chassis id and system name: what its neighbours' sightings name."""

    client: str
    device: str
    chassis_id: str | None
    sys_name: str | None


Convert = Callable[[str, str, Mapping[str, str], Mapping[str, FieldValue]], "Sighting | Edge | DeviceKeys | None"]


@dataclass(frozen=True)
class EdgeSource:
    """A measurement documented as a link (docs/METRICS.md). ``convert(client, device, tags,
    fields)`` gives a :class:`Sighting`, an :class:`Edge`, a :class:`DeviceKeys` or None.

    A device's links of ``origins`` are replaced whenever a ``polled_by`` sample of it arrives
    (none in the batch: it has none any more); ``polled_by`` may be the measurement itself, when a
    device keeps its last link until the source says another (a device the source could not ask).
    A sample older than the device's last ``polled_by`` one by more than a poll's timeout is from
    an earlier poll and ignored when the graph is rebuilt from the state.
    ``controller``: the collector that emits them for other devices (piggyback); one that could
    not be placed lands on the controller's own device and is not a link of it."""

    origins: tuple[str, ...]
    polled_by: str
    convert: Convert
    controller: str | None = None


def field_text(value: FieldValue) -> str | None:
    """A field read as a name or a port: a non-empty string, else None."""
    return value if isinstance(value, str) and value else None
