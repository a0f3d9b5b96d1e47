"""The real agent (`vigie run`) polling the fake Dashboard: an AP gone offline reaches a ticket in
the built-in ticket log, while an AP whose switch does not answer stays held back by its parent."""

from __future__ import annotations

import socket
from pathlib import Path

import yaml

from lab.meraki_fake import MerakiFake
from tests.e2e.helpers import AgentProcess, collections, eventually, query_sqlite

from .helpers import API_KEY, CLIENT, ORG_ID, organization


def dead_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(tmp_path: Path, url: str) -> tuple[Path, Path]:
    fast = {"interval_s": 2, "timeout_s": 2, "jitter_s": 0}
    config = {
        "agent": {"state_dir": str(tmp_path / "unused"), "store": {"kind": "sqlite"}},
        "clients": [{
            "name": CLIENT,
            "display_name": "VSGP",
            # no ticketing: the built-in ticket log; the plugin's rule paged at once for the test
            "rules": [{"name": "meraki_ap_offline", "for_s": 0}],
            "sites": [
                {"name": "cloud", "devices": [{
                    "name": "meraki", "address": "127.0.0.1", "credentials": "meraki-key", **fast,
                    "collectors": {"meraki": {"organization_id": ORG_ID, "base_url": url, "neighbors_per_poll": 0}},
                }]},
                {"name": "siege", "devices": [
                    {"name": "sw-siege-02", "address": "127.0.0.1", "port": dead_udp_port(), **fast,
                     "credentials": "sw-community",
                     "collectors": {"snmp": {"profile": "auto", "retries": 0, "timeout_s": 0.5}}},
                    {"name": "ap-siege-01", "address": "127.0.0.1", "collectors": {}},
                    {"name": "ap-siege-02", "address": "127.0.0.1", "parent": "sw-siege-02", "collectors": {}},
                ]},
            ],
        }],
    }
    config_path, secrets_path = tmp_path / "vigie.yaml", tmp_path / "secrets.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    secrets_path.write_text(yaml.safe_dump({"meraki-key": {"api_key": API_KEY},
                                            "sw-community": {"community": "vsgp/sw-siege-02"}}))
    secrets_path.chmod(0o600)
    return config_path, secrets_path


async def test_an_ap_offline_reaches_a_ticket_and_its_unreachable_switch_holds_the_other(tmp_path: Path) -> None:
    fake = MerakiFake([organization()], {API_KEY: [ORG_ID]})
    await fake.start()
    state = tmp_path / "state"
    config, secrets = write_config(tmp_path, fake.url)
    agent = AgentProcess(config, secrets, state)
    try:
        agent.start()
        await eventually(lambda: ("unreachable" in {s for _, s in collections(state, CLIENT, "sw-siege-02")}),
                         "the dead switch seen unreachable", agents=[agent])
        await eventually(lambda: ("ok" in {s for _, s in collections(state, CLIENT, "meraki")}),
                         "a first Dashboard poll", agents=[agent])
        for device in fake.orgs[ORG_ID].devices[:2]:  # ap-siege-01, ap-siege-02
            device.status = "offline"
        tickets = await eventually(
            lambda: query_sqlite(state / "tickets.sqlite",
                                 "SELECT alert, title, status FROM tickets WHERE alert = 'meraki_ap_offline'"),
            "the AP offline's ticket in the built-in log", agents=[agent],
        )
        polled = len(collections(state, CLIENT, "meraki"))
        await eventually(lambda: len(collections(state, CLIENT, "meraki")) > polled,
                         "one more Dashboard poll", agents=[agent])
        tickets = query_sqlite(state / "tickets.sqlite",
                               "SELECT alert, title, status FROM tickets WHERE alert = 'meraki_ap_offline'")
        assert len(tickets) == 1, tickets
        ((_, title, ticket_status),) = tickets
        assert "ap-siege-01" in title and ticket_status != "solved", title
        held = query_sqlite(state / "alerts.sqlite", "SELECT state, inhibited_by FROM alerts WHERE rule ="
                            " 'meraki_ap_offline' AND json_extract(labels, '$.device') = 'ap-siege-02'")
        assert held == [("pending", f"{CLIENT}/sw-siege-02")], held
        assert await agent.terminate() == 0
    finally:
        agent.ensure_stopped()
        await fake.stop()
