"""A lab day in a state directory (tests/report/lab_day.py, shared by the module's tests), and a
real SMTP server on loopback: aiosmtpd requiring STARTTLS (trustme certificate) and AUTH."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from agent.config import Config, load_config
from agent.statedir import StateDir
from tests.report import lab_day

SMTP_USER, SMTP_PASSWORD = "vigie", "s3cret-smtp"  # the password lab_day writes in the secrets file


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Mailbox:
    """What the server saw: each message's envelope and content, the logins, and whether the
    session was encrypted when the message came."""

    messages: list[tuple[str, list[str], bytes, bool]] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)  # (user, accepted)

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content,
                              session.ssl is not None))
        return "250 OK"


@dataclass
class SmtpServer:
    port: int
    ca_file: Path
    mailbox: Mailbox
    tls: ssl.SSLContext
    controller: Controller | None = None

    def start(self) -> None:
        mailbox = self.mailbox

        def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
            ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == SMTP_USER \
                and auth_data.password.decode() == SMTP_PASSWORD
            mailbox.logins.append((auth_data.login.decode() if isinstance(auth_data, LoginPassword) else "?", ok))
            return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535 itself

        self.controller = Controller(
            mailbox, hostname="127.0.0.1", port=self.port, tls_context=self.tls, require_starttls=True,
            auth_required=True, auth_require_tls=True, authenticator=authenticator,
        )
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> tuple[trustme.CA, Path, ssl.SSLContext]:
    ca = trustme.CA()
    folder = tmp_path_factory.mktemp("pki")
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return ca, ca_file, context


@pytest.fixture
def smtp(pki) -> Iterator[SmtpServer]:
    _, ca_file, context = pki
    server = SmtpServer(free_port(), ca_file, Mailbox(), context)
    server.start()
    yield server
    server.stop()


@dataclass(frozen=True)
class Lab:
    folder: Path
    config_file: Path
    secrets_file: Path
    config: Config
    files: StateDir


def make_lab(folder: Path, ca_file: Path, smtp_port: int, **smtp_options) -> Lab:
    config_file, secrets_file = lab_day.write_config(folder, smtp_port=smtp_port, ca_bundle=ca_file, **smtp_options)
    config = load_config(config_file, secrets_file)
    return Lab(folder, config_file, secrets_file, config, StateDir(folder / "state"))


@pytest.fixture(scope="module")
def lab_day_state(tmp_path_factory, pki) -> Path:
    """The simulated day's state directory, written once per module."""
    folder = tmp_path_factory.mktemp("lab-day")
    lab = make_lab(folder, pki[1], smtp_port=1)
    asyncio.run(lab_day.simulate(lab.config, lab.files))
    return lab.files.path


@pytest.fixture(scope="module")
def written_lab(tmp_path_factory, pki, lab_day_state) -> Lab:
    """The lab day's state, for the tests that only write reports (no SMTP server)."""
    import shutil

    folder = tmp_path_factory.mktemp("written")
    shutil.copytree(lab_day_state, folder / "state")
    return make_lab(folder, pki[1], smtp_port=1)


@pytest.fixture
def lab(tmp_path, pki, smtp, lab_day_state) -> Lab:
    """The lab day's state (copied: each test archives its own reports), its config pointing at
    the test's SMTP server."""
    import shutil

    shutil.copytree(lab_day_state, tmp_path / "state")
    return make_lab(tmp_path, pki[1], smtp.port)
