"""The lab's peers of the probes (lab/probe_services.py): what `vigie lab up` starts for an estate
whose http, rdap and postgresql probes point at loopback, and the faults `vigie lab fault` injects
there."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import time
from pathlib import Path

import pytest

from lab.estate import Estate
from lab.probe_services import PingService, PostgresService, RdapService, WebService
from lab.services import Context, Fault, FaultError, ServiceRegistry
from probes.http import PLUGIN as HTTP
from probes.icmp import PLUGIN as ICMP
from probes.postgresql import PLUGIN as POSTGRESQL
from probes.rdap import PLUGIN as RDAP

from .helpers import free_tcp_port, of, run_poll, status, target

ESTATE = """
clients:
  - name: acme
    display_name: Acme
    sites:
      - name: hq
        devices:
          - name: app-intranet
            address: 127.0.0.1
            collectors:
              http: {{url: "http://127.0.0.1:{web}/intranet"}}
              rdap: {{domains: [acme.test], base_url: "${{ACME_RDAP_URL:-http://127.0.0.1:{rdap}/}}"}}
"""


def _context(tmp_path: Path) -> Context:
    path = tmp_path / "acme.yaml"
    path.write_text(ESTATE.format(web=free_tcp_port(), rdap=free_tcp_port()))
    estate = Estate.load(str(path), environ={}, secrets_path=None)
    return Context(estate, argparse.Namespace(), {}, tmp_path)


def test_the_lab_knows_the_probes_services() -> None:
    assert {"web", "rdap", "postgresql", "icmp"} <= set(ServiceRegistry.installed().services)


async def test_an_application_down_and_a_domain_expiring_are_faults_of_the_lab(tmp_path: Path) -> None:
    context = _context(tmp_path)
    web, rdap = WebService.for_estate(context), RdapService.for_estate(context)
    assert web is not None and rdap is not None
    await web.start()
    await rdap.start()
    try:
        ((device, url),) = web.devices()
        assert device == "acme/app-intranet" and url.endswith("/intranet")
        (variable,) = rdap.environment()
        assert variable == "ACME_RDAP_URL"
        http_options = {"url": url}
        rdap_options = {"domains": ["acme.test"], "base_url": rdap.environment()[variable]}
        (response,) = of(await run_poll(HTTP, http_options, target()), "http_response")
        (domain,) = of(await run_poll(RDAP, rdap_options, target()), "rdap_domain")
        assert response.fields["status_code"] == 200 and 199 < domain.fields["expires_in_days"] <= 200

        down = Fault("app-down", "acme/app-intranet", (), time.time())
        expiring = Fault("domain-expiring", "acme/app-intranet", ("20",), time.time())
        assert web.check_fault(down) == f"{url} answers 503"
        assert rdap.check_fault(expiring) == "acme.test expire in 20 days"
        await web.apply_faults([down])
        await rdap.apply_faults([expiring])
        (response,) = of(await run_poll(HTTP, http_options, target()), "http_response")
        (domain,) = of(await run_poll(RDAP, rdap_options, target()), "rdap_domain")
        assert response.fields["status_code"] == 503
        expected = (dt.datetime.now(dt.UTC) + dt.timedelta(days=20)).date().isoformat()
        assert domain.fields["expiration"].startswith(expected)
        await web.apply_faults([])  # cleared
        (response,) = of(await run_poll(HTTP, http_options, target()), "http_response")
        assert response.fields["status_code"] == 200
    finally:
        await web.stop()
        await rdap.stop()


POSTGRES_ESTATE = """
clients:
  - name: acme
    display_name: Acme
    sites:
      - name: hq
        devices:
          - name: db
            address: 127.0.0.1
            credentials: acme-db
            collectors:
              postgresql: {{port: "${{ACME_PG_PORT:-{port}}}", databases: [billing, crm]}}
"""


async def test_a_real_postgresql_for_the_estate_and_its_faults(tmp_path: Path) -> None:
    port = free_tcp_port()
    (tmp_path / "acme.yaml").write_text(POSTGRES_ESTATE.format(port=port))
    (tmp_path / "secrets.yaml").write_text("acme-db: {user: vigie_probe, password: lab-pw-1}\n")
    estate = Estate.load(str(tmp_path / "acme.yaml"), environ={}, secrets_path=tmp_path / "secrets.yaml")
    service = PostgresService.for_estate(Context(estate, argparse.Namespace(), {}, tmp_path))
    assert service is not None and service.environment() == {"ACME_PG_PORT": str(port)}
    assert service.devices() == [("acme/db", f"postgresql://127.0.0.1:{port}")]
    login = target(credentials={"user": "vigie_probe", "password": "lab-pw-1"})
    options = {"port": port, "databases": ["billing", "crm"], "timeout_s": 3}

    def present(samples) -> dict[str, bool]:
        return {s.tags["database"]: s.fields["present"] for s in of(samples, "postgresql_database")}

    await service.start()
    try:
        samples = await run_poll(POSTGRESQL, options, login)
        assert present(samples) == {"billing": True, "crm": True}
        missing = Fault("database-missing", "acme/db", ("crm",), time.time())
        down = Fault("postgres-down", "acme/db", (), time.time())
        assert service.check_fault(missing) == f"database crm disappears from 127.0.0.1:{port}"
        await service.apply_faults([missing])
        assert present(await run_poll(POSTGRESQL, options, login)) == {"billing": True, "crm": False}
        await service.apply_faults([missing, down])
        samples = await run_poll(POSTGRESQL, options, login)
        assert of(samples, "collection")[0].fields["status"] == "unreachable"
        await service.apply_faults([])  # cleared: the server back, the database too
        assert present(await run_poll(POSTGRESQL, options, login)) == {"billing": True, "crm": True}
    finally:
        await service.stop()


PING_ESTATE = """
clients:
  - name: acme
    display_name: Acme
    sites:
      - name: agence-12
        devices:
          - {name: rtr-agence-12, address: "${ACME_RTR_12}", collectors: {icmp: null}}
          - {name: rtr-agence-13, address: "${ACME_RTR_13:-127.0.0.1}", collectors: {icmp: {count: 1}}}
          - {name: fw-hq, address: 127.0.0.1, collectors: {icmp: null}}
"""


def _ping(address: str) -> dict:
    return {"count": 2, "spacing_s": 0.05, "timeout_s": 0.5}, target(address)


async def test_ping_targets_answer_in_the_lab_namespace_until_ping_down(tmp_path: Path) -> None:
    path = tmp_path / "acme.yaml"
    path.write_text(PING_ESTATE)
    service = PingService.for_estate(Context(Estate.load(str(path), environ={}, secrets_path=None),
                                             argparse.Namespace(), {}, tmp_path))
    assert service is not None and set(service.targets) == {"acme/rtr-agence-12", "acme/rtr-agence-13"}
    with pytest.raises(FaultError, match="address the lab plays"):
        service.check_fault(Fault("ping-down", "acme/fw-hq", (), 0))  # 127.0.0.1 is not the lab's
    if os.geteuid() != 0:
        pytest.skip("the lab's ping targets live in a network namespace: `ip netns add` needs root")
    await service.start()
    try:
        addresses = service.environment()
        assert set(addresses) == {"ACME_RTR_12", "ACME_RTR_13"}
        assert all(a.startswith(("198.18.", "198.19.")) for a in addresses.values())
        for address in addresses.values():
            assert status(await run_poll(ICMP, *_ping(address)))["status"] == "ok"
        down = Fault("ping-down", "acme/rtr-agence-12", (), 0)
        assert service.check_fault(down) == f"{addresses['ACME_RTR_12']} stops answering pings"
        await service.apply_faults([down])
        silent = await run_poll(ICMP, *_ping(addresses["ACME_RTR_12"]))
        assert status(silent)["status"] == "unreachable" and of(silent, "icmp")[0].fields["received"] == 0
        assert status(await run_poll(ICMP, *_ping(addresses["ACME_RTR_13"])))["status"] == "ok"  # the other answers
        await service.apply_faults([])
        assert status(await run_poll(ICMP, *_ping(addresses["ACME_RTR_12"])))["status"] == "ok"
    finally:
        await service.stop()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert service.netns not in listed  # gone, and its veth with it
