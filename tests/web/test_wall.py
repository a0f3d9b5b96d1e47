"""The wall in a real browser: Debian's headless chromium (driven by Playwright, no browser of its
own) on the web app the agent serves at ``agent.web_listen`` while it polls the lab. A device the
lab silences turns ``down`` on the open wall within one refresh of the agent knowing it, without a
reload. Screenshots of the wall and of a client page are kept in the test's tmp dir."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from PIL import Image
from playwright.async_api import Page, Playwright, async_playwright

from agent.plugins import Plugins
from agent.runner import Agent
from agent.views import device_statuses

from .conftest import PASSWORDS, Responder, lab_config

CHROMIUM = "/usr/bin/chromium"
# --user-data-dir is Playwright's own argument (launch_persistent_context); --headless too
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
REFRESH_S = 2.0
# the wall's fetch and render on a loaded 2-core machine, on top of the one refresh: short of a
# second refresh, so a wall that needed two would fail
SLACK_S = 1.9


def assert_drawn(path: Path, size: tuple[int, int]) -> None:
    """A real picture: the expected size and many colours, not a blank or single-colour page."""
    with Image.open(path) as image:
        assert image.size == size
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 50, f"{path}: {len(colours or [])} colours"


def chromium(playwright: Playwright, tmp_path: Path, **options: object):  # noqa: ANN201 - a context manager
    return playwright.chromium.launch_persistent_context(
        str(tmp_path / "chromium"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS, **options)


async def count_of(page: Page, selector: str, count: int, within_s: float = 20) -> None:
    """Wait until ``count`` elements match, polled from here: the page's own CSP forbids the
    string evaluation Playwright's wait_for_function needs, and the test keeps the CSP on."""
    deadline = time.monotonic() + within_s
    while (found := await page.locator(selector).count()) != count:
        assert time.monotonic() < deadline, f"{selector}: {found}, not {count}"
        await asyncio.sleep(0.1)


async def sign_in(page: Page, base: str, user: str) -> None:
    await page.goto(f"{base}/login")
    await page.fill("input[name=user]", user)
    await page.fill("input[name=password]", PASSWORDS[user])
    await page.click("button[type=submit]")
    await page.wait_for_load_state()


async def test_the_wall_shows_a_lab_fault_within_one_refresh(tmp_path: Path, responder: Responder) -> None:
    config = lab_config(tmp_path, responder, web_listen="127.0.0.1:0", refresh_s=REFRESH_S, interval_s=2)
    agent = Agent(config, state_dir=tmp_path / "state", plugins=Plugins.discover())
    await agent.start()
    try:
        base = f"http://127.0.0.1:{agent.web.port}"
        async with async_playwright() as playwright:
            browser = await chromium(playwright, tmp_path, viewport={"width": 1920, "height": 1080})
            page = await browser.new_page()
            await sign_in(page, base, "noc")
            assert page.url == f"{base}/wall"
            # every device of the lab answered: four tiles up, reloaded in place by the wall itself
            await count_of(page, ".tile[data-state=up]", 4)
            await page.evaluate("window.vigieNotReloaded = true")
            wall_ok = tmp_path / "wall-ok.png"
            await page.screenshot(path=str(wall_ok))
            assert_drawn(wall_ok, (1920, 1080))

            responder.silence("alpha/alpha-core")  # `vigie lab fault alpha/alpha-core down`
            faulted_at = time.monotonic()
            files = agent.files
            known_at = None
            while known_at is None:
                statuses = {s.device: s.state for s in device_statuses(files)}
                if statuses.get("alpha-core") == "down":
                    known_at = time.monotonic()
                else:
                    assert time.monotonic() - faulted_at < 15, "the agent never saw the fault"
                    await asyncio.sleep(0.05)
            await page.wait_for_selector(".tile[data-device=alpha-core][data-state=down]",
                                         timeout=(REFRESH_S + SLACK_S) * 1000)
            shown_at = time.monotonic()
            assert shown_at - known_at <= REFRESH_S + SLACK_S
            assert await page.evaluate("window.vigieNotReloaded === true")  # refreshed in place
            size = await page.evaluate(
                "parseFloat(getComputedStyle(document.querySelector('.tile[data-state=down]')).fontSize)")
            assert size >= 24  # read from across the room
            # the worst first: alpha's section before beta's, alpha-core first in its site
            first_tile = await page.get_attribute(".client .tile", "data-device")
            assert first_tile == "alpha-core"
            assert await page.get_attribute(".client", "data-client") == "alpha"
            # its alert with its age and its ticket, and the last hour's strip
            await page.wait_for_selector("li[data-alert=device_unreachable] >> text=ticket", timeout=10_000)
            await page.wait_for_selector("#changes li[data-change=fired]", timeout=10_000)
            await page.wait_for_selector("#changes li[data-change='stopped answering'] >> text=alpha-core",
                                         timeout=10_000)
            wall_fault = tmp_path / "wall-fault.png"
            await page.screenshot(path=str(wall_fault))
            assert_drawn(wall_fault, (1920, 1080))

            await page.goto(f"{base}/clients/alpha")
            assert await page.get_attribute("#devices tr[data-device=alpha-core] .level", "class") == "level level-down"
            client_page = tmp_path / "client-alpha.png"
            await page.screenshot(path=str(client_page), full_page=True)
            with Image.open(client_page) as image:
                assert image.size[0] == 1920 and image.size[1] >= 1080
            assert_drawn(client_page, Image.open(client_page).size)
            await browser.close()

            # beta's DSI, in a browser of its own: its client's page, its wall, nothing of alpha
            dsi = await chromium(playwright, tmp_path / "dsi")
            page = await dsi.new_page()
            await sign_in(page, base, "dsi-beta")
            assert page.url == f"{base}/clients/beta"
            answer = await page.goto(f"{base}/clients/alpha")
            assert answer is not None and answer.status == 404
            await page.goto(f"{base}/wall")
            await count_of(page, ".tile", 2)
            assert "alpha" not in (await page.content()).lower()
            # the session ends (cookie gone): the next refresh shows the login form, not tiles of nothing
            await dsi.clear_cookies()
            await page.wait_for_url(f"{base}/login", timeout=(REFRESH_S + SLACK_S) * 1000)
            await dsi.close()
    finally:
        responder.silence()
        await agent.stop()
    print(f"fault known -> shown: {shown_at - known_at:.2f} s; screenshots in {tmp_path}")
