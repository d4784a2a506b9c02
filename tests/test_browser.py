"""Real Chromium (Debian's, driven by Playwright) against the real server and a bot."""

from __future__ import annotations

import os
import shutil

import pytest
from playwright.async_api import async_playwright

from p2pconf.bots.bot import Bot, BotOptions
from p2pconf.bots.netif import use_host_addresses

from .conftest import wait_until
from .org import signed_in

CHROMIUM = os.environ.get("P2PCONF_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",  # a synthetic camera and microphone
    "--use-fake-ui-for-media-stream",  # grant the permission prompt
    "--allow-loopback-in-peer-connection",  # ICE over 127.0.0.1, like the bots
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


@pytest.fixture
async def chromium():
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: scripts/test installs Debian's chromium")  # never a silent skip
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
def loopback():
    use_host_addresses(["127.0.0.1"])
    yield
    use_host_addresses(None)


async def test_guest_in_chromium_and_a_bot_see_and_hear_each_other(org, chromium, loopback):
    anna = await signed_in(org, "anna")
    _, made = await anna.json("POST", "/api/rooms", {"name": "Browser und Bot"})
    link = made["invite"]["link"]
    bot = Bot(1, anna.base, "", BotOptions(invite=link))
    await bot.start()
    try:
        page = await (await chromium.new_context()).new_page()
        await page.goto(link)
        await page.get_by_label("Anzeigename").fill("Gast im Browser")
        await page.get_by_role("button", name="Beitreten").click()
        await page.wait_for_url("**/r/**")
        tile = page.get_by_role("figure", name="bot-1")
        video = tile.locator("video")
        await video.wait_for(timeout=15_000)
        await page.wait_for_function(
            "v => v.videoWidth > 0 && v.currentTime > 0.5", arg=await video.element_handle(), timeout=15_000)
        first = await video.evaluate("v => v.currentTime")
        await page.wait_for_function("([v, t]) => v.currentTime > t + 0.5",
                                     arg=[await video.element_handle(), first], timeout=10_000)
        # and the bot receives the browser's synthetic camera and microphone
        await wait_until(lambda: bot.flowing() == 2, timeout=15)
        link_ = next(iter(bot.links.values()))
        assert link_.name == "Gast im Browser" and not link_.offerer  # the newcomer (browser) offered
        await wait_until(lambda: link_.meters["video"].frames > 10, timeout=10)
    finally:
        await bot.close()
