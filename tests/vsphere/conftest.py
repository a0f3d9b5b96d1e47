"""The vsphere tests' peer: govmomi's vCenter simulator (lab/vcsim), started by the lab's own
service for an estate shaped like VSGP's vCenter (2 clusters x 3 VxRail nodes, 54 VMs, 2 vSAN
datastores). The binary is built once per source (cached by lab.vcsim.build); each test gets a
simulator of its own (it starts in well under a second), so no state leaks between tests."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from lab.estate import Estate
from lab.services import Context
from lab.vcsim import build
from lab.vcsim.service import VcsimService
from tests.probes.helpers import free_tcp_port

DEVICE = "acme/vcenter"
USERNAME, PASSWORD = "vigie@vsphere.local", "lab-fake-acme-vcenter"
HOSTS = {"vxrail-siege": ["esx-siege-1", "esx-siege-2", "esx-siege-3"],
         "vxrail-pra": ["esx-pra-1", "esx-pra-2", "esx-pra-3"]}
VCSIM = {"datacenter": "ACME", "clusters": HOSTS, "vms_per_cluster": 27,
         "vms": {"vxrail-siege": ["dc1", "veeam"], "vxrail-pra": ["dc2"]}, "datastores": ["vsan-siege", "vsan-pra"]}
# Inventory devices the vCenter reports on (piggyback): one host and one VM.
PIGGYBACKED = ("esx-siege-1", "dc1")


@dataclass
class Lab:
    service: VcsimService
    config: Path
    secrets: Path
    port: int
    ca_file: Path

    @property
    def options(self) -> dict:
        return {"port": self.port, "ca_bundle": str(self.ca_file)}


def write_estate(tmp_path: Path, port: int, ca_file: Path, **vcenter: object) -> tuple[Path, Path]:
    options = {"port": f"${{ACME_VCSIM_PORT:-{port}}}", "ca_bundle": f"${{ACME_VCSIM_CA:-{ca_file}}}"}
    devices = [{
        "name": "vcenter", "address": "127.0.0.1", "credentials": "acme-vcenter", "interval_s": 2, "timeout_s": 2,
        "jitter_s": 0, "collectors": {"vsphere": options}, "x-lab": {"vcsim": VCSIM}, **vcenter,
    }]
    # the piggybacked devices: polled by a TCP probe of their own, as their SNMP would be
    devices += [{"name": name, "address": "127.0.0.1", "interval_s": 3600, "collectors": {"tcp": {"ports": [port]}}}
                for name in PIGGYBACKED]
    config = {
        "agent": {"state_dir": str(tmp_path / "unused-state"), "store": {"kind": "sqlite"}},
        "clients": [{"name": "acme", "display_name": "Acme", "ticketing": {"kind": "log"},
                     "sites": [{"name": "dc", "devices": devices}]}],
    }
    config_path, secrets_path = tmp_path / "acme.yaml", tmp_path / "secrets.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    secrets_path.write_text(yaml.safe_dump({"acme-vcenter": {"username": USERNAME, "password": PASSWORD}}))
    secrets_path.chmod(0o600)
    return config_path, secrets_path


@pytest.fixture(scope="session")
def vcsim_binary() -> Path:
    return build()


@pytest.fixture
async def lab(tmp_path: Path, vcsim_binary: Path) -> AsyncIterator[Lab]:
    port = free_tcp_port()
    ca_file = tmp_path / "vcsim-ca.pem"  # where ca_bundle says: the lab writes it there
    config, secrets = write_estate(tmp_path, port, ca_file)
    estate = Estate.load(str(config), environ={}, secrets_path=secrets)
    service = VcsimService.for_estate(Context(estate, argparse.Namespace(), {}, tmp_path / "runtime"))
    assert service is not None
    await service.start()
    try:
        assert service.environment() == {"ACME_VCSIM_PORT": str(port), "ACME_VCSIM_CA": str(ca_file)}
        yield Lab(service, config, secrets, port, ca_file)
    finally:
        await service.stop()
