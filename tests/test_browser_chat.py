"""The call's chat in Chromium: peer to peer over the data channels, never through the server."""

from __future__ import annotations

import re

from playwright.async_api import expect

from .browser import PHONE, enter_as_guest, new_page, screenshot, server_frames, tile, wait_playing
from .org import guest_link

HOSTILE = 'Hallo <b>Welt</b> <img src=x onerror="window.pwned=1"> javascript:alert(1) https://example.org/a?b=1.'


async def open_chat(page) -> None:
    await page.get_by_role("button", name="Chat").click()
    await expect(page.get_by_label("Nachricht")).to_be_focused()


async def send(page, text: str) -> None:
    await page.get_by_label("Nachricht").fill(text)
    await page.get_by_role("button", name="Senden").click()
    await expect(page.get_by_label("Nachricht")).to_have_value("")


async def two_in_a_call(org, chromium, room: str):
    """The guest link of a new room, and two pages in its call ("Erste" sees "Zweite")."""
    link = await guest_link(org, room)
    a, b = await new_page(chromium), await new_page(chromium)
    await enter_as_guest(a, link, "Erste")
    await enter_as_guest(b, link, "Zweite")
    await wait_playing(tile(a, "Zweite").locator("video"))
    return link, a, b


async def test_chat_goes_peer_to_peer_as_text_with_unread_counts_and_history_for_latecomers(org, chromium):
    link = await guest_link(org, "Plauderrunde")
    a, b = await new_page(chromium), await new_page(chromium)
    sent = [server_frames(a), server_frames(b)]
    await enter_as_guest(a, link, "Erste")
    await enter_as_guest(b, link, "Zweite")
    await wait_playing(tile(a, "Zweite").locator("video"))
    await expect(a.get_by_label("Nachricht")).to_be_hidden()  # until "Chat" opens the panel
    await open_chat(a)
    await send(a, HOSTILE)
    await send(a, "Zweite Nachricht")

    # at the other end: an unread count, then the messages with name and time, as text
    await expect(b.get_by_role("button", name="Chat, 2 ungelesen")).to_be_visible()
    await open_chat(b)
    await expect(b.locator("#chat-unread")).to_be_hidden()
    messages = b.locator("#chat-messages li")
    await expect(messages).to_have_count(2)
    await expect(messages.nth(0).locator(".from")).to_have_text(re.compile(r"^Erste · \d\d:\d\d$"))
    await expect(messages.nth(0).locator("p")).to_have_text(HOSTILE)
    assert await b.locator("#chat-messages b, #chat-messages img").count() == 0
    assert await b.evaluate("() => window.pwned") is None
    links = messages.nth(0).locator("a")
    await expect(links).to_have_count(1)  # javascript: stays text; the sentence's full stop is not the link's
    await expect(links).to_have_attribute("href", "https://example.org/a?b=1")
    await expect(links).to_have_attribute("rel", "noopener noreferrer")
    await send(b, "Antwort")
    await expect(a.locator("#chat-messages li").last).to_contain_text("Antwort")
    await expect(a.locator("#chat-unread")).to_be_hidden()  # a's panel is open: nothing unread

    # a latecomer gets the history from the peers, each message once, in order
    c = await new_page(chromium)
    await enter_as_guest(c, link, "Dritte")
    await wait_playing(tile(c, "Erste").locator("video"))
    await expect(c.get_by_role("button", name="Chat, 3 ungelesen")).to_be_visible()
    await open_chat(c)
    await expect(c.locator("#chat-messages li p")).to_have_text([HOSTILE, "Zweite Nachricht", "Antwort"])
    # the panel fits its column: nothing to scroll sideways, "Senden" inside it
    assert await c.evaluate("() => { const s = document.querySelector('.side'); return s.scrollWidth <= s.clientWidth; }")
    send_box = await c.get_by_role("button", name="Senden").bounding_box()
    side_box = await c.locator(".side").bounding_box()
    assert send_box["x"] + send_box["width"] <= side_box["x"] + side_box["width"] + 1
    await screenshot(c, "chat-desktop")
    # the server carried none of it
    assert not any("Zweite Nachricht" in frame or "Antwort" in frame for frames in sent for frame in frames)
    assert any('"hello"' in frame for frame in sent[0])  # (the frames were watched)


async def test_history_speaks_for_nobody_present_and_says_who_passed_on_what_the_absent_said(org, chromium):
    link, a, b = await two_in_a_call(org, chromium, "Nachgereicht")
    await open_chat(b)
    await send(b, "Von Zweite")
    await expect(a.get_by_role("button", name="Chat, 1 ungelesen")).to_be_visible()
    await b.get_by_role("button", name="Beenden").click()
    await expect(tile(a, "Zweite")).to_have_count(0)
    # Erste turns hostile: her history also says that each peer she meets wrote "Gefälscht"
    await a.evaluate("""() => {
        const {call, mesh} = window.p2pconf, own = call.chat.history.bind(call.chat);
        call.chat.history = () => [...own(), ...[...mesh.peers.values()].map((p) => (
            {id: 'forged-' + p.id, name: p.name, at: Date.now(), text: 'Gefälscht', from: p.id}))];
    }""")
    c = await new_page(chromium)
    await enter_as_guest(c, link, "Dritte")
    await wait_playing(tile(c, "Erste").locator("video"))
    await open_chat(c)
    messages = c.locator("#chat-messages li")
    await expect(messages.locator("p")).to_have_text(["Von Zweite"])
    await expect(messages.locator(".from")).to_have_text(re.compile(r"^Zweite · \d\d:\d\d · weitergegeben von Erste$"))
    await send(c, "Wirklich von Dritte")  # (and no forged line came in meanwhile)
    await expect(messages.locator("p")).to_have_text(["Von Zweite", "Wirklich von Dritte"])


async def test_raised_hands_show_on_the_tiles_in_the_order_they_went_up(org, chromium):
    link, a, b = await two_in_a_call(org, chromium, "Meldungen")
    await b.get_by_role("button", name="Hand heben").click()
    await expect(b.get_by_role("button", name="Hand senken")).to_have_attribute("aria-pressed", "true")
    await expect(tile(a, "Zweite")).to_contain_text("Hand gehoben (1)")
    await expect(a.get_by_role("button", name=re.compile("^Zweite.*Hand gehoben"))).to_be_visible()  # its name too
    # a latecomer sees the hand that is up, and raises its own after it
    c = await new_page(chromium)
    await enter_as_guest(c, link, "Dritte")
    await wait_playing(tile(c, "Zweite").locator("video"))
    await expect(tile(c, "Zweite")).to_contain_text("Hand gehoben (1)")
    await c.get_by_role("button", name="Hand heben").click()
    await expect(tile(a, "Dritte")).to_contain_text("Hand gehoben (2)")
    await expect(tile(c, "Dritte")).to_contain_text("Hand gehoben (2)")  # one's own tile shows it too
    await b.get_by_role("button", name="Hand senken").click()
    await expect(tile(a, "Zweite")).not_to_contain_text("Hand gehoben")
    await expect(tile(a, "Dritte")).to_contain_text("Hand gehoben (1)")
    await screenshot(a, "hands-desktop")


async def test_on_a_phone_every_call_button_fits_and_the_rest_is_under_more(org, chromium):
    link = await guest_link(org, "Unterwegs")
    desk, phone = await new_page(chromium), await new_page(chromium, PHONE)
    await enter_as_guest(desk, link, "Büro")
    await enter_as_guest(phone, link, "Handy")
    await wait_playing(tile(phone, "Büro").locator("video"))

    async def off_screen() -> list[str]:
        """The visible buttons of the call bar that do not fit into the phone's width."""
        return await phone.evaluate("""w => [...document.querySelectorAll('.callbar button')]
            .filter(b => b.offsetParent !== null)
            .filter(b => { const r = b.getBoundingClientRect(); return r.left < 0 || r.right > w; })
            .map(b => b.textContent)""", PHONE["width"])

    assert await off_screen() == []
    await expect(phone.get_by_text("Verbindungsdaten herunterladen")).to_be_hidden()  # that is for after the call
    quality = phone.get_by_role("button", name="Verbindungsqualität")
    await expect(quality).to_be_hidden()
    await expect(desk.get_by_role("button", name="Verbindungsqualität")).to_be_visible()  # no menu on a desk
    await expect(desk.get_by_role("button", name="Mehr")).to_be_hidden()
    await phone.get_by_role("button", name="Mehr").click()
    await expect(quality).to_be_visible()
    assert await off_screen() == []
    await screenshot(phone, "call-phone-more")
    await quality.click()
    await expect(phone.locator("#quality-dialog")).to_be_visible()
    await expect(quality).to_be_hidden()  # the choice closed the menu


async def test_the_tile_of_whoever_speaks_shows_it(org, chromium):
    _, a, b = await two_in_a_call(org, chromium, "Wer spricht")
    # Chromium's fake microphone beeps: Zweite speaks, as Erste's page hears it, and by her own
    await expect(tile(a, "Zweite")).to_contain_text("spricht", timeout=15_000)
    await expect(tile(a, "Zweite")).to_have_class(re.compile(r"\bspeaking\b"))
    await expect(tile(b, "Zweite")).to_contain_text("spricht", timeout=15_000)
    await b.get_by_role("button", name="Mikrofon ausschalten").click()  # silence from now on
    await expect(tile(a, "Zweite")).not_to_contain_text("spricht", timeout=15_000)
    await expect(tile(b, "Zweite")).not_to_contain_text("spricht", timeout=15_000)
