"""Helpers for tests in real Chromium: launch, sign in, find tiles, wait for playing video."""

from __future__ import annotations

import os
import re
import shutil
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, Locator, Page, async_playwright


from .org import PASSWORD

CHROMIUM = os.environ.get("P2PCONF_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",  # a synthetic camera and microphone
    "--use-fake-ui-for-media-stream",  # grant the permission prompt
    "--allow-loopback-in-peer-connection",  # ICE over 127.0.0.1, like the bots
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}


@asynccontextmanager
async def launched(*extra_args: str):
    """Debian's Chromium with fake media; fails (never skips) when it is not installed."""
    if not shutil.which(CHROMIUM):
        raise AssertionError(f"{CHROMIUM} is missing: scripts/test installs Debian's chromium")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args])
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(browser: Browser, viewport: dict = DESKTOP, locale: str = "de-DE") -> Page:
    context = await browser.new_context(viewport=viewport, locale=locale)
    return await context.new_page()


async def sign_in(page: Page, base: str, login: str, password: str = PASSWORD) -> None:
    await page.goto(base + "/login")
    await page.get_by_label("Benutzername").fill(login)
    await page.get_by_label("Passwort").fill(password)
    await page.get_by_role("button", name="Anmelden").click()
    await page.wait_for_url(base + "/")


async def enter_as_guest(page: Page, link: str, name: str) -> None:
    await page.goto(link)
    await page.get_by_label("Anzeigename").fill(name)
    await page.get_by_role("button", name="Beitreten").click()
    await page.wait_for_url("**/r/**")


def tile(page: Page, name: str) -> Locator:
    """A participant's tile: the tile whose name is exactly `name`."""
    return page.locator(".tile").filter(has=page.locator(".name", has_text=re.compile(f"^{re.escape(name)}$")))


async def wait_playing(video: Locator, timeout_ms: int = 20_000) -> None:
    """Bounded wait until the video shows frames and its clock advances."""
    handle = await video.element_handle(timeout=timeout_ms)
    await video.page.wait_for_function("v => v.videoWidth > 0 && v.currentTime > 0.3", arg=handle,
                                       timeout=timeout_ms)
    then = await video.evaluate("v => v.currentTime")
    await video.page.wait_for_function("([v, t]) => v.currentTime > t + 0.3", arg=[handle, then],
                                       timeout=timeout_ms)


def server_frames(page: Page) -> list[str]:
    """Every WebSocket frame the page sends to the server, from now on."""
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: frames.append(str(payload))))
    return frames


async def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


async def mesh_states(page: Page) -> list:
    """Each peer connection of a page's call, for a failing test's message."""
    return await page.evaluate("""() => window.p2pconf ? [...window.p2pconf.mesh.peers.values()].map(
        p => [p.name, p.offerer, p.pc.connectionState, p.pc.iceConnectionState, p.stream.getTracks().length]) : []""")


def frames_from(bot, name: str, kind: str) -> int:
    """Frames of one kind ("video", "screen") a bot has received from the participant `name`."""
    link = next((l for l in bot.links.values() if l.name == name), None)
    meter = link.meters.get(kind) if link else None
    return meter.frames if meter else 0


async def english_start_page(browser, base: str):
    """anna's start page in a browser that prefers English, signed in through the English form."""
    page = await new_page(browser, locale="en-GB")
    await page.goto(base + "/login")
    await page.get_by_label("User name").fill("anna")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(base + "/")
    return page
