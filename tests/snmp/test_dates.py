"""Dates in profiles: `epoch(text)` and the poll's wall-clock `now` (licence / certificate expiry)."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.snmp.client import SnmpValue
from collectors.snmp.engine import CounterStore, Snapshot, evaluate
from collectors.snmp.expr import compile_expression
from collectors.snmp.profile import ProfileSet

DAY = 86400
# 2026-11-23 10:00:00 UTC
NOW = 1795428000.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Dec 31 2999", 32503593600),
        ("Nov 10 2021", 1636502400),
        ("31 Dec 2026", 1798675200),
        ("2026-12-31", 1798675200),
        ("2026-12-31T10:00:00+02:00", 1798704000),
        ("Sat Dec  5 2026", 1796428800),
        ("fail", None),
        ("N/A", None),
        ("", None),
        ("Feb 30 2026", None),
        (None, None),
    ],
)
def test_epoch_parses_dates_and_rejects_the_rest(text: str | None, expected: int | None) -> None:
    assert compile_expression("epoch(x)").evaluate({"x": text}) == expected


def test_now_is_the_snapshot_wall_clock_and_unknown_without_it(tmp_path: Path) -> None:
    (tmp_path / "expiry.yaml").write_text(
        """
name: expiry
tables:
  - id: lic
    measurement: snmp_license
    scalar: true
    columns:
      expiry: 1.3.6.1.4.1.99999.1.0
    fields:
      expires_at: epoch(expiry)
      days_left: int((expires_at - (now - now % 86400)) // 86400)
"""
    )
    profile = ProfileSet.load(tmp_path).get("expiry")
    scalars = {"1.3.6.1.4.1.99999.1.0": SnmpValue("Dec 31 2026", "string")}

    (row,) = evaluate(profile, Snapshot(scalars=scalars, read_at=NOW), CounterStore(), now=0.0)
    assert row.fields == {"expires_at": 1798675200, "days_left": 38}

    (row,) = evaluate(profile, Snapshot(scalars=scalars, read_at=1798675200 + 10 * 3600), CounterStore(), 0.0)
    assert row.fields["days_left"] == 0  # expires today

    (row,) = evaluate(profile, Snapshot(scalars=scalars), CounterStore(), now=0.0)
    assert row.fields == {"expires_at": 1798675200, "days_left": None}
