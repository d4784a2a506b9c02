"""Link quality over the protocol: stats uploads, the room's link matrix, focus."""

from __future__ import annotations

import pytest

from .conftest import three_in_a_room


async def test_the_matrix_joins_what_the_receiver_got_and_the_sender_sent(connect):
    a, b, c = await three_in_a_room(connect)
    await a.send(type="stats", peers={b.id: {"kbpsOut": 800, "rttMs": 12.34, "path": "direct"}})
    await b.send(type="stats", peers={a.id: {"kbpsIn": 790.5, "lossPct": 0.5, "path": "direct"}})
    await c.send(type="link-matrix")
    matrix = await c.expect("link-matrix")
    assert [p["name"] for p in matrix["peers"]] == ["A", "B", "C"]
    assert len(matrix["links"]) == 6  # every ordered pair
    ab = next(l for l in matrix["links"] if (l["from"], l["to"]) == (a.id, b.id))
    assert ab["kbps"] == 790.5 and ab["kbpsSent"] == 800 and ab["lossPct"] == 0.5
    assert ab["rttMs"] == 12.3 and ab["path"] == "direct" and 0 <= ab["ageS"] < 5
    ca = next(l for l in matrix["links"] if (l["from"], l["to"]) == (c.id, a.id))
    assert ca["kbps"] is None and ca["ageS"] is None  # nobody reported it yet
    await a.silent(), await b.silent()  # uploads are not relayed to anyone


@pytest.mark.parametrize("peers", [
    "not an object",
    {"x": "not an object"},
    {"x": {"kbpsIn": -1}},
    {"x": {"lossPct": 101}},
    {"x": {"rttMs": True}},
    {"x": {"kbpsIn": "fast"}},
    {"x": {"path": "carrier pigeon"}},
    {str(i): {} for i in range(65)},
])
async def test_bad_stats_are_refused_and_keep_the_last_good_upload(connect, peers):
    a, b = await connect(), await connect()
    await a.join("q", "A")
    await b.join("q", "B")
    await a.expect("peer-joined")
    await b.send(type="stats", peers={a.id: {"kbpsIn": 100}})
    await b.send(type="stats", peers=peers)
    error = await b.expect("error")
    assert (error["code"], error["ref"]) == ("bad-message", "stats")
    await b.send(type="link-matrix")
    matrix = await b.expect("link-matrix")
    assert next(l for l in matrix["links"] if l["to"] == b.id)["kbps"] == 100


async def test_stats_about_peers_outside_the_room_are_dropped(connect):
    a, b = await connect(), await connect()
    stranger = await connect()
    await a.join("q", "A")
    await b.join("q", "B")
    await stranger.join("elsewhere", "S")
    await a.expect("peer-joined")
    await b.send(type="stats", peers={stranger.id: {"kbpsIn": 5}, b.id: {"kbpsIn": 6}, a.id: {"kbpsIn": 7}})
    await a.send(type="link-matrix")
    matrix = await a.expect("link-matrix")
    assert {p["id"] for p in matrix["peers"]} == {a.id, b.id}
    assert [l["kbps"] for l in matrix["links"] if l["to"] == b.id] == [7]


async def test_quality_messages_need_a_room(connect):
    a = await connect()
    for msg in ({"type": "stats", "peers": {}}, {"type": "link-matrix"}, {"type": "focus", "peer": None}):
        await a.send(**msg)
        assert (await a.expect("error"))["code"] == "not-joined"


async def test_focus_is_told_to_the_room_and_listed_for_newcomers(connect):
    a, b = await connect(), await connect()
    await a.join("q", "A")
    await b.join("q", "B")
    await a.expect("peer-joined")
    await b.send(type="focus", peer=a.id)
    assert await a.expect("peer-focus") == {"type": "peer-focus", "id": b.id, "focus": a.id}
    c = await connect()
    joined = await c.join("q", "C")
    assert {p["name"]: p["focus"] for p in joined["peers"]} == {"A": None, "B": a.id}
    await a.expect("peer-joined"), await b.expect("peer-joined")
    for bad in (b.id, "nobody", 7):  # yourself, a stranger, not an id
        await b.send(type="focus", peer=bad)
        assert (await b.expect("error"))["code"] == "unknown-peer"
    await b.send(type="focus", peer=None)
    assert (await a.expect("peer-focus"))["focus"] is None
