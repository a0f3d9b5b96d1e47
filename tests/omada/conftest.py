"""The fake Omada controller every Omada test talks to, started on loopback for the test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from lab.omada_fake import OmadaFake, build_sites

from .test_omada import PASSWORD, SITES, USER


@pytest.fixture
async def fake() -> AsyncIterator[OmadaFake]:
    controller = OmadaFake(build_sites(SITES), USER, PASSWORD)
    await controller.start()
    try:
        yield controller
    finally:
        await controller.stop()
