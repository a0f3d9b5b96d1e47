"""`vigie lab fault` / `clear` against a running `vigie lab up --estate vsgp`, seen through the SNMP
client, `vigie collect` and the fake GLPI's API."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.api import Unreachable
from collectors.snmp.client import SnmpAuth, SnmpClient
from lab.control import request

from .helpers import DEADLINE_S, ROOT, RunningLab, env, lab

IF_OPER_STATUS = "1.3.6.1.2.1.2.2.1.8"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
CPM_CORE_5MIN = "1.3.6.1.4.1.9.9.109.1.1.2.1.5"
HR_PROCESSOR_LOAD = "1.3.6.1.2.1.25.3.3.1.2"
SS_CPU_IDLE = "1.3.6.1.4.1.2021.11.11.0"
UP, DOWN = 1, 2
# dist-siege plays the C9300 walk: StackPort1 (ifIndex 70) and StackPort2 (136) are up in it.
STACK_PORT_1, STACK_PORT_2 = 70, 136


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    with RunningLab("vsgp", tmp_path_factory.mktemp("lab") / "rt") as up:
        yield up


@pytest.fixture(autouse=True)
def no_fault_left(running: RunningLab) -> Iterator[None]:
    yield
    for fault in request(running.runtime_dir, {"op": "status"})["faults"]:
        request(running.runtime_dir, {"op": "clear", "target": fault.split()[0]})


def client(running: RunningLab, device: str) -> SnmpClient:
    return SnmpClient(
        "127.0.0.1", running.snmp_port, SnmpAuth(version="2c", community=device), timeout_s=0.5, retries=0
    )


def get(running: RunningLab, device: str, oid: str) -> int | None:
    """The integer at ``oid``, or None when the device does not answer."""

    async def ask() -> int | None:
        try:
            value = (await client(running, device).get([oid])).get(oid)
        except Unreachable:
            return None
        assert value is not None, f"{device} has no {oid}"
        return int(value.value)  # type: ignore[arg-type]

    return asyncio.run(ask())


def answering(running: RunningLab, devices: list[str]) -> list[str]:
    """Those of ``devices`` that answer a GET, asked all at once (a silent one costs one timeout)."""

    async def one(device: str) -> bool:
        try:
            return bool(await client(running, device).get([SYS_OBJECT_ID]))
        except Unreachable:
            return False

    async def ask() -> list[bool]:
        return await asyncio.gather(*(one(device) for device in devices))

    return [device for device, answered in zip(devices, asyncio.run(ask()), strict=True) if answered]


def answers(running: RunningLab, device: str) -> bool:
    return answering(running, [device]) == [device]


def walk(running: RunningLab, device: str, column: str) -> dict[str, int]:
    async def ask() -> dict[str, int]:
        return {oid: int(v.value) for oid, v in (await client(running, device).walk(column)).items()}  # type: ignore[arg-type]

    return asyncio.run(ask())


def fault(running: RunningLab, *args: str) -> subprocess.CompletedProcess[str]:
    result = lab("fault", *args, runtime_dir=running.runtime_dir)
    assert result.returncode == 0, result.stderr
    return result


def clear(running: RunningLab, *args: str) -> subprocess.CompletedProcess[str]:
    result = lab("clear", *args, runtime_dir=running.runtime_dir)
    assert result.returncode == 0, result.stderr
    return result


def test_down_silences_the_device_and_clear_brings_it_back(running: RunningLab) -> None:
    assert answers(running, "vsgp/fw-siege")
    assert fault(running, "vsgp/fw-siege", "down").stdout == "vsgp/fw-siege down: vsgp/fw-siege silent\n"
    assert not answers(running, "vsgp/fw-siege")
    assert answers(running, "vsgp/fw-pra")  # its twin still answers
    assert clear(running, "vsgp/fw-siege").stdout == "cleared vsgp/fw-siege down\n"
    assert answers(running, "vsgp/fw-siege")


def test_port_down_sets_if_oper_status(running: RunningLab) -> None:
    oid = f"{IF_OPER_STATUS}.{STACK_PORT_1}"
    assert get(running, "vsgp/dist-siege", oid) == UP
    fault(running, "vsgp/dist-siege", "port-down", str(STACK_PORT_1))
    assert get(running, "vsgp/dist-siege", oid) == DOWN
    assert get(running, "vsgp/dist-siege", f"{IF_OPER_STATUS}.{STACK_PORT_2}") == UP
    assert get(running, "vsgp/fed-far-hotel-de-ville", oid) == UP  # same walk, another device
    clear(running, "vsgp/dist-siege", "port-down")
    assert get(running, "vsgp/dist-siege", oid) == UP


def test_port_down_reaches_vigie_collect_through_the_printed_url(running: RunningLab) -> None:
    fault(running, "vsgp/dist-siege", "port-down", str(STACK_PORT_1))
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli", "collect", running.url("vsgp/dist-siege"), "--json"],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )
    assert result.returncode == 0, result.stderr
    samples = [json.loads(line) for line in result.stdout.splitlines()]
    ports = {s["tags"]["if_index"]: s["fields"] for s in samples if s["measurement"] == "snmp_interface"}
    assert ports[str(STACK_PORT_1)]["oper_status"] == "down"
    assert ports[str(STACK_PORT_2)]["oper_status"] == "up"


def test_cpu_high_moves_every_cpu_load(running: RunningLab) -> None:
    before = walk(running, "vsgp/core-siege", CPM_CORE_5MIN)
    assert len(before) == 16 and max(before.values()) < 90
    fault(running, "vsgp/core-siege", "cpu-high")
    assert set(walk(running, "vsgp/core-siege", CPM_CORE_5MIN).values()) == {97}
    fault(running, "vsgp/esx-siege-1", "cpu-high", "55")
    assert set(walk(running, "vsgp/esx-siege-1", HR_PROCESSOR_LOAD).values()) == {55}
    # Dell OS10 also reports UCD's ssCpuIdle: idle is what busy leaves.
    fault(running, "vsgp/tor-siege-1", "cpu-high", "90")
    assert get(running, "vsgp/tor-siege-1", SS_CPU_IDLE) == 10
    clear(running, "vsgp/core-siege", "cpu-high")
    assert walk(running, "vsgp/core-siege", CPM_CORE_5MIN) == before


def test_site_down_silences_every_device_of_the_site(running: RunningLab) -> None:
    status = request(running.runtime_dir, {"op": "status"})
    siege = [d for d in status["devices"] if d.startswith("vsgp/") and d.split("/")[1] in SIEGE_DEVICES]
    assert len(siege) == len(SIEGE_DEVICES)
    result = fault(running, "vsgp/siege", "site-down")
    assert result.stdout.startswith(f"vsgp/siege site-down: {len(SIEGE_DEVICES)} devices silent: fw-siege, ")
    assert answering(running, [*siege, "vsgp/core-pra"]) == ["vsgp/core-pra"]
    clear(running, "vsgp/siege")
    assert answering(running, siege) == siege


SIEGE_DEVICES = {
    "fw-siege",
    "core-siege",
    "dist-siege",
    "tor-siege-1",
    "tor-siege-2",
    "idrac-vxrail-siege-1",
    "esx-siege-1",
    "idrac-vxrail-siege-2",
    "esx-siege-2",
    "idrac-vxrail-siege-3",
    "esx-siege-3",
    "ups-siege-1",
    "ups-siege-2",
    "ups-siege-3",
    "ups-siege-4",
    "sw-siege-01",
    "sw-siege-02",
    "sw-siege-03",
    "sw-siege-04",
    "veeam",
    "ddboost",
    "dnac",
    "dc1",
}


def test_flap_alternates_the_port_down_and_up(running: RunningLab) -> None:
    """Both states show up while polling (the exact timing is the responder's unit test's job)."""
    oid = f"{IF_OPER_STATUS}.{STACK_PORT_2}"
    result = fault(running, "vsgp/dist-siege", "flap", str(STACK_PORT_2), "0.4")
    effect = f"vsgp/dist-siege ifOperStatus.{STACK_PORT_2} down 0.2 s, up 0.2 s, repeated"
    assert result.stdout == f"vsgp/dist-siege flap {STACK_PORT_2} 0.4: {effect}\n"
    seen: set[int | None] = set()
    limit = time.monotonic() + DEADLINE_S
    while seen != {UP, DOWN} and time.monotonic() < limit:
        seen.add(get(running, "vsgp/dist-siege", oid))
    assert seen == {UP, DOWN}
    clear(running, "vsgp/dist-siege", "flap")
    assert get(running, "vsgp/dist-siege", oid) == UP


def glpi_status(running: RunningLab, timeout_s: float = DEADLINE_S) -> int | None:
    """The HTTP status of an initSession on the lab's GLPI, None when it does not answer in time."""
    url = running.info["environment"]["VIGIE_VSGP_GLPI_URL"]["value"] + "/initSession"
    headers = {"App-Token": "lab-fake-vsgp-glpi-app-token", "Authorization": "user_token lab-fake-vsgp-glpi-user-token"}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except TimeoutError:
        return None


def test_glpi_error_answers_every_request_with_the_status(running: RunningLab) -> None:
    assert glpi_status(running) == 200
    fault(running, "vsgp", "glpi-error", "503")
    assert glpi_status(running) == 503
    assert glpi_status(running) == 503
    clear(running, "vsgp", "glpi-error")
    assert glpi_status(running) == 200


def test_glpi_hang_answers_nothing(running: RunningLab) -> None:
    fault(running, "vsgp", "glpi-hang")
    assert glpi_status(running, timeout_s=1) is None
    clear(running, "vsgp", "glpi-hang")
    assert glpi_status(running) == 200


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["vsgp/nope", "down"], "down takes CLIENT/DEVICE: no device 'vsgp/nope' in vsgp"),
        (["nope/sw", "down"], "down takes CLIENT/DEVICE: no client 'nope' in vsgp; it has vsgp"),
        (["vsgp/dist-siege", "port-down", "99"], "vsgp/dist-siege: no ifIndex 99 in its walk; it has 1-73, 136-138"),
        (["vsgp/dist-siege", "port-down"], "port-down takes IFINDEX, got none"),
        (["vsgp/dist-siege", "down", "now"], "down takes no argument, got now"),
        (["vsgp/dist-siege", "flap", "70", "-1"], "flap: PERIOD_S is a number of seconds > 0, got -1"),
        (["vsgp/dist-siege", "cpu-high"], "vsgp/dist-siege: its walk (iosxe_c9300) reports no CPU load"),
        (["vsgp/core-siege", "cpu-high", "120"], "cpu-high: PERCENT is an integer from 0 to 100"),
        (["vsgp/nowhere", "site-down"], "site-down takes CLIENT/SITE: no site 'vsgp/nowhere' in vsgp"),
        (["vsgp/vcenter", "down"], "vsgp/vcenter: not an SNMP device of the lab"),
        (["vsgp", "glpi-error", "200"], "glpi-error: give the HTTP STATUS to answer (400-599"),
    ],
)
def test_a_fault_that_cannot_apply_says_why(running: RunningLab, args: list[str], error: str) -> None:
    result = lab("fault", *args, runtime_dir=running.runtime_dir)
    assert result.returncode == 1
    assert result.stderr.startswith(f"vigie lab fault: {error}"), result.stderr
    assert request(running.runtime_dir, {"op": "status"})["faults"] == []


def test_clear_without_a_fault_says_what_is_active(running: RunningLab) -> None:
    fault(running, "vsgp/fw-pra", "down")
    result = lab("clear", "vsgp/fw-siege", runtime_dir=running.runtime_dir)
    assert result.returncode == 1
    assert result.stderr == "vigie lab clear: no fault on vsgp/fw-siege; active: vsgp/fw-pra down\n"


def test_status_lists_faults_and_the_fake_glpi(running: RunningLab) -> None:
    fault(running, "vsgp/dist-siege", "port-down", str(STACK_PORT_1))
    result = lab("status", runtime_dir=running.runtime_dir)
    assert result.returncode == 0, result.stderr
    assert f"export VIGIE_LAB_SNMP_PORT={running.snmp_port}" in result.stdout
    assert "GLPI of vsgp: 0 tickets, 0 not solved" in result.stdout
    assert result.stdout.endswith(f"faults: vsgp/dist-siege port-down {STACK_PORT_1}\n")


def test_no_lab_running_is_a_clear_error(tmp_path: Path) -> None:
    result = lab("fault", "vsgp/dist-siege", "down", runtime_dir=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith(f"vigie lab fault: no lab running in {tmp_path}")
