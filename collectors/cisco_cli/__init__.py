"""The Cisco IOS / IOS-XE CLI collector (netmiko over SSH): running-config backup and diff,
environment (PSUs, fans, temperatures), err-disabled ports, version and uptime.

Each run logs in once (netmiko, in a worker thread: the event loop is never held), runs
``show version``, ``show environment all``, ``show environment power all``, ``show interfaces
status`` and, when a backup is due (every ``backup_interval_s``, and at the first run after a
start), ``show running-config``. The configuration is kept masked in a git repository per client
(collectors/cisco_cli/archive.py): one file per device, a commit per change. A change gives a
``cisco_cli_config`` sample with ``changed = true`` and the masked unified diff, which the default
rule ``cisco_cli_config_changed`` turns into a low-priority (warning) alert whose ticket carries the
diff; the next run says ``changed = false`` and the alert resolves, so every change gets a ticket
of its own. The device's first backup is its baseline: stored, no ticket.

Maintenance windows: a change is exempted where alerts are (agent.maintenance): the alert has the
device's labels like any other, fires at the backup that saw the change and resolves at the next
run, so inside a window it opens no ticket. A window is judged on when the backup saw the change;
the sample's ``changed_at`` is the device's own time of it (``! Last configuration change at``),
for a window judged on when the change was made.

Options: README.md beside this file and docs/CONFIGURATION.md; measurements: docs/METRICS.md.
Host keys: trusted on first use and kept in ``known_hosts`` of the plugin's state directory; a
changed key fails the run (``HostKeyChanged``), nothing is sent.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator, model_validator

from agent.api import CollectError, CollectorContext, PluginSpec, Rule, SecretRef, Sink, Target, Unreachable
from agent.api.hostkeys import KnownHosts
from collectors.cisco_cli import parse
from collectors.cisco_cli.archive import ArchiveError, ConfigArchive, Masker, Stored, normalise
from collectors.cisco_cli.session import CliSession, CommandFailed, Login, SessionError

__all__ = ["PLUGIN", "CiscoCliCollector", "CiscoCliCredentials", "CiscoCliOptions", "default_rules"]

SHOW_VERSION = "show version"
SHOW_ENVIRONMENT = "show environment all"
SHOW_POWER = "show environment power all"
SHOW_PORTS = "show interfaces status"
SHOW_RUNNING = "show running-config"
CONFIG_FIELDS = ("changed", "commit", "versions", "backup_age_s", "diff", "lines_added", "lines_removed",
                 "changed_at", "changed_by")


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


Seconds = Annotated[float, BeforeValidator(_not_bool)]


class CiscoCliOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    port: Annotated[int, Field(ge=1, le=65535), BeforeValidator(_not_bool)] = 22
    connect_timeout_s: Annotated[Seconds, Field(gt=0, le=120)] = 10.0
    command_timeout_s: Annotated[Seconds, Field(gt=0, le=600)] = 30.0
    backup: bool = True
    backup_interval_s: Annotated[Seconds, Field(ge=1, le=30 * 86400)] = 86400.0
    # extra lines (regular expressions, re.search) left out of the stored configuration and its diff
    ignore_lines: tuple[Annotated[str, StringConstraints(min_length=1, max_length=500)], ...] = ()
    max_diff_lines: Annotated[int, Field(ge=10, le=5000), BeforeValidator(_not_bool)] = 200
    # A login shared by many devices (a TACACS+ account), set once in the defaults; a device whose
    # credentials secret has username and password uses that instead.
    username: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    password: SecretRef | None = None
    enable_secret: SecretRef | None = None

    @model_validator(mode="after")
    def _login(self) -> CiscoCliOptions:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.enable_secret is not None and self.username is None:
            raise ValueError("enable_secret: give username and password too")
        return self

    @field_validator("ignore_lines")
    @classmethod
    def _regexes(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r}: not a regular expression: {exc}") from None
        return patterns


class CiscoCliCredentials(BaseModel):
    """The device's credentials secret: an SSH login and, for a user who lands in user EXEC
    (``HOST>``), the enable secret. Other keys are left alone, and a secret without a login is
    accepted (a device's one secret may be its SNMP community): the options' login is used then."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    username: Annotated[str, StringConstraints(min_length=1)] | None = None
    password: Annotated[str, StringConstraints(min_length=1)] | None = None
    enable_secret: str | None = None


@dataclass(frozen=True)
class Change:
    stored: Stored
    changed_at: str | None  # the device's own stamp: "! Last configuration change at ... by ..."
    changed_by: str | None


@dataclass
class Readings:
    """What one session read; ``errors`` are the parts that failed, each naming its command."""

    version: parse.Version | None = None
    environment: parse.Environment | None = None
    power: list[parse.PowerSupply] | None = None
    ports: list[parse.PortStatus] | None = None
    errors: list[str] = field(default_factory=list)


class CiscoCliCollector:
    def __init__(self, options: CiscoCliOptions, context: CollectorContext) -> None:
        self.options = options
        self.context = context
        self.known_hosts = KnownHosts(context.state_dir / "known_hosts")
        self.archive = ConfigArchive(context.state_dir / "configs", options.max_diff_lines)
        self.masker = Masker(context.state_dir / "mask.key")
        self.ignore = tuple(re.compile(p) for p in options.ignore_lines)
        self.last_backup_at: float | None = None  # kept for the agent's life: a start backs up at once
        self.last_stored: Stored | None = None
        self.unreported: Change | None = None

    def _backup_due(self, now: float) -> bool:
        return self.options.backup and (
            self.last_backup_at is None or now - self.last_backup_at >= self.options.backup_interval_s
        )

    def _login(self, target: Target) -> Login:
        try:
            credentials = CiscoCliCredentials.model_validate(dict(target.credentials))
        except ValueError:
            raise CollectError(f"{target.name}: the credentials secret's username/password are not strings") from None
        if credentials.username is not None and credentials.password is not None:
            username, password, enable = credentials.username, credentials.password, credentials.enable_secret
        elif self.options.username is not None and self.options.password is not None:
            username, password = self.options.username, self.context.secret(self.options.password)
            enable = self.context.secret(self.options.enable_secret) if self.options.enable_secret else None
        else:
            raise CollectError(
                f"{target.name}: no SSH login: the device's credentials secret has no username/password and the "
                "cisco_cli options give none"
            )
        return Login(target.address, self.options.port, username, password, enable)

    async def collect(self, target: Target, sink: Sink) -> None:
        login = self._login(target)  # the device's `port` is its SNMP one: SSH's is the options'
        now = self.context.clock()
        backup = self._backup_due(now)
        readings = await asyncio.to_thread(self._read, login, target.name, backup, now)
        self._emit(readings, sink, now)
        for error in readings.errors:
            sink.error(error)

    def _check_host_key(self, login: Login) -> Callable[[str, bytes], object]:
        return lambda key_type, key: self.known_hosts.check(login.host, login.port, key_type, key)

    def _read(self, login: Login, device: str, backup: bool, now: float) -> Readings:
        """The blocking part, in a worker thread: the session, the parsing, the archive."""
        readings = Readings()
        commands: list[tuple[str, Callable[[str], None]]] = [
            (SHOW_VERSION, lambda text: setattr(readings, "version", parse.show_version(text))),
            (SHOW_ENVIRONMENT, lambda text: setattr(readings, "environment", parse.show_environment_all(text))),
            (SHOW_POWER, lambda text: setattr(readings, "power", parse.show_environment_power(text))),
            (SHOW_PORTS, lambda text: setattr(readings, "ports", parse.show_interfaces_status(text))),
        ]
        if backup:
            commands.append((SHOW_RUNNING, lambda text: self._store(device, text, now)))
        try:
            with CliSession(login, self._check_host_key(login), self.options.connect_timeout_s,
                            self.options.command_timeout_s) as session:
                for command, take in commands:
                    try:
                        take(session.run(command))
                    except (CommandFailed, parse.ParseError) as exc:
                        readings.errors.append(str(exc))
                    except ArchiveError as exc:
                        readings.errors.append(f"{SHOW_RUNNING}: read, but not archived: {exc}")
        except SessionError as exc:
            if exc.unreachable:
                raise Unreachable(str(exc)) from None
            raise CollectError(str(exc)) from None
        if len(readings.errors) == len(commands):
            raise CollectError("; ".join(readings.errors))
        return readings

    def _store(self, device: str, text: str, now: float) -> None:
        if not text.strip():
            raise parse.ParseError(SHOW_RUNNING, "empty output")
        config = normalise(text, self.masker, self.ignore)
        if config.text.rstrip("\n").rsplit("\n", 1)[-1] != "end":
            # a configuration cut short (a lost session, a pager) must not become a version
            raise parse.ParseError(SHOW_RUNNING, "no final 'end' line: the configuration is incomplete")
        stored = self.archive.store(device, config, now)
        self.last_backup_at = now
        self.last_stored = stored
        if stored.changed:
            # reported by the next sample emitted: a run cut off by its timeout after the commit
            # (the worker thread goes on) must not lose the change's ticket
            self.unreported = Change(stored, config.changed_at, config.changed_by)

    def _emit(self, readings: Readings, sink: Sink, now: float) -> None:
        if (version := readings.version) is not None:
            sink.emit("cisco_cli_device", {
                "hostname": version.hostname,
                "version": version.version,
                "software_image": version.software_image,
                "running_image": version.running_image,
                "rommon": version.rommon,
                "model": version.hardware[0] if version.hardware else None,
                "serial": version.serials[0] if version.serials else None,
                "stack_members": len(version.hardware) or None,
                "uptime_s": version.uptime_s,
                "reload_reason": version.reload_reason,
                "restarted": version.restarted,
            })
        for psu in readings.power or ():
            sink.emit("cisco_cli_psu", {
                "present": psu.present, "ok": psu.ok, "status": psu.status, "pid": psu.pid, "serial": psu.serial,
                "sys_pwr": psu.sys_pwr, "poe_pwr": psu.poe_pwr, "watts": psu.watts,
            }, {"psu": psu.slot})
        if readings.environment is not None:
            for fan in readings.environment.fans:
                sink.emit("cisco_cli_fan", {
                    "present": fan.present, "ok": fan.ok, "state": fan.state, "speed_rpm": fan.speed_rpm,
                }, {"switch": fan.switch, "fan": fan.fan})
            for sensor in readings.environment.temperatures:
                sink.emit("cisco_cli_temperature", {
                    "celsius": sensor.celsius, "state": sensor.state,
                    "yellow_c": sensor.yellow_c, "red_c": sensor.red_c,
                }, {"switch": sensor.switch, "sensor": sensor.sensor})
        for port in readings.ports or ():
            sink.emit("cisco_cli_port", {
                "status": port.status, "err_disabled": port.status == "err-disabled",
                "connected": port.status == "connected", "vlan": port.vlan, "duplex": port.duplex,
                "speed": port.speed, "type": port.kind,
            }, {"port": port.port, "port_name": port.name or ""})
        self._emit_config(sink, now)

    def _emit_config(self, sink: Sink, now: float) -> None:
        if not self.options.backup:
            return
        stored, change = self.last_stored, self.unreported
        self.unreported = None
        # all None until a backup succeeded: nothing is known, so no alert opens or resolves
        fields: dict[str, Any] = dict.fromkeys(CONFIG_FIELDS)
        if stored is not None:
            fields.update(changed=False, commit=stored.commit[:12], versions=stored.versions)
        if self.last_backup_at is not None:
            fields["backup_age_s"] = round(now - self.last_backup_at, 3)
        if change is not None:
            fields.update(
                changed=True, diff=change.stored.diff, lines_added=change.stored.lines_added,
                lines_removed=change.stored.lines_removed, changed_at=change.changed_at, changed_by=change.changed_by,
            )
        sink.emit("cisco_cli_config", fields)


def default_rules() -> list[Rule]:
    return [
        Rule(
            name="cisco_cli_config_changed",
            measurement="cisco_cli_config",
            when="changed == True",
            severity="warning",  # the lowest: P3 in the contract's matrix
            summary=(
                "{device}: running configuration changed (+{lines_added} -{lines_removed} lines), archived as "
                "{commit}\n\n{diff}"
            ),
        ),
        Rule(
            # a reinstalled switch, or someone in the middle: nothing is sent until an operator
            # has checked it and removed the key's line (the run's error says which file)
            name="cisco_cli_host_key_changed",
            measurement="collection",
            match={"collector": "cisco_cli"},
            when="status == 'error' and 'SSH host key changed' in error",
            severity="critical",  # as the SSH host collectors' own: a security event
            summary="{device}: {error}",
        ),
        Rule(
            name="cisco_cli_psu_failed",
            measurement="cisco_cli_psu",
            when="present == True and ok == False",
            for_s=60,
            severity="major",
            summary="{device}: power supply {psu} {status} ({pid} {serial})",
        ),
        Rule(
            name="cisco_cli_fan_failed",
            measurement="cisco_cli_fan",
            when="present == True and ok == False",
            for_s=60,
            severity="major",
            summary="{device}: fan {fan} of switch {switch} is {state}",
        ),
        Rule(
            name="cisco_cli_port_err_disabled",
            measurement="cisco_cli_port",
            when="err_disabled == True",
            severity="minor",
            summary="{device}: port {port} ({port_name}) is err-disabled",
        ),
        Rule(
            name="cisco_cli_temperature_red",
            measurement="cisco_cli_temperature",
            when="state == 'RED'",
            for_s=120,
            severity="major",
            summary="{device}: {sensor} temperature of switch {switch} {celsius} °C is RED (threshold {red_c} °C)",
        ),
    ]


PLUGIN = PluginSpec(
    name="cisco_cli",
    kind="collector",
    factory=CiscoCliCollector,
    options=CiscoCliOptions,
    credentials=CiscoCliCredentials,
    default_rules=default_rules,
    descriptive_tags=frozenset({"port_name"}),
    description="Cisco IOS/IOS-XE over SSH (netmiko): config backup and diff, PSUs, fans, err-disabled ports",
)
