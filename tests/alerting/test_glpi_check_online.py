"""`vigie check-config --online` (a subprocess, as an operator runs it) against the fake GLPI: it
logs in and names what the API user may not do, before any alert needs it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from lab.glpi_fake import ALL_TICKET_RIGHTS, TICKET_CHANGEPRIORITY, FakeGlpi
from tests.e2e.helpers import APP_TOKEN, USER_TOKEN, device, glpi_ticketing, unreachable_rule, write_estate

VIGIE = str(Path(sys.executable).with_name("vigie"))


async def check_config(tmp_path: Path, fake: FakeGlpi, *extra: str) -> tuple[int, str]:
    config, secrets = write_estate(
        tmp_path, {"vsgp": [device("sw-1", 9)]}, [unreachable_rule()], {"vsgp": glpi_ticketing(fake.url, "vsgp")}
    )
    proc = await asyncio.create_subprocess_exec(
        VIGIE, "check-config", str(config), "--secrets", str(secrets), *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def test_check_config_online_names_the_missing_right_and_the_priority_glpi_will_set(tmp_path):
    fake = FakeGlpi(app_token=APP_TOKEN, user_tokens={USER_TOKEN: 2},
                    ticket_rights=ALL_TICKET_RIGHTS & ~TICKET_CHANGEPRIORITY, strip_authorization=True)
    await fake.start()
    try:
        rc, out = await check_config(tmp_path, fake, "--online")
    finally:
        await fake.stop()
    assert rc == 2, out
    assert "vsgp: tickets: glpi: ok: log in: session opened with the user token in the user_token query" in out
    assert "vsgp: tickets: glpi: ok: create tickets in entity 0" in out
    assert ("vsgp: tickets: glpi: PROBLEM: priority of critical tickets: critical alerts land in GLPI with "
            "priority 5 (sent 6)") in out
    assert fake.tickets == {} and fake.sessions == {}  # read-only, and the session was closed


async def test_check_config_online_passes_on_a_glpi_that_allows_what_vigie_needs(tmp_path):
    fake = FakeGlpi(app_token=APP_TOKEN, user_tokens={USER_TOKEN: 2})
    await fake.start()
    try:
        rc, out = await check_config(tmp_path, fake, "--online")
    finally:
        await fake.stop()
    assert rc == 0, out
    assert "PROBLEM" not in out and out.count("vsgp: tickets: glpi: ok:") >= 9
