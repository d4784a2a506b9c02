"""The directory API a start page uses: search a page at a time, favourites, recent contacts."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from p2pconf.appkeys import STORE

from .conftest import both_stores
from .org import signed_in


@pytest.fixture
async def office(org):
    """The org's anna, bert and carla plus 120 colleagues (no passwords) and a Müller."""
    await org.app[STORE].add_users([(f"kollege{n:03}", f"Kollege {n:03}", None, None) for n in range(120)]
                                   + [("jm", "Jürgen Müller", "j.mueller@example.org", None)])
    return org


async def names(b, query: str = "", **params) -> tuple[list[str], str | None]:
    qs = "&".join(f"{k}={quote(str(v))}" for k, v in {"q": query, **params}.items())
    status, body = await b.json("GET", f"/api/users?{qs}")
    assert status == 200, body
    return [u["name"] for u in body["users"]], body["next"]


@both_stores
async def test_search_is_done_by_the_server_and_folds_case_and_accents(office):
    anna = await signed_in(office, "anna")
    assert (await names(anna, "muller"))[0] == ["Jürgen Müller"]
    assert (await names(anna, "MUELLER"))[0] == ["Jürgen Müller"]
    assert (await names(anna, "j.mueller@"))[0] == ["Jürgen Müller"]
    assert (await names(anna, "anna@example"))[0] == ["Anna Berg"]


async def test_no_answer_holds_more_than_one_page_and_the_cursor_walks_on(office):
    anna = await signed_in(office, "anna")
    first, cursor = await names(anna, "kollege")
    assert len(first) == 50 and first[0] == "Kollege 000"
    second, cursor = await names(anna, "kollege", cursor=cursor)
    third, cursor = await names(anna, "kollege", cursor=cursor)
    assert cursor is None and len(third) == 20
    assert first + second + third == [f"Kollege {n:03}" for n in range(120)]
    everyone, cursor = await names(anna)  # no query: the directory a page at a time
    assert len(everyone) == 50 and cursor is not None
    few, _ = await names(anna, "kollege", limit=5)
    assert len(few) == 5


@pytest.mark.parametrize("params, code", [({"cursor": "garbage"}, "bad-cursor"), ({"limit": "51"}, "bad-request"),
                                          ({"limit": "0"}, "bad-request"), ({"q": "x" * 101}, "bad-request")])
async def test_bad_paging_and_overlong_queries_are_refused(office, params, code):
    anna = await signed_in(office, "anna")
    qs = "&".join(f"{k}={quote(v)}" for k, v in params.items())
    status, body = await anna.json("GET", f"/api/users?{qs}")
    assert (status, body["code"]) == (400, code)


async def test_entries_say_who_is_me_a_favourite_and_present(office):
    anna = await signed_in(office, "anna")
    bert = await signed_in(office, "bert")
    ws = await bert.ws()
    try:
        status, body = await anna.json("PUT", "/api/favorites/bert")
        assert (status, body) == (200, {"login": "bert", "favorite": True})
        _, page = await anna.json("GET", "/api/users?q=berg")
        assert page["users"] == [{"login": "anna", "name": "Anna Berg", "presence": "offline", "me": True,
                                  "favorite": False}]
        _, page = await anna.json("GET", "/api/users?q=bert")
        assert page["users"] == [{"login": "bert", "name": "Bert Kraus", "presence": "online", "me": False,
                                  "favorite": True}]
    finally:
        await ws.close()


@both_stores
async def test_favourites_and_recent_calls_come_first_on_the_start_page(office):
    anna = await signed_in(office, "anna")
    assert (await anna.json("PUT", "/api/favorites/jm"))[0] == 200
    assert (await anna.json("PUT", "/api/favorites/nobody"))[0] == 404
    status, call = await anna.json("POST", "/api/calls", {"invitees": ["carla"], "mode": "audio-only"})
    assert status == 201
    _, contacts = await anna.json("GET", "/api/contacts")
    assert [u["login"] for u in contacts["favorites"]] == ["jm"]
    assert [u["login"] for u in contacts["recent"]] == ["carla"]
    carla = await signed_in(office, "carla")
    _, theirs = await carla.json("GET", "/api/contacts")
    assert [u["login"] for u in theirs["recent"]] == ["anna"]  # being called counts too
    assert (await anna.json("DELETE", "/api/favorites/jm"))[0] == 200
    assert (await anna.json("GET", "/api/contacts"))[1]["favorites"] == []


async def test_guests_and_strangers_get_no_directory(office):
    stranger = office.browser()
    assert (await stranger.json("GET", "/api/users?q=a"))[0] == 401
    assert (await stranger.json("GET", "/api/contacts"))[0] == 401
    anna = await signed_in(office, "anna")
    _, made = await anna.json("POST", "/api/rooms", {"name": "Kunde"})
    guest = office.browser()
    async with guest.http.get(made["invite"]["link"]) as page:
        assert page.status == 200
    async with guest.http.post(made["invite"]["link"], data={"name": "Gast", "csrf": guest.cookie("p2pconf_csrf")},
                               allow_redirects=False) as reply:
        assert reply.status == 302
    assert (await guest.json("GET", "/api/users?q=a"))[0] == 403


async def test_favourites_need_the_csrf_token(office):
    anna = await signed_in(office, "anna")
    status, body = await anna.json("PUT", "/api/favorites/bert", csrf=False)
    assert (status, body["code"]) == (403, "csrf")
