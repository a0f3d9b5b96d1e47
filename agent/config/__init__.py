"""The agent's one configuration file: agent settings, poll defaults, alert rules and clients.

``load_config`` reads the YAML with a loader that remembers the line of every key and list item
(loader.py), validates it with the kernel's schema (schema.py), then runs the checks pydantic
cannot do alone, every plugin's options and credentials among them (checks.py). Every problem is
reported at once as "FILE:LINE: field.path: message", because an operator fixing a 40-site estate
wants the whole list, not one error per run.

The file format and the lookup order of every setting are documented in docs/CONFIGURATION.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from agent.config.calendar import french_holidays
from agent.config.checks import ModelChecks, raw_checks, valid_part
from agent.config.errors import ConfigError
from agent.config.loader import YamlMap, locate, pydantic_messages, read_yaml
from agent.config.schema import BUILTIN_RULES, Client, Config, Device, PollSettings, Site
from agent.plugins import Plugins
from agent.secrets import SecretsFileError, SecretStore

__all__ = [
    "BUILTIN_RULES",
    "Client",
    "Config",
    "ConfigError",
    "Device",
    "PollSettings",
    "Site",
    "french_holidays",
    "load_config",
    "state_dir_of",
]


def load_config(
    path: Path | str,
    secrets_path: Path | str | None = None,
    environ: Mapping[str, str] = os.environ,
    *,
    plugins: Plugins | None = None,
) -> Config:
    """Read, validate and cross-check a configuration file; raise ConfigError listing every problem.

    ``plugins``: the installed plugins (default: those the entry points declare). Their options
    and credentials models check what the file gives them; their default rules sit under the
    global rules (a global or client rule of the same name overrides or disables one). A device
    naming a collector that is not installed gets a warning (``Config.warnings``), not an error.
    """
    path = Path(path)
    plugins = Plugins.discover() if plugins is None else plugins
    raw, yaml_problems = read_yaml(path, environ)
    if raw is None:
        raw = YamlMap()
        raw.line, raw.key_lines = 1, {}
    if not isinstance(raw, YamlMap):
        raise ConfigError([f"{path}:1: the file must be a mapping (agent, defaults, rules, clients)"])

    try:
        secrets = SecretStore.load(secrets_path, environ)
    except SecretsFileError as exc:
        secrets, secret_errors = SecretStore({}, environ), exc.errors
    else:
        secret_errors = []

    found: list[tuple[int, str, str]] = [(line, "", message) for line, message in yaml_problems]
    config: Config | None = None
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        found.extend(pydantic_messages(exc, raw))
    for loc, message in raw_checks(raw, None if secret_errors else secrets):
        found.append((*locate(raw, loc), message))

    checks: ModelChecks | None = None
    if config is not None:
        checks = ModelChecks(config, secrets, plugins).run()
        found.extend((*locate(raw, loc), message) for loc, message in checks.errors)
    elif (part := valid_part(raw)) is not None:
        partial = ModelChecks(part[0], secrets, plugins).run(part[1])
        found.extend((*locate(raw, loc), message) for loc, message in partial.errors)

    if found or secret_errors or config is None or checks is None:
        raise ConfigError(secret_errors + [_format(path, *item) for item in sorted(set(found))])
    config._source = path
    config._secrets = secrets
    config._client_rules = checks.client_rules
    config._plugin_options = checks.plugin_options
    warnings = {(*locate(raw, loc), message) for loc, message in checks.warnings}
    config._warnings = [_format(path, *item) for item in sorted(warnings)]
    return config


def state_dir_of(path: Path | str, environ: Mapping[str, str] = os.environ) -> Path:
    """The ``agent.state_dir`` of a config file, read without validating the rest or loading any
    secret: what the read-only views (`vigie tickets`, `vigie alerts`, `vigie status`) need."""
    path = Path(path)
    raw, _ = read_yaml(path, environ)
    agent = raw.get("agent") if isinstance(raw, dict) else None
    value = agent.get("state_dir") if isinstance(agent, dict) else None
    return Path(value) if isinstance(value, str) and value else Path(Config().agent.state_dir)


def _format(path: Path, line: int, field_path: str, message: str) -> str:
    return f"{path}:{line}: {field_path}: {message}" if field_path else f"{path}:{line}: {message}"
