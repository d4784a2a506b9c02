"""Real aiortc peers through the real server on loopback."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from types import SimpleNamespace

import jsonschema
import pytest

from p2pconf.appkeys import HUB
from p2pconf.bots.bot import Bot, BotOptions, PeerLink, split_candidates
from p2pconf.bots.report import build_report
from p2pconf.bots.runner import BotRefused, RunOptions, _drain, run_bots
from p2pconf.bots.sources import VideoSpec
from p2pconf.cli import parser
from p2pconf.protocol import CLOSE_REVOKED
from p2pconf.server import create_app

from .conftest import REPORT_SCHEMA, wait_until
from .org import Browser, add_user
from .test_client import count_ws, never


@pytest.fixture
async def server_url(aiohttp_server, config, loopback):
    server = await aiohttp_server(create_app(config))
    return str(server.make_url("/"))


async def start(bots, bot: Bot) -> Bot:
    bots.append(bot)
    await bot.start()
    return bot


def link_of(bot: Bot, other: Bot):
    return bot.links.get(other.client.id)


def frames_from(bot: Bot, other: Bot, kind: str) -> int:
    link = link_of(bot, other)
    meter = link and link.meters.get(kind)
    return meter.frames if meter else 0


async def test_two_bots_connect_and_hear_each_others_tone(server_url, bots):
    a = await start(bots, Bot(1, server_url, "pair"))
    b = await start(bots, Bot(2, server_url, "pair"))
    await wait_until(lambda: all(frames_from(x, y, k) > 20 for x, y in [(a, b), (b, a)] for k in ("audio", "video")),
                     timeout=15)
    assert link_of(b, a).offerer and not link_of(a, b).offerer  # the newcomer offered
    assert link_of(a, b).states[:2] == ["connecting", "connected"]
    assert link_of(b, a).states[:2] == ["connecting", "connected"]
    assert abs(link_of(a, b).meters["audio"].tone_hz() - b.tone_hz) < 3
    assert abs(link_of(b, a).meters["audio"].tone_hz() - a.tone_hz) < 3
    assert link_of(a, b).meters["video"].stamp_senders == {2}
    assert link_of(b, a).meters["video"].stamp_senders == {1}


async def test_trickled_candidates_work_even_before_the_offer(server_url, bots):
    """A browser-style peer: offer without candidates, candidates as separate messages."""
    a = await start(bots, Bot(1, server_url, "trickle"))
    held: list[dict] = []
    original = a._on_message

    async def reorder(msg):  # deliver the candidates first, the offer after them
        if msg["type"] == "offer":
            held.append(msg)
        elif msg["type"] == "candidate" and msg["candidate"] is None:
            await original(msg)
            await original(held.pop())
        else:
            await original(msg)

    a.client.on_message = reorder
    b = Bot(2, server_url, "trickle", BotOptions(trickle=True))
    sent: list[dict] = []
    send = b.client.send

    async def spy(msg):
        sent.append(msg)
        await send(msg)

    b.client.send = spy
    await start(bots, b)
    await wait_until(lambda: frames_from(a, b, "video") > 10 and frames_from(b, a, "video") > 10, timeout=15)
    offer = next(m for m in sent if m["type"] == "offer")
    assert "a=candidate" not in offer["sdp"]
    candidates = [m["candidate"] for m in sent if m["type"] == "candidate"]
    assert candidates[-1] is None and all("127.0.0.1" in c["candidate"] for c in candidates[:-1])


def test_split_candidates_keeps_mid_and_index():
    sdp = "v=0\r\nm=audio 9 UDP 0\r\na=mid:0\r\na=candidate:1 1 udp 5 127.0.0.1 4000 typ host\r\na=end-of-candidates\r\nm=video 9 UDP 0\r\na=mid:1\r\n"
    stripped, cands = split_candidates(sdp)
    assert "candidate" not in stripped and "a=mid:1" in stripped
    assert cands == [{"candidate": "candidate:1 1 udp 5 127.0.0.1 4000 typ host", "sdpMid": "0", "sdpMLineIndex": 0}]


async def test_link_bytes_agree_with_the_transports_byte_counter(server_url, bots):
    a = await start(bots, Bot(1, server_url, "wire"))
    b = await start(bots, Bot(2, server_url, "wire"))
    await wait_until(lambda: frames_from(a, b, "video") > 60 and frames_from(b, a, "video") > 60, timeout=20)
    for bot in (a, b):
        await bot.stop_sending()
    await _drain([a, b])
    report = build_report([await a.results(), await b.results()], stopped_at=time.time())
    jsonschema.validate(report, REPORT_SCHEMA)
    for receiver, sender in ((a, b), (b, a)):
        stats = await link_of(receiver, sender).pc.getStats()
        on_wire = next(s for s in stats.values() if s.type == "transport").bytesReceived
        links = [l for l in report["links"] if l["to"] == receiver.name]
        counted = sum(l["bytes"] for l in links)
        # What is not RTP media on the transport is RTCP and DTLS: a few percent.
        assert 0.95 * on_wire <= counted <= on_wire, (counted, on_wire)
        for l in links:
            assert l["kbps"] == pytest.approx(l["bytes"] * 8 / l["seconds"] / 1000, abs=0.1)
            per_second = sorted(s["kbps"] for s in l["series"])
            assert len(per_second) >= 3 and per_second[len(per_second) // 2] == pytest.approx(l["kbps"], rel=0.2)
            if l["kind"] == "video":
                assert l["freezes"] == 0 and 10 <= l["series"][-1]["fps"] <= 20


async def test_failed_link_is_restarted_by_its_offerer(server_url, bots):
    a = await start(bots, Bot(1, server_url, "restart"))
    b = await start(bots, Bot(2, server_url, "restart"))
    await wait_until(lambda: frames_from(a, b, "video") > 5, timeout=15)
    old_pc = link_of(a, b).pc
    link_of(a, b).inbox.put_nowait({"type": "_failed"})  # a is the answerer: asks b to restart
    await wait_until(lambda: link_of(a, b).pc is not old_pc, timeout=10)
    await wait_until(lambda: frames_from(a, b, "video") > 5 and frames_from(b, a, "video") > 5, timeout=15)
    assert link_of(a, b).pc.connectionState == "connected"
    assert old_pc.connectionState == "closed"


async def test_audio_only_call_has_no_video_at_all(server_url, bots):
    a = await start(bots, Bot(1, server_url, "audio", BotOptions(video=None)))
    b = await start(bots, Bot(2, server_url, "audio", BotOptions(video=None)))
    await wait_until(lambda: frames_from(a, b, "audio") > 10 and frames_from(b, a, "audio") > 10, timeout=15)
    for x, y in [(a, b), (b, a)]:
        pc = link_of(x, y).pc
        assert [t.kind for t in pc.getTransceivers()] == ["audio"]
        assert "m=video" not in pc.localDescription.sdp and "m=video" not in pc.remoteDescription.sdp
        assert "video" not in link_of(x, y).meters
    assert link_of(a, b).media == {"mode": "audio-only", "mic": True, "cam": False}


async def test_media_state_changes_reach_other_bots(server_url, bots):
    a = await start(bots, Bot(1, server_url, "mute"))
    b = await start(bots, Bot(2, server_url, "mute"))
    await b.set_media(mic=False)
    await wait_until(lambda: link_of(a, b) and link_of(a, b).media.get("mic") is False, timeout=5)
    assert link_of(a, b).media == {"mode": "audio+video", "mic": False, "cam": True}


async def test_cancelling_a_run_stops_its_bot_processes_at_once(aiohttp_server, config, loopback):
    """Ctrl-C or SIGTERM of `p2pconf capacity` cancels run_bots: its processes end, whenever it comes."""
    app = create_app(config)
    server = await aiohttp_server(app)

    def in_room() -> bool:
        room = app[HUB].rooms.get("cancel")
        return room is not None and len(room.members) == 2

    for ready in (lambda: True, in_room):  # while the processes start, and once both bots are in the room
        run = asyncio.ensure_future(run_bots(RunOptions(server=str(server.make_url("/")), room="cancel", count=2,
                                                        duration_s=60, video=VideoSpec(160, 120, 15), processes=2)))
        await wait_until(ready, timeout=30)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        await wait_until(lambda: not multiprocessing.active_children(), timeout=15)  # not after the 60 s run


async def test_six_bot_mesh_all_sixty_tracks_flow(server_url):
    # Three bot processes of two bots each (this process also runs the server), and 60 ms
    # audio frames: a 2-core CI machine has no more headroom (README, Performance).
    report = await run_bots(RunOptions(server=server_url, room="mesh", count=6, duration_s=6,
                                       video=VideoSpec(320, 240, 15), audio_ms=60, processes=3))
    assert report["processes"] == 3
    assert report["participants"] == 6
    assert report["tracks_expected"] == 60
    assert report["tracks_flowing"] == 60, report["missing"]
    assert report["mesh_formed"] and report["join_to_mesh_s"] > 0
    audio = [l for l in report["links"] if l["kind"] == "audio"]
    video = [l for l in report["links"] if l["kind"] == "video"]
    assert len(audio) == 30 and len(video) == 30
    for link in audio:
        assert abs(link["tone_hz"] - link["expected_tone_hz"]) < 3, link
        assert link["packets"] > 100 and link["kbps"] > 10
    for link in video:
        assert link["frames"] > 30 and link["latency_ms"] is not None and link["kbps"] > 50
    assert report["video_frames_delivered_ratio"] >= 0.98


async def test_an_empty_candidate_string_ends_nothing_only_null_does(server_url):
    """Firefox ends each m-line's candidates with {"candidate": ""}, the data channel's line first.
    aiortc's None ends every line's, and the bot bundles them all on the first line's transport:
    only the null at the end may end them (else a bot answering Firefox never connected)."""

    class RecordingPc:
        remoteDescription = object()

        def __init__(self):
            self.added = []

        async def addIceCandidate(self, candidate):
            self.added.append(candidate)

    bot = Bot(1, server_url, "r")
    link = PeerLink("p", "Firefox", offerer=True, pc=RecordingPc())
    link.pending = [{"candidate": "", "sdpMid": "3", "sdpMLineIndex": 3},
                    {"candidate": "candidate:1 1 UDP 2122187007 127.0.0.1 47486 typ host", "sdpMid": "0",
                     "sdpMLineIndex": 0}, {"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0}, None]
    await bot._flush_candidates(link)
    first, null = link.pc.added
    assert first.ip == "127.0.0.1" and first.port == 47486 and first.sdpMid == "0"
    assert null is None


# -- refused for good: a revoked guest link (issue 9) ----------------------------------------------


@pytest.fixture
async def guest_room(aiohttp_server, org_config, loopback):
    """A server without open rooms, counting /ws connections, and a guest room of anna's."""
    app = create_app(org_config)
    opened = count_ws(app)
    server = await aiohttp_server(app)
    await add_user(app, "anna", "Anna Berg")
    owner = Browser(str(server.make_url("/")))
    try:
        assert (await owner.sign_in("anna")).status == 302
        status, made = await owner.json("POST", "/api/rooms", {"name": "Kunde Meier"})
        assert status == 201

        async def revoke() -> None:
            status, _ = await owner.json("DELETE", f"/api/invites/{made['invite']['id']}")
            assert status == 200

        yield SimpleNamespace(base=owner.base, link=made["invite"]["link"], room=made["room"]["id"],
                              opened=opened, hub=app[HUB], revoke=revoke)
    finally:
        await owner.close()


async def test_a_bot_whose_guest_link_is_revoked_stops_for_good(guest_room, bots):
    a = await start(bots, Bot(1, guest_room.base, "", BotOptions(invite=guest_room.link)))
    b = await start(bots, Bot(2, guest_room.base, "", BotOptions(invite=guest_room.link)))
    await wait_until(lambda: a.flowing() == 2 and b.flowing() == 2, timeout=15)
    pcs = [link.pc for bot in (a, b) for link in bot.links.values()]
    assert len(guest_room.opened) == 2
    await guest_room.revoke()  # the server closes both guests with 4003
    await wait_until(lambda: a.refused and b.refused, timeout=5)
    for bot in (a, b):
        assert (bot.refused["code"], bot.refused["reason"]) == (CLOSE_REVOKED, "the guest link was revoked")
        assert bot.client.refused.code == CLOSE_REVOKED and bot.links == {}
    assert all(pc.connectionState == "closed" for pc in pcs)
    sent = [s.frames_sent for bot in (a, b) for s in bot.sources.values()]
    # No reconnection (a retry would come within 0.6 s and be refused `forbidden`), no media.
    await never(lambda: len(guest_room.opened) > 2, seconds=3.0)
    assert [s.frames_sent for bot in (a, b) for s in bot.sources.values()] == sent
    assert a.client.reconnects == b.client.reconnects == 0


@pytest.mark.parametrize("processes", [1, 2])
async def test_the_bots_command_fails_naming_4003_when_the_link_is_revoked(guest_room, capsys, processes):
    args = parser().parse_args(["bots", "--invite", guest_room.link, "--count", "2", "--duration", "30",
                                "--audio-only", "--processes", str(processes)])
    started = time.monotonic()
    run = asyncio.create_task(asyncio.to_thread(args.func, args))  # its own event loop, in a thread
    try:
        await wait_until(lambda: len(getattr(guest_room.hub.rooms.get(guest_room.room), "members", ())) == 2
                         or run.done(), timeout=20)
        assert not run.done(), capsys.readouterr().err
        await guest_room.revoke()
        code = await asyncio.wait_for(asyncio.shield(run), timeout=20)
    finally:
        await asyncio.wait_for(run, timeout=60)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1, last
    assert last in (f"p2pconf bots: bot-{n} refused by the server: 4003 the guest link was revoked" for n in (1, 2))
    assert time.monotonic() - started < 20  # at once, not after the 30 s of the run
    assert len(guest_room.opened) == 2  # one connection per bot, no reconnection attempt


def test_a_refusal_names_the_bot_and_the_code():
    from p2pconf.bots.client import Refused
    from p2pconf.bots.runner import describe_failure

    assert describe_failure(BotRefused("bot-2", Refused(4003, "the guest link was revoked"))) == \
        "bot-2 refused by the server: 4003 the guest link was revoked"
    assert describe_failure(BotRefused("bot-1", Refused("forbidden", "this room is not yours"))) == \
        "bot-1 refused by the server: forbidden: this room is not yours"
