"""What a bot measures on each incoming track.

aiortc's getStats() has packet counts, loss and jitter but no frame counts and
no byte counts per stream, so frames are counted (and stamps read) as they are
decoded here, and payload bytes are counted as packets arrive.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from . import stamp as stamps
from .sources import AUDIO_RATE

TONE_WINDOW_FRAMES = 50  # the last 50 audio frames (1 s at 20 ms) are kept for the FFT


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    """The strongest frequency in `samples` (Hann window, parabolic peak interpolation)."""
    if samples.size < 256:
        return 0.0
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    spectrum[0] = 0.0
    k = int(np.argmax(spectrum))
    if 0 < k < spectrum.size - 1:
        a, b, c = spectrum[k - 1], spectrum[k], spectrum[k + 1]
        denom = a - 2 * b + c
        k += 0.5 * (a - c) / denom if denom else 0.0
    return float(k * rate / samples.size)


class TrackMeter:
    """Consumes one remote track and records what arrived."""

    def __init__(self, track: MediaStreamTrack, receiver: Any):
        self.kind = track.kind
        self.track = track
        self.first_at: float | None = None  # wall clock of the first decoded frame
        self.last_at: float | None = None
        self.frames = 0
        self.payload_bytes = 0
        self.video_numbers: set[int] = set()
        self.stamp_senders: set[int] = set()
        self.latencies_ms: list[int] = []
        self.bad_stamps = 0
        self._audio: deque = deque(maxlen=TONE_WINDOW_FRAMES)  # decoded av.AudioFrames
        self._count_bytes(receiver)
        self._task = asyncio.create_task(self._consume())

    def _count_bytes(self, receiver: Any) -> None:
        # aiortc keeps no byte counter per stream; wrap its packet entry point.
        inner = receiver._handle_rtp_packet

        async def counting(packet, arrival_time_ms):
            self.payload_bytes += len(packet.payload)
            await inner(packet, arrival_time_ms)

        receiver._handle_rtp_packet = counting

    async def _consume(self) -> None:
        try:
            while True:
                frame = await self.track.recv()
                now = time.time()
                if self.first_at is None:
                    self.first_at = now
                self.last_at = now
                self.frames += 1
                if self.kind == "video":
                    self._read_stamp(frame, now)
                else:
                    self._audio.append(frame)  # converted only when the tone is asked for
        except MediaStreamError:
            pass

    def _read_stamp(self, frame, now: float) -> None:
        plane = frame.planes[0]
        rows = min(frame.height, stamps.stamp_height(frame.width))
        luma = np.frombuffer(plane, np.uint8, count=rows * plane.line_size)
        found = stamps.read(luma.reshape(rows, plane.line_size)[:, : frame.width])
        if found is None:
            self.bad_stamps += 1
            return
        self.video_numbers.add(found.frame)
        self.stamp_senders.add(found.sender)
        self.latencies_ms.append(stamps.latency_ms(found, int(now * 1000) % stamps.MS_MODULO))

    def tone_hz(self) -> float:
        if not self._audio:
            return 0.0
        channels = len(self._audio[0].layout.channels)
        pcm = np.concatenate([f.to_ndarray().reshape(-1)[::channels] for f in self._audio])
        return dominant_hz(pcm.astype(np.float32), AUDIO_RATE)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
