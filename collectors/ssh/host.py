"""What the three SSH collectors share: the login model, the common options, the connection kept
between runs, the host-key check (``agent.api.hostkeys``) and its alert, and the run of a list of
checks where one command that fails or answers garbage is one ``sink.error``, the rest kept.

A check is (name, command, parser). The parser turns a :class:`~collectors.ssh.client.Result` into
rows ``(measurement, fields, tags)`` or raises :class:`Unparsable` naming what it could not read;
parsers are pure, so the tests feed them recorded outputs directly too.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_validator

from agent.api import CollectError, CollectorContext, Rule, Sink, Target, UnknownDevice, Unreachable
from agent.api.hostkeys import HostKeyChanged, KnownHosts, fingerprint
from collectors.ssh.client import CommandTimeout, Login, LoginRefused, NoAnswer, OutputRefused, Result, Session

HOST_KEY = "ssh_host_key"
STRICT = ConfigDict(extra="forbid", frozen=True)

Row = tuple[str, dict[str, Any], dict[str, str]]


def not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


Seconds = Annotated[float, Field(gt=0, le=600), BeforeValidator(not_bool)]
Port = Annotated[int, Field(ge=1, le=65535), BeforeValidator(not_bool)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class SshCredentials(BaseModel):
    """The device's secret for an SSH collector: a user and a password or a private key (its text,
    or a path to a file the agent can read)."""

    model_config = STRICT

    user: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    password: str | None = None
    private_key: str | None = None
    private_key_file: Path | None = None
    passphrase: str | None = None

    @model_validator(mode="after")
    def _one_way_in(self) -> SshCredentials:
        given = [k for k in ("password", "private_key", "private_key_file") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of password, private_key, private_key_file")
        return self


class SshOptions(BaseModel):
    """Options every SSH collector has."""

    model_config = STRICT

    port: Port | None = None  # None: the device's port, else 22
    connect_timeout_s: Seconds = 5.0
    command_timeout_s: Seconds = 10.0  # each command's own deadline


class Unparsable(Exception):
    """A command answered, but not what its parser reads (the message says what)."""


@dataclass(frozen=True)
class Check:
    name: str  # as the errors name it: "docker ps", "Get-VM"
    command: str
    parse: Callable[[Result], list[Row]]
    accept_status: tuple[int, ...] = (0,)  # exit statuses that are answers (pg_isready: 0-3)
    # a tag naming what a row is about (a Hyper-V host's VM): a row whose object is an inventory
    # device of the client goes to that device (Checkmk's piggyback), the others stay on the host
    piggyback: str | None = None


def failure_text(result: Result) -> str:
    """One line from a failed command's stderr (or stdout), for an error message."""
    text = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()
    return text[0][:300] if text else "no output"


class SshHostCollector(ABC):
    """One per (device, SSH collector). Keeps its connection between runs while it stays healthy."""

    name: str  # the plugin's name: the `collector` tag of its ssh_host_key samples

    def __init__(self, options: SshOptions, context: CollectorContext) -> None:
        self.options = options
        self.known_hosts = KnownHosts(context.state_dir / "known_hosts")
        self.clock = context.clock
        self.session: Session | None = None
        self.first_contact = False  # the current session's key was recorded when it opened

    @abstractmethod
    def checks(self) -> Sequence[Check]:  # each collector's own list
        raise NotImplementedError

    async def collect(self, target: Target, sink: Sink) -> None:
        reused = self.session is not None and self.session.alive
        session = await self._connected(target, sink)
        failures: list[str] = []
        checks = self.checks()
        for index, check in enumerate(checks):
            try:
                failure = await self._check(session, check, sink)
            except NoAnswer as exc:
                if not (reused and index == 0):
                    raise Unreachable(f"{check.name}: {exc}") from None
                # the kept connection died while idle (host rebooted, a firewall forgot it): once more, anew
                session = await self._connected(target, sink)
                try:
                    failure = await self._check(session, check, sink)
                except NoAnswer as exc:
                    raise Unreachable(f"{check.name}: {exc}") from None
            if failure is not None:
                failures.append(failure)
        self._emit_host_key(sink, session)  # once, for the connection the run ended on
        if checks and len(failures) == len(checks):
            raise CollectError("; ".join(failures))
        for failure in failures:
            sink.error(failure)

    async def _check(self, session: Session, check: Check, sink: Sink) -> str | None:
        """Run one check and emit its rows; what went wrong, naming the command, or None."""
        try:
            result = await self._blocking(session, session.run, check.command, self.options.command_timeout_s)
        except (CommandTimeout, OutputRefused) as exc:  # this command only; NoAnswer ends the run
            return f"{check.name}: {exc}"
        if result.exit_status not in check.accept_status:
            return f"{check.name}: exit status {result.exit_status}: {failure_text(result)}"
        try:
            rows = check.parse(result)
        except Unparsable as exc:
            return f"{check.name}: output not understood: {exc}"
        for measurement, fields, tags in rows:
            self._sink_for(sink, check, tags).emit(measurement, fields, tags)
        return None

    @staticmethod
    def _sink_for(sink: Sink, check: Check, tags: dict[str, str]) -> Sink:
        about = tags.get(check.piggyback) if check.piggyback else None
        if not about or about == sink.base_tags.get("device"):
            return sink
        try:
            return sink.for_device(about)
        except UnknownDevice:  # a VM the inventory does not list: its samples are the host's
            return sink

    async def _connected(self, target: Target, sink: Sink) -> Session:
        if self.session is not None and self.session.alive:
            self.first_contact = False
            return self.session
        self.session = None
        credentials = SshCredentials.model_validate(dict(target.credentials))  # checked when the config loaded
        port = self.options.port or target.port or 22
        login = Login(
            host=target.address, port=port, user=credentials.user, password=credentials.password,
            private_key=credentials.private_key, private_key_file=credentials.private_key_file,
            passphrase=credentials.passphrase, connect_timeout_s=self.options.connect_timeout_s,
        )
        first: list[bool] = []

        def check_key(key_type: str, key_bytes: bytes) -> None:
            first.append(self.known_hosts.check(target.address, port, key_type, key_bytes))

        session = Session(login, check_key, partial(self.known_hosts.key_types, target.address, port))
        try:
            await self._blocking(session, session.open)
        except HostKeyChanged as exc:
            sink.emit(HOST_KEY, {
                "changed": True, "fingerprint": exc.shown, "recorded_fingerprint": exc.known, "first_contact": False,
                "key_type": session.host_key.get_name() if session.host_key else None,
            }, {"collector": self.name})
            raise
        except NoAnswer as exc:
            raise Unreachable(str(exc)) from None
        except LoginRefused as exc:
            raise CollectError(str(exc)) from None
        self.session = session
        self.first_contact = bool(first and first[0])
        return session

    def _emit_host_key(self, sink: Sink, session: Session) -> None:
        key = session.host_key
        assert key is not None  # set by open() before the login
        sink.emit(HOST_KEY, {
            "changed": False, "fingerprint": fingerprint(key.asbytes()), "recorded_fingerprint": None,
            "first_contact": self.first_contact, "key_type": key.get_name(),
        }, {"collector": self.name})

    async def _blocking(self, session: Session, call: Callable[..., Any], *args: Any) -> Any:
        """``call`` in a worker thread. Cancelled (the poll's timeout), the connection is dropped so
        the thread's blocked read returns at once and the next run reconnects."""
        try:
            return await asyncio.to_thread(call, *args)
        except (asyncio.CancelledError, NoAnswer):  # the connection is of no more use
            session.close()
            if self.session is session:
                self.session = None
            raise


def host_key_rule(collector: str) -> Rule:
    """Each collector's own (a host may be polled by two: hyperv and windows on one Hyper-V host)."""
    return Rule(
        name=f"{collector}_host_key_changed",
        measurement=HOST_KEY,
        when="changed == True",
        match={"collector": collector},
        for_s=0,
        severity="critical",
        summary="{device}: SSH host key changed (recorded {recorded_fingerprint}, shown {fingerprint}): "
        "connection refused — a reinstalled host or someone in the middle",
    )

