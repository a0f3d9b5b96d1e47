"""One snmpsim for the topology tests: the recordings that carry neighbour tables, a hand-written
one (data/README.md), an estate's devices under `<client>/<device>` communities, and the lab's
topology estate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from lab.snmpsim import SnmpLab

DATA = Path(__file__).resolve().parent / "data"
LAB_ESTATE = Path(__file__).resolve().parents[2] / "lab" / "estates" / "topology.yaml"
WALKS = ("dell-os10", "procurve_e2910", "ios_2960x", "iosxe_c9400-svl")
# The estate of test_agent.py: a 2960-X whose CDP names the APs and the core switch above it.
ESTATE = {"acme/sw-fr": "ios_2960x"}


@pytest.fixture(scope="session")
def lab() -> Iterator[SnmpLab]:
    devices: dict[str, str | Path] = {walk: walk for walk in WALKS}
    devices["synthetic"] = DATA / "synthetic_neighbors.snmprec"
    devices.update(ESTATE)
    # lab/estates/topology.yaml as `vigie lab up` serves it: community <client>/<device>, its x-lab walk
    for client in yaml.safe_load(LAB_ESTATE.read_text(encoding="utf-8"))["clients"]:
        for site in client["sites"]:
            for device in site["devices"]:
                if "x-lab" in device:
                    devices[f"{client['name']}/{device['name']}"] = device["x-lab"]["walk"]
    with SnmpLab(devices) as running:
        yield running
