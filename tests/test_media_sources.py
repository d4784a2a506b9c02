"""Synthetic camera and microphone: the stamp survives VP8, the tone is found by FFT."""

from __future__ import annotations

import av
import numpy as np
import pytest

from p2pconf.bots import stamp
from p2pconf.bots.measure import dominant_hz
from p2pconf.bots.sources import AUDIO_RATE, Broadcaster, SyntheticCamera, ToneMicrophone, VideoSpec, tone_hz


def luma_of(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="gray")


@pytest.mark.parametrize("spec", [VideoSpec(320, 240, 15), VideoSpec(640, 360, 15)])
def test_stamp_survives_vp8_and_frames_move(spec):
    source = Broadcaster("video", camera=SyntheticCamera(spec, sender=7))
    decoder = av.CodecContext.create("libvpx", "r")
    read, pictures = [], []
    for n in range(30):
        for encoded in source._encode(n):
            assert encoded.number == n
            for frame in decoder.decode(encoded.packet):
                read.append(stamp.read(luma_of(frame)))
                pictures.append(luma_of(frame)[stamp.stamp_height(spec.width):])
    assert [(s.sender, s.frame) for s in read] == [(7, n) for n in range(30)]
    assert not np.array_equal(pictures[0], pictures[1])  # a moving pattern, not a still


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


def test_first_keyframe_and_keyframe_on_request():
    source = Broadcaster("video", camera=SyntheticCamera(VideoSpec(), sender=1))
    flags = [e.keyframe for n in range(5) for e in source._encode(n)]
    assert flags == [True, False, False, False, False]
    source.request_keyframe()
    assert [e.keyframe for e in source._encode(5)] == [True]


@pytest.mark.parametrize("text", ["320x240", "0x0@15", "321x240@15", "320x240@0", "big"])
def test_bad_video_spec_is_refused(text):
    with pytest.raises(ValueError):
        VideoSpec.parse(text)
