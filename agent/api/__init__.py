"""vigie's plugin API: the only part of vigie a plugin imports.

It imports nothing else of vigie, so the kernel can change behind it. ``API_VERSION`` grows when
a contract here changes incompatibly; a plugin's ``PluginSpec.api_version`` says which one it was
written for, and the registry refuses a plugin written for another.
"""

from agent.api.collector import CollectError, Collector, Target, Unreachable
from agent.api.samples import BASE_TAGS, FieldValue, Sample, Sink, UnknownDevice

API_VERSION = 1

__all__ = [
    "API_VERSION",
    "BASE_TAGS",
    "CollectError",
    "Collector",
    "FieldValue",
    "Sample",
    "Sink",
    "Target",
    "UnknownDevice",
    "Unreachable",
]
