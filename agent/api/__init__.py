"""vigie's plugin API: the only part of vigie a plugin imports.

It imports nothing else of vigie, so the kernel can change behind it. ``API_VERSION`` grows when
a contract here changes incompatibly; a plugin's ``PluginSpec.api_version`` says which one it was
written for, and the registry refuses a plugin written for another.
"""

from agent.api.alerts import FIRING, PENDING, RESOLVED, Alert, AlertTransition, fingerprint
from agent.api.collector import CollectError, Collector, Target, Unreachable, stable_fraction
from agent.api.plugin import (
    API_VERSION,
    CollectorContext,
    NoOptions,
    PluginSpec,
    ReceiverContext,
    SecretLookup,
    SecretRef,
    StoreContext,
)
from agent.api.rules import RESERVED_LABELS, SEVERITIES, Rule, TagMatcher
from agent.api.samples import BASE_TAGS, FieldValue, Sample, Sink, UnknownDevice
from agent.api.services import DeviceInfo, DeviceMessage, Service, ServiceContext
from agent.api.tickets import (
    OnlineCheck,
    OnlineCheckable,
    Takeable,
    TakeoverReadable,
    TicketConnector,
    TicketError,
    TicketRef,
)
from agent.api.topology import DeviceKeys, Edge, EdgeSource, Sighting, field_text

__all__ = [
    "API_VERSION",
    "BASE_TAGS",
    "FIRING",
    "PENDING",
    "RESERVED_LABELS",
    "RESOLVED",
    "SEVERITIES",
    "Alert",
    "AlertTransition",
    "CollectError",
    "Collector",
    "CollectorContext",
    "DeviceInfo",
    "DeviceKeys",
    "DeviceMessage",
    "Edge",
    "EdgeSource",
    "FieldValue",
    "NoOptions",
    "OnlineCheck",
    "OnlineCheckable",
    "PluginSpec",
    "ReceiverContext",
    "Rule",
    "Sample",
    "SecretLookup",
    "SecretRef",
    "Service",
    "ServiceContext",
    "Sighting",
    "Sink",
    "StoreContext",
    "TagMatcher",
    "Takeable",
    "TakeoverReadable",
    "Target",
    "TicketConnector",
    "TicketError",
    "TicketRef",
    "UnknownDevice",
    "Unreachable",
    "field_text",
    "fingerprint",
    "stable_fraction",
]
