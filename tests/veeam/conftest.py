"""The Veeam fake over HTTPS with a trustme CA, and the collector run the way the agent runs it
(one collector kept across runs, each run through the scheduler's run_poll, ending in its
`collection` sample)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme

from agent.api import CollectorContext, Sample, Target
from agent.inventory import Poll
from agent.scheduler import Scheduler
from collectors.veeam import PLUGIN, VeeamCollector
from lab.veeam_fake import User, VeeamFake, server_tls

USER, PASSWORD = "VSGP\\svc-vigie", "lab-veeam-pw-123"
RESTORER, RESTORER_PASSWORD = "VSGP\\svc-restore", "lab-restore-pw-456"
TAGS = {"client": "vsgp", "site": "siege", "device": "veeam"}


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    authority = trustme.CA()
    path = tmp_path_factory.mktemp("veeam-pki") / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return authority, path


@pytest.fixture
def ca_file(ca: tuple[trustme.CA, Path]) -> Path:
    return ca[1]


def make_fake(ca: tuple[trustme.CA, Path], **kwargs: Any) -> VeeamFake:
    users = {USER: User(PASSWORD, "Veeam Backup Viewer"), RESTORER: User(RESTORER_PASSWORD, "Veeam Restore Operator")}
    return VeeamFake(users=users, tls=server_tls(ca[0], "127.0.0.1"), **kwargs)


@pytest.fixture
async def fake(ca: tuple[trustme.CA, Path]) -> AsyncIterator[VeeamFake]:
    server = make_fake(ca)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def _discard(_samples: Any) -> None:
    return None


@dataclass
class Runner:
    """One collector for one backup server, run as the agent runs it; its sleeps are recorded,
    not slept (the 429 waits)."""

    options: dict[str, Any]
    credentials: dict[str, str]
    clock: Callable[[], float] | None = None
    sleeps: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        validated = PLUGIN.options.model_validate(self.options)
        context = CollectorContext("vsgp", "veeam", Path("/nonexistent/vigie-test"), _no_secret,
                                   **({"clock": self.clock} if self.clock else {}))
        self.collector = VeeamCollector(validated, context, sleep=self._sleep)
        self.validated = validated
        self.use_credentials(self.credentials)

    def use_credentials(self, credentials: dict[str, str]) -> None:
        """The device's secret edited: the same collector (its tokens, its memory) sees the new one."""
        target = Target("veeam", "127.0.0.1", credentials=credentials, tags=TAGS)
        self.poll = Poll(target=target, collector="veeam", options=self.validated, interval_s=60, timeout_s=30,
                         jitter_s=0)
        self.scheduler = Scheduler([self.poll], lambda _poll: self.collector, _discard)

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    async def run(self) -> list[Sample]:
        return await self.scheduler.run_poll(self.poll)


def _no_secret(ref: Any) -> str:
    raise KeyError(ref)


def runner(fake: VeeamFake, ca_file: Path, **options: Any) -> Runner:
    credentials = options.pop("credentials", {"username": USER, "password": PASSWORD})
    clock = options.pop("clock", None)
    return Runner({"url": fake.url, "ca_bundle": str(ca_file), **options}, credentials, clock)


def status(samples: list[Sample]) -> dict[str, Any]:
    (collection,) = [s for s in samples if s.measurement == "collection"]
    return dict(collection.fields)


def of(samples: list[Sample], measurement: str) -> dict[str, Sample]:
    """The samples of ``measurement`` by their job or repository name."""
    return {s.tags.get("job") or s.tags.get("repository") or "": s for s in samples if s.measurement == measurement}
