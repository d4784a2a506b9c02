"""The main flows in Firefox ESR (tests/firefox.py): a guest by link in a call with bots, and
screen sharing and chat between Firefox and Chromium. Chromium stays the suite's main browser."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from p2pconf.bots.bot import Bot, BotOptions
from p2pconf.bots.netif import use_host_addresses

from .browser import enter_as_guest, frames_from, launched, new_page, tile, wait_playing
from .conftest import wait_until
from .firefox import SUITE_ADDRESS, firefox_network, launched_firefox
from .org import base_of, guest_link
from .test_browser_chat import HOSTILE, open_chat, send
from .test_browser_screen import SHARE


# A moving picture in place of the screen (getDisplayMedia), for a Firefox that has none.
CANVAS_SCREEN = """const canvas = Object.assign(document.createElement('canvas'), {width: 640, height: 360});
const g = canvas.getContext('2d');
let x = 0;
setInterval(() => { g.fillStyle = '#234'; g.fillRect(0, 0, 640, 360); g.fillStyle = '#fc0';
                    g.fillRect(x = (x + 8) % 600, 150, 40, 40); }, 66);
navigator.mediaDevices.getDisplayMedia = async () => canvas.captureStream(15);"""


@pytest.fixture
def firefox_net():
    """Firefox's network namespace, with a veth pair to the suite's (deleted afterwards)."""
    with firefox_network() as namespace:
        yield namespace


@pytest.fixture
def org_host(firefox_net) -> str:
    return SUITE_ADDRESS  # the server listens where Firefox reaches it


@pytest.fixture
async def firefox(firefox_net, tmp_path):
    async with launched_firefox(firefox_net, tmp_path) as browser:
        yield browser


@pytest.fixture
async def chromium(org):
    """Chromium on the same plain-http address, a secure context all the same (camera, screen)."""
    async with launched(f"--unsafely-treat-insecure-origin-as-secure={base_of(org)}") as browser:
        yield browser


@pytest.fixture
def veth_bots():
    """Bots gather on the suite's end of the veth pair, which Firefox reaches."""
    use_host_addresses([SUITE_ADDRESS])
    yield
    use_host_addresses(None)


async def test_a_guest_in_firefox_calls_with_bots_offering_and_answering(org, firefox, veth_bots, bots):
    link = await guest_link(org, "Fuchsrunde")
    early = Bot(1, base_of(org), "", BotOptions(invite=link))  # Firefox offers to it
    bots.append(early)
    await early.start()
    await firefox.enter_as_guest(link, "Fuchs")
    await firefox.wait_playing("bot-1", timeout=45)
    late = Bot(2, base_of(org), "", BotOptions(invite=link))  # offers to Firefox
    bots.append(late)
    await late.start()
    await firefox.wait_playing("bot-2", timeout=45)
    for bot in (early, late):
        for kind in ("audio", "video"):
            await wait_until(lambda bot=bot, kind=kind: frames_from(bot, "Fuchs", kind) > 10, timeout=30)


async def test_firefox_and_chromium_share_screens_and_chat(org, firefox, chromium):
    link = await guest_link(org, "Zwei Browser")
    page = await new_page(chromium)
    await enter_as_guest(page, link, "Chromium")
    await page.wait_for_function("() => window.p2pconf?.call.joined")
    await firefox.enter_as_guest(link, "Fuchs")  # the newcomer: Firefox offers to Chromium
    await wait_playing(tile(page, "Fuchs").locator("video"), timeout_ms=45_000)
    await firefox.wait_playing("Chromium")

    # Chromium shares its fake screen: in Firefox a tile of its own, in the centre
    await page.get_by_role("button", name=SHARE).click()
    await firefox.wait_playing("Chromium – Bildschirm")
    await firefox.wait_for("return document.getElementById('stage-name').textContent === arguments[0]",
                           "Chromium – Bildschirm", what="the screen in the centre")

    # chat both ways, as text
    await open_chat(page)
    await send(page, HOSTILE)
    await firefox.wait_for("return document.getElementById('chat-unread').textContent === '1'", what="1 unread")
    await firefox.click("chat-toggle")
    shown = await firefox.wait_for("""const p = document.querySelector('#chat-messages li p');
        return p && [p.textContent, document.querySelectorAll('#chat-messages b, #chat-messages img').length,
                     window.pwned === undefined]""", what="the message")
    assert shown == [HOSTILE, 0, True]
    await firefox.screenshot("firefox-screen-and-chat")
    await firefox.type("chat-text", "Antwort aus Firefox")
    await firefox.click_css("#chat-form button[type=submit]")
    await expect(page.locator("#chat-messages li").last).to_contain_text("Antwort aus Firefox")
    await expect(page.locator("#chat-messages li").last.locator(".from")).to_contain_text("Fuchs")

    # Firefox shares too, on its own screen line: headless Firefox finds no screen, so a canvas
    # stands in for what getDisplayMedia would give
    await firefox.js(CANVAS_SCREEN)
    await firefox.click("screen")
    await wait_playing(tile(page, "Fuchs – Bildschirm").locator("video"), timeout_ms=30_000)
