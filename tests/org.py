"""Helpers for the organisation-side tests: a browser-like HTTP client with its own cookies."""

from __future__ import annotations

from typing import Any

import aiohttp

from p2pconf.auth import CSRF_COOKIE, hash_password
from p2pconf.appkeys import STORE

PASSWORD = "correct horse battery"
SSO_SECRET = "sso-test-secret-of-32-bytes-or-more!"


class Browser:
    """One person's browser: own cookie jar, sends our Origin like a real page."""

    def __init__(self, base: str, headers: dict[str, str] | None = None):
        self.base = base.rstrip("/")
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                          headers={"Origin": self.base, **(headers or {})})
        self.csrf: str | None = None

    async def close(self) -> None:
        await self.http.close()

    def cookie(self, name: str) -> str | None:
        morsel = self.http.cookie_jar.filter_cookies(aiohttp.helpers.URL(self.base)).get(name)
        return morsel.value if morsel else None

    async def sign_in(self, login: str, password: str = PASSWORD) -> aiohttp.ClientResponse:
        """The sign-in form, as a person fills it in."""
        async with self.http.get(self.base + "/login") as page:
            assert page.status == 200
        form = {"login": login, "password": password, "csrf": self.cookie(CSRF_COOKIE) or ""}
        async with self.http.post(self.base + "/login", data=form, allow_redirects=False) as reply:
            await reply.read()
        if reply.status == 302:
            self.csrf = (await self.json("GET", "/api/me"))[1]["csrf"]
        return reply

    async def json(self, method: str, path: str, body: Any = None, csrf: bool = True) -> tuple[int, Any]:
        headers = {"X-CSRF-Token": self.csrf} if csrf and self.csrf else {}
        async with self.http.request(method, self.base + path, json=body, headers=headers) as reply:
            return reply.status, await reply.json(content_type=None)

    async def ws(self) -> aiohttp.ClientWebSocketResponse:
        ws = await self.http.ws_connect(self.base + "/ws")
        await ws.send_json({"type": "hello", "version": 1})
        welcome = await ws.receive_json(timeout=3)
        assert welcome["type"] == "welcome", welcome
        return ws


async def add_user(app, login: str, name: str, password: str | None = PASSWORD, email: str | None = None):
    return await app[STORE].add_user(login, name, email, hash_password(password) if password else None)


async def next_of(ws, kind: str, timeout: float = 3.0) -> dict:
    """The next message of type `kind`, skipping others (bounded by `timeout` per message)."""
    for _ in range(50):
        msg = await ws.receive_json(timeout=timeout)
        if msg["type"] == kind:
            return msg
    raise AssertionError(f"no {kind} message")


async def status_of(ws, login: str, status: str) -> None:
    """Wait (bounded) until the caller's page hears that `login` is now `status`."""
    for _ in range(10):
        update = await next_of(ws, "call-status")
        if (update["login"], update["status"]) == (login, status):
            return
    raise AssertionError(f"{login} never became {status}")


async def signed_in(org, login: str) -> Browser:
    b = org.browser()
    reply = await b.sign_in(login)
    assert reply.status == 302 and reply.headers["Location"] == "/"
    return b


def base_of(org) -> str:
    return str(org.make_url("/")).rstrip("/")


async def guest_link(org, name: str = "Kunde Meier") -> str:
    anna = await signed_in(org, "anna")
    _, made = await anna.json("POST", "/api/rooms", {"name": name})
    return made["invite"]["link"]
