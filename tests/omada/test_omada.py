"""The Omada collector against the fake controller (lab/omada_fake.py) on loopback, through
``tplink-omada-client``: every site read, paging, a lapsed session, the controller's errors (429,
5xx, errorCodes, malformed JSON, slow answers, refused), and the lab's fault kinds reaching the
default rules."""

from __future__ import annotations

import argparse
import json
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
import trustme

from agent.api import Sink, Target
from collectors.omada import PLUGIN, OmadaCollector, OmadaOptions, models
from lab.estate import Estate
from lab.omada_fake import OmadaFake, OmadaService, build_sites
from lab.services import Context, Fault, FaultError
from tests.metrics_doc import check, documented
from tests.probes.helpers import context, engine, firing, of, run_poll, status

FIXTURES = Path(__file__).parent / "fixtures"
USER, PASSWORD = "vigie", "lab-omada-pw"
LOGIN = {"username": USER, "password": PASSWORD}
SITES = [
    {"name": "siege", "devices": [{"name": "gw-siege"}, {"name": "sw-siege"}, {"name": "ap-siege-1"},
                                  {"name": "ap-siege-2"}, {"name": "omada-controller"}]},
    {"name": "nord-est", "devices": [{"name": "gw-nord-est"}, {"name": "sw-nord-est"}, {"name": "ap-nord-est-1"}]},
]
INVENTORY = {"gw-siege": "siege", "sw-siege": "siege", "ap-siege-1": "siege", "ap-siege-2": "siege",
             "gw-nord-est": "nord-est", "sw-nord-est": "nord-est", "ap-nord-est-1": "nord-est"}
BASE = {"client": "mlhg", "site": "siege", "device": "omada-controller"}


def target(credentials: dict[str, str] | None = None) -> Target:
    return Target("omada-controller", "127.0.0.1", credentials=LOGIN if credentials is None else credentials,
                  tags=BASE)


def inventory_sink() -> Sink:
    """A sink like the agent's: the client's inventory devices are known (piggyback)."""

    def tags_of(name: str) -> dict[str, str] | None:
        site = INVENTORY.get(name)
        return None if site is None else {"client": "mlhg", "site": site, "device": name}

    return Sink(BASE, lambda: 1_800_000_000 * 10**9, tags_of)


def options(fake: OmadaFake, **extra: Any) -> dict[str, Any]:
    # unpaced unless a test asks: the fake has no limit of its own by default
    return {"url": fake.url, "timeout_s": 2, "rate_limit_wait_s": 0, "max_requests_per_s": None, **extra}


async def collect_once(fake: OmadaFake, **extra: Any) -> Sink:
    collector = OmadaCollector(OmadaOptions.model_validate(options(fake, **extra)), context())
    sink = inventory_sink()
    await collector.collect(target(), sink)
    return sink


def by_device(sink: Sink, measurement: str) -> dict[str, dict[str, Any]]:
    return {s.tags["omada_device"]: dict(s.fields) for s in sink if s.measurement == measurement}


async def test_every_site_is_read_and_samples_go_to_the_inventory_devices(fake: OmadaFake) -> None:
    sink = await collect_once(fake)
    assert not sink.errors
    devices = {s.tags["omada_device"]: s for s in sink if s.measurement == "omada_device"}
    assert set(devices) == set(INVENTORY)
    ap = devices["ap-siege-1"]
    assert (ap.tags["device"], ap.tags["site"], ap.tags["type"]) == ("ap-siege-1", "siege", "ap")
    assert ap.fields["connected"] is True and ap.fields["model"] == "EAP245(EU) v3.0"
    assert isinstance(ap.fields["uptime_s"], int) and isinstance(ap.fields["cpu_pct"], float)
    # 234 clients at the hub (230 wireless over 2 APs and 3 SSIDs, 4 wired): 3 pages of 100
    siege = next(s for s in sink if s.measurement == "omada_site" and s.tags["omada_site"] == "siege")
    assert (siege.fields["clients"], siege.fields["wireless_clients"], siege.fields["wired_clients"]) == (234, 230, 4)
    client_pages = [p for m, p in fake.requests if p.endswith(f"/sites/{fake.site('siege').key}/clients")]
    assert len(client_pages) == 3
    ssids = {(s.tags["omada_device"], s.tags["ssid"]): s.fields["clients"] for s in sink
             if s.measurement == "omada_ap_ssid"}
    assert sum(v for (ap_name, _), v in ssids.items() if ap_name.startswith("ap-siege")) == 230
    assert {ssid for _, ssid in ssids} == {"MLHG-Personnel", "MLHG-Public", "MLHG-IoT"}
    gateways = by_device(sink, "omada_gateway")
    assert gateways["gw-siege"] == {"primary_wan": "WAN1 Fibre", "active_wan": "WAN1 Fibre", "on_backup": False,
                                    "wan_ports": 2, "wan_online": 2}
    tunnels = {s.tags["device"]: s.fields for s in sink if s.measurement == "omada_vpn_tunnel"}
    assert tunnels["gw-nord-est"]["up"] is True and tunnels["gw-siege"]["remote"] == "gw-nord-est"
    (controller,) = of(sink.samples, "omada_controller")
    assert controller.tags["device"] == "omada-controller"
    assert controller.fields["version"] == "5.13.30.8" and controller.fields["devices"] == 7
    assert controller.fields["clients"] == 234 + 29


async def test_a_device_the_inventory_does_not_know_is_reported_on_the_controller(fake: OmadaFake) -> None:
    fake.site("nord-est").devices[2].name = "AP Accueil"  # renamed on the controller only
    sink = await collect_once(fake)
    ap = next(s for s in sink if s.measurement == "omada_device" and s.tags["omada_device"] == "AP Accueil")
    assert ap.tags["device"] == "omada-controller" and ap.tags["omada_site"] == "nord-est"
    mapped = await collect_once(fake, devices={"AP Accueil": "ap-nord-est-1"})
    ap = next(s for s in mapped if s.measurement == "omada_device" and s.tags["omada_device"] == "AP Accueil")
    assert ap.tags["device"] == "ap-nord-est-1"


async def test_a_session_lapsed_mid_poll_is_logged_in_again(fake: OmadaFake) -> None:
    fake.lapse_after = 5  # the controller drops it well before the library's hour
    sink = await collect_once(fake)
    assert not sink.errors and fake.logins == 2
    assert of(sink.samples, "omada_controller")


async def test_a_poll_logs_in_and_out_on_its_own(fake: OmadaFake) -> None:
    collector = OmadaCollector(OmadaOptions.model_validate(options(fake)), context())
    for _ in range(2):
        await collector.collect(target(), inventory_sink())
    assert fake.logins == 2


async def test_rate_limiting_is_retried_then_named(fake: OmadaFake) -> None:
    fake.rate_limited = 2  # a burst: the two retries absorb it
    samples = await run_poll(PLUGIN, options(fake), target())
    assert status(samples)["status"] == "ok"
    fake.rate_limited = 10**6  # a storm
    samples = await run_poll(PLUGIN, options(fake), target())
    assert status(samples)["status"] == "error"
    assert "rate limited by the controller (HTTP 429)" in status(samples)["error"]


async def test_a_poll_paces_itself_under_the_controllers_limit(fake: OmadaFake) -> None:
    fake.rate_per_s = 10  # as the controller: beyond 10 requests a second, HTTP 429
    # paced a fifth below the limit: two token buckets ticking at the same rate race at the edge
    samples = await run_poll(PLUGIN, options(fake, max_requests_per_s=8), target())
    assert status(samples)["status"] == "ok" and fake.throttled == 0
    assert len(fake.requests) > 10  # more than one second's worth: the pacing was needed
    fake.requests.clear()
    samples = await run_poll(PLUGIN, options(fake, max_requests_per_s=None, rate_limit_retries=0), target())
    assert fake.throttled > 0 and status(samples)["status"] in ("partial", "error")
    assert "rate limited by the controller (HTTP 429)" in status(samples)["error"]


@pytest.mark.parametrize(
    ("misbehaviour", "expected", "reason"),
    [
        ({"http_status": 500}, "error", "POST login: HTTP 500"),
        ({"http_status": 503}, "error", "HTTP 503"),
        ({"malformed": True}, "error", "malformed JSON"),
        ({"slow_s": 3}, "unreachable", "no answer within 2 s"),
    ],
)
async def test_the_controllers_failures_are_named(
    fake: OmadaFake, misbehaviour: dict[str, Any], expected: str, reason: str
) -> None:
    for key, value in misbehaviour.items():
        setattr(fake, key, value)
    samples = await run_poll(PLUGIN, options(fake), target())
    assert status(samples)["status"] == expected
    assert reason in status(samples)["error"]


async def test_a_bad_password_and_missing_credentials_are_named(fake: OmadaFake) -> None:
    samples = await run_poll(PLUGIN, options(fake), target({"username": USER, "password": "wrong"}))
    assert status(samples)["status"] == "error"
    assert "login refused: errorCode -30109: bad username or password" in status(samples)["error"]
    samples = await run_poll(PLUGIN, options(fake), target({"community": "public"}))
    assert "credentials: invalid or missing username, password" in status(samples)["error"]
    assert "public" not in status(samples)["error"]


async def test_a_site_the_account_may_not_read_is_partial(fake: OmadaFake) -> None:
    fake.forbidden_sites = {"nord-est"}
    samples = await run_poll(PLUGIN, options(fake), target())
    assert status(samples)["status"] == "partial"
    assert "GET sites/nord-est/devices: errorCode -1505: the account has no permission" in status(samples)["error"]
    assert {s.tags["omada_site"] for s in of(samples, "omada_device")} == {"siege"}
    (cut,) = [s for s in of(samples, "omada_site") if s.tags["omada_site"] == "nord-est"]
    assert set(cut.fields.values()) == {None}  # unknown, not 0 devices


async def test_a_controller_that_refuses_connections_is_unreachable(fake: OmadaFake) -> None:
    url = fake.url
    await fake.stop()
    samples = await run_poll(PLUGIN, {"url": url, "timeout_s": 2}, target())
    assert status(samples)["status"] == "unreachable"
    assert f"no connection to {url}" in status(samples)["error"]
    assert not of(samples, "omada_device")  # every Omada device unknown, none down


async def test_tls_is_verified_against_the_ca_bundle(tmp_path: Path) -> None:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    ca_file = tmp_path / "omada-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    fake = OmadaFake(build_sites(SITES), USER, PASSWORD)
    await fake.start(tls=server)
    try:
        samples = await run_poll(PLUGIN, {"url": fake.url, "max_requests_per_s": None}, target())
        assert status(samples)["status"] == "error"  # the system's trust store knows no such CA
        assert status(samples)["error"].startswith("POST login: TLS refused: ")
        assert "certificate verify failed" in status(samples)["error"]
        samples = await run_poll(PLUGIN, {"url": fake.url, "ca_bundle": str(ca_file), "max_requests_per_s": None},
                                 target())
        assert status(samples)["status"] == "ok" and of(samples, "omada_device")
    finally:
        await fake.stop()


def test_options_are_checked_without_io() -> None:
    with pytest.raises(ValueError, match="expected https://HOST"):
        OmadaOptions.model_validate({"url": "ftp://controller"})
    with pytest.raises(ValueError, match="login in the URL"):
        OmadaOptions.model_validate({"url": "https://admin:pw@controller"})
    with pytest.raises(ValueError, match="ca_bundle"):
        OmadaCollector(OmadaOptions.model_validate({"ca_bundle": "/nonexistent/ca.pem"}), context())


def test_recorded_answers_parse_with_unknowns_as_none() -> None:
    """Fixtures: answers in the shape tplink-omada-client reads (see fixtures/README.md)."""
    listing = json.loads((FIXTURES / "devices.json").read_text())["result"]
    ap, switch = (models.device(raw) for raw in listing)
    assert ap is not None and ap.fields["connected"] is True and ap.fields["cpu_pct"] == 7.0
    assert switch is not None and switch.fields["connected"] is False
    assert switch.fields["cpu_pct"] is None and switch.fields["uptime_s"] is None  # not 0
    adopting = models.device({"type": "ap", "mac": "AA-BB-CC-00-11-55", "status": 22, "statusCategory": 2})
    assert adopting is not None and adopting.fields["connected"] is None  # being adopted: neither up nor down
    assert models.device({"name": "no mac"}) is None
    gateway = json.loads((FIXTURES / "gateway.json").read_text())["result"]
    ports = models.wan_ports(gateway)
    assert [p.name for p in ports] == ["WAN1 Fibre", "USB 4G"]
    assert models.uplink(ports)["on_backup"] is True


# -- the lab's service and its faults ------------------------------------------------------------

ESTATE = """
clients:
  - name: mlhg
    display_name: MLHG
    sites:
      - name: siege
        devices:
          - {{name: gw-siege, address: 127.0.0.1, collectors: {{tcp: {{ports: [22]}}}}}}
          - {{name: sw-siege, address: 127.0.0.1, parent: gw-siege, collectors: {{tcp: {{ports: [22]}}}}}}
          - {{name: omada-controller, address: 127.0.0.1, credentials: omada-login,
             collectors: {{omada: {{url: "${{LAB_OMADA_URL:-http://127.0.0.1:{port}}}"}}}}}}
          - {{name: ap-siege-1, address: 127.0.0.1, parent: sw-siege}}
      - name: nord-est
        devices:
          - {{name: gw-nord-est, address: 127.0.0.1, collectors: {{tcp: {{ports: [22]}}}}}}
          - {{name: ap-nord-est-1, address: 127.0.0.1}}
"""


def lab_service(tmp_path: Path) -> OmadaService:
    from tests.probes.helpers import free_tcp_port

    estate_path, secrets_path = tmp_path / "mlhg.yaml", tmp_path / "secrets.yaml"
    estate_path.write_text(ESTATE.format(port=free_tcp_port()))
    secrets_path.write_text(f"omada-login: {{username: {USER}, password: {PASSWORD}}}\n")
    estate = Estate.load(str(estate_path), environ={}, secrets_path=secrets_path)
    service = OmadaService.for_estate(Context(estate, argparse.Namespace(), {}, tmp_path))
    assert service is not None
    return service


async def test_the_lab_faults_reach_the_default_rules(tmp_path: Path) -> None:
    service = lab_service(tmp_path)
    await service.start()
    try:
        (key, url), *played = service.devices()
        assert key == "mlhg/omada-controller" and service.environment() == {"LAB_OMADA_URL": url}
        assert played == [("mlhg/ap-siege-1", "ap reported by mlhg/omada-controller, Omada site siege"),
                          ("mlhg/ap-nord-est-1", "ap reported by mlhg/omada-controller, Omada site nord-est")]
        opts = {"url": url, "timeout_s": 2, "max_requests_per_s": None}
        now = time.time()
        faults = [Fault("omada-wan-failover", "mlhg/gw-nord-est", (), now),
                  Fault("omada-ap-down", "mlhg/ap-siege-1", (), now),
                  Fault("omada-vpn-down", "mlhg/gw-nord-est", (), now)]
        assert service.check_fault(faults[0]) == "gw-nord-est: WAN1 Fibre down, USB 4G carries the traffic"
        with pytest.raises(FaultError, match="VPN hub"):
            service.check_fault(Fault("omada-vpn-down", "mlhg/gw-siege", (), now))
        with pytest.raises(FaultError, match="not a gateway"):
            service.check_fault(Fault("omada-wan-failover", "mlhg/ap-siege-1", (), now))
        await service.apply_faults(faults)
        alerts = engine(tmp_path, PLUGIN)
        for at in (now, now + 300):  # past every rule's for_s
            samples = await run_poll(PLUGIN, opts, target())
            assert status(samples)["status"] == "ok", status(samples)
            alerts.evaluate(samples, at)
        fired = firing(alerts)
        assert [(rule, severity) for rule, severity, _ in fired] == [
            ("omada_device_disconnected", "major"), ("omada_vpn_tunnel_down", "major"),
            ("omada_vpn_tunnel_down", "major"), ("omada_wan_failover", "warning")]
        summaries = " | ".join(summary for _, _, summary in fired)
        assert "gw-nord-est (gateway" in summaries and "traffic on backup WAN USB 4G, primary WAN1 Fibre" in summaries
        assert "ap-siege-1 (ap" in summaries and "is disconnected on the Omada controller" in summaries

        await service.apply_faults([])  # cleared: the fibre is back, everything recovers
        samples = await run_poll(PLUGIN, opts, target())
        alerts.evaluate(samples, now + 400)
        assert firing(alerts) == []

        slow = Fault("omada-controller-slow", "mlhg/omada-controller", ("3",), now)
        assert service.check_fault(slow) == f"{url} answers 3 s late"
        with pytest.raises(FaultError, match="give the controller"):
            service.check_fault(Fault("omada-controller-slow", "mlhg/ap-siege-1", ("3",), now))
        await service.apply_faults([slow])
        samples = await run_poll(PLUGIN, opts, target())
        assert status(samples)["status"] == "unreachable" and "no answer within 2 s" in status(samples)["error"]

        down = Fault("omada-controller-down", "mlhg/omada-controller", (), now)
        assert service.check_fault(down) == f"{url} refuses connections"
        await service.apply_faults([down])
        samples = await run_poll(PLUGIN, opts, target())
        assert status(samples)["status"] == "unreachable" and not of(samples, "omada_device")
        await service.apply_faults([])
        samples = await run_poll(PLUGIN, opts, target())
        assert status(samples)["status"] == "ok"
    finally:
        await service.stop()


async def test_every_field_emitted_is_documented_with_its_type(fake: OmadaFake) -> None:
    fake.site("nord-est").failover = True
    fake.device("ap-siege-2")[1].connected = False
    sink = await collect_once(fake)
    tables = documented("omada")
    check(sink, tables)
    # nothing documented that is never sent
    assert {s.measurement for s in sink if s.measurement != "collection"} == set(tables)
