"""Maintenance windows: alerts inside one are recorded, and open no ticket until it ends.

A window covers a client, or part of it (a site, some devices, devices whose tags match), either
once (``start``/``end``) or again and again (``cron`` + ``duration_s``: "every Saturday 22:00 for
4 h"), in the client's timezone. Windows come from the configuration (``clients[].maintenance``)
and from ``vigie maintenance add`` (``StateDir.maintenance_file``, read again by the running
agent when it changes). The ticket dispatcher asks :meth:`MaintenanceCalendar.covering` when an
alert fires: a covered alert waits in the outbox (``maintenance``) and opens its ticket when the
window ends if it still fires; one that resolves inside the window never opens any.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.api.rules import Matchers, Slug, TagMatcher

log = logging.getLogger(__name__)


class MaintenanceWindow(BaseModel):
    """One window, as the configuration or ``vigie maintenance add`` writes it. Times without a
    zone are the client's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Slug
    client: Slug | None = None  # in the configuration, the client it is written under
    site: Slug | None = None
    devices: list[str] = []
    match: Matchers = {}
    start: datetime | None = None
    end: datetime | None = None
    cron: str | None = None
    duration_s: Annotated[float, Field(gt=0, le=7 * 86400)] | None = None
    reason: str = ""

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None and not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (minute hour day month weekday)")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> MaintenanceWindow:
        once = self.start is not None or self.end is not None
        again = self.cron is not None or self.duration_s is not None
        if once == again:
            raise ValueError("give start and end (once), or cron and duration_s (recurring)")
        if once and (self.start is None or self.end is None or self.end <= self.start):
            raise ValueError("a one-off window needs start and an end after it")
        if again and (self.cron is None or self.duration_s is None):
            raise ValueError("a recurring window needs cron and duration_s")
        for tag, raw in self.match.items():
            TagMatcher.parse(tag, raw)
        return self

    def scoped(self, client: str) -> MaintenanceWindow:
        return self.model_copy(update={"client": client})

    def selects(self, labels: Mapping[str, str]) -> bool:
        """Whether an alert with these labels is of what the window covers."""
        if self.client is not None and labels.get("client") != self.client:
            return False
        if self.site is not None and labels.get("site") != self.site:
            return False
        if self.devices and labels.get("device") not in self.devices:
            return False
        return all(TagMatcher.parse(tag, raw).matches(labels) for tag, raw in self.match.items())

    def span_at(self, at: float, zone: ZoneInfo) -> tuple[float, float] | None:
        """(start, end) in epoch seconds of the occurrence open at ``at``, None when none is."""
        if self.cron is None:
            assert self.start is not None and self.end is not None
            begin, end = _epoch(self.start, zone), _epoch(self.end, zone)
            return (begin, end) if begin <= at < end else None
        assert self.duration_s is not None
        local = datetime.fromtimestamp(at, zone)
        # an occurrence starting exactly now counts: look back from just after `at`
        began = croniter(self.cron, local + timedelta(seconds=1)).get_prev(datetime)
        begin = began.timestamp()
        return (begin, begin + self.duration_s) if begin <= at < begin + self.duration_s else None


def _epoch(moment: datetime, zone: ZoneInfo) -> float:
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)).timestamp()


class MaintenanceCalendar:
    """The configured windows and those added at run time (``StateDir.maintenance_file``)."""

    def __init__(
        self,
        configured: Sequence[MaintenanceWindow],
        zones: Mapping[str, ZoneInfo],
        state_file: Path | None = None,
    ) -> None:
        self.configured = list(configured)
        self.zones = dict(zones)
        self.state_file = state_file
        self._added: list[MaintenanceWindow] = []
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) of the file last read
        self._lock = threading.Lock()

    def windows(self) -> list[MaintenanceWindow]:
        return [*self.configured, *self._read_added()]

    def covering(self, labels: Mapping[str, str], at: float) -> tuple[MaintenanceWindow, float] | None:
        """The window covering an alert with ``labels`` at ``at``, and when it ends; None."""
        zone = self.zones.get(labels.get("client", ""), ZoneInfo("UTC"))
        found: tuple[MaintenanceWindow, float] | None = None
        for window in self.windows():
            if not window.selects(labels):
                continue
            span = window.span_at(at, zone)
            if span is not None and (found is None or span[1] > found[1]):
                found = (window, span[1])  # the one ending last: the alert waits for all of them
        return found

    def _read_added(self) -> list[MaintenanceWindow]:
        """The file's windows, read again only when it changed; a damaged file keeps the last good
        list (and says why once)."""
        if self.state_file is None:
            return []
        with self._lock:
            try:
                stat = self.state_file.stat()
            except FileNotFoundError:
                self._added, self._seen = [], None
                return []
            if self._seen != (stat.st_mtime_ns, stat.st_size):
                self._seen = (stat.st_mtime_ns, stat.st_size)
                try:
                    self._added = read_added(self.state_file)
                except ValueError as exc:
                    log.error("maintenance windows in %s not read (the last ones read still apply): %s",
                              self.state_file, exc)
            return list(self._added)


def read_added(path: Path) -> list[MaintenanceWindow]:
    """The windows ``vigie maintenance add`` wrote; ValueError naming what is wrong."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    if not isinstance(raw, list):
        raise ValueError(f"{path}: expected a list of windows")
    try:
        return [MaintenanceWindow.model_validate(item) for item in raw]
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def write_added(path: Path, windows: Iterable[MaintenanceWindow]) -> None:
    """Replace the file atomically (a running agent never reads half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    payload = [w.model_dump(mode="json", exclude_defaults=True) for w in windows]
    tmp.write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def window_text(window: MaintenanceWindow, now: float, zone: ZoneInfo) -> str:
    """One line for ``vigie maintenance list``: name, scope, when, and whether it is open now."""
    scope = "/".join(part for part in (window.client, window.site) if part) or "every client"
    if window.devices:
        scope += " devices " + ",".join(window.devices)
    if window.match:
        scope += " where " + ",".join(f"{k}={v}" for k, v in window.match.items())
    if window.cron is not None:
        when = f"cron '{window.cron}' for {window.duration_s:g} s"
    else:
        assert window.start is not None and window.end is not None
        when = f"{_local(window.start, zone)} -> {_local(window.end, zone)}"
    span = window.span_at(now, zone)
    state = f"OPEN until {datetime.fromtimestamp(span[1], zone):%Y-%m-%d %H:%M}" if span else "closed"
    reason = f" — {window.reason}" if window.reason else ""
    return f"{window.name}: {scope}, {when}, {state}{reason}"


def _local(moment: datetime, zone: ZoneInfo) -> str:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)
    return f"{aware.astimezone(zone):%Y-%m-%d %H:%M}"
