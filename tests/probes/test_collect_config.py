"""`vigie collect --config F --device X` for every probe, each against its real server on
loopback, from one configuration file the agent would load (check-config accepts it). The command
line runs in-process (agent.cli.main, in a thread: the servers live in the test's event loop); the
other probe tests run `vigie collect URL` as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import os
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from agent.cli import main
from lab.dns_fake import DnsFake
from lab.rdap_fake import Domain, RdapFake

from .conftest import LOGINS, SERVER_NAME


def _vigie(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(list(argv))
    return code, out.getvalue()


def _estate(https, http, dns: DnsFake, rdap: RdapFake, postgres, pki) -> dict:
    device = {"address": "127.0.0.1", "interval_s": 60, "timeout_s": 10, "jitter_s": 0}
    user = next(iter(LOGINS))
    return {
        "clients": [{
            "name": "acme",
            "display_name": "Acme",
            "sites": [{
                "name": "hq",
                "devices": [
                    {**device, "name": "web", "credentials": {"http": "web-login"}, "collectors": {"http": {
                        "url": f"{http.url}/basic", "auth": "basic", "body_regex": "basic"}}},
                    {**device, "name": "cert", "collectors": {"tls": {
                        "port": urlsplit(https.url).port, "server_name": SERVER_NAME, "ca_bundle": str(pki.ca_file)}}},
                    {**device, "name": "ports", "collectors": {"tcp": {"ports": [postgres.primary.port]}}},
                    {**device, "name": "resolver", "collectors": {"dns": {
                        "port": dns.address[1], "queries": [{"name": "app.acme.test", "expect": ["127.0.0.1"]}]}}},
                    {**device, "name": "domain", "collectors": {"rdap": {
                        "domains": ["acme.test"], "base_url": rdap.url}}},
                    {**device, "name": "db", "credentials": {"postgresql": "db-login"}, "collectors": {"postgresql": {
                        "port": postgres.primary.port, "databases": ["app"], "replicas": ["replica-1"]}}},
                    {**device, "name": "router", "collectors": {"icmp": {"count": 2, "spacing_s": 0.05}}},
                ],
            }],
        }],
    }, {"web-login": {"username": user, "password": LOGINS[user]},
        "db-login": {"user": postgres.user, "password": postgres.password}}


async def test_every_probe_runs_from_the_config(https, http, postgres, pki, tmp_path: Path) -> None:
    dns = DnsFake({("app.acme.test", "A"): ["127.0.0.1"]})
    rdap = RdapFake({"acme.test": Domain(dt.datetime.now(dt.UTC) + dt.timedelta(days=90))})
    await dns.start()
    await rdap.start()
    try:
        estate, secrets = _estate(https, http, dns, rdap, postgres, pki)
        config, secrets_file = tmp_path / "vigie.yaml", tmp_path / "secrets.yaml"
        config.write_text(yaml.safe_dump(estate, sort_keys=False))
        secrets_file.write_text(yaml.safe_dump(secrets))
        os.chmod(secrets_file, 0o600)
        code, said = await asyncio.to_thread(_vigie, "check-config", str(config), "--secrets", str(secrets_file))
        assert code == 0 and "1 client(s), 7 poll(s)" in said, said
        devices = ["web", "cert", "ports", "resolver", "domain", "db", "router"]
        runs = []
        for name in devices:  # one at a time: they share this process's stdout
            code, said = await asyncio.to_thread(
                _vigie, "collect", "--config", str(config), "--secrets", str(secrets_file), "--device", name, "--json"
            )
            runs.append((code, [json.loads(line) for line in said.splitlines() if line.startswith("{")], said))
    finally:
        await dns.stop()
        await rdap.stop()
    expected = {
        "web": "http_response", "cert": "tls_certificate", "ports": "tcp_port", "resolver": "dns_query",
        "domain": "rdap_domain", "db": "postgresql_server", "router": "icmp",
    }
    for name, (code, lines, stderr) in zip(devices, runs, strict=True):
        if name == "router" and "cannot open" in (lines[-1]["fields"]["error"] or ""):
            continue  # no ICMP socket for this user: test_icmp says why it skips
        assert code == 0, (name, lines, stderr)
        assert lines[0]["measurement"] == expected[name] and lines[0]["tags"]["device"] == name
        assert lines[-1]["fields"]["status"] == "ok"
    assert runs[0][1][0]["fields"]["body_match"] is True  # basic auth from the secret: the page, not a 401
