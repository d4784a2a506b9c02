"""The start page's directory in real Chromium: favourites, recent calls, server-side search,
presence pushed over the WebSocket (docs/api.md "Directory", docs/protocol.md "Presence").

The page never downloads the directory: it asks /api/contacts once, searches on the server
(one page at a time, "Weitere laden" for the next) and never polls.
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

from playwright.async_api import Page, Request, Response, expect

from p2pconf.appkeys import HUB, STORE

from .browser import english_start_page, new_page, screenshot, sign_in
from .conftest import wait_until
from .org import add_user, base_of, signed_in

MANY = 20_000
HOSTILE = "<img src=x onerror=alert(1)>"


class Traffic:
    """Every directory request and /api/users response a page makes, recorded as it happens."""

    def __init__(self, page: Page):
        self.requests: list[tuple[str, dict]] = []  # (path, query) of /api/users and /api/contacts
        self.responses: list[Response] = []  # of /api/users
        page.on("request", self._request)
        page.on("response", self._response)

    def _request(self, request: Request) -> None:
        url = urlsplit(request.url)
        if url.path in ("/api/users", "/api/contacts"):
            self.requests.append((url.path, parse_qs(url.query)))

    def _response(self, response: Response) -> None:
        if urlsplit(response.url).path == "/api/users":
            self.responses.append(response)

    def directory_requests(self) -> int:
        return len(self.requests)

    def unqueried(self) -> list[dict]:
        """Requests of /api/users without a (non-empty) q."""
        return [q for path, q in self.requests if path == "/api/users" and not q.get("q", [""])[0].strip()]

    def searches(self, text: str) -> list[dict]:
        return [q for path, q in self.requests if path == "/api/users" and q.get("q") == [text]]


def group(page: Page, title: str):
    """One labelled group of the list: "Favoriten", "Zuletzt angerufen", "Suchergebnisse"."""
    return page.locator("#users").get_by_role("region", name=title, exact=True)


def entry(page: Page, title: str, name: str):
    return group(page, title).get_by_role("listitem").filter(
        has=page.get_by_role("checkbox", name=name, exact=True))


async def settled(page: Page) -> None:
    """A request of our own after everything the page may have started: its response arrives
    after theirs were sent, so the Traffic lists are complete up to here."""
    async with page.expect_response("**/api/me"):
        await page.evaluate("() => fetch('/api/me').then(r => r.text())")


async def test_search_on_the_server_with_20000_users_one_page_at_a_time(org, chromium):
    store = org.app[STORE]
    await store.add_users([(f"user{n:05d}", f"Benutzer {n:05d}", None, None) for n in range(MANY)]
                          + [("jmueller", "Jürgen Müller", "j.mueller@example.org", None)])
    base = base_of(org)
    page = await new_page(chromium)
    await page.clock.install()  # real time flows; fast_forward below jumps it to catch any poll
    traffic = Traffic(page)
    await sign_in(page, base, "anna")
    await expect(page.locator("#users > *").first).to_be_visible(timeout=10_000)  # the first list drawn
    await settled(page)
    assert [path for path, _ in traffic.requests] == ["/api/contacts"], traffic.requests  # not /api/users
    await expect(group(page, "Favoriten")).to_be_visible()
    await expect(group(page, "Zuletzt angerufen")).to_be_visible()

    # typed without the accent: found on the server (he sorts after all 20,000 "Benutzer")
    await page.locator("#search").press_sequentially("muller", delay=40)
    await expect(entry(page, "Suchergebnisse", "Jürgen Müller")).to_be_visible(timeout=10_000)
    assert 1 <= len(traffic.searches("muller")) and len(traffic.unqueried()) == 0, traffic.requests
    typed = [q for path, q in traffic.requests if path == "/api/users"]
    assert len(typed) < len("muller"), f"not debounced: {typed}"

    # an older answer arriving late does not overwrite a newer one
    async def slow(route):
        await asyncio.sleep(1.5)
        await route.continue_()

    def first_query(url) -> bool:
        return urlsplit(url).path == "/api/users" and parse_qs(urlsplit(url).query).get("q") == ["benutzer 00001"]

    await page.route(first_query, slow)
    async with page.expect_response(lambda r: first_query(r.url), timeout=15_000):
        async with page.expect_request(lambda r: first_query(r.url), timeout=5_000):
            await page.locator("#search").fill("benutzer 00001")
        await page.locator("#search").fill("muller")
        await expect(entry(page, "Suchergebnisse", "Jürgen Müller")).to_be_visible(timeout=10_000)
    await settled(page)
    results = group(page, "Suchergebnisse")
    await expect(results.get_by_role("listitem")).to_have_count(1)
    await expect(entry(page, "Suchergebnisse", "Jürgen Müller")).to_be_visible()

    # more than one page: "Weitere laden" appends the next 50
    await page.locator("#search").fill("benutzer")
    await expect(results.get_by_role("listitem")).to_have_count(50, timeout=10_000)
    await expect(entry(page, "Suchergebnisse", "Benutzer 00000")).to_be_visible()
    await results.get_by_role("button", name="Weitere laden").click()
    await expect(results.get_by_role("listitem")).to_have_count(100, timeout=10_000)
    await expect(entry(page, "Suchergebnisse", "Benutzer 00099")).to_be_visible()
    await expect(results.get_by_role("button", name="Weitere laden")).to_be_visible()

    # an empty box: the contacts again, from memory
    await page.locator("#search").fill("")
    await expect(group(page, "Favoriten")).to_be_visible()
    await expect(results).to_have_count(0)

    # no poll: a minute of the page's clock passes, and it asks nothing
    await settled(page)
    before = traffic.directory_requests()
    await page.clock.fast_forward(60_000)
    await settled(page)
    assert traffic.directory_requests() == before, f"the page polled: {traffic.requests[before:]}"

    assert len(traffic.unqueried()) <= 1, f"asked for the directory without a query: {traffic.requests}"
    assert [path for path, _ in traffic.requests].count("/api/contacts") == 1, traffic.requests
    sizes = [len((await r.json())["users"]) for r in traffic.responses]
    assert sizes and max(sizes) <= 50, sizes
    assert sum(sizes) < 200, f"the page downloaded {sum(sizes)} people"


async def test_favourites_and_recent_calls_survive_a_reload_and_selection_survives_searches(org, chromium):
    base = base_of(org)
    page = await new_page(chromium)
    await sign_in(page, base, "anna")
    await expect(group(page, "Favoriten")).to_contain_text("Noch keine Favoriten")
    await expect(group(page, "Zuletzt angerufen")).to_contain_text("Noch keine Anrufe")
    # the own entry is never listed
    await page.locator("#search").fill("b")  # Anna Berg and Bert Kraus
    await expect(entry(page, "Suchergebnisse", "Bert Kraus")).to_be_visible(timeout=10_000)
    await expect(page.get_by_role("checkbox", name="Anna Berg")).to_have_count(0)

    await page.locator("#search").fill("bert")
    star = entry(page, "Suchergebnisse", "Bert Kraus").get_by_role("button", name="Favorit: Bert Kraus")
    await expect(star).to_have_attribute("aria-pressed", "false", timeout=10_000)
    await expect(star).to_have_text("☆")
    async with page.expect_response(lambda r: r.request.method == "PUT" and r.url.endswith("/api/favorites/bert")):
        await star.click()
    await expect(star).to_have_attribute("aria-pressed", "true")
    await expect(star).to_have_text("★")
    await page.locator("#search").fill("")
    await expect(entry(page, "Favoriten", "Bert Kraus")).to_be_visible()  # at once, without a reload
    await page.reload()
    await expect(entry(page, "Favoriten", "Bert Kraus")).to_be_visible(timeout=10_000)
    await expect(entry(page, "Favoriten", "Bert Kraus").get_by_role("button", name="Favorit: Bert Kraus")) \
        .to_have_attribute("aria-pressed", "true")

    # a selection stays while other searches come and go
    await page.locator("#search").fill("carla")
    await entry(page, "Suchergebnisse", "Carla Diaz").get_by_role("checkbox").check(timeout=10_000)
    await page.locator("#search").fill("bert")
    await expect(entry(page, "Suchergebnisse", "Bert Kraus")).to_be_visible(timeout=10_000)
    await expect(page.get_by_role("button", name="Anruf starten")).to_be_enabled()
    await page.locator("#search").fill("carla")
    await expect(entry(page, "Suchergebnisse", "Carla Diaz").get_by_role("checkbox")).to_be_checked(timeout=10_000)
    await page.locator("#search").fill("")
    await expect(page.get_by_role("button", name="Anruf starten")).to_be_enabled()
    await expect(entry(page, "Favoriten", "Bert Kraus").get_by_role("checkbox")).not_to_be_checked()

    await page.get_by_role("button", name="Anruf starten").click()
    await page.wait_for_url("**/r/**")
    await page.goto(base + "/")
    await expect(entry(page, "Zuletzt angerufen", "Carla Diaz")).to_be_visible(timeout=10_000)
    await expect(entry(page, "Favoriten", "Bert Kraus")).to_be_visible()
    await expect(entry(page, "Favoriten", "Carla Diaz")).to_have_count(0)
    await screenshot(page, "start-directory-desktop")

    # unstarring in the favourites group takes him out of it
    star = entry(page, "Favoriten", "Bert Kraus").get_by_role("button", name="Favorit: Bert Kraus")
    async with page.expect_response(lambda r: r.request.method == "DELETE" and r.url.endswith("/api/favorites/bert")):
        await star.click()
    await expect(entry(page, "Favoriten", "Bert Kraus")).to_have_count(0)
    await page.reload()
    await expect(group(page, "Favoriten")).to_contain_text("Noch keine Favoriten", timeout=10_000)


async def test_presence_is_pushed_over_the_websocket_without_asking_again(org, chromium):
    anna = await signed_in(org, "anna")
    assert (await anna.json("PUT", "/api/favorites/bert"))[0] == 200
    page = await new_page(chromium)
    traffic = Traffic(page)
    await sign_in(page, base_of(org), "anna")
    presence = entry(page, "Favoriten", "Bert Kraus").locator(".presence")
    await expect(presence).to_have_text("offline", timeout=10_000)
    hub = org.app[HUB]
    await wait_until(lambda: any("bert" in s.subscriptions for s in hub.sessions_of("anna")), timeout=10)
    await settled(page)
    before = traffic.directory_requests()

    bert = await signed_in(org, "bert")
    ws = await bert.ws()  # a page of bert's: he is online
    try:
        await expect(presence).to_have_text("online", timeout=5_000)
        await expect(presence).to_have_class("presence online")
    finally:
        await ws.close()
    await expect(presence).to_have_text("offline", timeout=5_000)
    await settled(page)
    assert traffic.directory_requests() == before, f"asked again: {traffic.requests[before:]}"


async def test_a_hostile_name_is_shown_as_text(org, chromium):
    await add_user(org.app, "mallory", HOSTILE, password=None)
    anna = await signed_in(org, "anna")
    assert (await anna.json("PUT", "/api/favorites/mallory"))[0] == 200
    page = await new_page(chromium)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), asyncio.ensure_future(d.dismiss())))
    await sign_in(page, base_of(org), "anna")
    await expect(entry(page, "Favoriten", HOSTILE)).to_be_visible(timeout=10_000)
    await expect(page.get_by_role("button", name=f"Favorit: {HOSTILE}", exact=True)).to_be_visible()
    await page.locator("#search").fill("mallory")
    await expect(entry(page, "Suchergebnisse", HOSTILE)).to_be_visible(timeout=10_000)
    await expect(page.locator("#users img")).to_have_count(0)
    assert dialogs == []


async def test_the_groups_in_english(org, chromium):
    base = base_of(org)
    page = await english_start_page(chromium, base)
    await expect(group(page, "Favorites")).to_be_visible()
    await expect(group(page, "Recent calls")).to_be_visible()
    await page.locator("#search").fill("bert")
    await expect(group(page, "Search results").get_by_role("button", name="Favorite: Bert Kraus")).to_be_visible(
        timeout=10_000)
