"""Frames counted from RTP (rtpframes.py) and pictures proved by decoding a sample (pictures.py):
between real aiortc peers over loopback, and packet by packet with the clip's real VP8 frames."""

from __future__ import annotations

import fractions

import av
import pytest
from aiortc.codecs.vpx import Vp8Encoder, vp8_depayload
from aiortc.rtp import RtpPacket

from p2pconf.bots import hooks
from p2pconf.bots.clip import encode_clip, ladder, video_clip
from p2pconf.bots.measure import TrackMeter, WireCounter
from p2pconf.bots.pictures import PictureCheck
from p2pconf.bots.rtpframes import HOLD_S, Frame, VideoFrames
from p2pconf.bots.stamp import FrameStamp

from .conftest import wait_until
from .peers import SMALL, video_pair


def metering(meters: list):
    return lambda receiver: meters.append(TrackMeter("video", receiver, WireCounter()))


async def test_frames_are_counted_from_rtp_with_their_stamps_and_none_is_decoded(loopback):
    meters: list[TrackMeter] = []
    async with video_pair(on_receiver=metering(meters)) as pair:
        meter = meters[0]
        await wait_until(lambda: meter.frames >= 45, timeout=10)
        assert pair.receiver.track._queue.empty()  # aiortc decoded nothing
        first = pair.track.first_number
        numbers = sorted(meter.video_numbers)
        assert numbers == list(range(first, first + len(numbers)))
        assert meter.stamp_senders == {3} and meter.size == (320, 240) and meter.bad_stamps == 0
        assert max(meter.latencies_ms) < 200 and meter.freezes.count == 0 and meter.sink.given_up == 0
        sample = meter.sample(meter.last_at + 0.001)
        assert (sample["width"], sample["height"]) == (320, 240) and sample["fps"] > 0


async def test_a_frame_lost_for_good_costs_the_frames_until_a_keyframe_which_comes_on_request(loopback):
    meters: list[TrackMeter] = []
    lost: list[int] = []  # the RTP timestamp of the frame whose packets never arrive

    def lose_a_frame(receiver) -> None:
        metering(meters)(receiver)
        transport = receiver.transport.transport
        inner, seen = transport._recv, []

        async def losing() -> bytes:
            while True:
                data = await inner()
                if 127 < data[0] < 192 and not 192 <= data[1] <= 223:  # RTP, its header in the clear
                    timestamp = int.from_bytes(data[4:8], "big")
                    if timestamp not in seen:
                        seen.append(timestamp)
                    if len(seen) == 20 and not lost:
                        lost.append(timestamp)
                    if timestamp in lost:  # the media packets and every retransmission of them
                        continue
                return data

        transport._recv = losing

    # One keyframe in 3 s: only a keyframe made on request can end the freeze soon.
    clip = encode_clip(SMALL, ladder(SMALL, top_only=True), clip_s=3, gop_s=3)
    async with video_pair(on_receiver=lose_a_frame, clip=clip) as pair:
        meter = meters[0]
        clip_index: dict[int, int] = {}  # frame number -> the clip frame it showed
        shown = meter.sink.on_frame

        def showing(frame, now):
            clip_index[frame.stamp.frame] = frame.stamp.clip_index
            shown(frame, now)

        meter.sink.on_frame = showing
        await wait_until(lambda: meter.sink.pli >= 1, timeout=10)
        shown_before = meter.frames
        await wait_until(lambda: meter.frames > shown_before + 5, timeout=5)
        assert pair.track.keyframe_requests >= 1
        first = pair.track.first_number
        numbers = sorted(meter.video_numbers)
        missing = sorted(set(range(first, numbers[-1])) - set(numbers))
        # the lost frame, and the frames that waited HOLD_S for it to be retransmitted
        assert 1 <= len(missing) <= (HOLD_S + 0.5) * SMALL.fps and missing == list(range(missing[0], missing[-1] + 1))
        assert meter.freezes.count == 1
        # the sender jumped to the clip's next keyframe at once, not at its place in the loop
        length = pair.player.clip.length
        assert any(n > missing[-1] and clip_index[n] != (n - first) % length for n in clip_index), \
            "no keyframe was made on request"


async def test_the_sampled_link_decodes_pictures_that_show_the_stamped_clip_frame(loopback):
    meters: list[TrackMeter] = []
    async with video_pair(on_receiver=metering(meters)):
        meter = meters[0]
        meter.check_pictures(True)
        await wait_until(lambda: meter.decoded >= 10, timeout=10)
        assert meter.bad_pictures == 0 and meter.pictures.sizes == {(320, 240)}


def clip_frames(count: int, shift: int = 0) -> list[Frame]:
    """The clip's frames as a receiver would assemble them, stamped with their index (+ `shift`)."""
    rung = video_clip(SMALL, top_only=True).rungs[0]
    return [Frame(timestamp=n, first_seq=n, last_seq=n, parts={n: rung.frames[n]}, seqs={n}, keyframe=rung.keyframes[n],
                  stamp=FrameStamp(3, n, 0, (n + shift) % len(rung.frames)))
            for n in range(count)]


@pytest.mark.parametrize("shift, bad", [(0, False), (1, True)])
def test_a_picture_that_is_not_the_stamped_clip_frame_is_bad(shift, bad):
    check = PictureCheck()
    for frame in clip_frames(SMALL.fps, shift):
        check.feed(frame, now=0.0)
    check.close()
    assert check.decoded == SMALL.fps
    assert check.bad == (SMALL.fps if bad else 0)


# -- packet by packet -------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def rtp_frames(count: int) -> list[list[RtpPacket]]:
    """The first `count` frames of the clip, packetised by aiortc's own VP8 packetiser."""
    rung = video_clip(SMALL, top_only=True).rungs[0]
    encoder, seq, frames = Vp8Encoder(), 1000, []
    for n in range(count):
        packet = av.Packet(rung.frames[n])
        packet.pts, packet.time_base = n * 6000, fractions.Fraction(1, 90_000)
        payloads, timestamp = encoder.pack(packet)
        frame = []
        for i, payload in enumerate(payloads):
            p = RtpPacket(payload_type=97, sequence_number=seq % 65536, timestamp=timestamp, marker=i == len(payloads) - 1,
                          payload=payload)
            p._data = vp8_depayload(payload)
            frame.append(p)
            seq += 1
        frames.append(frame)
    return frames


def counter(clock: Clock, codec: str = "VP8") -> tuple[VideoFrames, list[int]]:
    shown: list[int] = []
    return VideoFrames(lambda frame, now: shown.append(frame.timestamp // 6000), codec=lambda pt: codec,
                       clock=clock), shown


def test_packets_out_of_order_and_twice_still_make_each_frame_once_in_order():
    clock = Clock()
    frames_out, shown = counter(clock)
    frames = rtp_frames(6)
    assert len(frames[0]) > 2  # a keyframe takes several packets
    order = [*frames[0][::-1], *frames[1], frames[2][0], *frames[3], *frames[2][1:], *frames[2], *frames[4], *frames[5]]
    for packet in order:
        clock.now += 0.001
        assert frames_out.add(packet) == (False, None)
    assert shown == [0, 1, 2, 3, 4, 5]
    assert (frames_out.complete, frames_out.given_up, frames_out.size) == (6, 0, (320, 240))


def test_after_a_packet_lost_for_good_frames_wait_then_are_given_up_and_a_keyframe_is_asked_for():
    clock = Clock()
    frames_out, shown = counter(clock)
    frames = rtp_frames(SMALL.fps + 2)  # keyframes at 0 and at fps
    asks = []
    for n, frame in enumerate(frames):
        if n == 11:
            clock.now += HOLD_S  # frame 3 has not come for longer than frames wait for it
        for packet in frame:
            if n == 3 and packet is frame[0]:
                continue  # never arrives
            clock.now += 1 / SMALL.fps / len(frame)
            asks.append(frames_out.add(packet)[0])
    assert shown == [0, 1, 2, SMALL.fps, SMALL.fps + 1]  # nothing from the gap to the keyframe
    assert sum(asks) == 1 and frames_out.pli == 1  # asked once, not on every packet that followed
    assert frames_out.given_up == len(range(4, SMALL.fps))


def test_a_keyframe_that_comes_anyway_ends_the_wait_without_asking():
    clock = Clock()
    frames_out, shown = counter(clock)
    for n, frame in enumerate(rtp_frames(SMALL.fps + 2)):
        for packet in frame[1:] if n == 3 else frame:
            clock.now += 0.01
            assert frames_out.add(packet) == (False, None)
    assert shown == [0, 1, 2, SMALL.fps, SMALL.fps + 1] and frames_out.pli == 0


def test_a_codec_without_a_start_bit_is_framed_by_the_markers():
    clock = Clock()
    frames_out, shown = counter(clock, codec="something else")  # nothing to look into: markers only
    for frame in rtp_frames(5):
        for packet in frame:
            clock.now += 0.001
            frames_out.add(packet)
    assert shown == [1, 2, 3, 4]  # where the first frame starts is not known: nothing came before it
