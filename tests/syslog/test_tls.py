"""Syslog over TLS (RFC 5425): octet-counted frames in a TLS session, the server's certificate
from the options, and mutual TLS refusing a sender without a certificate of the configured CA."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import pytest
import trustme

from agent.config import ConfigError, load_config
from agent.plugins import Plugins
from agent.runner import checked_polls
from collectors.syslog.receiver import SyslogOptions, SyslogReceiver
from tests.receivers import firing, free_port, latest_fields, running_agent, until

CONFIG = """
agent:
  services:
    syslog:
      address: 127.0.0.1
      udp_port: null
      tcp_port: null
      tls_port: {port}
      tls_certificate: {cert}
      tls_key: {key}
      tls_client_ca: {ca}
      health_interval_s: 0.05
clients:
  - name: acme
    display_name: Acme
    sites:
      - name: hq
        devices:
          - {{name: web-1, address: 127.0.0.3}}
"""
DISK_ERROR = "<3>Jan  5 10:00:01 web-1 kernel: blk_update_request: I/O error, dev sdb, sector 8 op 0x0:(READ)"


def _files(tmp_path: Path) -> tuple[trustme.CA, dict[str, Path]]:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    files = {"cert": tmp_path / "server.pem", "key": tmp_path / "server.key", "ca": tmp_path / "ca.pem"}
    server.cert_chain_pems[0].write_to_path(files["cert"])
    server.private_key_pem.write_to_path(files["key"])
    ca.cert_pem.write_to_path(files["ca"])
    return ca, files


async def _send(port: int, payload: bytes, client: ssl.SSLContext) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname="127.0.0.1",
                                                   local_addr=("127.0.0.3", 0))
    writer.write(payload)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def test_a_disk_error_over_mutual_tls_and_a_sender_without_a_certificate_refused(tmp_path) -> None:
    ca, files = _files(tmp_path)
    port = free_port(socket.SOCK_STREAM)
    async with running_agent(tmp_path, CONFIG.format(port=port, **files)) as (agent, _clock):
        anonymous = ssl.create_default_context()
        ca.configure_trust(anonymous)
        try:
            # TLS 1.3: the client's side of the handshake ends before the server checks its
            # certificate, so the refusal may only show as a closed connection, or not at all here
            await _send(port, f"{len(DISK_ERROR.encode())} {DISK_ERROR}".encode(), anonymous)
        except (ssl.SSLError, ConnectionError):
            pass
        await asyncio.sleep(0.3)
        assert not firing(agent, "syslog_disk_error")
        assert not latest_fields(agent, "syslog_receiver").get("accepted")

        known = ssl.create_default_context()
        ca.configure_trust(known)
        ca.issue_cert("web-1.acme.test").configure_cert(known)
        await _send(port, f"{len(DISK_ERROR.encode())} {DISK_ERROR}".encode(), known)
        (alert,) = await until(lambda: firing(agent, "syslog_disk_error"), "the disk alert over TLS")
        assert alert.labels["disk"] == "sdb"
        await until(lambda: latest_fields(agent, "syslog_receiver").get("accepted") == 1, "one message accepted")


def test_tls_options_name_what_is_missing_or_unreadable(tmp_path) -> None:
    with pytest.raises(ValueError, match="tls_port needs tls_certificate and tls_key"):
        SyslogOptions(tls_port=6514)
    options = SyslogOptions(tls_port=6514, tls_certificate=tmp_path / "absent.pem", tls_key=tmp_path / "absent.key")
    with pytest.raises(ValueError, match="absent.pem"):
        SyslogReceiver(options)
    # check-config and run refuse it with the configuration, not at the first connection
    _, files = _files(tmp_path)
    path = tmp_path / "vigie.yaml"
    path.write_text(CONFIG.format(port=6514, cert=tmp_path / "absent.pem", key=files["key"], ca=files["ca"]))
    (tmp_path / "secrets.yaml").write_text("{}\n")
    (tmp_path / "secrets.yaml").chmod(0o600)
    plugins = Plugins.discover()
    config = load_config(path, tmp_path / "secrets.yaml", environ={}, plugins=plugins)
    with pytest.raises(ConfigError, match=r"agent\.services\.syslog: tls_certificate .*absent\.pem"):
        checked_polls(config, plugins)
