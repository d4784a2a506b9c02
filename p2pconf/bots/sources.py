"""Synthetic camera and microphone, each encoded once per bot and shared by all its links.

A naive aiortc mesh runs one encoder per peer connection; with five peers per
bot that is five VP8 encoders doing the same work. Here a `Broadcaster` encodes
each frame once and hands the `av.Packet` to one `PacketTrack` per peer
connection; aiortc's RTCRtpSender packetises a packet it receives from a track
without re-encoding it.
"""

from __future__ import annotations

import asyncio
import fractions
import threading
import time
from collections import deque
from dataclasses import dataclass

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from . import stamp as stamps

VIDEO_CLOCK = 90_000
AUDIO_RATE = 48_000
AUDIO_FRAME_MS = (20, 40, 60)  # Opus frame lengths a bot can send; browsers send 20 ms
KEYFRAME_INTERVAL_S = 2.0


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


def _video_encoder(spec: VideoSpec) -> av.VideoCodecContext:
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = spec.width, spec.height
    codec.pix_fmt = "yuv420p"
    codec.time_base = fractions.Fraction(1, VIDEO_CLOCK)
    codec.framerate = fractions.Fraction(spec.fps, 1)
    codec.bit_rate = spec.bitrate
    codec.gop_size = int(spec.fps * KEYFRAME_INTERVAL_S)
    codec.thread_count = 1
    # The real-time settings aiortc uses for its own VP8 encoder, constant bitrate.
    codec.options = {
        "deadline": "realtime",
        "cpu-used": "-6",
        "lag-in-frames": "0",
        "static-thresh": "1",
        "undershoot-pct": "100",
        "overshoot-pct": "15",
        "bufsize": str(spec.bitrate),
        "minrate": str(spec.bitrate),
        "maxrate": str(spec.bitrate),
    }
    return codec


def _audio_encoder(frame_ms: int) -> av.AudioCodecContext:
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = AUDIO_RATE
    codec.format = "s16"
    codec.layout = "mono"
    codec.bit_rate = 32_000
    codec.time_base = fractions.Fraction(1, AUDIO_RATE)
    codec.options = {"application": "voip", "frame_duration": str(frame_ms)}
    return codec


@dataclass
class Encoded:
    """One encoded frame as handed to every link."""

    packet: av.Packet
    number: int
    keyframe: bool


class Broadcaster:
    """Produces one synthetic stream in real time, encodes it once, fans it out."""

    def __init__(self, kind: str, *, camera: SyntheticCamera | None = None, microphone: ToneMicrophone | None = None):
        self.kind = kind
        self.camera, self.microphone = camera, microphone
        if kind == "video":
            assert camera is not None
            self.rate = camera.spec.fps
            self._codec = _video_encoder(camera.spec)
        else:
            assert microphone is not None
            self.rate = 1000 / microphone.frame_ms
            self._codec = _audio_encoder(microphone.frame_ms)
        self.tracks: set[PacketTrack] = set()
        self.frames_sent = 0
        self._keyframe_wanted = False
        self._lock = threading.Lock()
        self._task: asyncio.Task | None = None

    def track(self) -> PacketTrack:
        """A new track for one peer connection."""
        track = PacketTrack(self)
        self.tracks.add(track)
        return track

    def request_keyframe(self) -> None:
        """Make the next video frame a keyframe (a new link, or a peer's PLI)."""
        self._keyframe_wanted = True

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop producing; tracks stay open so in-flight frames can still arrive.

        aiortc's receiver completes a video frame only when the next frame's first
        packet arrives, so one last frame is sent that no link counts as offered.
        """
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
            for item in self._encode(self.frames_sent):
                for track in list(self.tracks):
                    track.push(item, counted=False)

    def _encode(self, number: int) -> list[Encoded]:
        # One encoder, used from an executor thread and from stop(): never at once
        # (libvpx crashes when two threads share a context).
        with self._lock:
            return self._encode_locked(number)

    def _encode_locked(self, number: int) -> list[Encoded]:
        if self.camera is not None:
            frame = self.camera.frame(number, int(time.time() * 1000) % stamps.MS_MODULO)
            if self._keyframe_wanted:
                frame.pict_type = av.video.frame.PictureType.I
                self._keyframe_wanted = False
            pts = frame.pts
        else:
            frame = self.microphone.frame(number)
            pts = frame.pts
        out = []
        for packet in self._codec.encode(frame):
            packet.pts = pts  # our own clock; Opus would start at a negative pre-skip
            packet.time_base = frame.time_base
            out.append(Encoded(packet, number, bool(packet.is_keyframe) or self.kind == "audio"))
        return out

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        number = 0
        while True:
            delay = start + number / self.rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:  # starved for a second: skip ahead rather than burst
                start = loop.time() - number / self.rate
            if self.kind == "video":  # PyAV releases the GIL while encoding: keep the loop free for RTP
                encoded = await loop.run_in_executor(None, self._encode, number)
            else:  # 50 short Opus frames a second: a thread hop would cost more than it saves
                encoded = self._encode(number)
            number += 1
            self.frames_sent += 1
            for item in encoded:
                for track in list(self.tracks):
                    track.push(item)


class PacketTrack(MediaStreamTrack):
    """One link's view of a Broadcaster: hands pre-encoded packets to aiortc's sender."""

    QUEUE = 8  # frames; older ones are dropped if the sender falls behind

    def __init__(self, source: Broadcaster):
        super().__init__()
        self.kind = source.kind
        self.source = source
        self.started = False  # aiortc's sender has asked for the first packet
        self.offered = 0  # frames this link should have carried since it started
        self.dropped = 0
        self.first_number: int | None = None
        self._queue: deque[Encoded] = deque()
        self._ready = asyncio.Event()

    def push(self, item: Encoded, counted: bool = True) -> None:
        if not self.started or self.readyState != "live":
            return
        if self.first_number is None:
            if not item.keyframe:
                return  # a receiver can only start decoding at a keyframe
            self.first_number = item.number
        self.offered += counted
        if len(self._queue) >= self.QUEUE:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(item)
        self._ready.set()

    async def recv(self) -> av.Packet:
        if not self.started:
            self.started = True
            self.source.request_keyframe()
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft().packet

    def stop(self) -> None:
        super().stop()
        self.source.tracks.discard(self)
        self._ready.set()
