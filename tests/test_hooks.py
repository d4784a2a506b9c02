"""Each of p2pconf/bots/hooks.py's reaches into aiortc and aioice, against real peer connections.

When an aiortc or aioice upgrade moves what a hook relies on, the test named after it fails.
"""

from __future__ import annotations

import aioice.ice
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from p2pconf.bots import hooks
from p2pconf.bots.measure import WireCounter
from p2pconf.bots.rtpframes import vp8_info
from p2pconf.bots.stamp import FrameStamp

from .conftest import wait_until
from .peers import video_pair


def test_written_for_the_installed_versions():
    import aiortc

    assert (aiortc.__version__, aioice.__version__) == (hooks.AIORTC_VERSION, hooks.AIOICE_VERSION)


async def test_gather_on_offers_only_the_given_addresses_and_none_restores_aioice():
    hooks.gather_on(["127.0.0.1", "::1"])
    try:
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("audio")
        await pc.setLocalDescription(await pc.createOffer())
        hosts = [line.split()[4] for line in pc.localDescription.sdp.splitlines() if line.startswith("a=candidate:")]
        assert hosts and set(hosts) <= {"127.0.0.1", "::1"}
        await pc.close()
    finally:
        hooks.gather_on(None)
    assert aioice.ice.get_host_addresses is hooks._default_host_addresses


async def test_count_datagrams_sees_every_byte_the_transport_receives(loopback):
    wire = WireCounter()
    async with video_pair(on_receiver=lambda r: hooks.count_datagrams(r.transport.transport, wire.count)) as pair:
        await wait_until(lambda: wire.total > 50_000, timeout=10)
        await pair.player.stop()
        stats = [s for s in (await pair.receiver_pc.getStats()).values() if s.type == "transport"]
        assert wire.total == stats[0].bytesReceived  # the same datagrams, all of them
        assert wire.by_ssrc[pair.sender._ssrc] > 0.9 * wire.total


async def test_watch_rtp_sees_the_senders_packets_first(loopback):
    seen: list[tuple[int, int]] = []
    async with video_pair(on_receiver=lambda r: hooks.watch_rtp(r, lambda p, ms: seen.append((p.ssrc, p.sequence_number)))
                          ) as pair:
        await wait_until(lambda: len(seen) > 50, timeout=10)
    media = [seq for ssrc, seq in seen if ssrc == pair.sender._ssrc]
    assert len(media) > 50 and media == list(range(media[0], media[0] + len(media)))


class Collect(hooks.FrameSink):
    def __init__(self, pli_at: int | None = None):
        self.packets = []
        self.pli_at = pli_at

    def add(self, packet):
        self.packets.append(packet)
        return len(self.packets) == self.pli_at, None


async def test_take_frames_gets_every_media_packet_and_nothing_is_decoded(loopback):
    sink = Collect()
    async with video_pair(on_receiver=lambda r: hooks.take_frames(r, sink)) as pair:
        await wait_until(lambda: len(sink.packets) > 50, timeout=10)
        assert pair.receiver.track._queue.empty()  # aiortc's decoder thread never got a frame
        assert hooks.codec_name(pair.receiver, sink.packets[0].payload_type) == "VP8"
    first = sink.packets[0]
    start, data = vp8_info(first.payload)
    assert start and first._data == data  # the payload keeps its descriptor; _data is without


async def test_a_keyframe_request_reaches_the_sender_and_a_keyframe_follows_at_once(loopback):
    sink = Collect(pli_at=40)  # the sink asks for a keyframe (PLI) at its 40th packet
    async with video_pair(on_receiver=lambda r: hooks.take_frames(r, sink)) as pair:
        await wait_until(lambda: pair.track.keyframe_requests == 1, timeout=10)
        asked_at = len(sink.packets)
        await wait_until(lambda: len({p.timestamp for p in sink.packets[asked_at:]}) >= 3, timeout=5)
    frames = {}
    for p in sink.packets[asked_at:]:
        start, data = vp8_info(p.payload)
        if start:
            frames.setdefault(p.timestamp, not data[0] & 1)
    assert any(list(frames.values())[:2]), frames  # within a frame or two, not at the clip's next keyframe


async def test_watch_remb_hears_the_receivers_estimate(loopback):
    async with video_pair() as pair:
        # aiortc's estimator speaks once it has measured the stream for 3 s
        await wait_until(lambda: pair.track.estimate_bps is not None, timeout=15)
        assert pair.track.estimate_bps > 0.5 * pair.player.clip.rungs[0].bps


async def test_the_frame_stamp_rides_on_every_packet_of_its_frame(loopback):
    sink = Collect()
    async with video_pair(on_receiver=lambda r: hooks.take_frames(r, sink)) as pair:
        assert f"a=extmap:{hooks.STAMP_ID} {hooks.STAMP_URI}" in pair.receiver_pc.localDescription.sdp
        await wait_until(lambda: len({p.timestamp for p in sink.packets}) > 20, timeout=10)
    by_frame: dict[int, set] = {}
    for p in sink.packets:
        by_frame.setdefault(p.timestamp, set()).add(hooks.stamp_of(p))
    assert all(len(stamps) == 1 for stamps in by_frame.values())  # one stamp per frame, on every packet
    stamps = [FrameStamp.unpack(next(iter(s))) for s in by_frame.values()]
    assert {s.sender for s in stamps} == {3}
    numbers = [s.frame for s in stamps]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert [s.clip_index for s in stamps] == [n % pair.player.clip.length for n in range(len(numbers))]


async def test_a_retransmitted_packet_keeps_its_frames_stamp(loopback):
    sink = Collect()
    dropped: list[int] = []

    def lose_one(receiver) -> None:
        hooks.take_frames(receiver, sink)
        transport = receiver.transport.transport
        inner = transport._recv

        async def losing() -> bytes:  # the media datagram after the 30th never arrives the first time
            while True:
                data = await inner()
                if len(sink.packets) == 30 and not dropped and rtp_ssrc(data) == sink.packets[0].ssrc:
                    dropped.append(int.from_bytes(data[2:4], "big"))
                    continue
                return data

        transport._recv = losing

    async with video_pair(on_receiver=lose_one) as pair:
        await wait_until(lambda: dropped and any(p.sequence_number == dropped[0] for p in sink.packets), timeout=10)
    repaired = next(p for p in sink.packets if p.sequence_number == dropped[0])
    assert repaired.ssrc == pair.sender._ssrc  # unwrapped from RTX by aiortc
    siblings = [p for p in sink.packets if p.timestamp == repaired.timestamp and p is not repaired]
    assert hooks.stamp_of(repaired) is not None and {hooks.stamp_of(p) for p in siblings} <= {hooks.stamp_of(repaired)}


async def test_a_peer_that_never_heard_of_the_stamp_gets_plain_rtp(loopback):
    datagrams: list[bytes] = []
    async with video_pair(on_receiver=lambda r: hooks.count_datagrams(r.transport.transport, datagrams.append),
                          browser_offer=True) as pair:
        assert hooks.STAMP_URI not in pair.receiver_pc.localDescription.sdp
        await wait_until(lambda: sum(rtp_ssrc(d) == pair.sender._ssrc for d in datagrams) > 20, timeout=10)
        media = [d for d in datagrams if rtp_ssrc(d) == pair.sender._ssrc]
        assert all(extension_ids(d) == {1, 3} for d in media)  # mid and abs-send-time: nothing of ours
    # the same, when both sides know it
    datagrams.clear()
    async with video_pair(on_receiver=lambda r: hooks.count_datagrams(r.transport.transport, datagrams.append)) as pair:
        await wait_until(lambda: sum(rtp_ssrc(d) == pair.sender._ssrc for d in datagrams) > 20, timeout=10)
        assert all(extension_ids(d) == {1, 3, hooks.STAMP_ID} for d in datagrams if rtp_ssrc(d) == pair.sender._ssrc)


def rtp_ssrc(datagram: bytes) -> int | None:
    """The SSRC of an SRTP packet (its header is sent in the clear), None for anything else."""
    if len(datagram) >= 12 and 127 < datagram[0] < 192 and not 192 <= datagram[1] <= 223:
        return int.from_bytes(datagram[8:12], "big")
    return None


def extension_ids(datagram: bytes) -> set[int]:
    """The ids of an SRTP packet's one-byte header extensions (RFC 8285; in the clear, too)."""
    if not datagram[0] & 0x10:
        return set()
    pos = 12 + 4 * (datagram[0] & 0x0F)
    assert datagram[pos : pos + 2] == b"\xbe\xde"
    end = pos + 4 + 4 * int.from_bytes(datagram[pos + 2 : pos + 4], "big")
    pos, ids = pos + 4, set()
    while pos < end:
        if datagram[pos] == 0:
            pos += 1
            continue
        ids.add(datagram[pos] >> 4)
        pos += 2 + (datagram[pos] & 0x0F)
    return ids


@pytest.fixture(autouse=True)
def _stamp_extension():
    hooks.install_stamp_extension()
