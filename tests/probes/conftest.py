"""Real servers on loopback for the probes: HTTPS with trustme certificates, a PostgreSQL primary
and its replica (the DNS and RDAP fakes live with their tests); and a network namespace with an
address nobody answers."""

from __future__ import annotations

import datetime as dt
import json
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from lab.postgres_cluster import PostgresCluster, binaries
from lab.web_fake import WebFake

from .helpers import VIGIE, free_tcp_port

SERVER_NAME = "app.vigie.test"
LOGINS = {"probe": "s3cret-pass"}
TOKENS = frozenset({"bearer-token-123"})
SILENT = "198.18.0.2"  # on the namespace's veth link: nothing there, and nothing leaves the namespace


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


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    """A namespace with its loopback and a veth pair: 198.18.0.1/24 on one end, nothing on the
    other, and a permanent neighbour entry so the echo requests to SILENT go out (no ARP to fail
    and turn into "host unreachable") and are dropped at the far end, unanswered."""
    name = f"vigie-probes-{uuid.uuid4().hex[:8]}"
    add = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if add.returncode != 0:
        pytest.skip(f"cannot create a network namespace here (ip netns add: {add.stderr.strip() or add.returncode})")
    try:
        for command in (
            ["link", "set", "lo", "up"],
            ["link", "add", "silent0", "type", "veth", "peer", "name", "silent1"],
            ["addr", "add", "198.18.0.1/24", "dev", "silent0"],
            ["link", "set", "silent0", "up"],
            ["link", "set", "silent1", "up"],
            ["neigh", "add", SILENT, "lladdr", "02:00:00:00:00:02", "dev", "silent0", "nud", "permanent"],
        ):
            subprocess.run(["ip", "-n", name, *command], check=True, capture_output=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def collect_in(netns: str, url: str) -> tuple[int, list[dict]]:
    """`vigie collect URL --json` run inside the namespace: exit status, JSON lines."""
    done = subprocess.run(["ip", "netns", "exec", netns, *VIGIE, "collect", url, "--json"],
                          capture_output=True, text=True, timeout=60)
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@dataclass(frozen=True)
class Postgres:
    primary: PostgresCluster
    replica: PostgresCluster
    user: str
    password: str


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL primary with databases `app` and `reports`, a monitoring role, and a
    streaming replica named `replica-1`."""
    if binaries() is None:
        pytest.skip("no PostgreSQL binaries (Debian package `postgresql`, in the Makefile's APT_PACKAGES)")
    primary = PostgresCluster.create(free_tcp_port(), superuser_password="lab-superuser-pw")
    try:
        primary.start()
        primary.sql(
            "CREATE ROLE vigie_probe LOGIN PASSWORD 'probe-pw-123' IN ROLE pg_monitor",
            "CREATE ROLE replicator LOGIN REPLICATION PASSWORD 'replicator-pw'",
            "CREATE DATABASE app",
            "CREATE DATABASE reports",
        )
        replica = primary.replica(free_tcp_port(), "replica-1", "replicator", "replicator-pw").start()
        try:
            # streaming, and its first feedback in: a lag can be computed (a deadline, not a timing)
            deadline = time.monotonic() + 60
            query = "SELECT 1 FROM pg_stat_replication WHERE application_name = 'replica-1' AND replay_lsn IS NOT NULL"
            while not primary.sql(query):
                assert time.monotonic() < deadline, "the replica never streamed"
                time.sleep(0.05)
            yield Postgres(primary, replica, "vigie_probe", "probe-pw-123")
        finally:
            replica.remove()
    finally:
        primary.remove()
