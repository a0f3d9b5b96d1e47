"""Bitmasks in profiles: `bits(col, names=...)` over BITS-style OCTET STRINGs
(hrPrinterDetectedErrorState), whichever way the client decoded the octets."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.snmp.client import SnmpValue, decode_octets
from collectors.snmp.engine import CounterStore, Snapshot, evaluate
from collectors.snmp.profile import ProfileSet

COLUMN = "1.3.6.1.2.1.25.3.5.1.2"


@pytest.fixture
def profile(tmp_path: Path):
    (tmp_path / "mask.yaml").write_text(
        """
name: mask
tables:
  - id: prt
    measurement: snmp_printer
    columns:
      state: 1.3.6.1.2.1.25.3.5.1.2
      status: 1.3.6.1.2.1.25.3.5.1.1
    fields:
      errors: "bits(state, names=('lowPaper', 'noPaper', 'lowToner', 'noToner', 'doorOpen', 'jammed'))"
      jammed: "match('(^|,)jammed(,|$)', errors)"
"""
    )
    return ProfileSet.load(tmp_path).get("mask")


@pytest.mark.parametrize(
    ("octets", "errors"),
    [
        (b"\x00\x00", ""),  # decoded as "" (NULs stripped)
        (b"\x24\x00", "lowToner,jammed"),  # decoded as the text "$"
        (b"\x20", "lowToner"),  # a lone space
        (b"\x80\x00", "lowPaper"),  # not UTF-8: hex "8000"
        (b"\x04", "jammed"),  # not printable: hex "04"
        (b"\x00\x02", "bit14"),  # beyond the names given
    ],
)
def test_bits_reads_the_octets_back_whatever_the_decoding(profile, octets: bytes, errors: str) -> None:
    snapshot = Snapshot(columns={COLUMN: {"1": decode_octets(octets)}})
    (row,) = evaluate(profile, snapshot, CounterStore(), now=0.0)
    assert row.fields["errors"] == errors
    assert row.fields["jammed"] == ("jammed" in errors.split(","))


def test_bits_is_unknown_when_absent_or_not_octets(profile) -> None:
    snapshot = Snapshot(columns={"1.3.6.1.2.1.25.3.5.1.1": {"1": SnmpValue(3, "integer")}})
    (row,) = evaluate(profile, snapshot, CounterStore(), now=0.0)
    assert row.fields == {"errors": None, "jammed": None}

    snapshot = Snapshot(columns={COLUMN: {"1": SnmpValue(36, "integer")}})
    (row,) = evaluate(profile, snapshot, CounterStore(), now=0.0)
    assert row.fields == {"errors": None, "jammed": None}
