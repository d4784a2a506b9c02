"""Pure rules: message checks, the hub without a network, rate limit, TURN credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from p2pconf import protocol
from p2pconf.ice import ice_servers_for, turn_credentials
from p2pconf.protocol import ProtocolError
from p2pconf.ratelimit import TokenBucket
from p2pconf.signaling import HandshakeError, Hub


def test_display_names_are_trimmed_and_bounded():
    assert protocol.clean_name("  Ada   Lovelace ") == "Ada Lovelace"
    assert protocol.clean_name("<b>x</b>") == "<b>x</b>"  # kept as text; clients render text
    for bad in ["", "   ", "x" * 41, "a\u0000b", 5, None]:
        with pytest.raises(ProtocolError) as err:
            protocol.clean_name(bad)
        assert err.value.code == "bad-message"


def test_media_state_merges_and_audio_only_means_camera_off():
    state = protocol.clean_media({"mode": "audio-only"})
    assert state == {"mode": "audio-only", "mic": True, "cam": False}
    assert protocol.clean_media({"mic": False}, state) == {"mode": "audio-only", "mic": False, "cam": False}
    with pytest.raises(ProtocolError):
        protocol.clean_media({"mode": "video-only"})
    with pytest.raises(ProtocolError):
        protocol.clean_media({"mic": "off"})
    # sharing a screen is part of the state once said, in any mode, and only true or false
    sharing = protocol.clean_media({"screen": True}, state)
    assert sharing == {"mode": "audio-only", "mic": True, "cam": False, "screen": True}
    assert protocol.clean_media({"mic": False}, sharing)["screen"] is True
    with pytest.raises(ProtocolError):
        protocol.clean_media({"screen": 1})


def test_signal_payloads_are_checked():
    assert protocol.check_signal({"type": "candidate", "candidate": None}) == {"candidate": None}
    cand = {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0", "extra": 1}
    assert protocol.check_signal({"type": "candidate", "candidate": cand})["candidate"] == {
        "candidate": cand["candidate"], "sdpMid": "0", "sdpMLineIndex": None}
    assert protocol.check_signal({"type": "offer", "sdp": "v=0", "restart": True}) == {"sdp": "v=0", "restart": True}
    for bad in [{"type": "offer"}, {"type": "answer", "sdp": ""}, {"type": "candidate"},
                {"type": "candidate", "candidate": {"candidate": "x"}}]:
        with pytest.raises(ProtocolError):
            protocol.check_signal(bad)


class Inbox(list):
    def __call__(self, msg):
        self.append(msg)


def greeted(hub: Hub) -> tuple:
    inbox = Inbox()
    session = hub.connect(inbox)
    hub.handle(session, {"type": "hello", "version": protocol.PROTOCOL_VERSION})
    return session, inbox


def test_hub_handshake_requires_hello_with_our_version():
    hub = Hub()
    session = hub.connect(Inbox())
    with pytest.raises(HandshakeError):
        hub.handle(session, {"type": "join", "room": "r", "name": "n"})
    with pytest.raises(HandshakeError) as err:
        hub.handle(session, {"type": "hello", "version": 99})
    assert err.value.code == "version-unsupported"


def test_hub_full_room_refuses_and_changes_nothing():
    hub = Hub(max_room_size=2)
    (a, ia), (b, ib), (c, _) = greeted(hub), greeted(hub), greeted(hub)
    hub.handle(a, {"type": "join", "room": "r", "name": "A"})
    hub.handle(b, {"type": "join", "room": "r", "name": "B"})
    before = (list(hub.rooms["r"].members), len(ia), len(ib))
    with pytest.raises(ProtocolError) as err:
        hub.handle(c, {"type": "join", "room": "r", "name": "C"})
    assert err.value.code == "room-full"
    assert (list(hub.rooms["r"].members), len(ia), len(ib)) == before
    assert c.room is None


def test_hub_routes_to_one_peer_of_the_same_room_only():
    hub = Hub()
    (a, _), (b, ib), (c, ic), (x, ix) = greeted(hub), greeted(hub), greeted(hub), greeted(hub)
    for s, name in [(a, "A"), (b, "B"), (c, "C")]:
        hub.handle(s, {"type": "join", "room": "r", "name": name})
    hub.handle(x, {"type": "join", "room": "other", "name": "X"})
    ib.clear(), ic.clear(), ix.clear()
    hub.handle(a, {"type": "offer", "to": b.id, "sdp": "v=0"})
    assert ib == [{"type": "offer", "from": a.id, "to": b.id, "sdp": "v=0"}]
    assert ic == [] and ix == []
    with pytest.raises(ProtocolError) as err:
        hub.handle(x, {"type": "offer", "to": b.id, "sdp": "v=0"})
    assert err.value.code == "unknown-peer"
    with pytest.raises(ProtocolError) as err:
        hub.handle(a, {"type": "offer", "from": c.id, "to": b.id, "sdp": "v=0"})
    assert err.value.code == "forged-sender"
    assert len(ib) == 1


def test_empty_rooms_are_forgotten():
    hub = Hub()
    a, _ = greeted(hub)
    hub.handle(a, {"type": "join", "room": "r", "name": "A"})
    hub.disconnect(a)
    assert hub.rooms == {} and hub.sessions == {}


def test_token_bucket_allows_burst_then_rate():
    now = [0.0]
    bucket = TokenBucket(rate=10, burst=5, clock=lambda: now[0])
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    now[0] += 0.25  # 2.5 tokens
    assert [bucket.take() for _ in range(3)] == [True, True, False]


def test_turn_credentials_follow_coturn_rest_scheme():
    username, password = turn_credentials("s3cret", "peer1", ttl_s=3600, now=1_000_000)
    assert username == "1003600:peer1"
    expected = base64.b64encode(hmac.new(b"s3cret", b"1003600:peer1", hashlib.sha1).digest()).decode()
    assert password == expected


def test_no_ice_servers_unless_configured():
    kwargs = dict(turn_ttl_s=60)
    assert ice_servers_for("p", stun_urls=[], turn_urls=[], turn_secret=None, **kwargs) == []
    servers = ice_servers_for("p", stun_urls=["stun:s.example:3478"], turn_urls=["turn:t.example:3478"],
                              turn_secret="k", **kwargs)
    assert servers[0] == {"urls": ["stun:s.example:3478"]}
    assert servers[1]["urls"] == ["turn:t.example:3478"] and servers[1]["username"].endswith(":p")
