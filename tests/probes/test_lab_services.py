"""The lab's peers of the probes (lab/probe_services.py): what `vigie lab up` starts for an estate
whose http and rdap probes point at loopback, and the faults `vigie lab fault` injects there."""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

from lab.estate import Estate
from lab.probe_services import RdapService, WebService
from lab.services import Context, Fault, ServiceRegistry
from probes.http import PLUGIN as HTTP
from probes.rdap import PLUGIN as RDAP

from .helpers import free_tcp_port, of, run_poll, target

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
    assert {"web", "rdap"} <= set(ServiceRegistry.installed().services)


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
