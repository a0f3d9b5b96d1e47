"""Calendars of the contracts: public holidays (the service window excludes them) and weekdays.

Service hours and GTR clocks run inside a client's service window, in its timezone, holidays
excluded; the alert engine, the SLA and the reports all take their calendar from here.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from datetime import date, datetime, time, timedelta
from functools import cache
from typing import Literal

import holidays

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_DAYS = 3660  # a window never open (a holiday list covering every open day) ends the search


@cache  # a GTR clock asks for every day it crosses
def french_holidays(year: int) -> dict[date, str]:
    """The eleven public holidays of metropolitan France (Code du travail L3133-1), from the
    maintained ``holidays`` library (its names in French).

    Alsace-Moselle's Good Friday and 26 December are not included: none of the clients is there; a
    client that needs them lists the dates explicitly.
    """
    return dict(holidays.country_holidays("FR", years=year, language="fr"))


HOLIDAY_CALENDARS = {"fr": french_holidays}


def service_windows(
    start: datetime, days: Collection[Weekday], opens: time, closes: time, is_holiday: Callable[[date], bool]
) -> Iterator[tuple[datetime, datetime]]:
    """The service window's open spans from ``start`` (timezone-aware, in the client's zone) on:
    the open days, holidays excluded, ``opens`` to ``closes`` (``time.max``: until midnight); the
    first span begins at ``start`` when it falls inside one. Wall-clock times in the zone, so a
    window keeps its hours across a change of daylight saving time."""
    zone = start.tzinfo
    day = start.date()
    for _ in range(MAX_DAYS):
        if WEEKDAYS[day.weekday()] in days and not is_holiday(day):
            begin = datetime.combine(day, opens, zone)
            end = datetime.combine(day + timedelta(days=1), time(0), zone) if closes == time.max else \
                datetime.combine(day, closes, zone)
            begin = max(begin, start)
            if begin < end:
                yield begin, end
        day += timedelta(days=1)


def service_deadline(start: datetime, seconds: float, windows: Iterator[tuple[datetime, datetime]]) -> datetime:
    """When ``seconds`` of service time counted from ``start`` have run (a GTR clock: 4 h opened
    Friday 16:30 in a Mon-Fri 08:00-17:00 window end Monday 11:30). ``windows``: from
    :func:`service_windows` at ``start``."""
    remaining = timedelta(seconds=seconds)
    for begin, end in windows:
        if remaining <= end - begin:
            return begin + remaining
        remaining -= end - begin
    raise ValueError("the service window never opens")


def service_seconds(end: datetime, windows: Iterator[tuple[datetime, datetime]]) -> float:
    """The service time from the windows' start up to ``end``: a restore time counted as the
    contract counts it."""
    total = 0.0
    for begin, close in windows:
        if begin >= end:
            break
        total += (min(close, end) - begin).total_seconds()
    return total
