"""Synthetic camera and microphone, and the clip made of them: the stamp survives VP8, the tone is found by FFT."""

from __future__ import annotations

import av
import numpy as np
import pytest

from p2pconf.bots import stamp
from p2pconf.bots.clip import CLIP_SENDER, audio_loop, ladder, video_clip
from p2pconf.bots.measure import dominant_hz
from p2pconf.bots.rtpframes import opus_pcm
from p2pconf.bots.sources import AUDIO_RATE, SyntheticCamera, ToneMicrophone, VideoSpec, tone_hz


def luma_of(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="gray")


@pytest.mark.parametrize("spec", [VideoSpec(320, 240, 15), VideoSpec(640, 360, 15)])
def test_stamp_survives_vp8_in_every_rung_and_frames_move(spec):
    clip = video_clip(spec)
    assert [(r.width, r.height) for r in clip.rungs] == [(r.width, r.height) for r in ladder(spec)]
    for rung in clip.rungs:
        decoder = av.CodecContext.create("libvpx", "r")
        pictures = [p for data in rung.frames for p in decoder.decode(av.Packet(data))]
        assert len(pictures) == clip.length and {(p.width, p.height) for p in pictures} == {(rung.width, rung.height)}
        if stamp.fits(rung.width, rung.height):
            read = [stamp.read(luma_of(p)) for p in pictures]
            assert [(s.sender, s.frame) for s in read] == [(CLIP_SENDER, n) for n in range(clip.length)]
        below = stamp.stamp_height(rung.width)
        assert not np.array_equal(luma_of(pictures[0])[below:], luma_of(pictures[1])[below:])  # it moves


def test_every_rung_has_its_keyframes_in_the_same_places_and_its_bitrate():
    spec = VideoSpec(640, 360, 15)
    clip = video_clip(spec)
    assert clip.length == 2 * spec.fps and clip.gop == spec.fps
    for rung in clip.rungs:
        assert [i for i, key in enumerate(rung.keyframes) if key] == [0, spec.fps]
        assert 0.75 * rung.target_bps <= rung.bps <= 1.25 * rung.target_bps, (rung.width, rung.target_bps, rung.bps)
    assert [clip.next_keyframe(p) for p in (0, 1, 15, 16, 29)] == [0, 15, 15, 0, 0]


def test_the_ladder_ends_with_the_thumbnail_and_climbs_in_small_steps():
    rungs = ladder(VideoSpec(1280, 720, 30))
    assert (rungs[0].width, rungs[0].height, rungs[0].bps) == (1280, 720, 2_500_000)  # a browser's most at 720p
    assert (rungs[-1].width, rungs[-1].height, rungs[-1].bps) == (320, 180, 150_000)  # p2pconf's thumbnail
    assert all(hi.bps / lo.bps <= 1.5 for hi, lo in zip(rungs, rungs[1:-1]))
    assert ladder(VideoSpec(320, 240, 15), top_only=True) == [rungs[0].__class__(320, 240, 230_400)]


def test_the_looped_tone_is_the_bots_tone():
    for frame_ms, frames in ((20, 50), (60, 50)):  # 60 ms frames: 3 s hold whole frames and whole periods
        loop = audio_loop(tone_hz(2), frame_ms)
        pcm = opus_pcm(loop.frames * 2)
        assert len(loop.frames) == frames and abs(dominant_hz(pcm, AUDIO_RATE) - 600.0) < 1.0


def test_tone_frames_are_whole_and_continue_each_other_at_60_ms():
    mic = ToneMicrophone(tone_hz(1), frame_ms=60)
    frames = [mic.frame(n).to_ndarray().reshape(-1) for n in range(50)]  # 3 s: frames straddle seconds
    assert {f.size for f in frames} == {2880}
    t = np.arange(50 * 2880) / AUDIO_RATE
    expected = (np.sin(2 * np.pi * 500 * t) * 0.3 * 32767).astype(np.int16)
    assert np.array_equal(np.concatenate(frames), expected)


def test_damaged_stamp_is_rejected_not_misread():
    luma = np.full((240, 320), 128, np.uint8)
    stamp.draw(luma, stamp.Stamp(sender=3, frame=1234, sent_ms=99))
    assert stamp.read(luma) == stamp.Stamp(3, 1234, 99)
    size = stamp.block_size(320)
    luma[size : 2 * size, :size] = 255 - luma[size : 2 * size, :size]  # flip one bit of the frame number
    assert stamp.read(luma) is None
    assert stamp.latency_ms(stamp.Stamp(1, 1, 2**32 - 10), 15) == 25  # across the wrap


def test_each_bot_has_its_own_tone_and_fft_finds_it():
    assert len({tone_hz(i) for i in range(1, 33)}) == 32
    mic = ToneMicrophone(tone_hz(3))
    pcm = np.concatenate([mic.frame(n).to_ndarray().reshape(-1) for n in range(25)]).astype(np.float32)
    assert abs(dominant_hz(pcm, AUDIO_RATE) - 700.0) < 1.0


@pytest.mark.parametrize("text", ["320x240", "0x0@15", "321x240@15", "320x240@0", "big"])
def test_bad_video_spec_is_refused(text):
    with pytest.raises(ValueError):
        VideoSpec.parse(text)
