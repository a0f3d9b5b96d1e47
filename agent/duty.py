"""Who is told what, beside the ticket: escalation, on-call duty and the client's perimeter.

Three settings of a client (``clients[]``), each naming people of its ``contacts`` list:

- ``escalation``: a ticket not taken in charge in the ITSM within ``after_min[severity]`` minutes
  gets a follow-up and a notification to the first contact of ``contacts``; still not taken after
  twice that, the second; and so on down the list.
- ``on_call``: the client subscribed on-call duty (the public body's "astreinte"): outside its
  service hours (holidays included) an alert of ``severities`` notifies the contact on duty, from
  explicit ``ranges`` first, else the ``weekly`` rota (a week starts ``starts`` at ``at`` local
  time; ``from`` is the first day of the week of ``contacts[0]``).
- ``perimeter``: equipment the client supervises but does not hand over ("périmètre client"): its
  alerts open no provider ticket, they are passed on at once to ``perimeter.contacts``. What is
  the client's is looked up in the inventory's order: the device's ``responsibility``, else its
  site's, else the first ``perimeter.match`` entry its tags match, else the provider's.

The models are the kernel's (agent/config/schema.py embeds them); the sending is alerting/contacts.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_validator

from agent.api.rules import Matchers, Severity, TagMatcher
from agent.config.calendar import WEEKDAYS, Weekday

Responsibility = Literal["provider", "client"]
ContactName = Annotated[str, StringConstraints(min_length=1)]


def _clock_time(value: object) -> object:
    # as the service hours: "08:00", never a bare number read as seconds
    if isinstance(value, bool | int | float):
        raise ValueError('write a time of day as "HH:MM" (e.g. "08:00"), not a number')
    return value


def _minutes(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("expected a number of minutes, not a boolean")
    return value


Minutes = Annotated[float, Field(gt=0, le=7 * 24 * 60), BeforeValidator(_minutes)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EscalationSettings(_Model):
    """``clients[].escalation``: severity -> minutes without taking in charge, and the list."""

    after_min: dict[Severity, Minutes] = {}
    contacts: list[ContactName] = []

    @model_validator(mode="after")
    def _someone_to_call(self) -> EscalationSettings:
        if self.after_min and not self.contacts:
            raise ValueError("after_min needs contacts (the escalation list, in order)")
        return self

    def levels_due(self, severity: str, opened_at: float, now: float) -> int:
        """How many steps of the list are due for a ticket of ``severity`` open since ``opened_at``
        and not taken in charge: one per ``after_min`` elapsed, at most the list's length."""
        minutes = self.after_min.get(severity)  # type: ignore[call-overload]
        if minutes is None or now < opened_at:
            return 0
        return min(len(self.contacts), int((now - opened_at) // (minutes * 60)))


class WeeklyRota(_Model):
    starts: Weekday = "mon"
    at: Annotated[dt.time, BeforeValidator(_clock_time)] = dt.time(8, 0)
    first_week: dt.date = Field(alias="from")
    contacts: Annotated[list[ContactName], Field(min_length=1)]

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _starts_on_its_day(self) -> WeeklyRota:
        if WEEKDAYS[self.first_week.weekday()] != self.starts:
            raise ValueError(f"from: {self.first_week} is a {WEEKDAYS[self.first_week.weekday()]}, "
                             f"the rota's weeks start on {self.starts}")
        return self

    def on_duty(self, local: dt.datetime) -> str:
        """The contact of the week holding ``local`` (the client's wall clock: the handover stays at
        ``at`` across a change of daylight saving time)."""
        start = dt.datetime.combine(self.first_week, self.at)
        weeks = (local.replace(tzinfo=None) - start) // dt.timedelta(days=7)
        return self.contacts[weeks % len(self.contacts)]


class RotaRange(_Model):
    """An explicit turn (a swap, a holiday week): ``start`` to ``end``, the client's local time."""

    start: dt.datetime
    end: dt.datetime
    contact: ContactName

    @model_validator(mode="after")
    def _ordered(self) -> RotaRange:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("write start and end in the client's local time, without an offset")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class OnCallSettings(_Model):
    """``clients[].on_call``: present = the client subscribed on-call duty."""

    severities: Annotated[list[Severity], Field(min_length=1)] = ["critical"]
    weekly: WeeklyRota | None = None
    ranges: list[RotaRange] = []

    @model_validator(mode="after")
    def _a_rota(self) -> OnCallSettings:
        if self.weekly is None and not self.ranges:
            raise ValueError("give the rota: weekly, ranges, or both")
        return self

    @property
    def contacts(self) -> list[str]:
        return [*(self.weekly.contacts if self.weekly else []), *(r.contact for r in self.ranges)]

    def on_duty(self, local: dt.datetime) -> str | None:
        """Who is on duty at ``local`` (aware, in the client's zone): an explicit range first."""
        naive = local.replace(tzinfo=None)
        for turn in self.ranges:
            if turn.start <= naive < turn.end:
                return turn.contact
        return self.weekly.on_duty(local) if self.weekly is not None else None


class PerimeterMatch(_Model):
    match: Matchers
    responsibility: Responsibility = "client"


class PerimeterSettings(_Model):
    """``clients[].perimeter``: who receives the alerts of the client's own equipment, and which
    tags make equipment the client's (or the provider's) when neither device nor site says."""

    contacts: list[ContactName] = []
    match: list[PerimeterMatch] = []

    def by_tags(self, tags: Mapping[str, str]) -> Responsibility | None:
        for entry in self.match:
            if all(TagMatcher.parse(tag, raw).matches(tags) for tag, raw in entry.match.items()):
                return entry.responsibility
        return None
