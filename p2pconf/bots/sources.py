"""What the bots show and play: the video size, a synthetic camera picture and a sine tone.

clip.py encodes them once per process (video) and once per bot (audio);
player.py loops the encoded packets into every link.
"""

from __future__ import annotations

import fractions
from dataclasses import dataclass

import av
import numpy as np

from . import stamp as stamps

VIDEO_CLOCK = 90_000
AUDIO_RATE = 48_000
AUDIO_FRAME_MS = (20, 40, 60)  # Opus frame lengths a bot can send; browsers send 20 ms


def browser_max_bps(width: int, height: int) -> int:
    """The most a browser's camera stream carries at this size: libwebrtc's default maximum
    bitrate for VP8 (media/engine/webrtc_video_engine.cc, GetMaxDefaultVideoBitrateKbps)."""
    pixels = width * height
    if pixels <= 320 * 240:
        return 600_000
    if pixels <= 640 * 480:
        return 1_700_000
    if pixels <= 960 * 540:
        return 2_000_000
    return 2_500_000


@dataclass(frozen=True)
class VideoSpec:
    width: int = 320
    height: int = 240
    fps: int = 15

    @classmethod
    def parse(cls, text: str) -> "VideoSpec":
        """Parse "WxH@FPS", e.g. "640x360@15"."""
        try:
            size, fps = text.lower().split("@")
            width, height = size.split("x")
            spec = cls(int(width), int(height), int(fps))
        except ValueError:
            raise ValueError(f"video must look like 320x240@15, not {text!r}") from None
        if spec.width < 128 or spec.height < 96 or spec.width % 2 or spec.height % 2 or not 1 <= spec.fps <= 60:
            raise ValueError("video needs an even size of at least 128x96 and 1..60 fps")
        return spec

    @property
    def bitrate(self) -> int:
        """Top VP8 bitrate: about 0.2 bits per pixel, the look of a small webcam call, but never
        more than a browser sends at this size (browser_max_bps)."""
        return min(int(self.width * self.height * self.fps * 0.2), browser_max_bps(self.width, self.height))

    def __str__(self) -> str:
        return f"{self.width}x{self.height}@{self.fps}"


def tone_hz(index: int) -> float:
    """The sine frequency of bot number `index` (1-based): 400 Hz + 100 Hz per bot."""
    return 400.0 + 100.0 * index


class SyntheticCamera:
    """A moving diagonal pattern in the sender's own tint, with a stamp on top (where it fits)."""

    def __init__(self, spec: VideoSpec, sender: int):
        self.spec, self.sender = spec, sender
        h, w = spec.height, spec.width
        yy, xx = np.mgrid[0:h, 0:w]
        self._ramp = ((xx + yy) * 2).astype(np.uint16)
        self._chroma = np.empty((h // 2, w), np.uint8)
        hue = (sender * 47) % 256  # each bot gets its own tint
        self._chroma[: h // 4] = hue
        self._chroma[h // 4 :] = 255 - hue

    def frame(self, number: int, sent_ms: int) -> av.VideoFrame:
        """Picture number `number`, stamped with `sent_ms`."""
        h, w = self.spec.height, self.spec.width
        yuv = np.empty((h * 3 // 2, w), np.uint8)
        luma = yuv[:h]
        luma[:] = ((self._ramp + number * 6) & 255).astype(np.uint8) // 2 + 64
        box = (number * 4) % max(1, w - h // 3)  # a bright square sliding across
        luma[h // 2 : h // 2 + h // 3, box : box + h // 3] = 220
        if stamps.fits(w, h):
            stamps.draw(luma, stamps.Stamp(self.sender, number, sent_ms))
        yuv[h:] = self._chroma.reshape(h // 2, w)
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = number * VIDEO_CLOCK // self.spec.fps
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return frame


class ToneMicrophone:
    """A continuous sine tone at `hz` (whole Hz), in mono frames of `frame_ms`."""

    def __init__(self, hz: float, level: float = 0.3, frame_ms: int = 20):
        if frame_ms not in AUDIO_FRAME_MS:
            raise ValueError(f"audio frames must be one of {AUDIO_FRAME_MS} ms")
        self.hz, self.frame_ms = hz, frame_ms
        self.samples = AUDIO_RATE * frame_ms // 1000
        # One second holds a whole number of periods, so frames are slices of it.
        t = np.arange(AUDIO_RATE) / AUDIO_RATE
        self._second = (np.sin(2 * np.pi * round(hz) * t) * level * 32767).astype(np.int16)

    def frame(self, number: int) -> av.AudioFrame:
        start = (number * self.samples) % AUDIO_RATE
        samples = self._second.take(range(start, start + self.samples), mode="wrap")  # 60 ms frames straddle seconds
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = number * self.samples
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        return frame
