"""The device walks the lab plays: LibreNMS's snmpsim recordings in lab/snmprec/.

A recording is ``OID|TYPE|VALUE`` lines (snmpsim's snmprec format: TYPE is the ASN.1 tag number,
``x`` after it when VALUE is hex). Lines that are not records are left out: upstream redacted some
OIDs themselves (``1.3.6.1.2.1.4.20.1.2.10.xx.xx.100``), which no agent could answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parent
SNMPREC_DIR = LAB_DIR / "snmprec"

IF_OPER_STATUS = "1.3.6.1.2.1.2.2.1.8"
# Every CPU load a shipped profile reads (the snmp_cpu tables of collectors/snmp/profiles), so a CPU
# fault moves whatever the device reports: column -> whether it holds the percent busy or idle.
CPU_COLUMNS = {
    "1.3.6.1.4.1.9.9.109.1.1.1.1.5": "busy",  # cpmCPUTotal5min
    "1.3.6.1.4.1.9.9.109.1.1.1.1.8": "busy",  # cpmCPUTotal5minRev
    "1.3.6.1.4.1.9.9.109.1.1.2.1.5": "busy",  # cpmCore5min
    "1.3.6.1.2.1.25.3.3.1.2": "busy",  # hrProcessorLoad
    "1.3.6.1.4.1.11.2.14.11.5.1.9.6.1": "busy",  # hpSwitchCpuStat
    "1.3.6.1.4.1.11863.6.4.1.1.1.1.2": "busy",  # tpSysMonitorCpu5Seconds
    "1.3.6.1.4.1.11863.6.4.1.1.1.1.3": "busy",  # tpSysMonitorCpu1Minute
    "1.3.6.1.4.1.11863.6.4.1.1.1.1.4": "busy",  # tpSysMonitorCpu5Minutes
    "1.3.6.1.4.1.2021.11.11": "idle",  # ssCpuIdle
}

_RECORD = re.compile(r"^([0-9]+(?:\.[0-9]+)*)\|([0-9]+x?)\|(.*)$")


class WalkError(RuntimeError):
    pass


def recording(name: str) -> Path:
    path = SNMPREC_DIR / f"{name}.snmprec"
    if not path.is_file():
        raise WalkError(f"no recording {path}")
    return path


def all_recordings() -> list[str]:
    return sorted(p.stem for p in SNMPREC_DIR.glob("*.snmprec"))


def read_records(path: Path) -> Iterator[tuple[str, str, str]]:
    """``(oid, tag, value)`` of every record, in file order, read as snmpsim reads it.

    snmpsim strips each line (as Latin-1 text), which drops the trailing blanks some devices pad
    their strings with (Cisco's entPhysicalModelName); LibreNMS's expected values were taken
    through snmpsim, so the lab serves what they saw. Values keep their raw bytes as surrogate
    escapes (some recordings hold Latin-1 strings).
    """
    with path.open("rb") as lines:
        for raw in lines:
            line = raw.decode("iso-8859-1").strip().encode("iso-8859-1").decode("utf-8", "surrogateescape")
            match = _RECORD.match(line)
            if match is not None:
                oid, tag, value = match.groups()
                yield oid, tag, value


def cpu_at(values: dict[str, tuple[str, str]], percent: int) -> dict[str, tuple[str, str]]:
    """The records (OID -> (tag, value)) that make every CPU load of a walk read ``percent`` busy."""
    out: dict[str, tuple[str, str]] = {}
    for oid, (tag, _value) in values.items():
        meaning = next((m for column, m in CPU_COLUMNS.items() if oid.startswith(column + ".")), None)
        if meaning is not None:
            out[oid] = (tag, str(percent if meaning == "busy" else 100 - percent))
    return out
