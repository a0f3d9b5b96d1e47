"""From a validated Config to the list of polls the scheduler runs.

One poll per (client, device, collector). Every setting is looked up in a written order (see
docs/CONFIGURATION.md "Lookup order"): device -> site defaults -> client defaults -> global
defaults -> built-in. Collector options are merged key by key along the same chain.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from pydantic import BaseModel

from agent.api import DeviceInfo, Target
from agent.config import Config


@dataclass(frozen=True)
class Poll:
    target: Target
    collector: str
    options: BaseModel  # validated by the collector's options model when the config loaded
    interval_s: float
    timeout_s: float
    jitter_s: float


def build_polls(config: Config, clients: Collection[str] | None = None) -> list[Poll]:
    """The polls of the selected clients: ``clients`` (``vigie run --clients A,B``), else
    ``agent.shard``, else every client. An unknown client name raises ConfigError. A collector
    that is not installed has no validated options (load_config warned about it): no poll."""
    polls: list[Poll] = []
    for client in config.select_clients(clients):
        for site, device in client.devices():
            settings = config.settings_for(client, site, device)
            tags = {**device.tags, "client": client.name, "site": site.name, "device": device.name}
            for collector in device.collectors:
                try:
                    options = config.plugin_options("collector", client.name, device.name, collector)
                except KeyError:
                    continue
                secret = config.credentials_name(client, site, device, collector)
                target = Target(
                    name=device.name,
                    address=device.address,
                    port=device.port,
                    credentials=config.credentials(secret) if secret else {},
                    tags=tags,
                )
                # A plugin whose options carry interval_s sets its own pace (ICMP's fast path:
                # a site down within 15 s); the device's timeout and jitter then fit inside it.
                own_interval_s = getattr(options, "interval_s", None)
                interval_s = own_interval_s or settings.interval_s
                polls.append(
                    Poll(
                        target=target,
                        collector=collector,
                        options=options,
                        interval_s=interval_s,
                        timeout_s=min(settings.timeout_s, interval_s),
                        jitter_s=min(settings.jitter_s, interval_s / 10) if own_interval_s else settings.jitter_s,
                    )
                )
    return polls


def device_tags(config: Config) -> Callable[[str, str], Mapping[str, str] | None]:
    """``(client, device) -> base tags`` of an inventory device: what ``Sink.for_device`` stamps
    on the samples a collector reports about another device."""
    found: dict[tuple[str, str], Mapping[str, str]] = {
        (client.name, device.name): {**device.tags, "client": client.name, "site": site.name, "device": device.name}
        for client in config.clients
        for site, device in client.devices()
    }
    return lambda client, name: found.get((client, name))


class InventoryView:
    """The inventory as services see it (read-only): devices by client, name or address."""

    def __init__(self, config: Config, clients: Collection[str] | None = None) -> None:
        self._devices = [
            DeviceInfo(
                client=client.name,
                site=site.name,
                name=device.name,
                address=device.address,
                tags=dict(device.tags),
                collectors=tuple(device.collectors),
                parent=device.parent,
            )
            for client in config.select_clients(clients)
            for site, device in client.devices()
        ]

    def devices(self, client: str | None = None) -> list[DeviceInfo]:
        return [d for d in self._devices if client is None or d.client == client]

    def find(self, client: str, name: str) -> DeviceInfo | None:
        return next((d for d in self._devices if d.client == client and d.name == name), None)

    def by_address(self, address: str) -> list[DeviceInfo]:
        return [d for d in self._devices if d.address == address]
