"""One parametrized test per recorded walk, driven by tests/snmp/cases/<walk>.yaml (see README)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field

from collectors.snmp import SnmpCollector
from collectors.snmp.profile import ProfileSet
from tests.snmp.expected import (
    check_mempools,
    check_ports,
    check_processors,
    check_sensors,
    load_expected,
)
from tests.snmp.mapped import check_mapped_sensors
from tests.snmp.printer import check_printer, check_printer_supplies
from tests.snmp.storage import check_storage

CASES = sorted((Path(__file__).resolve().parent / "cases").glob("*.yaml"))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Processors(_Strict):
    tolerance: float = 1.0


class Mempools(_Strict):
    percent_tolerance: float = 1.0
    bytes_tolerance: float = 0.001
    skip: list[str] = Field(default_factory=list)


class Sensors(_Strict):
    classes: list[str]
    types: list[str] | None = None
    abs_tolerance: float = 0.01
    rel_tolerance: float = 0.01
    skip: dict[str, str] = Field(default_factory=dict)
    # LibreNMS sensor OID -> "measurement.field" vigie emits it as (see mapped.py).
    mapped: dict[str, str] = Field(default_factory=dict)


class PrinterSupplies(_Strict):
    tolerance: float = 1.0


class Storage(_Strict):
    # LibreNMS storage entries whose storage_descr matches `match` must be rows of `measurement`
    # whose tag `tag` is that description (snmp_volume/volume: NAS data volumes only).
    measurement: str = "snmp_storage"
    tag: str = "storage"
    match: str
    percent_tolerance: float = 1.0
    bytes_tolerance: float = 0.001


class Case(_Strict):
    walk: str
    profile: str
    ports: bool = False
    processors: Processors | None = None
    mempools: Mempools | None = None
    sensors: Sensors | None = None
    storage: Storage | None = None
    printer_supplies: PrinterSupplies | None = None
    # snmp_printer field -> the value it must have (what LibreNMS does not record: error bits...).
    printer: dict[str, Any] | None = None


@pytest.fixture(scope="module")
def profiles() -> ProfileSet:
    return ProfileSet.load()


@pytest.mark.parametrize("case_file", CASES, ids=[c.stem for c in CASES])
async def test_walk_matches_librenms(case_file: Path, lab, target, profiles) -> None:
    case = Case.model_validate(yaml.safe_load(case_file.read_text(encoding="utf-8")))
    expected = load_expected(case.walk)
    rows = await SnmpCollector({}, profiles=profiles).poll(target(case.walk))

    system = [r for r in rows if r.measurement == "snmp_system"]
    problems = []
    if [r.tags["profile"] for r in system] != [case.profile]:
        problems.append(f"profile: expected {case.profile}, got {[r.tags['profile'] for r in system]}")
    if case.ports:
        problems += check_ports(rows, expected)
    if case.processors:
        problems += check_processors(rows, expected, case.processors.tolerance)
    if case.mempools:
        problems += check_mempools(
            rows, expected, case.mempools.percent_tolerance, case.mempools.bytes_tolerance, case.mempools.skip
        )
    if case.sensors:
        s = case.sensors
        skip = {**s.skip, **s.mapped}
        problems += check_sensors(rows, expected, s.classes, s.types, s.abs_tolerance, s.rel_tolerance, skip)
        problems += check_mapped_sensors(rows, expected, s.mapped, s.abs_tolerance, s.rel_tolerance)
    if case.printer_supplies:
        problems += check_printer_supplies(rows, expected, case.printer_supplies.tolerance)
    if case.printer is not None:
        problems += check_printer(rows, expected, case.printer)
    if case.storage:
        st = case.storage
        problems += check_storage(
            rows, expected, st.measurement, st.tag, st.match, st.percent_tolerance, st.bytes_tolerance
        )
    assert not problems, f"{case.walk}: {len(problems)} mismatch(es):\n" + "\n".join(problems)
