"""ITSM outage plus SIGKILL of the agent at random moments during a fault storm, for every ticket
connector (tests/drills/itsm_storm.py: the drill, and what exactly-once means for each): a short
storm, six devices, four kills; bench/bench_drills.py runs long ones, for every connector.

`make test` storms the searchable ITSM (GLPI), the built-in log and e-mail, the first of the
connectors that cannot be searched (at-least-once, one copy a kill at most); webhook and Teams
post through the same outbound path as each other (agent/api/outbound.py) and are stormed by
bench/bench_drills.py: a storm costs about a minute, all on one test worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from .itsm_storm import CONNECTORS, storm

IN_MAKE_TEST = ("glpi", "log", "email")


@pytest.mark.timeout(360)
@pytest.mark.parametrize("connector", [c for c in CONNECTORS if c in IN_MAKE_TEST])
async def test_every_ticket_once_and_solved_once_through_an_outage_and_kills(tmp_path: Path, connector: str) -> None:
    result = await storm(tmp_path, connector)
    assert result.problems == [], (result.problems, [r.delivery for r in result.receipts], result.links)
    assert result.kills == 4
