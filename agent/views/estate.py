"""The estate as a view needs it: the config file's clients, devices and ticket receivers, read
without any secret.

``load_config`` checks every credential against the secrets file; a view reads only names,
parents and receivers, so an operator can run `vigie status --config FILE` where the secrets are
not readable (and should not be). The shape of the file is still validated by the kernel's schema:
a view of a config the agent would refuse would show devices that are not watched.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import yaml
from pydantic import ValidationError

from agent.api import DeviceInfo
from agent.config import Config, ConfigError
from agent.config.loader import pydantic_messages, read_yaml
from agent.inventory import InventoryView

COLLECTORS = "vigie.collectors"


@dataclass(frozen=True)
class Receiver:
    """Where a client's tickets go: the receiver's kind (``log``, ``glpi``) and its ``url`` option,
    if it has one."""

    client: str
    kind: str
    url: str | None


@dataclass(frozen=True)
class Estate:
    devices: tuple[DeviceInfo, ...]
    receivers: tuple[Receiver, ...]
    installed_collectors: frozenset[str]


def read_estate(path: Path, environ: Mapping[str, str] = os.environ) -> Estate:
    """The devices and receivers of the config file at ``path``; raise ConfigError naming file:line
    of each problem of its shape."""
    try:
        raw, problems = read_yaml(path, environ)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: invalid YAML: {getattr(exc, 'problem', None) or exc}"]) from None
    if problems:
        raise ConfigError([f"{path}:{line}: {message}" for line, message in problems])
    try:
        config = Config.model_validate(raw or {})
    except ValidationError as exc:
        raise ConfigError(
            [f"{path}:{line}: {field}: {message}" for line, field, message in pydantic_messages(exc, raw)]
        ) from None
    receivers = tuple(
        Receiver(client.name, client.ticketing.kind, _text(client.ticketing.options().get("url")))
        for client in config.clients
    )
    installed = frozenset(entry.name for entry in entry_points(group=COLLECTORS))
    return Estate(tuple(InventoryView(config).devices()), receivers, installed)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
