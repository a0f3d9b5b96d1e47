"""One snmpsim per test module (its `LAB_DEVICES`: community -> recording) and a fake GLPI per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from lab.glpi_fake import FakeGlpi
from lab.snmpsim import SnmpLab

from .helpers import APP_TOKEN, USER_TOKEN


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest) -> Iterator[SnmpLab]:
    with SnmpLab(request.module.LAB_DEVICES) as running:
        yield running


@pytest.fixture
async def glpi() -> AsyncIterator[FakeGlpi]:
    fake = FakeGlpi(app_token=APP_TOKEN, user_tokens={USER_TOKEN: 2})
    await fake.start()
    yield fake
    await fake.stop()
