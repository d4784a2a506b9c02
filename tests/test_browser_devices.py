"""Device choice in Chromium ("Einstellungen"): before joining and during a call, remembered."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from .browser import enter_as_guest, launched, new_page, server_frames, tile, wait_playing
from .org import guest_link

SENT_CAMERA = """() => window.p2pconf.call.stream.getVideoTracks()[0].getSettings().deviceId"""


@pytest.fixture
async def two_cameras():
    """Chromium with two fake cameras."""
    async with launched("--use-fake-device-for-media-stream=device-count=2") as browser:
        yield browser


async def other_camera(page) -> str:
    """Pick the camera not selected now in the open dialog; its device id."""
    select = page.get_by_label("Kamera")
    # the click only starts the dialog's handler: its lists fill before it opens
    await expect(page.get_by_role("dialog", name="Einstellungen")).to_be_visible()
    await expect(select.locator("option")).to_have_count(2)
    values = await select.locator("option").evaluate_all("options => options.map(o => o.value)")
    now = await select.input_value()
    chosen = next(v for v in values if v != now)
    await select.select_option(chosen)
    return chosen


async def test_the_devices_chosen_before_joining_are_the_calls(org, two_cameras):
    link = await guest_link(org, "Technikprobe")
    page = await new_page(two_cameras)
    await page.goto(link)
    await page.get_by_role("button", name="Einstellungen").click()
    dialog = page.get_by_role("dialog", name="Einstellungen")
    await expect(dialog.get_by_label("Mikrofon", exact=True)).to_be_visible()
    await expect(dialog.get_by_label("Rauschunterdrückung")).to_be_checked()
    await wait_playing(page.locator("#device-preview"))
    # the fake microphone beeps: the level meter moves
    await page.wait_for_function("() => document.getElementById('mic-level').value > 0.01", timeout=15_000)
    chosen = await other_camera(page)
    await page.wait_for_function("""id => document.getElementById('device-preview').srcObject
                                   ?.getVideoTracks()[0]?.getSettings().deviceId === id""", arg=chosen)
    await dialog.get_by_label("Rauschunterdrückung").uncheck()
    await dialog.get_by_role("button", name="Schließen").click()

    await page.get_by_label("Anzeigename").fill("Probe")
    await page.get_by_role("button", name="Beitreten").click()
    await page.wait_for_url("**/r/**")
    await page.wait_for_function("() => window.p2pconf?.call.stream.getVideoTracks().length > 0")
    assert await page.evaluate(SENT_CAMERA) == chosen  # remembered across pages
    assert await page.evaluate(
        "() => window.p2pconf.call.stream.getAudioTracks()[0].getSettings().noiseSuppression") is False


async def test_a_camera_switched_during_a_call_reaches_the_others_without_renegotiation(org, two_cameras):
    link = await guest_link(org, "Kamerawechsel")
    a, b = await new_page(two_cameras), await new_page(two_cameras)
    await enter_as_guest(a, link, "Erste")
    await enter_as_guest(b, link, "Zweite")
    await wait_playing(tile(b, "Erste").locator("video"))
    before = await a.evaluate(SENT_CAMERA)
    sent = server_frames(a)

    await a.get_by_role("button", name="Einstellungen").click()
    chosen = await other_camera(a)
    assert chosen != before
    await a.wait_for_function(f"() => ({SENT_CAMERA})() === {chosen!r}")
    # every connection sends the new camera: its sender carries the new track
    assert await a.evaluate("""id => [...window.p2pconf.mesh.peers.values()].every(p => p.pc.getSenders()
        .some(s => s.track?.kind === 'video' && s.track.getSettings().deviceId === id))""", chosen)
    await wait_playing(tile(b, "Erste").locator("video"))  # the other side's picture goes on
    await a.get_by_role("button", name="Schließen").click()
    await wait_playing(tile(b, "Erste").locator("video"))
    assert not [f for f in sent if '"offer"' in f or '"answer"' in f], "a device switch renegotiated"
    # the own tile shows the new camera, the old one is released
    await wait_playing(tile(a, "Erste").locator("video"))
