"""Real servers on loopback for the probes: HTTPS with trustme certificates, ..."""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from lab.web_fake import WebFake

SERVER_NAME = "app.vigie.test"
LOGINS = {"probe": "s3cret-pass"}
TOKENS = frozenset({"bearer-token-123"})


@dataclass(frozen=True)
class Pki:
    ca: trustme.CA
    ca_file: Path
    now: dt.datetime  # when the certificates were made; the TLS probe's clock in the tests

    def server_context(self, not_after: dt.datetime) -> ssl.SSLContext:
        # named for its DNS name and for the loopback address the tests connect to
        cert = self.ca.issue_cert(SERVER_NAME, "127.0.0.1", not_after=not_after)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        # ask for a client certificate, accept a connection without one (the fake answers 403)
        self.ca.configure_trust(context)
        context.verify_mode = ssl.CERT_OPTIONAL
        return context

    def client_files(self, directory: Path) -> Path:
        """A client certificate and its key in one PEM file."""
        path = directory / "client.pem"
        self.ca.issue_cert("probe@vigie.test").private_key_and_cert_chain_pem.write_to_path(str(path))
        return path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ca = trustme.CA()
    ca_file = tmp_path_factory.mktemp("pki") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Pki(ca, ca_file, dt.datetime.now(dt.UTC).replace(microsecond=0))


async def _serve(fake: WebFake) -> AsyncIterator[WebFake]:
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def https(pki: Pki) -> AsyncIterator[WebFake]:
    """An HTTPS server for SERVER_NAME, its certificate valid for a year."""
    tls = pki.server_context(pki.now + dt.timedelta(days=365))
    async for fake in _serve(WebFake(tls, logins=LOGINS, tokens=TOKENS)):
        yield fake


@pytest.fixture
async def https_expiring(pki: Pki) -> AsyncIterator[WebFake]:
    """An HTTPS server whose certificate expires in 5 days."""
    tls = pki.server_context(pki.now + dt.timedelta(days=5))
    async for fake in _serve(WebFake(tls)):
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[WebFake]:
    async for fake in _serve(WebFake(logins=LOGINS, tokens=TOKENS)):
        yield fake
