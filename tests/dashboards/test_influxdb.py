"""Every InfluxQL panel query runs on a real InfluxDB (Debian's influxd, 1.x) filled with the lab's
samples in vigie's line protocol, and returns data where the PromQL build does.

InfluxDB 1.6 (Debian's) has no /api/v2/write, which vigie's InfluxStore speaks: the points go to
/write through the store's own encoder (agent.stores.line_protocol.encode), so the lines are the
store's. InfluxDB refuses a batch in which one field has both int and float points: the SNMP
collector writes its gauges as floats always (collectors.snmp.FLOAT_GAUGES), so none is refused
(see `filled`). The math expression of an availability panel runs in Grafana, not here: both its
counts run.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from agent.stores.line_protocol import encode
from dashboards.build import build
from dashboards.catalog import DASHBOARDS
from dashboards.cli import numeric_from_snapshot
from tests.dashboards.helpers import INTERVAL, RANGE, all_values, lab_samples
from tests.dashboards.test_victoria import COVERAGE, NOT_FED_BY_LAB

INFLUXD = shutil.which("influxd") or "/usr/bin/influxd"
READY_TIMEOUT_S = 30.0
BATCH = 5000
# written as an int by a profile where METRICS.md says float (tests/dashboards/test_registry.py FIELD_GAPS)
# Panels only the InfluxQL build has (string fields): what the lab leaves them without
INFLUXQL_ONLY_NOT_FED: dict[tuple[str, str], str] = {
    ("vigie-network", "Meraki uplink status"): "the lab's Meraki organization has no appliance (MX): no uplink",
    ("vigie-backups", "Which"): COVERAGE,
    ("vigie-firewalls", "Services (Sophos)"): "no Sophos device of the lab answers its service table (no snmp_service)",
    ("vigie-network", "LLDP identity"): "the lab's walks give no lldpLocChassisId: chassis_id is unknown everywhere",
}


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory):
    if not Path(INFLUXD).exists():
        pytest.fail("influxd absent: apt-get install -y influxdb (the Makefile's APT_PACKAGES)")
    root = tmp_path_factory.mktemp("influxdb")
    http, rpc = _port(), _port()
    config = root / "influxdb.conf"
    config.write_text(
        f'reporting-disabled = true\nbind-address = "127.0.0.1:{rpc}"\n'
        f'[meta]\n  dir = "{root}/meta"\n'
        f'[data]\n  dir = "{root}/data"\n  wal-dir = "{root}/wal"\n  query-log-enabled = false\n'
        f'[http]\n  bind-address = "127.0.0.1:{http}"\n  log-enabled = false\n'
        "[monitor]\n  store-enabled = false\n[continuous_queries]\n  enabled = false\n"
        "[subscriber]\n  enabled = false\n"
    )
    proc = subprocess.Popen([INFLUXD, "-config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{http}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:  # readiness poll of a child process
            if proc.poll() is not None:
                raise RuntimeError(f"influxd exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        _post(f"{url}/query", {"q": "CREATE DATABASE vigie"})
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _post(url: str, params: dict[str, str], body: bytes = b"") -> str:
    request = urllib.request.Request(f"{url}?{urllib.parse.urlencode(params)}", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=30) as resp:
        return resp.read().decode()


def _measurement(line: str) -> str:
    return re.split(r"(?<!\\)[, ]", line, maxsplit=1)[0]


def _int_fields(line: str) -> frozenset[str]:
    return frozenset(re.findall(r"[ ,](\w+)=-?\d+i(?=[, ])", line))


def _write(url: str, lines: list[str]) -> bool:
    """True when InfluxDB took the lines; False when it refused them for a field type conflict."""
    try:
        _post(f"{url}/write", {"db": "vigie", "precision": "ns"}, "\n".join(lines).encode())
        return True
    except urllib.error.HTTPError as exc:
        message = json.loads(exc.read())["error"]
        assert "field type conflict" in message, message
        return False


@pytest.fixture(scope="module")
def filled(influx: str) -> tuple[str, set[str]]:
    """The lab's samples written one measurement at a time; a measurement refused for a type conflict
    (InfluxDB 1.x refuses the whole batch, naming nothing) again by groups of points with the same
    integer fields: the first group sets the types, a group of the other type is refused (lost)."""
    by_measurement: dict[str, list[str]] = {}
    for sample in lab_samples(time.time_ns()):
        if (line := encode(sample).text) is not None:
            by_measurement.setdefault(_measurement(line), []).append(line)
    conflicting: set[str] = set()
    for measurement, lines in by_measurement.items():
        if _write(influx, lines):
            continue
        conflicting.add(measurement)
        groups: dict[frozenset[str], list[str]] = {}
        for line in lines:
            groups.setdefault(_int_fields(line), []).append(line)
        for group in sorted(groups.values(), key=len, reverse=True):
            _write(influx, group)
    return influx, conflicting


def influx_variables(statement: str) -> str:
    statement = all_values(statement).replace("$timeFilter", f"time > now() - {RANGE}")
    return statement.replace("$__interval", INTERVAL)


def test_every_influxql_panel_runs_and_the_lab_fed_ones_return_data(filled: tuple[str, set[str]]) -> None:
    url, conflicting = filled
    # one type per field: no batch refused, no point quarantined
    assert conflicting == set()
    numeric = numeric_from_snapshot()
    errors, empty, fed = [], set(), 0
    for spec in DASHBOARDS:
        for panel in json.loads(build(spec, "influxdb", numeric).to_json())["panels"]:
            for target in panel.get("targets", []):
                if "query" not in target:
                    continue  # the math expression over the two counts: Grafana's
                with urllib.request.urlopen(f"{url}/query?" + urllib.parse.urlencode(
                        {"db": "vigie", "q": influx_variables(target["query"])}), timeout=30) as resp:
                    (result,) = json.load(resp)["results"]
                if "error" in result:
                    errors.append((spec.uid, panel["title"], result["error"], target["query"]))
                elif result.get("series"):
                    fed += 1
                else:
                    empty.add((spec.uid, panel["title"]))
    assert errors == []
    # What the lab leaves empty in PromQL is empty here too, and nothing else but the InfluxQL-only panels listed.
    expected = {(uid, title) for uid, title, _ in NOT_FED_BY_LAB} | set(INFLUXQL_ONLY_NOT_FED)
    assert (sorted(empty - expected), sorted(expected - empty)) == ([], [])
    assert fed > 100


def test_the_variables_list_clients_sites_and_devices(filled: tuple[str, set[str]]) -> None:
    url, _ = filled
    board = json.loads(build(DASHBOARDS[0], "influxdb", numeric_from_snapshot()).to_json())
    for variable in board["templating"]["list"]:
        with urllib.request.urlopen(f"{url}/query?" + urllib.parse.urlencode(
                {"db": "vigie", "q": all_values(variable["query"])}), timeout=30) as resp:
            (result,) = json.load(resp)["results"]
        values = {value for _, value in result["series"][0]["values"]}
        assert {"vsgp", "ofdt", "mlhg"} <= values if variable["name"] == "client" else len(values) > 10, values
