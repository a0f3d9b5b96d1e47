"""Every PromQL panel returns data from a real VictoriaMetrics filled by vigie.

The samples the agent emitted against the lab's three estates (fixtures/lab_samples.jsonl.gz,
recorded by `python -m tests.dashboards.record`: vsgp, ofdt, mlhg) are written, moved to the last
minutes, through vigie's own InfluxStore (line protocol over /api/v2/write) into Debian's
victoria-metrics on loopback; then every query of every panel of the Prometheus build runs through
VictoriaMetrics' Prometheus query API, with Grafana's variables as Grafana would send them for
"All". Each must return a series, except the panels of `NOT_FED_BY_LAB`, which must return none
(so the list says exactly what the lab cannot feed, and why).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from agent.stores.influx import InfluxStore
from dashboards.build import build
from dashboards.catalog import DASHBOARDS
from dashboards.cli import numeric_from_snapshot
from dashboards.query import ZERO_FALLBACK
from tests.dashboards.helpers import INTERVAL, RANGE, all_values, lab_samples
from tests.stores.conftest import VM_BINARY, VictoriaMetrics

# (dashboard uid, panel title, ref id) -> why the lab's devices leave it empty
NO_PROBE = "no device of the lab's estates runs the {} probe"
EVENTS_CLEARED = "the lab's trap (UPS on battery) is confirmed over by the UPS's next poll: it is on mains"
ONE_AGENT = "one agent records the lab: it has no peer (vigie_peer)"
COVERAGE = "backup_coverage is written every 10 min once VMs and backup objects are known: after a recording"
SLA_DAILY = "sla_daily is written once a client's day is over: a recording lasts a minute"
NOT_FED_BY_LAB: dict[tuple[str, str, str], str] = {
    ("vigie-agent", "Pipeline queues", "D"): "the lab's estates write to SQLite: no spool (queue_spool_points)",
    ("vigie-device", "Ping round trip", "A"): NO_PROBE.format("icmp"),
    ("vigie-device", "Ping round trip", "B"): NO_PROBE.format("icmp"),
    ("vigie-services", "Certificates: days left", "A"): NO_PROBE.format("tls"),
    ("vigie-services", "DNS latency", "A"): NO_PROBE.format("dns"),
    ("vigie-services", "TCP connect", "A"): NO_PROBE.format("tcp"),
    ("vigie-services", "Replicas", "A"): "ofdt's postgresql probe names no `replicas`",
    ("vigie-services", "Replicas", "B"): "ofdt's postgresql probe names no `replicas`",
    ("vigie-servers", "Watched events", "A"): "no Windows server of the lab's estates has `events.watch`",
    ("vigie-network", "Meraki uplinks active", "A"): "the lab's Meraki organization has no appliance (MX): no uplink",
    ("vigie-network", "Meraki uplinks active", "B"): "the lab's Meraki organization has no appliance (MX): no uplink",
    ("vigie-network", "Meraki uplinks active", "C"): "the lab's Meraki organization has no appliance (MX): no uplink",
    ("vigie-firewalls", "Licence days left (Sophos)", "A"): "the Sophos SFOS walk gives no expiry date (`fail`)",
    ("vigie-noc", "UPS on battery", "A"): "the lab's UPS walks are on mains; no lab fault puts one on battery",
    ("vigie-client", "UPS on battery", "A"): "the lab's UPS walks are on mains; no lab fault puts one on battery",
    ("vigie-noc", "Open trap / syslog events", "A"): EVENTS_CLEARED,
    ("vigie-client", "Open trap / syslog events", "A"): EVENTS_CLEARED,
    ("vigie-m365", "Open security alerts", "A"): "vsgp's tenant has no Defender in the lab, ofdt's alerts are resolved",
    ("vigie-sla", "Report mailing attempts", "A"): "reports are mailed once a day, not within a recording's minute",
    ("vigie-agent", "Peers beating", "A"): ONE_AGENT,
    ("vigie-agent", "Peers beating", "B"): ONE_AGENT,
    ("vigie-backups", "VMs without a backup", "A"): COVERAGE,
    ("vigie-backups", "VMs without a backup", "B"): COVERAGE,
    **{("vigie-sla", title, ref): SLA_DAILY for title, refs in (
        ("Critical alerts taken in charge within 5 min", "A"), ("Onset -> taken in charge, median and p99", "AB"),
        ("Critical alerts, taken in charge within 5 min, not taken", "ABC"),
        ("Critical alerts ticketed within 5 min", "A"), ("Onset -> ticket, median and p99", "AB"),
        ("Critical alerts, ticketed within 5 min, without ticket", "ABC"),
        ("Worst availability over service hours", "A"), ("Services below target", "AB"),
        ("Restores within the GTR", "AB")) for ref in refs},
}


def grafana_variables(expr: str) -> str:
    """What Grafana sends for "All", its $__range and $__interval; without the zero fallback, so that
    an empty count shows as empty."""
    return all_values(expr).replace("$__range", RANGE).replace("$__interval", INTERVAL).replace(ZERO_FALLBACK, "")


def query(url: str, expr: str, timed: bool, now: float) -> list[dict[str, object]]:
    if timed:
        params = {"query": expr, "start": now - 3600, "end": now, "step": "60"}
        path = "/api/v1/query_range"
    else:
        params = {"query": expr, "time": now}
        path = "/api/v1/query"
    with urllib.request.urlopen(f"{url}{path}?{urllib.parse.urlencode(params)}", timeout=10) as resp:
        answer = json.load(resp)
    assert answer["status"] == "success", (expr, answer)
    return answer["data"]["result"]


@pytest.fixture(scope="module")
def filled() -> str:
    if not Path(VM_BINARY).exists():
        pytest.fail("victoria-metrics absent: apt-get install -y victoria-metrics (the Makefile's APT_PACKAGES)")
    with tempfile.TemporaryDirectory(prefix="vigie-dashboards-vm-") as data:
        server = VictoriaMetrics(Path(data))
        server.start()
        try:
            store = InfluxStore(server.url, org="noc", bucket="vigie", token="")

            async def fill() -> None:
                await store.write(lab_samples(time.time_ns()))
                await store.close()

            asyncio.run(fill())
            with urllib.request.urlopen(f"{server.url}/internal/force_flush", timeout=10):
                pass
            yield server.url
        finally:
            server.stop()


def panel_queries() -> list[tuple[str, str, str, str, bool]]:
    out = []
    numeric = numeric_from_snapshot()
    for spec in DASHBOARDS:
        board = json.loads(build(spec, "prometheus", numeric).to_json())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                out.append((spec.uid, panel["title"], target["refId"], target["expr"], panel["type"] == "timeseries"))
    return out


def test_every_promql_panel_the_lab_feeds_returns_data(filled: str) -> None:
    now = time.time()
    empty, fed = [], []
    for uid, title, ref, expr, timed in panel_queries():
        result = query(filled, grafana_variables(expr), timed, now)
        (fed if result else empty).append((uid, title, ref))
    assert sorted(empty) == sorted(NOT_FED_BY_LAB), "\n".join(f"{e}: {NOT_FED_BY_LAB.get(e, 'no data')}" for e in
                                                              sorted(set(empty) ^ set(NOT_FED_BY_LAB)))
    assert len(fed) > 100


def test_the_variables_list_clients_sites_and_devices(filled: str) -> None:
    numeric = numeric_from_snapshot()
    board = json.loads(build(DASHBOARDS[0], "prometheus", numeric).to_json())
    for variable in board["templating"]["list"]:
        # label_values(SELECTOR, LABEL) is Grafana's: it asks the series API for the label's values
        selector, label = all_values(variable["query"])[len("label_values("):-1].rsplit(", ", 1)
        params = urllib.parse.urlencode({"match[]": selector})
        with urllib.request.urlopen(f"{filled}/api/v1/label/{label}/values?{params}", timeout=10) as resp:
            values = json.load(resp)["data"]
        assert {"vsgp", "ofdt", "mlhg"} <= set(values) if label == "client" else len(values) > 10, (label, values)
