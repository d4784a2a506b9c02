"""Final refusals in real Chromium: the page stops for good and says why (docs/protocol.md, "Closing").

A close with 4000, 4001, 4003, 4009 or 4029, or `forbidden` in answer to `join`, is final:
no new WebSocket, every RTCPeerConnection closed, camera and microphone released, the call
view gone, and the reason in words. 1001 and lost connections are retried (test_browser.py).
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from playwright.async_api import Page, expect

from p2pconf import protocol
from p2pconf.appkeys import HUB, STORE
from p2pconf.bots.bot import Bot, BotOptions
from p2pconf.i18n import TEXTS
from p2pconf.server import close_sockets

from .browser import enter_as_guest, new_page, screenshot, sign_in, tile
from .conftest import wait_until
from .org import base_of, guest_link, signed_in

PROTOCOL_JS = Path(__file__).resolve().parent.parent / "web" / "static" / "js" / "protocol.js"

# Before the page's own scripts: keep every local track and every RTCPeerConnection the page
# ever makes, so a test can check all of them (not only those the page still knows of).
# (Page code is passed as functions, "() => ...", never as bare expressions: Playwright polls
# an expression with eval, which the pages' Content-Security-Policy forbids.)
KEEP_MEDIA = """
window.localTracks = [];
window.peerConnections = [];
const getUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = async (constraints) => {
  const stream = await getUserMedia(constraints);
  window.localTracks.push(...stream.getTracks());
  return stream;
};
const Native = window.RTCPeerConnection;
window.RTCPeerConnection = class extends Native {
  constructor(...args) { super(...args); window.peerConnections.push(this); }
};
"""

ALL_MEDIA_RELEASED = """() => window.localTracks.length > 0
    && window.localTracks.every(t => t.readyState === 'ended')
    && window.peerConnections.every(pc => pc.connectionState === 'closed')"""


async def watched_page(chromium, **kwargs) -> tuple[Page, list[str]]:
    """A page that keeps its media (KEEP_MEDIA) and a list of every WebSocket it opens."""
    page = await new_page(chromium, **kwargs)
    await page.add_init_script(KEEP_MEDIA)
    opened: list[str] = []
    page.on("websocket", lambda ws: opened.append(ws.url))
    return page, opened


async def no_new_socket(opened: list[str], count: int, seconds: float) -> None:
    """Bounded watch: fail as soon as the page opens a WebSocket beyond the first `count`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert len(opened) == count, f"the page opened another WebSocket after a final refusal: {opened}"
        await asyncio.sleep(0.25)
    assert len(opened) == count, opened


async def media_summary(page: Page) -> list:
    """Every local track and peer connection of the page, for a failing test's message."""
    return await page.evaluate("""() => [window.localTracks.map(t => [t.kind, t.readyState]),
                                         window.peerConnections.map(pc => pc.connectionState)]""")


async def assert_stopped(page: Page, text: str, timeout_ms: int) -> None:
    """Within `timeout_ms`: `text` in the banner, every track ended, every connection closed,
    no call view."""
    await expect(page.locator("#banner")).to_have_text(text, timeout=timeout_ms)
    released = await page.evaluate(ALL_MEDIA_RELEASED)
    assert released, f"media still held after the refusal: {await media_summary(page)}"
    await expect(page.locator(".tile")).to_have_count(0)
    await expect(page.locator(".call")).to_be_hidden()


def test_the_page_knows_the_servers_final_codes_and_has_words_for_each():
    js = re.sub(r"//.*", "", PROTOCOL_JS.read_text())  # code only, no comments
    values = {name: int(code) for name, code in re.findall(r"export const (CLOSE_\w+) = (\d+);", js)}
    table = re.search(r"FINAL_CLOSE_CODES = Object\.freeze\(\{(.*?)\}\);", js, re.S).group(1)
    final = {values[name]: word for name, word in re.findall(r"\[(CLOSE_\w+)\]: '([\w-]+)'", table)}
    assert sorted(final) == sorted(protocol.FINAL_CLOSE_CODES)
    assert values["CLOSE_SIGNED_OUT"] == protocol.CLOSE_SIGNED_OUT
    assert re.search(r"FINAL_JOIN_ERRORS = Object.freeze\(\['forbidden'\]\)", js)
    for words in TEXTS.values():
        for word in [*final.values(), "forbidden", "other"]:
            assert words.get(f"refused-{word}"), f"no text for refused-{word}"
    assert "abgemeldet" in TEXTS["de"]["refused-signed-out"] and "signed out" in TEXTS["en"]["refused-signed-out"]


async def test_a_revoked_link_ends_the_guests_call_for_good(org, chromium, loopback, bots):
    anna = await signed_in(org, "anna")
    _, made = await anna.json("POST", "/api/rooms", {"name": "Widerruf"})
    link = made["invite"]["link"]
    # a cheap partner (audio only), so the guest has a live peer connection to lose; a guest of
    # the same link, the bot is refused too
    bot = Bot(1, base_of(org), "", BotOptions(invite=link, video=None, audio_ms=60))
    bots.append(bot)
    await bot.start()
    guest, opened = await watched_page(chromium)
    await enter_as_guest(guest, link, "Gast")
    # in the call: the camera on and a live connection to the bot
    await guest.wait_for_function("""() => window.localTracks.some(t => t.kind === 'video' && t.readyState === 'live')
        && window.peerConnections.some(pc => pc.connectionState === 'connected')""", timeout=30_000)
    await wait_until(lambda: bot.links, timeout=10)
    assert len(opened) == 1, opened

    status, revoked = await anna.json("DELETE", f"/api/invites/{made['invite']['id']}")  # closes with 4003
    assert status == 200 and revoked["state"] == "revoked"
    await assert_stopped(guest, "Der Einladungslink wurde zurückgezogen.", timeout_ms=5_000)
    await expect(guest.get_by_role("link", name="Erneut anmelden")).to_be_hidden()  # a guest cannot sign in
    await screenshot(guest, "link-revoked-desktop")
    await no_new_socket(opened, 1, seconds=30)
    await expect(guest.locator("#banner")).to_have_text("Der Einladungslink wurde zurückgezogen.")


async def test_forbidden_after_a_reconnect_is_final(org, chromium):
    link = await guest_link(org, "Ohne Sitzung")
    page, opened = await watched_page(chromium)
    await enter_as_guest(page, link, "Gast")
    await expect(tile(page, "Gast")).to_be_visible(timeout=10_000)  # joined: the own tile is drawn
    await page.context.clear_cookies()  # the guest session is gone, as when it expires
    await close_sockets(org.app)  # 1001, a server restart: the page reconnects, but may not join
    await assert_stopped(page, "Sie dürfen diesen Raum nicht betreten.", timeout_ms=15_000)
    assert len(opened) == 2, opened  # the first socket and one reconnect, refused
    await no_new_socket(opened, 2, seconds=15)


async def test_the_start_page_stops_when_she_signs_out_in_another_tab(org, chromium):
    base = base_of(org)
    page, opened = await watched_page(chromium)
    await sign_in(page, base, "anna")
    await page.wait_for_function("() => window.localTracks.some(t => t.kind === 'video' && t.readyState === 'live')",
                                 timeout=10_000)  # the own picture
    await wait_until(lambda: org.app[HUB].sessions_of("anna"), timeout=10)  # listening for calls
    count = len(opened)
    other = await page.context.new_page()  # the same browser, so the same session
    await other.goto(base + "/")
    await other.get_by_role("button", name="Abmelden").click()
    await other.wait_for_url("**/login")
    # the server closes the first tab's socket with 4001
    await expect(page.locator("#banner")).to_have_text("Sie wurden abgemeldet.", timeout=5_000)
    again = page.get_by_role("link", name="Erneut anmelden")
    await expect(again).to_be_visible()
    assert await again.get_attribute("href") == "/login"
    await expect(page.get_by_role("button", name="Anruf starten")).to_be_hidden()
    assert await page.evaluate("() => window.localTracks.every(t => t.readyState === 'ended')"), \
        await media_summary(page)
    await screenshot(page, "signed-out-desktop")
    await no_new_socket(opened, count, seconds=12)


async def test_a_disabled_user_is_signed_out_of_the_call_in_english(org, chromium):
    base = base_of(org)
    page, opened = await watched_page(chromium, locale="en-GB")
    await page.goto(base + "/login")
    await page.get_by_label("User name").fill("anna")
    await page.get_by_label("Password").fill("correct horse battery")
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(base + "/")
    anna = await signed_in(org, "anna")
    _, made = await anna.json("POST", "/api/rooms", {"name": "Abgemeldet"})
    await page.goto(f"{base}/r/{made['room']['id']}")
    await expect(tile(page, "Anna Berg")).to_be_visible(timeout=10_000)
    await wait_until(lambda: [s for s in org.app[HUB].sessions_of("anna") if s.room is not None], timeout=10)
    count = len(opened)
    await org.app[STORE].disable_user("anna")  # as `p2pconf users disable anna` does: the server closes with 4001
    await assert_stopped(page, "You have been signed out.", timeout_ms=5_000)
    again = page.get_by_role("link", name="Sign in again")
    await expect(again).to_be_visible()
    assert await again.get_attribute("href") == "/login"
    await expect(page.get_by_role("link", name="Back to the start page")).to_be_hidden()
    await no_new_socket(opened, count, seconds=10)
