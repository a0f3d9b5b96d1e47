"""The lab's IOS service (lab/ios_service.py): what `vigie lab up` starts for an estate whose
devices name cisco_cli, and the faults `vigie lab fault` injects there, seen by the collector."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pytest

from agent.api import CollectorContext, Sink, Target
from collectors.cisco_cli import PLUGIN
from lab.estate import Estate
from lab.ios_service import IosService
from lab.services import Context, Fault, FaultError, ServiceRegistry
from tests.probes.helpers import free_tcp_port

from .conftest import of

ESTATE = """
clients:
  - name: acme
    display_name: Acme
    sites:
      - name: hq
        devices:
          - name: sw-acme-01
            address: 127.0.0.1
            credentials: {{cisco_cli: acme-cli}}
            collectors: {{cisco_cli: {{port: {port}}}}}
"""
LOGIN = {"username": "vigie", "password": "lab-fake-cli", "enable_secret": "lab-fake-enable"}


def test_the_lab_knows_the_ios_service_and_finds_vsgps_cli_switches() -> None:
    assert "ios" in ServiceRegistry.installed().services
    context = Context(Estate.load("vsgp", environ={}), argparse.Namespace(), {}, Path("/nonexistent"))
    service = IosService.for_estate(context)
    assert service is not None
    assert sorted((key, s.port) for key, s in service.switches.items()) == [
        ("vsgp/sw-pra-01", 2403), ("vsgp/sw-siege-03", 2401), ("vsgp/sw-siege-04", 2402)]
    assert service.environment()["VIGIE_LAB_IOS_SW_SIEGE_03_PORT"] == "2401"
    moved = IosService.for_estate(Context(Estate.load("vsgp", environ={}), argparse.Namespace(ios_port=3300), {},
                                          Path("/nonexistent")))
    assert moved is not None and sorted(s.port for s in moved.switches.values()) == [3300, 3301, 3302]


async def _collect(collector, port: int) -> Sink:
    sink = Sink({"client": "acme", "site": "hq", "device": "sw-acme-01"}, time.time_ns)
    await collector.collect(Target("sw-acme-01", "127.0.0.1", None, LOGIN, {}), sink)
    return sink


async def test_faults_of_the_lab_are_what_the_collector_reads(tmp_path: Path) -> None:
    port = free_tcp_port()
    (tmp_path / "acme.yaml").write_text(ESTATE.format(port=port))
    (tmp_path / "secrets.yaml").write_text(f"acme-cli: {LOGIN}\n".replace("'", ""))
    estate = Estate.load(str(tmp_path / "acme.yaml"), environ={}, secrets_path=tmp_path / "secrets.yaml")
    service = IosService.for_estate(Context(estate, argparse.Namespace(), {}, tmp_path))
    assert service is not None
    options = PLUGIN.options.model_validate({"port": port, "backup_interval_s": 1})
    clock = [1_800_000_000.0]
    collector = PLUGIN.factory(options, CollectorContext("acme", "sw-acme-01", tmp_path / "state",
                                                          secret=lambda ref: "", clock=lambda: clock[0]))
    await service.start()
    try:
        assert service.endpoints() == [f"ssh 127.0.0.1:{port}  IOS-XE CLI of acme/sw-acme-01 (user vigie)"]
        sink = await _collect(collector, port)
        assert sink.errors == [] and of(sink, "cisco_cli_config")[0].fields["versions"] == 1

        now = time.time()
        faults = [Fault("ios-psu-failed", "acme/sw-acme-01", ("2A",), now),
                  Fault("ios-port-err-disabled", "acme/sw-acme-01", (), now),
                  Fault("ios-config-change", "acme/sw-acme-01", (), now)]
        assert service.check_fault(faults[0]) == "acme/sw-acme-01: power supply 2A has no input power"
        with pytest.raises(FaultError, match="power supply 1B is not present"):
            service.check_fault(Fault("ios-psu-failed", "acme/sw-acme-01", ("1B",), now))
        await service.apply_faults(faults)
        clock[0] += 2
        sink = await _collect(collector, port)
        assert [p.tags["psu"] for p in of(sink, "cisco_cli_psu") if p.fields["ok"] is False] == ["2A"]
        assert [p.tags["port"] for p in of(sink, "cisco_cli_port") if p.fields["err_disabled"]] == ["Gi1/0/5"]
        (config,) = of(sink, "cisco_cli_config")
        assert config.fields["changed"] is True and config.fields["changed_by"] == "lab"

        await service.apply_faults([Fault("ios-host-key-changed", "acme/sw-acme-01", (), now)])
        with pytest.raises(Exception, match="SSH host key changed"):
            await _collect(collector, port)
        await service.apply_faults([])  # cleared: the recorded key again, everything healthy
        sink = await _collect(collector, port)
        assert sink.errors == [] and all(p.fields["ok"] is not False for p in of(sink, "cisco_cli_psu"))
    finally:
        await service.stop()
