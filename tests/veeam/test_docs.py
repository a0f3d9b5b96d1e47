"""Every field the collector emits is in docs/METRICS.md's Veeam tables, with its documented type
(a later task draws dashboards from those tables), and every documented field is emitted."""

from __future__ import annotations

from pathlib import Path

from lab.veeam_fake import VeeamFake
from tests.metrics_doc import check, documented

from .conftest import runner, status


async def test_every_field_is_documented_with_its_type(fake: VeeamFake, ca_file: Path) -> None:
    fake.fail_job()  # a failed job has a message: every field has a value somewhere
    samples = await runner(fake, ca_file, api_version="1.3-rev1").run()
    assert status(samples)["status"] == "ok"
    tables = documented("veeam")
    assert set(tables) == {"veeam_job", "veeam_repository", "veeam_server", "veeam_backup_object"}
    seen = check(samples, tables)
    assert {(m, f) for m, table in tables.items() for f in table} - seen == set()
