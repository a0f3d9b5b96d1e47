"""Store outage under load: victoria-metrics stopped, the agent SIGTERMed and restarted in the
middle, every point there exactly once afterwards, hostile tags intact (tests/drills/store_outage.py;
the 10-minute outage runs in bench/bench_drills.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.drills.store_outage import drill
from tests.stores.conftest import VM_BINARY


@pytest.mark.timeout(200)
async def test_every_point_is_there_once_after_an_outage_and_a_restart(tmp_path: Path) -> None:
    if not Path(VM_BINARY).exists():
        pytest.fail("victoria-metrics missing: apt-get install -y victoria-metrics (Makefile APT_PACKAGES)")
    result = await drill(tmp_path, outage_s=6.0, rate=250.0)
    assert result.sent_during_outage > 0  # the outage was under load
    assert result.wrong_tags == []
    assert result.missing == [] and result.duplicates == 0
    assert result.stored == result.sent
