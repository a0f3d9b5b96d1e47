"""From a validated Config to the list of polls the scheduler runs.

One poll per (client, device, collector). Every setting is looked up in a written order (see
docs/CONFIGURATION.md "Lookup order"): device -> site defaults -> client defaults -> global
defaults -> built-in. Collector options are merged key by key along the same chain.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from agent.config import Config
from agent.api import Target


@dataclass(frozen=True)
class Poll:
    target: Target
    collector: str
    options: Mapping[str, Any]
    interval_s: float
    timeout_s: float
    jitter_s: float


def build_polls(config: Config, clients: Collection[str] | None = None) -> list[Poll]:
    """The polls of the selected clients: ``clients`` (``vigie run --clients A,B``), else
    ``agent.shard``, else every client. An unknown client name raises ConfigError."""
    polls: list[Poll] = []
    for client in config.select_clients(clients):
        for site, device in client.devices():
            settings = config.settings_for(client, site, device)
            credentials = config.credentials(settings.credentials) if settings.credentials else {}
            tags = {**device.tags, "client": client.name, "site": site.name, "device": device.name}
            for collector in device.collectors:
                options = config.collector_options(client, site, device, collector)
                target = Target(
                    name=device.name,
                    address=device.address,
                    port=device.port,
                    credentials=credentials,
                    options=options,
                    tags=tags,
                )
                polls.append(
                    Poll(
                        target=target,
                        collector=collector,
                        options=options,
                        interval_s=settings.interval_s,
                        timeout_s=settings.timeout_s,
                        jitter_s=settings.jitter_s,
                    )
                )
    return polls
