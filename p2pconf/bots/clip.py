"""The bots' media, encoded before the call: a looped video clip in bitrate rungs, a looped tone.

Encoding every frame live cost a 6-bot mesh most of a core at 640x360@30 (README,
Performance). Instead each process encodes CLIP_S seconds of the synthetic camera
once, at every rung of a ladder of bitrates and sizes (`ladder`), with a keyframe
at the same places (every GOP_S) in every rung. A link plays the clip in a loop
(player.py) and can change rung, or start, at any keyframe. Each picture carries
the stamp of its clip index (stamp.py), which a receiver that decodes checks.

Audio: each bot's tone, encoded once for a whole number of seconds, looped.
"""

from __future__ import annotations

import fractions
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import av
import numpy as np

from . import stamp as stamps
from .sources import AUDIO_RATE, VIDEO_CLOCK, SyntheticCamera, ToneMicrophone, VideoSpec

CLIP_S = 2  # seconds of video in the loop
GOP_S = 1  # a keyframe every second, in every rung: where links start and change rung
RUNG_STEP = 1.4  # bitrate ratio between rungs: the receiver's estimate may reach 1.5 x what arrives
MAX_RUNGS = 6  # besides the thumbnail
FULL_SIZE_BPP = 0.04  # below this many bits per pixel a rung is sent at half the size
THUMB_BPS = 150_000  # p2pconf's thumbnail (web/static/js/quality.js THUMB_KBPS)
THUMB_SCALE = 4  # ... at a quarter of the width and height (THUMB_SCALE)
CLIP_SENDER = 0  # the sender number in the pictures: the clip is shared by every bot of a process


@dataclass(frozen=True)
class RungSpec:
    width: int
    height: int
    bps: int  # the encoder's target


def _scaled(value: int, scale: int) -> int:
    return max(16, round(value / scale / 2) * 2)


def ladder(spec: VideoSpec, top_only: bool = False) -> list[RungSpec]:
    """The rungs for `spec`, best first: spec.bitrate at full size, then each RUNG_STEP lower,
    at half the size once full size would get fewer than FULL_SIZE_BPP bits per pixel; last the
    thumbnail (a quarter of the size, at most THUMB_BPS)."""
    top = spec.bitrate
    if top_only:
        return [RungSpec(spec.width, spec.height, top)]
    thumb = min(THUMB_BPS, top // 2)
    rungs = []
    bps = float(top)
    while len(rungs) < MAX_RUNGS and bps > thumb * RUNG_STEP:
        scale = 1 if bps >= FULL_SIZE_BPP * spec.width * spec.height * spec.fps else 2
        rungs.append(RungSpec(_scaled(spec.width, scale), _scaled(spec.height, scale), int(bps)))
        bps /= RUNG_STEP
    rungs.append(RungSpec(_scaled(spec.width, THUMB_SCALE), _scaled(spec.height, THUMB_SCALE), thumb))
    return rungs


@dataclass
class VideoRung:
    """One rung of the clip: the encoded VP8 frames of one loop."""

    width: int
    height: int
    target_bps: int
    frames: list[bytes]
    keyframes: list[bool]
    fps: int

    @property
    def bps(self) -> int:
        """What the rung carries (VP8 payload, without RTP), averaged over the loop."""
        return round(sum(map(len, self.frames)) * 8 * self.fps / len(self.frames))


@dataclass
class VideoClip:
    spec: VideoSpec
    rungs: list[VideoRung]  # best first
    gop: int  # frames between keyframes

    @property
    def length(self) -> int:
        return len(self.rungs[0].frames)

    def next_keyframe(self, position: int) -> int:
        """The first clip index at or after `position` (wrapping) that is a keyframe in every rung."""
        return (-(-position // self.gop) * self.gop) % self.length


def _video_encoder(width: int, height: int, fps: int, bps: int) -> av.VideoCodecContext:
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = width, height
    codec.pix_fmt = "yuv420p"
    codec.time_base = fractions.Fraction(1, VIDEO_CLOCK)
    codec.framerate = fractions.Fraction(fps, 1)
    codec.bit_rate = bps
    codec.gop_size = 1 << 16  # keyframes only where the clip forces them
    codec.thread_count = 1
    # The real-time settings aiortc uses for its own VP8 encoder, constant bitrate.
    codec.options = {
        "deadline": "realtime",
        "cpu-used": "-6",
        "lag-in-frames": "0",
        "static-thresh": "1",
        "undershoot-pct": "100",
        "overshoot-pct": "15",
        "bufsize": str(bps),
        "minrate": str(bps),
        "maxrate": str(bps),
    }
    return codec


def _with_grain(picture: av.VideoFrame, index: int, grain: np.ndarray) -> av.VideoFrame:
    """Moving fine detail below the stamp, like a webcam's: without it the encoder reaches
    its bitrate only on large pictures (tests/browser.py does the same for Chromium)."""
    yuv = picture.to_ndarray()
    height, width = picture.height, picture.width
    top = stamps.stamp_height(width) if stamps.fits(width, height) else 0
    luma = yuv[top:height]
    luma[:] = luma // 4 * 3 + np.roll(grain[top:], 3 * index, axis=1)
    out = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
    out.pts, out.time_base = picture.pts, picture.time_base
    return out


def encode_rung(spec: VideoSpec, rung: RungSpec, clip_s: int = CLIP_S, gop_s: int = GOP_S) -> VideoRung:
    length, gop = clip_s * spec.fps, gop_s * spec.fps
    camera = SyntheticCamera(VideoSpec(rung.width, rung.height, spec.fps), sender=CLIP_SENDER)
    codec = _video_encoder(rung.width, rung.height, spec.fps, rung.bps)
    grain = np.random.default_rng(7).integers(0, 48, size=(rung.height, rung.width), dtype=np.uint8)
    pictures = [_with_grain(camera.frame(index, sent_ms=0), index, grain) for index in range(length)]
    for _ in range(2):  # the first loop only brings the rate control to its bitrate (it undershoots)
        frames, keys = [], []
        for index, picture in enumerate(pictures):
            picture.pict_type = av.video.frame.PictureType.I if index % gop == 0 else av.video.frame.PictureType.NONE
            packets = codec.encode(picture)
            assert len(packets) == 1, "lag-in-frames 0: one packet per picture"
            frames.append(bytes(packets[0]))
            keys.append(bool(packets[0].is_keyframe))
    assert [i for i, k in enumerate(keys) if k] == list(range(0, length, gop)), keys
    return VideoRung(rung.width, rung.height, rung.bps, frames, keys, spec.fps)


_clips: dict[tuple[VideoSpec, bool], VideoClip] = {}
_encoding = threading.Lock()  # bots starting at once wait for the one encoding


def video_clip(spec: VideoSpec, top_only: bool = False) -> VideoClip:
    """The clip for `spec`, encoded once per process (all rungs, or only the top one)."""
    key = (spec, top_only)
    with _encoding:
        return _clips[key] if key in _clips else _encode_clip(spec, top_only)


def _encode_clip(spec: VideoSpec, top_only: bool) -> VideoClip:
    clip = _clips[(spec, top_only)] = encode_clip(spec, ladder(spec, top_only))
    return clip


def encode_clip(spec: VideoSpec, rungs: list[RungSpec], clip_s: int = CLIP_S, gop_s: int = GOP_S) -> VideoClip:
    """A clip of `clip_s` seconds with a keyframe every `gop_s` (which divides it), at these rungs."""
    assert clip_s % gop_s == 0
    with ThreadPoolExecutor(os.cpu_count()) as pool:  # libvpx leaves the GIL while it encodes
        encoded = list(pool.map(functools.partial(encode_rung, spec, clip_s=clip_s, gop_s=gop_s), rungs))
    return VideoClip(spec, encoded, gop_s * spec.fps)


def seed_clip(clip: VideoClip, top_only: bool) -> None:
    """Use `clip`, encoded in another process, as this process's clip for its spec."""
    _clips[(clip.spec, top_only)] = clip


@dataclass
class AudioLoop:
    frames: list[bytes]  # Opus packets, one frame each
    frame_ms: int

    @property
    def samples(self) -> int:
        return AUDIO_RATE * self.frame_ms // 1000


def _audio_encoder(frame_ms: int) -> av.AudioCodecContext:
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = AUDIO_RATE
    codec.format = "s16"
    codec.layout = "mono"
    codec.bit_rate = 32_000
    codec.time_base = fractions.Fraction(1, AUDIO_RATE)
    codec.options = {"application": "voip", "frame_duration": str(frame_ms)}
    return codec


def audio_loop(hz: float, frame_ms: int) -> AudioLoop:
    """The tone `hz`, encoded for the shortest whole number of seconds that holds whole frames
    (the tone has whole periods in a second, so the loop joins), after a second to settle."""
    seconds = next(s for s in range(1, frame_ms + 1) if s * 1000 % frame_ms == 0)
    count = seconds * 1000 // frame_ms
    settle = 1000 // frame_ms + 1
    mic = ToneMicrophone(hz, frame_ms=frame_ms)
    codec = _audio_encoder(frame_ms)
    packets = [bytes(p) for n in range(settle + count + 2) for p in codec.encode(mic.frame(n))]
    return AudioLoop(packets[settle : settle + count], frame_ms)  # consecutive: the phase joins up
