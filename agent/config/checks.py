"""The checks pydantic cannot do alone: on the raw tree (secrets, names, the dependency graph; they
run even when part of the file was rejected) and on the validated model (rules merged per client,
timings, and every plugin's options and credentials, checked by the plugin's own models).

Every check returns (location, message) pairs; load_config turns locations into FILE:LINE.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from agent.api import Rule
from agent.api.rules import inhibition_problems
from agent.config.loader import YamlMap
from agent.config.schema import Client, Config, Device, Site
from agent.plugins import Plugins, UnknownPlugin
from agent.secrets import SecretStore

Problem = tuple[tuple[Any, ...], str]

# Keys that hold a secret value: writing one inline would put a password in a reviewed file.
SECRET_KEYS = frozenset(
    {
        "community",
        "password",
        "passphrase",
        "token",
        "app_token",
        "user_token",
        "api_key",
        "auth_key",
        "priv_key",
        "private_key",
        "secret_key",
        "client_secret",
    }
)


def _walk(node: Any, loc: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield loc, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*loc, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, (*loc, index))


def _mappings(node: Any, key: str) -> list[tuple[int, YamlMap]]:
    value = node.get(key) if isinstance(node, dict) else None
    if not isinstance(value, list):
        return []
    return [(i, item) for i, item in enumerate(value) if isinstance(item, YamlMap)]


def raw_checks(raw: YamlMap, secrets: SecretStore | None) -> list[Problem]:
    """``secrets`` is None when the secrets file was refused: then every lookup would fail and bury
    the one real problem under "not found" noise."""
    problems: list[Problem] = []

    for loc, node in _walk(raw):
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            if key in SECRET_KEYS and not isinstance(value, dict):
                problems.append(
                    (
                        (*loc, key),
                        f"inline secret refused: write `{key}: {{secret: NAME}}` and put the value in the secrets file",
                    )
                )
        if secrets is None:
            continue
        # `{secret: NAME}` holds a token (a string); `credentials: NAME` (or one NAME per collector:
        # `credentials: {snmp: NAME, ssh: NAME}`) a login (a mapping).
        references: list[tuple[tuple[Any, ...], Any, type, str]] = []
        if set(node) == {"secret"}:
            references.append(((*loc, "secret"), node["secret"], str, "a string"))
        credentials = node.get("credentials")
        if isinstance(credentials, dict):
            for collector, name in credentials.items():
                references.append(((*loc, "credentials", collector), name, dict, "a mapping"))
        else:
            references.append(((*loc, "credentials"), credentials, dict, "a mapping"))
        for where, name, kind, label in references:
            if not isinstance(name, str):
                continue
            value = secrets.get(name)
            if value is None:
                problems.append((where, f"secret {name!r} not found (looked in {secrets.where(name)})"))
            elif not isinstance(value, kind):
                problems.append((where, f"secret {name!r} must be {label}"))

    agent = raw.get("agent")
    client_names = [c.get("name") for _, c in _mappings(raw, "clients")]
    if isinstance(agent, dict) and isinstance(agent.get("shard"), list):
        for i, name in enumerate(agent["shard"]):
            if isinstance(name, str) and name not in client_names:
                problems.append((("agent", "shard", i), f"unknown client {name!r}"))

    seen_clients: set[str] = set()
    for ci, client in _mappings(raw, "clients"):
        name = client.get("name")
        if isinstance(name, str):
            if name in seen_clients:
                problems.append((("clients", ci, "name"), f"duplicate client name {name!r}"))
            seen_clients.add(name)
        problems.extend(_client_graph_checks(client, ("clients", ci)))

    seen_rules: set[str] = set()
    for ri, rule in _mappings(raw, "rules"):
        name = rule.get("name")
        if isinstance(name, str):
            if name in seen_rules:
                problems.append((("rules", ri, "name"), f"duplicate rule name {name!r}"))
            seen_rules.add(name)
    return problems


def _client_graph_checks(client: YamlMap, loc: tuple[Any, ...]) -> list[Problem]:
    """Unique site and device names, parents that exist, no dependency cycle."""
    problems: list[Problem] = []
    sites: set[str] = set()
    devices: dict[str, tuple[Any, ...]] = {}
    parents: dict[str, str] = {}
    for si, site in _mappings(client, "sites"):
        site_name = site.get("name")
        if isinstance(site_name, str):
            if site_name in sites:
                problems.append(((*loc, "sites", si, "name"), f"duplicate site name {site_name!r}"))
            sites.add(site_name)
        for di, device in _mappings(site, "devices"):
            name = device.get("name")
            if not isinstance(name, str):
                continue
            device_loc = (*loc, "sites", si, "devices", di)
            if name in devices:
                problems.append(((*device_loc, "name"), f"duplicate device name {name!r} in this client"))
                continue
            devices[name] = device_loc
            if isinstance(device.get("parent"), str):
                parents[name] = device["parent"]
    for name, parent in parents.items():
        if parent == name:
            problems.append(((*devices[name], "parent"), "a device cannot be its own parent"))
        elif parent not in devices:
            problems.append(((*devices[name], "parent"), f"unknown parent {parent!r} (not a device of this client)"))
    reported: set[str] = set()
    for start in parents:
        chain = [start]
        while chain[-1] in parents and parents[chain[-1]] in devices and parents[chain[-1]] != chain[-1]:
            nxt = parents[chain[-1]]
            if nxt in chain:
                cycle = chain[chain.index(nxt) :]
                if not reported & set(cycle):
                    reported.update(cycle)
                    text = " -> ".join([*cycle, nxt])
                    problems.append(((*devices[nxt], "parent"), f"dependency cycle: {text}"))
                break
            chain.append(nxt)
    return problems



def _optional(model: type[BaseModel]) -> bool:
    """Credentials a plugin can do without (an HTTP check of a public page): the empty login fits."""
    try:
        model.model_validate({})
    except ValidationError:
        return False
    return True


def valid_part(raw: YamlMap) -> tuple[Config, list[int]] | None:
    """The valid part of a file pydantic rejected: everything but the clients, plus each client
    that validates alone, with its index in the file. Lets the model checks below run on the
    healthy clients, so one typo does not hide the other clients' problems until the next run."""
    try:
        base = Config.model_validate({k: v for k, v in raw.items() if k != "clients"})
    except ValidationError:
        return None
    items = raw.get("clients")
    kept: list[Client] = []
    indices: list[int] = []
    for index, item in enumerate(items if isinstance(items, list) else []):
        try:
            kept.append(Client.model_validate(item))
        except ValidationError:
            continue
        indices.append(index)
    return base.model_copy(update={"clients": kept}), indices


class ModelChecks:
    """Checks of a validated Config against the installed plugins.

    Collects ``errors`` and ``warnings`` as (location, message), each client's merged rules, and
    every plugin's validated options (what the agent builds its plugins from)."""

    def __init__(self, config: Config, secrets: SecretStore, plugins: Plugins) -> None:
        self.config = config
        self.secrets = secrets
        self.plugins = plugins
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []
        self.client_rules: dict[str, list[Rule]] = {}
        self.plugin_options: dict[tuple[str, ...], BaseModel] = {}

    def run(self, client_indices: Sequence[int] | None = None) -> ModelChecks:
        config = self.config
        self._plugin(("agent", "store"), "stores", config.agent.store.kind, config.agent.store.options(), ("store",))
        for name, options in config.agent.services.items():
            self._plugin(("agent", "services", name), "services", name, options, ("service", name), kind_loc=())
        shipped = {rule.name: rule for rule in self.plugins.default_rules()}
        global_rules = {**shipped, **{rule.name: rule for rule in config.global_rules}}
        for position, client in enumerate(config.clients):
            ci = position if client_indices is None else client_indices[position]
            self._client(client, ("clients", ci), global_rules)
        return self

    # -- one client ----------------------------------------------------------------------------

    def _client(self, client: Client, loc: tuple[Any, ...], global_rules: dict[str, Rule]) -> None:
        rules = dict(global_rules)
        for ri, override in enumerate(client.rules):
            changes = override.model_dump()
            base = rules.get(override.name)
            merged = {**base.model_dump(), **changes} if base is not None else changes
            try:
                rules[override.name] = Rule.model_validate(merged)
            except ValidationError as exc:
                for error in exc.errors():
                    message = error["msg"].removeprefix("Value error, ")
                    if error["type"] == "missing":
                        message = "required key missing (a new rule needs every key; an override names a global rule)"
                    elif error["type"] == "extra_forbidden":
                        message = "unknown key (check the spelling; see docs/CONFIGURATION.md)"
                    self.errors.append(((*loc, "rules", ri, *error["loc"]), message))
        self.client_rules[client.name] = list(rules.values())
        for problem in inhibition_problems(self.client_rules[client.name]):
            self.errors.append(((*loc, "rules"), problem))
        for rule in self.client_rules[client.name]:
            for problem in client.priority.rule_problems(rule):
                self.errors.append(((*loc, "rules"), f"{problem} (clients[].priority.matrix)"))
        ticketing = client.ticketing
        self._plugin((*loc, "ticketing"), "ticketing", ticketing.kind, ticketing.options(), ("ticketing", client.name))

        for si, site in enumerate(client.sites):
            for di, device in enumerate(site.devices):
                device_loc = (*loc, "sites", si, "devices", di)
                settings = self.config.settings_for(client, site, device)
                if settings.timeout_s > settings.interval_s:
                    self.errors.append(
                        (
                            (*device_loc, "timeout_s"),
                            f"timeout_s ({settings.timeout_s:g}) is longer than interval_s ({settings.interval_s:g})",
                        )
                    )
                if settings.jitter_s >= settings.interval_s:
                    self.errors.append(
                        (
                            (*device_loc, "jitter_s"),
                            f"jitter_s ({settings.jitter_s:g}) must be shorter than "
                            f"interval_s ({settings.interval_s:g})",
                        )
                    )
                for name in device.collectors:
                    self._collector(client, site, device, name, loc, si, di)

    def _collector(
        self, client: Client, site: Site, device: Device, name: str, loc: tuple[Any, ...], si: int, di: int
    ) -> None:
        device_loc = (*loc, "sites", si, "devices", di)
        try:
            spec = self.plugins.collector(name)
        except UnknownPlugin as exc:
            # collectors are plugins: one this installation lacks is skipped, not fatal
            self.warnings.append(((*device_loc, "collectors", name), f"{exc}; its polls will be skipped"))
            return
        # Where each level's options sit, most specific first: an error is reported where the
        # offending key is written.
        levels = [
            ((*device_loc, "collectors", name), device.collectors[name]),
            ((*loc, "sites", si, "defaults", "collectors", name), site.defaults.collectors.get(name, {})),
            ((*loc, "defaults", "collectors", name), client.defaults.collectors.get(name, {})),
            (("defaults", "collectors", name), self.config.defaults.collectors.get(name, {})),
        ]
        options = self.config.collector_options(client, site, device, name)
        validated = self._validate(spec.options, options, levels)
        if validated is not None:
            self.plugin_options[("collector", client.name, device.name, name)] = validated
        if spec.credentials is None:
            return
        secret = self.config.credentials_name(client, site, device, name)
        if secret is None and _optional(spec.credentials):
            return
        if secret is None:
            self.errors.append(
                (
                    (*device_loc, "credentials"),
                    f"the {name} collector needs credentials (on the device or in a defaults section)",
                )
            )
            return
        value = self.secrets.get(secret)
        if value is None or not isinstance(value, dict):
            return  # reported by the raw checks
        try:
            spec.credentials.model_validate(value)
        except ValidationError as exc:
            # never echo the input: it is a secret
            problem = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())
            self.errors.append(
                ((*device_loc, "credentials"), f"secret {secret!r} is not {name} credentials: {problem}")
            )

    # -- any plugin ----------------------------------------------------------------------------

    def _plugin(
        self,
        loc: tuple[Any, ...],
        namespace: str,
        name: str,
        options: dict[str, Any],
        key: tuple[str, ...],
        kind_loc: tuple[Any, ...] = ("kind",),
    ) -> None:
        try:
            spec = self.plugins.get(namespace, name)
        except UnknownPlugin as exc:
            self.errors.append(((*loc, *kind_loc), str(exc)))
            return
        validated = self._validate(spec.options, options, [(loc, options)])
        if validated is not None:
            self.plugin_options[key] = validated

    def _validate(
        self, model: type[BaseModel], options: dict[str, Any], levels: list[tuple[tuple[Any, ...], dict[str, Any]]]
    ) -> BaseModel | None:
        try:
            return model.model_validate(options)
        except ValidationError as exc:
            for error in exc.errors():
                where = error["loc"]
                # the most specific level that writes the offending key, else the first
                base = next((lvl for lvl, own in levels if where and where[0] in own), levels[0][0])
                message = error["msg"].removeprefix("Value error, ")
                if error["type"] == "extra_forbidden":
                    message = "unknown option (check the spelling; see the plugin's README)"
                elif error["type"] == "missing":
                    message = "required option missing"
                self.errors.append(((*base, *where), message))
            return None
