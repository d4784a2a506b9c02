"""The browser client in real Chromium (Debian's, driven by Playwright), with bots."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import expect

from p2pconf.bots.bot import Bot, BotOptions
from p2pconf.bots.client import SignalingClient

from .browser import (PHONE, english_start_page, enter_as_guest, mesh_states, new_page, screenshot,
                      sign_in, tile, wait_playing)
from p2pconf.appkeys import HUB
from p2pconf.server import close_sockets

from .conftest import wait_until
from .org import base_of, guest_link


@pytest.fixture
def org_config(org_config):
    org_config.ring_timeout_s = 30  # a browser on a loaded machine may take seconds to answer
    return org_config


async def test_a_calls_b_with_video_and_both_see_each_other(org, chromium, loopback):
    base = base_of(org)
    a, b = await new_page(chromium), await new_page(chromium)
    await sign_in(a, base, "anna")
    await sign_in(b, base, "bert")
    await expect(a.get_by_text("Entscheidung merken")).to_be_visible()  # the permission explanation
    await screenshot(a, "start-desktop")
    await a.locator("#search").fill("bert")  # the start page lists contacts; others are searched for
    await a.get_by_role("checkbox", name="Bert Kraus", exact=True).check()
    await a.get_by_role("radio", name="Audio und Video").check()
    await a.get_by_role("button", name="Anruf starten").click()
    await a.wait_for_url("**/r/**")
    await expect(b.get_by_role("button", name="Annehmen")).to_be_visible(timeout=10_000)
    await screenshot(b, "incoming-call-desktop")
    await b.get_by_role("button", name="Annehmen").click()
    await b.wait_for_url("**/r/**")
    await wait_playing(tile(a, "Bert Kraus").locator("video"))
    await wait_playing(tile(b, "Anna Berg").locator("video"))
    await expect(a.get_by_text("Bert Kraus: angenommen")).to_be_visible()
    await screenshot(a, "call-desktop")


async def test_audio_only_call_carries_no_video_tracks(org, chromium, loopback):
    base = base_of(org)
    a, b = await new_page(chromium), await new_page(chromium)
    await sign_in(a, base, "anna")
    await sign_in(b, base, "bert")
    await a.locator("#search").fill("bert")
    await a.get_by_role("checkbox", name="Bert Kraus", exact=True).check()
    await a.get_by_role("radio", name="Nur Audio").check()
    await a.get_by_role("button", name="Anruf starten").click()
    await b.get_by_role("button", name="Annehmen").click()
    await b.wait_for_url("**/r/**")
    count_video = """() => {
        const pcs = [...window.p2pconf.mesh.peers.values()].map(p => p.pc);
        if (!pcs.length || pcs.some(pc => pc.connectionState !== 'connected')) return -1;
        return pcs.flatMap(pc => [...pc.getSenders(), ...pc.getReceivers()])
                  .filter(x => x.track && x.track.kind === 'video').length
             + pcs.filter(pc => pc.remoteDescription.sdp.includes('m=video')).length;
    }"""
    for page in (a, b):
        # a function, not an expression: Playwright polls expressions with eval, which the CSP forbids
        await page.wait_for_function(f"() => ({count_video})() === 0", timeout=15_000)
        await expect(page.get_by_role("button", name="Video ausschalten")).to_be_hidden()


async def test_guest_room_link_dialog_and_a_guest_joining_by_link(org, chromium, loopback):
    base = base_of(org)
    anna, guest = await new_page(chromium), await new_page(chromium, PHONE)
    await sign_in(anna, base, "anna")
    await anna.get_by_role("button", name="externe Teilnehmer einladen").click()
    await anna.get_by_label("Raumname").fill("Kunde Meier")
    await anna.get_by_role("button", name="OK").click()
    await anna.wait_for_url("**/r/**")
    field = anna.get_by_label("Einladungslink")
    await expect(field).to_be_visible()
    assert await field.get_attribute("readonly") is not None
    link = await field.input_value()
    assert "/j/" in link
    await expect(anna.get_by_role("button", name="Link kopieren")).to_be_visible()
    await screenshot(anna, "invite-link-desktop")
    await anna.get_by_role("button", name="Schließen").click()
    await guest.goto(link)
    await screenshot(guest, "guest-name-phone")
    await enter_as_guest(guest, link, "Frau <b>Meier</b>")
    await wait_playing(tile(anna, "Frau <b>Meier</b>").locator("video"))  # the name, as text
    await wait_playing(tile(guest, "Anna Berg").locator("video"))
    await screenshot(guest, "call-phone")


async def test_six_way_mesh_of_three_browsers_and_three_bots(org, chromium, loopback, bots):
    link = await guest_link(org, "Sechs")
    pages = [await new_page(chromium) for _ in range(3)]
    for i, page in enumerate(pages, start=1):
        await enter_as_guest(page, link, f"Browser {i}")
    for i in range(1, 4):
        bot = Bot(i, base_of(org), "", BotOptions(invite=link))
        bots.append(bot)
        await bot.start()
    others = {f"Browser {i}" for i in range(1, 4)} | {f"bot-{i}" for i in range(1, 4)}
    for i, page in enumerate(pages, start=1):
        for name in sorted(others - {f"Browser {i}"}):
            try:
                await wait_playing(tile(page, name).locator("video"), timeout_ms=45_000)
            except Exception:
                states = [await mesh_states(p) for p in pages]
                bot_states = [[(l.name, l.offerer, l.states) for l in b.links.values()] for b in bots]
                raise AssertionError(f"Browser {i} never played {name}: {states} {bot_states}") from None
    # every bot gets audio and video from each of the three browsers (and from the other bots)
    await wait_until(lambda: all(b.flowing() == 10 for b in bots), timeout=45)
    await screenshot(pages[0], "six-way-desktop")

    first = pages[0]
    # clicking a tile puts that participant in the centre
    await tile(first, "bot-2").click()
    await expect(tile(first, "bot-2")).to_have_attribute("aria-current", "true")
    await expect(first.locator("#stage-name")).to_have_text("bot-2")
    await tile(first, "Browser 1").click()  # yourself, too
    await expect(tile(first, "Browser 1")).to_have_attribute("aria-current", "true")

    # muting is seen by the others: a tile indicator in browsers, the state in bots
    await first.get_by_role("button", name="Mikrofon ausschalten").click()
    await first.get_by_role("button", name="Video ausschalten").click()
    await expect(first.get_by_role("button", name="Mikrofon einschalten")).to_be_visible()
    for page in pages[1:]:
        await expect(tile(page, "Browser 1")).to_contain_text("Mikrofon aus")
        await expect(tile(page, "Browser 1")).to_contain_text("Kamera aus")
    await wait_until(lambda: all(
        any(l.name == "Browser 1" and l.media.get("mic") is False and l.media.get("cam") is False
            for l in b.links.values()) for b in bots), timeout=10)

    # "Beenden" takes the participant out of everyone's tiles
    await pages[2].get_by_role("button", name="Beenden").click()
    for page in pages[:2]:
        await expect(tile(page, "Browser 3")).to_have_count(0, timeout=10_000)
    await wait_until(lambda: all(all(l.name != "Browser 3" for l in b.links.values()) for b in bots), timeout=10)


async def test_a_seventh_joiner_is_told_the_room_is_full(org, chromium):
    hub = org.app[HUB]
    assert hub.max_room_size == 6  # the server's default, not a test setting
    link = await guest_link(org, "Voll")
    heard: list[dict] = []  # every message the first six get after joining

    async def listen(msg):
        heard.append(msg)

    six = [SignalingClient(base_of(org), listen) for _ in range(6)]  # protocol clients: no media, cheap
    try:
        for i, guest in enumerate(six, start=1):
            entered = await guest.enter_invite(link, f"Gast {i}")
            await guest.connect()
            await guest.join(entered["room"]["id"], f"Gast {i}")
        room = entered["room"]["id"]
        assert len(hub.rooms[room].members) == 6
        late = await new_page(chromium, PHONE)
        await enter_as_guest(late, link, "Zu spät")
        # the limit the page names is the server's (its welcome), and nothing else changed
        await expect(late.locator("#banner")).to_have_text(
            "Der Raum ist voll: Es können höchstens 6 Personen teilnehmen.", timeout=10_000)
        await expect(late.locator(".tile")).to_have_count(0)
        await screenshot(late, "room-full-phone")
        assert len(hub.rooms[room].members) == 6
        assert "Zu spät" not in [m["peer"]["name"] for m in heard if m["type"] == "peer-joined"]
    finally:
        await asyncio.gather(*(guest.close() for guest in six), return_exceptions=True)


NO_CAMERA = """
const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = (constraints) => constraints.video
    ? Promise.reject(new DOMException('Permission denied', 'NotAllowedError'))
    : original(constraints);
"""


async def test_without_a_camera_the_guest_is_offered_audio_only(org, chromium, loopback, bots):
    link = await guest_link(org, "Ohne Kamera")
    bot = Bot(1, base_of(org), "", BotOptions(invite=link))
    bots.append(bot)
    await bot.start()
    page = await new_page(chromium)
    await page.add_init_script(NO_CAMERA)
    await enter_as_guest(page, link, "Ohne Kamera")
    await page.get_by_role("button", name="Nur mit Audio teilnehmen").click()
    await wait_playing(tile(page, "bot-1").locator("video"))  # still sees the others
    await wait_until(lambda: bot.links and next(iter(bot.links.values())).meters.get("audio") is not None
                     and next(iter(bot.links.values())).meters["audio"].frames > 10, timeout=20)
    only = next(iter(bot.links.values()))
    assert "video" not in only.meters and only.media == {"mode": "audio-only", "mic": True, "cam": False}


async def test_english_when_the_browser_prefers_it(org, chromium):
    base = base_of(org)
    page = await english_start_page(chromium, base)
    await expect(page.get_by_role("button", name="Start call")).to_be_visible()
    await expect(page.get_by_role("radio", name="Audio only")).to_be_visible()
    german = await new_page(chromium, PHONE)
    await german.goto(base + "/login")
    await expect(german.get_by_role("button", name="Anmelden")).to_be_visible()
    await screenshot(german, "sign-in-phone")


async def test_a_server_restart_is_resumed_and_the_call_never_stops(org, chromium, loopback):
    """Every WebSocket dropped (1012, a restart): both pages show the banner, resume their
    sessions under the same ids, keep their RTCPeerConnections, and the video never stops."""
    link = await guest_link(org, "Wackelig")
    a, b = await new_page(chromium), await new_page(chromium)
    await enter_as_guest(a, link, "Erste")
    await enter_as_guest(b, link, "Zweite")
    video = tile(a, "Zweite").locator("video")
    await wait_playing(video)
    # remember every banner text the page shows, however briefly; mark the peer connection
    await a.evaluate("""() => { window.banners = [];
        new MutationObserver(() => window.banners.push(document.getElementById('banner').textContent))
            .observe(document.getElementById('banner'), {childList: true, characterData: true, subtree: true});
        for (const peer of window.p2pconf.mesh.peers.values()) peer.pc.marked = true; }""")
    ids = [await page.evaluate("() => window.p2pconf.conn.id") for page in (a, b)]
    # the remote video's decoded frames, every 100 ms, through the restart
    await video.evaluate("""v => { window.frames_seen = [];
        window.sampling = setInterval(() => window.frames_seen.push(
            [performance.now(), v.getVideoPlaybackQuality().totalVideoFrames]), 100); }""")
    await close_sockets(org.app)  # the server drops every WebSocket with 1012
    await a.wait_for_function("() => window.banners.some(t => t.includes('Verbindung zum Server unterbrochen'))",
                              timeout=10_000)
    await expect(a.locator("#banner")).to_be_hidden(timeout=15_000)  # back again
    assert [await page.evaluate("() => window.p2pconf.conn.id") for page in (a, b)] == ids
    assert await a.evaluate("() => [...window.p2pconf.mesh.peers.values()].every((p) => p.pc.marked)")
    await expect(tile(a, "Zweite")).to_have_count(1)
    count = await a.evaluate("() => window.frames_seen.length")
    await a.wait_for_function("n => window.frames_seen.length >= n + 10", arg=count)  # a second more of samples
    samples = await a.evaluate("() => { clearInterval(window.sampling); return window.frames_seen; }")
    assert samples[-1][1] > samples[0][1] + 5  # it went on decoding
    longest_stall_ms, since = 0.0, samples[0]
    for t, n in samples[1:]:
        if n != since[1]:
            since = (t, n)
        longest_stall_ms = max(longest_stall_ms, t - since[0])
    assert longest_stall_ms < 1000, f"the remote video stood still for {longest_stall_ms:.0f} ms"
    assert org.app[HUB].resumable and all(not s.detached for s in org.app[HUB].sessions.values())