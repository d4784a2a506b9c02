"""The Store on both databases: the embedded SQLite file and a real PostgreSQL server.

Every test here runs twice (@both_stores): what the server relies on must not
depend on which database an organisation chose.
"""

from __future__ import annotations

import asyncio
import io
import random
import time

import pytest

from p2pconf import admin
from p2pconf.auth import verify_password
from p2pconf.store import INVITE_REVOKED, MAX_FAVORITES, SESSION_ENDED, USER_DISABLED, BadCursor, Store, StoreError
from p2pconf.store import schema
from p2pconf.store.search import PAGE_SIZE, encode_cursor

from .conftest import both_stores

pytestmark = both_stores


@pytest.fixture
async def store(store_location):
    s = await Store.open(store_location)
    yield s
    await s.close()


async def logins(store: Store, query: str, **kw) -> list[str]:
    users, _ = await store.search_users(query, **kw)
    return [u.login for u in users]


# -- schema -----------------------------------------------------------------------------------------


async def test_a_new_store_is_migrated_once_even_when_two_processes_open_it_at_once(store_location):
    first, second = await asyncio.gather(Store.open(store_location), Store.open(store_location))
    try:
        assert await first.schema_version() == await second.schema_version() == len(schema.SQLITE)
        await first.add_user("anna", "Anna Berg")
        assert (await second.user_by_login("anna")).name == "Anna Berg"
    finally:
        await first.close()
        await second.close()
    again = await Store.open(store_location)  # reopening migrates nothing and keeps the data
    try:
        assert await again.count_users() == 1
    finally:
        await again.close()


async def test_users_stored_before_the_directory_existed_are_found_after_the_upgrade(store_location):
    steps = schema.POSTGRES if isinstance(store_location, str) else schema.SQLITE
    # Build a version-2 store by hand: the first two steps only, then users the old way.
    if isinstance(store_location, str):
        from p2pconf.store.postgres import PostgresDatabase
        db = await PostgresDatabase.open(store_location)
    else:
        from p2pconf.store.sqlite import SqliteDatabase
        db = await SqliteDatabase.open(store_location)
    await db.migrate(steps[:2])
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO users(login, name, created_at) VALUES (?, ?, ?)", ("jm", "Jürgen Müller", 1.0))
    await db.close()
    upgraded = await Store.open(store_location)
    try:
        assert await upgraded.schema_version() == len(steps)
        assert await logins(upgraded, "muller") == ["jm"]
    finally:
        await upgraded.close()


# -- users --------------------------------------------------------------------------------------------


async def test_logins_are_case_insensitive_and_unique(store):
    await store.add_user("Anna", "Anna Berg", "anna@example.org")
    assert (await store.user_by_login("ANNA")).login == "Anna"
    with pytest.raises(StoreError) as refused:
        await store.add_user("anna", "Another Anna")
    assert refused.value.code == "user-exists"
    assert (await store.password_hash("anna")) is None  # no password: SSO only


async def test_a_failed_import_adds_nobody(store):
    await store.add_user("anna", "Anna Berg")
    with pytest.raises(StoreError):
        await store.add_users([("new1", "New One", None, None), ("ANNA", "Clash", None, None)])
    assert not store.in_transaction
    assert await store.user_by_login("new1") is None
    assert await logins(store, "new") == []  # no search words left behind either
    await store.add_user("after", "After Wards")  # the next write goes through
    assert await logins(store, "after") == ["after"]


async def test_disabling_ends_sessions_and_hides_from_the_directory(store):
    anna = await store.add_user("anna", "Anna Berg")
    token, _ = await store.create_session(ttl_s=60, user=anna)
    last = await store.last_event_id()
    await store.disable_user("ANNA")
    assert await store.session(token) is None
    assert [(e.kind, e.subject) for e in await store.events_after(last)] == [(USER_DISABLED, "anna")]
    assert await logins(store, "anna") == []


# -- the directory --------------------------------------------------------------------------------------


@pytest.fixture
async def people(store):
    await store.add_users([
        ("mmueller", "Jürgen Müller", "j.mueller@example.org", None),
        ("smuller", "Sven Muller", None, None),
        ("anna.berg", "Anna Berg", "anna@firma.example", None),
        ("zoe", "Zoë Ærø", "zoe@example.org", None),
        ("bert", "Bert Kraus", "kraus@example.org", None),
    ])
    return store


async def test_search_ignores_case_and_accents(people):
    assert await logins(people, "muller") == ["mmueller", "smuller"]
    assert await logins(people, "MÜLLER") == ["mmueller", "smuller"]
    assert await logins(people, "mueller") == ["mmueller"]  # the German spelling of ü finds Müller
    assert await logins(people, "zoe aero") == ["zoe"]


async def test_search_finds_logins_addresses_and_prefixes_and_needs_every_term(people):
    assert await logins(people, "anna.b") == ["anna.berg"]
    assert await logins(people, "firma") == ["anna.berg"]
    assert await logins(people, "kraus@exa") == ["bert"]
    assert await logins(people, "j m") == ["mmueller"]  # Jürgen Müller: both terms must match
    assert await logins(people, "mül sven") == ["smuller"]
    assert await logins(people, "nobody") == []


@pytest.mark.parametrize("query", ["%", "_", "' OR 1=1 --", "\\", "a" * 5000, "\x00\u202e", "🙂", "a%b_c"])
async def test_a_hostile_query_finds_nothing_it_should_not_and_breaks_nothing(people, query):
    assert await logins(people, query) in ([], await logins(people, ""))  # nothing, or (no real term) everyone
    assert await people.count_users() == 5


async def test_pages_of_50_walk_the_whole_directory_in_order(store):
    await store.add_users([(f"user{n:03}", f"Person {n:03}", None, None) for n in range(123)])
    seen, cursor, pages = [], None, 0
    while pages < 10:  # bounded
        users, cursor = await store.search_users("person", after=cursor)
        assert len(users) <= PAGE_SIZE
        seen += [u.login for u in users]
        pages += 1
        if cursor is None:
            break
    assert pages == 3
    assert seen == [f"user{n:03}" for n in range(123)]  # each once, in order


async def test_every_search_plan_finds_exactly_the_people_whose_words_match(store, monkeypatch):
    """Against a reference: with tiny planner thresholds every plan runs (a rare term read
    whole, a short prefix read in order, a common long term led by its prefix)."""
    from p2pconf.store import core, search
    monkeypatch.setattr(core, "FEW_MATCHES", 4)
    monkeypatch.setattr(core, "COUNT_CAP", 9)
    rng = random.Random(7)
    first = ["Jürgen", "Jörg", "Anna", "Annika", "Anja", "Ana", "Jan", "Bert", "Zoë"]
    last = ["Müller", "Mueller", "Maier", "Mayer", "Berg", "Berger"]
    rows = [(f"u{n}", f"{rng.choice(first)} {rng.choice(last)}", f"u{n}@{rng.choice(['ex.org', 'firma.de'])}", None)
            for n in range(130)]
    await store.add_users(rows)
    await store.disable_user("u3")
    words = {login: search.words_of(name, login, email) for login, name, email, _ in rows if login != "u3"}
    order = sorted(words, key=lambda login: (search.sort_key(dict((r[0], r[1]) for r in rows)[login]),
                                             int(login[1:])))
    vocabulary = ["j", "ju", "jur", "juer", "jurgen", "an", "ann", "anj", "m", "mu", "mul", "mue", "muel", "muell",
                  "ma", "mai", "may", "b", "berg", "berge", "bert", "anna", "z", "zoe", "u1", "u12", "ex", "firma", "x"]
    for _ in range(120):  # bounded
        terms = rng.sample(vocabulary, rng.randint(1, 3))
        query = " ".join(t.upper() if rng.random() < 0.3 else t for t in terms)
        expected = [login for login in order if all(any(w.startswith(t) for w in words[login]) for t in terms)]
        found, cursor = [], None
        for _page in range(5):
            users, cursor = await store.search_users(query, after=cursor, limit=PAGE_SIZE)
            found += [u.login for u in users]
            if cursor is None:
                break
        assert found == expected, query


async def test_a_forged_cursor_is_refused_or_harmless(people):
    with pytest.raises(BadCursor):
        await people.search_users("", after="not-a-cursor")
    with pytest.raises(BadCursor):
        await people.search_users("", after=encode_cursor("x", 1)[:-2] + "!!")
    users, _ = await people.search_users("", after=encode_cursor("zzzz", 0))
    assert users == []


async def test_a_renamed_user_is_found_by_the_new_name(people):
    bert = await people.user_by_login("bert")
    await people.update_user(bert.id, name="Bertram Öhler")
    assert await logins(people, "ohler") == ["bert"]
    assert await logins(people, "kraus bert") == ["bert"]  # the address still has kraus


async def test_favourites_and_recent_contacts(people):
    me = await people.user_by_login("anna.berg")
    bert, sven, zoe = [await people.user_by_login(x) for x in ("bert", "smuller", "zoe")]
    await people.set_favorite(me.id, zoe.id, True)
    await people.set_favorite(me.id, bert.id, True)
    await people.set_favorite(me.id, bert.id, True)  # twice is once
    assert [u.login for u in await people.favorites(me.id)] == ["bert", "zoe"]
    await people.set_favorite(me.id, zoe.id, False)
    assert [u.login for u in await people.favorites(me.id)] == ["bert"]

    await people.record_call(me.id, [bert.id])
    time.sleep(0.01)
    await people.record_call(me.id, [sven.id, bert.id])
    time.sleep(0.01)
    await people.record_call(sven.id, [me.id])  # being called counts too
    assert [u.login for u in await people.recent_contacts(me.id)] == ["smuller", "bert"]
    assert [u.login for u in await people.recent_contacts(bert.id)] == ["anna.berg"]
    await people.disable_user("smuller")
    assert [u.login for u in await people.recent_contacts(me.id)] == ["bert"]


async def test_favourites_are_bounded(store):
    await store.add_users([(f"u{n}", f"U {n}", None, None) for n in range(MAX_FAVORITES + 2)])
    me = await store.user_by_login("u0")
    for n in range(1, MAX_FAVORITES + 1):
        await store.set_favorite(me.id, (await store.user_by_login(f"u{n}")).id, True)
    with pytest.raises(StoreError) as refused:
        await store.set_favorite(me.id, (await store.user_by_login(f"u{MAX_FAVORITES + 1}")).id, True)
    assert refused.value.code == "too-many-favorites"
    assert len(await store.favorites(me.id)) == MAX_FAVORITES


# -- rooms, links, sessions, SSO, housekeeping ---------------------------------------------------------


async def test_rooms_links_and_revocation(store):
    anna = await store.add_user("anna", "Anna Berg")
    room = await store.create_room("Kunde Meier", "guest", created_by=anna.id)
    token, invite = await store.create_invite(room, ttl_s=60, created_by=anna.id)
    assert (await store.invite_by_token(token)).id == invite.id
    assert await store.is_member(room.id, anna.id)
    guest, _ = await store.create_session(ttl_s=60, guest_room=room, guest_name="Gast")
    last = await store.last_event_id()
    await store.revoke_invite(invite.id)
    assert (await store.invite_by_id(invite.id)).state() == "revoked"
    assert await store.session(guest) is None
    assert [(e.kind, e.subject) for e in await store.events_after(last)] == [(INVITE_REVOKED, room.id)]


async def test_events_are_seen_in_the_order_they_were_written(store):
    users = [await store.add_user(f"u{n}", f"U {n}") for n in range(8)]
    tokens = [(await store.create_session(ttl_s=60, user=u))[0] for u in users]
    last = await store.last_event_id()
    await asyncio.gather(*(store.delete_session(t) for t in tokens))
    events = await store.events_after(last)
    assert [e.kind for e in events] == [SESSION_ENDED] * 8
    assert [e.id for e in events] == sorted(e.id for e in events)


async def test_an_sso_token_is_used_once_and_expired_rows_are_purged(store):
    assert await store.use_sso_token("jwt-1", time.time() + 60)
    assert not await store.use_sso_token("jwt-1", time.time() + 60)
    anna = await store.add_user("anna", "Anna Berg")
    await store.create_session(ttl_s=-1, user=anna)
    await store.use_sso_token("jwt-old", time.time() - 1)
    assert await store.purge_expired() == {"sessions": 1, "sso_tokens": 1, "events": 0}


async def test_settings_are_replaced(store):
    await store.set_setting("public_url", "https://a.example")
    await store.set_setting("public_url", "https://b.example")
    assert await store.setting("public_url") == "https://b.example"


async def test_an_import_skips_taken_logins_hashes_passwords_and_indexes_everyone(store):
    await store.add_user("anna", "Anna Berg")
    rows = ["login,name,email,password", "ANNA,Clash,,", "new1,Jürgen Müller,jm@example.org,",
            "NEW1,Twice In The File,,"] + [f"p{n},Person {n},,password number {n}" for n in range(10)]
    out = await admin.users_import(store, io.StringIO("\n".join(rows) + "\n"))
    assert out == "imported 11 users, skipped 2 that exist: ANNA, NEW1"
    assert await logins(store, "muller") == ["new1"]
    found = await store.password_hash("p7")
    assert found is not None and verify_password(found[1], "password number 7")
    assert await store.password_hash("new1") is None
