"""The Dashboard's answers (fixtures/, provenance in fixtures/README.md) read into typed records:
a missing or odd member is None, an item without its key is left out and counted."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from collectors.meraki import parse

FIXTURES = Path(__file__).parent / "fixtures"
NOW = dt.datetime(2024, 5, 1, 10, 16, 2, 123456, tzinfo=dt.UTC)


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def test_device_statuses_keep_unknown_as_none() -> None:
    parsed = parse.device_statuses(load("device_statuses.json"))
    assert parsed.dropped == 1
    by_serial = {d.serial: d for d in parsed.items}
    online = parse.device_fields(by_serial["Q2XX-AAAA-0001"], 14, NOW)
    assert online == {
        "status": "online", "online": True, "last_reported_at": "2024-05-01T10:15:02.123456+00:00",
        "last_reported_age_s": 60.0, "lan_ip": "192.0.2.21", "public_ip": "203.0.113.7", "wireless_clients": 14,
    }
    offline = parse.device_fields(by_serial["Q2XX-AAAA-0002"], None, NOW)
    assert offline["status"] == "offline" and offline["online"] is False
    assert offline["last_reported_age_s"] == 3660.123 and offline["wireless_clients"] is None
    never = by_serial["Q2XX-CCCC-0001"]
    assert never.name is None and never.status == "dormant" and never.last_reported_at is None
    assert parse.device_fields(never, None, NOW)["last_reported_age_s"] is None
    assert by_serial["Q2XX-AAAA-0002"].tags == ("vsgp-wifi", "site-clamart-piscine")
    assert parse.status_counts(parsed.items) == {"online": 1, "alerting": 1, "offline": 1, "dormant": 1}


def test_a_status_meraki_does_not_document_is_unknown_not_online() -> None:
    (device,) = parse.device_statuses([{"serial": "Q2XX-0", "status": "rebooting"}]).items
    assert device.status is None and parse.device_fields(device, None, NOW)["online"] is None


def test_uplinks_with_loss_and_latency_of_the_latest_measured_point() -> None:
    uplinks = parse.appliance_uplinks(load("appliance_uplink_statuses.json"))
    measured = parse.loss_latency(load("uplinks_loss_latency.json"))
    assert [(u.interface, u.status) for u in uplinks.items] == [
        ("wan1", "active"), ("wan2", "not connected"), ("cellular", "ready"),
    ]
    wan1, wan2, cellular = uplinks.items
    fields = parse.uplink_fields(wan1, measured.get((wan1.serial, "wan1")))
    assert fields["active"] is True and fields["loss_percent"] == 5.3 and fields["latency_ms"] == 194.9
    assert parse.uplink_fields(wan2, None) == {
        "status": "not connected", "active": False, "ip": None, "gateway": None, "public_ip": None,
        "provider": None, "loss_percent": None, "latency_ms": None,
    }
    assert cellular.provider == "Orange F"


def test_networks_clients_and_neighbours() -> None:
    networks = parse.networks(load("networks.json"))
    assert networks.dropped == 1 and [n.tags for n in networks.items] == [("site-siege", "vsgp"), ()]
    clients = parse.wireless_clients(load("wireless_clients_by_device.json")["items"])
    assert clients == {"Q2XX-AAAA-0001": 14, "Q2XX-AAAA-0002": 0, "Q2XX-CCCC-0001": None}
    neighbors = parse.neighbors(load("lldp_cdp.json"))
    assert [(n.port, n.protocol, n.system_name, n.port_id) for n in neighbors] == [
        ("wired0", "lldp", "sw-siege-01", "Gi1/0/12"),
        ("wired0", "cdp", "sw-siege-01.vsgp.local", "GigabitEthernet1/0/12"),
    ]
    assert parse.neighbors({}) == [] and parse.neighbors("garbage") == []
