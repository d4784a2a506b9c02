"""The guest lobby in Chromium: "Gäste einzeln einlassen", a waiting guest, "Einlassen" and "Abweisen";
and "Einstellungen" by the own picture on the start page."""

from __future__ import annotations

from playwright.async_api import expect

from .browser import PHONE, enter_as_guest, new_page, screenshot, sign_in, tile, wait_playing
from .org import base_of


async def test_guests_wait_until_a_member_lets_them_in_or_turns_them_away(org, chromium):
    base = base_of(org)
    anna = await new_page(chromium)
    await sign_in(anna, base, "anna")
    await anna.get_by_role("button", name="externe Teilnehmer einladen").click()
    await anna.get_by_label("Raumname").fill("Sprechstunde")
    await anna.get_by_label("Gäste einzeln einlassen").check()
    await anna.get_by_role("button", name="OK").click()
    await anna.wait_for_url("**/r/**")
    await expect(anna.get_by_label("Einladungslink")).to_be_visible()
    link = await anna.get_by_label("Einladungslink").input_value()
    await anna.get_by_role("button", name="Schließen").click()

    welcome, stranger = await new_page(chromium, PHONE), await new_page(chromium, PHONE)
    await enter_as_guest(welcome, link, "Frau <b>Meier</b>")
    await expect(welcome.locator("#banner")).to_have_text("Bitte warten – Sie werden gleich eingelassen.")
    knocks = anna.get_by_role("list", name="Warteraum").locator("li")
    await expect(knocks).to_have_text(["Frau <b>Meier</b> möchte teilnehmen" + "EinlassenAbweisen"])
    await enter_as_guest(stranger, link, "Herr Unbekannt")
    await expect(knocks).to_have_count(2)
    await expect(knocks.nth(1)).to_contain_text("Herr Unbekannt möchte teilnehmen")
    await screenshot(anna, "lobby-desktop")
    await expect(tile(welcome, "Anna Berg")).to_have_count(0)  # nobody's picture while waiting

    sockets: list = []
    stranger.on("websocket", lambda ws: sockets.append(ws))
    await knocks.nth(1).get_by_role("button", name="Abweisen").click()
    await expect(stranger.locator("#banner")).to_have_text("Sie wurden nicht eingelassen.")
    await expect(knocks).to_have_count(1)
    await knocks.first.get_by_role("button", name="Einlassen").click()
    await wait_playing(tile(anna, "Frau <b>Meier</b>").locator("video"))
    await wait_playing(tile(welcome, "Anna Berg").locator("video"))
    await expect(welcome.locator("#banner")).to_be_hidden()
    await expect(anna.get_by_role("list", name="Warteraum")).to_be_hidden()
    # turned away for good: the page opened no new connection, and the session is gone
    assert sockets == []
    assert (await stranger.request.get(base + "/api/me")).status == 401


async def test_settings_by_the_own_picture_on_the_start_page(org, chromium):
    page = await new_page(chromium)
    await sign_in(page, base_of(org), "anna")
    await wait_playing(page.get_by_label("Eigenes Bild"))
    await page.get_by_role("button", name="Einstellungen").click()
    dialog = page.get_by_role("dialog", name="Einstellungen")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_label("Mikrofon", exact=True).locator("option")).not_to_have_count(0)
    await expect(dialog.get_by_label("Mikrofonpegel")).to_be_visible()
    await dialog.get_by_role("button", name="Schließen").click()
    await expect(dialog).to_be_hidden()
    await wait_playing(page.get_by_label("Eigenes Bild"))  # the own picture again, from the chosen camera
