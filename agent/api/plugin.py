"""What a plugin declares: a :class:`PluginSpec`, the object its entry point names.

Every capability after the kernel is a plugin: collectors and probes (``vigie.collectors``,
``vigie.probes``), ticket receivers (``vigie.ticketing``), notification receivers
(``vigie.notifications``), stores (``vigie.stores``) and services (``vigie.services``). A plugin is
one package, one line of ``pyproject.toml``::

    [project.entry-points."vigie.collectors"]
    meraki = "collectors.meraki:PLUGIN"

and the kernel learns everything else from the spec: the configuration schema validates the
plugin's options and credentials with the plugin's own models (so an error still names
file:line:field), the alert engine takes its default rules, the state database its state fields,
alert identity ignores its descriptive tags, ``vigie collect`` accepts its URL schemes, and the
topology takes its links.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from agent.api.collector import Target
from agent.api.rules import Rule
from agent.api.services import DeviceMessage
from agent.api.topology import EdgeSource

PluginKind = Literal["collector", "probe", "ticketing", "notification", "store", "service"]

API_VERSION = 1


class NoOptions(BaseModel):
    """The options model of a plugin that takes none: any key is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(BaseModel):
    """``{secret: NAME}`` in a plugin's options: a value kept in the secrets file or
    ``VIGIE_SECRET_NAME``, never inline. The kernel checks it exists when the config loads; the
    plugin reads it with the ``secrets`` lookup its factory is given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    secret: str


SecretLookup = Callable[[SecretRef], str]
# `vigie collect URL`: the URL -> the target to collect and the options of the collector.
UrlParser = Callable[[str], tuple[Target, Mapping[str, Any]]]


@dataclass(frozen=True)
class PluginSpec:
    """A plugin's declaration.

    ``factory`` builds the plugin. Its arguments depend on the kind:

    - collector/probe: ``factory(options, context) -> Collector``, once per (device, collector);
      ``options`` is an instance of ``options``, validated; ``context`` a :class:`CollectorContext`.
      Building does no I/O: ``check-config`` builds every collector to let it refuse its options;
    - ticketing/notification: ``factory(options, context) -> receiver``, once per configured
      target, with a :class:`ReceiverContext`;
    - store: ``factory(options, context) -> Store``, with a :class:`StoreContext`;
    - service: ``factory(options) -> Service`` (see :mod:`agent.api.services`).

    ``credentials``: the model a device's credentials secret must fit for this plugin (SNMP: a
    community or a USM user); ``None`` when the plugin needs no credentials.
    ``default_rules``: rules shipped with the plugin, under the configuration's (a rule of the
    config with the same name replaces or disables one).
    ``state_fields``: (measurement, field) pairs whose values are states (up/down): the state
    database keeps their intervals, availability is computed from them.
    ``counter_fields``: (measurement, field) pairs whose values are raw counters that only grow
    but for a reset or a wrap (octets since the device booted): the embedded store rolls them up
    as their increase per bucket, not as min/max/avg of the count.
    ``descriptive_tags``: tags that describe a series without identifying it (an interface alias
    may be edited): they are left out of alert identity.
    ``url_schemes``: schemes ``vigie collect URL`` accepts for this collector.
    ``device_messages``: ``(state_dir, client, device, limit) -> [DeviceMessage]``, newest first:
    the raw messages the plugin keeps about a device, read from the agent's state directory
    read-only (beside a live agent, or with none running); the views show them beside the
    device's alerts.
    ``edge_sources``: measurement -> :class:`~agent.api.topology.EdgeSource`: the plugin's
    samples that are links between devices (neighbours, a VM's host, a device's uplink); the
    topology derives each device's parent from them (agent/topology.py).
    """

    name: str
    kind: PluginKind
    factory: Callable[..., Any]
    options: type[BaseModel] = NoOptions
    credentials: type[BaseModel] | None = None
    default_rules: Callable[[], Sequence[Rule]] = tuple
    state_fields: frozenset[tuple[str, str]] = frozenset()
    counter_fields: frozenset[tuple[str, str]] = frozenset()
    descriptive_tags: frozenset[str] = frozenset()
    url_schemes: Mapping[str, UrlParser] = field(default_factory=dict)
    device_messages: Callable[[Path, str, str, int], Sequence[DeviceMessage]] | None = None
    edge_sources: Mapping[str, EdgeSource] = field(default_factory=dict)
    description: str = ""
    api_version: int = API_VERSION


@dataclass(frozen=True)
class CollectorContext:
    """What a collector or probe is built with, besides its options.

    ``state_dir``: a directory of this plugin's own for this client (``<state>/plugins/<plugin>/
    <client>``), for what must outlive a restart (an SSH known_hosts, a configuration archive). The
    plugin creates it when it first writes there, never while it is being built. ``secret`` reads a
    :class:`SecretRef` of the options; ``clock`` is wall-clock time (seconds since the epoch).
    """

    client: str
    device: str
    state_dir: Path
    secret: SecretLookup
    clock: Callable[[], float] = time.time


@dataclass(frozen=True)
class ReceiverContext:
    """What a ticket or notification receiver is built with, besides its options: one receiver is
    built per client, so one client's slow ITSM never holds another's tickets."""

    client: str
    timezone: str  # IANA name: tickets show times in the client's zone
    language: str  # "fr" | "en": tickets speak the client's language
    state_dir: Path
    secret: SecretLookup


@dataclass(frozen=True)
class StoreContext:
    """What a store is built with, besides its options."""

    state_dir: Path
    secret: SecretLookup
    # Every plugin's PluginSpec.counter_fields: the fields a store may roll up as increases.
    counter_fields: frozenset[tuple[str, str]] = frozenset()
