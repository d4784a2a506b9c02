"""Screen sharing in Chromium: an extra video line on the existing connections, to browsers and bots."""

from __future__ import annotations

import time

import jsonschema
from playwright.async_api import expect

from p2pconf.bots.bot import Bot, BotOptions
from p2pconf.bots.report import build_report

from .browser import enter_as_guest, frames_from, new_page, screenshot, tile, wait_playing
from .conftest import REPORT_SCHEMA, wait_until
from .org import base_of, guest_link

SHARE = "Bildschirm teilen"
STOP = "Teilen beenden"


async def test_a_shared_screen_is_its_own_tile_in_the_centre_for_browsers_and_bots(org, chromium, loopback, bots):
    link = await guest_link(org, "Bildschirmrunde")
    early = Bot(1, base_of(org), "", BotOptions(invite=link))  # Erste offers to it
    bots.append(early)
    await early.start()
    a = await new_page(chromium)
    await enter_as_guest(a, link, "Erste")
    late = Bot(2, base_of(org), "", BotOptions(invite=link, screen_line=True))  # offers to Erste, screen line recvonly
    bots.append(late)
    await late.start()
    for name in ("bot-1", "bot-2"):
        await wait_playing(tile(a, name).locator("video"), timeout_ms=45_000)

    await a.get_by_role("button", name=SHARE).click()
    await expect(a.get_by_role("button", name=STOP)).to_have_attribute("aria-pressed", "true")
    for bot in (early, late):
        await wait_until(lambda bot=bot: frames_from(bot, "Erste", "screen") > 10, timeout=30)
    report = await early.results()
    assert report["links"]["Erste"]["received"]["screen"]["frames"] > 10
    assert "screen" not in report["links"]["bot-2"]["received"]  # only a screen somebody shared is a link
    # in the run's report, a screen is a link of its own, counted like a camera
    run = build_report([report, await late.results()], stopped_at=time.time())
    jsonschema.validate(run, REPORT_SCHEMA)
    screens = [l for l in run["links"] if l["kind"] == "screen"]
    assert {(l["from"], l["to"]) for l in screens} == {("Erste", "bot-1"), ("Erste", "bot-2")}
    assert all(l["frames"] > 10 and l["kbps"] > 0 for l in screens)

    # a latecomer offers to Erste, who puts the screen on the new connection's screen line
    b = await new_page(chromium)
    await enter_as_guest(b, link, "Zweite")
    screen = tile(b, "Erste – Bildschirm")
    await wait_playing(screen.locator("video"), timeout_ms=30_000)
    await expect(screen).to_have_attribute("aria-current", "true")  # a screen takes the centre
    await expect(b.locator("#stage-name")).to_have_text("Erste – Bildschirm")
    await wait_playing(tile(b, "Erste").locator("video"))  # the camera goes on beside it
    # Chromium's fake screen is 1280x720; the screen's content hint keeps its resolution
    await b.wait_for_function("() => document.getElementById('stage-video').videoWidth >= 1280", timeout=30_000)
    await screenshot(b, "screen-sharing")

    # the browser's own "stop sharing" ends the track: sharing ends everywhere
    await a.evaluate("""() => { const track = window.p2pconf.call.screenTrack;
                                track.stop(); track.dispatchEvent(new Event('ended')); }""")
    await expect(a.get_by_role("button", name=SHARE)).to_have_attribute("aria-pressed", "false", timeout=15_000)
    await expect(tile(b, "Erste – Bildschirm")).to_have_count(0, timeout=15_000)
    await expect(b.locator("#stage-name")).not_to_have_text("Erste – Bildschirm")

    # and the button shares again, this time stopped with the button itself
    await a.get_by_role("button", name=SHARE).click()
    await wait_playing(tile(b, "Erste – Bildschirm").locator("video"), timeout_ms=30_000)
    await a.get_by_role("button", name=STOP).click()
    await expect(tile(b, "Erste – Bildschirm")).to_have_count(0, timeout=15_000)
