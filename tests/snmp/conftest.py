"""One snmpsim for the whole SNMP suite: every recording under its own name (community), plus
copies dedicated to fault injection so they never disturb the LibreNMS comparisons."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.api import Target
from lab.snmpsim import SnmpLab, V3User, all_recordings, recording

DATA = Path(__file__).resolve().parent / "data"
V3_USERS = (
    V3User("v3sha", "auth-secret-1", "priv-secret-1", "SHA", "AES"),
    V3User("v3sha256", "auth-secret-2", "priv-secret-2", "SHA256", "AES256"),
    V3User("v3md5", "auth-secret-3", "priv-secret-3", "MD5", "DES"),
)
# Devices whose state tests change at run time.
FAULT_DEVICES = {
    "fault_switch": "ios_2960x",
    "fault_gone": "qnap",
    "rates_switch": "iosxe_c9300",
    "swapped_switch": "ios_2960x",
}


@pytest.fixture(scope="session")
def lab() -> Iterator[SnmpLab]:
    devices: dict[str, str | Path] = {name: name for name in all_recordings()}
    devices.update({name: recording(source) for name, source in FAULT_DEVICES.items()})
    devices["odd_agent"] = DATA / "odd_agent.snmprec"
    # Hand-written agents for detection and unit quirks (tests/snmp/data/README.md).
    for name in ("oob_drac", "syno_bare", "mge_deep"):
        devices[name] = DATA / f"{name}.snmprec"
    with SnmpLab(devices, v3_users=V3_USERS) as running:
        yield running


@pytest.fixture
def target(lab: SnmpLab):
    def make(device: str, **credentials: str) -> Target:
        return Target(device, lab.host, lab.port, credentials or {"community": device})

    return make
