"""What a bot measures on each incoming track.

aiortc's getStats() has packet counts, loss and jitter but no frame counts and
no byte counts per stream, so frames are counted (and stamps read) as they are
decoded here, and bytes are counted as datagrams arrive (`WireCounter`).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import deque
from typing import Any, NamedTuple

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from . import stamp as stamps
from .sources import AUDIO_RATE

TONE_WINDOW_FRAMES = 50  # the last 50 audio frames (1 s at 20 ms) are kept for the FFT
FREEZE_HISTORY = 30  # frame intervals that make the mean a freeze is measured against


class WireCounter:
    """Bytes of every datagram one connection receives, as sent on the wire (UDP payload).

    SRTP leaves the RTP header in the clear, so each RTP datagram is booked to its
    SSRC; RTCP, STUN and DTLS only count towards `total`.
    """

    def __init__(self) -> None:
        self.total = 0
        self.by_ssrc: dict[int, int] = {}

    def attach(self, ice_transport: Any) -> None:
        """Count what `ice_transport` (an RTCIceTransport) hands to its DTLS transport."""
        inner = ice_transport._recv

        async def counting() -> bytes:
            data = await inner()
            self.count(data)
            return data

        ice_transport._recv = counting

    def count(self, data: bytes) -> None:
        self.total += len(data)
        # RTP (RFC 3550) starts with version 2; RTCP packet types 192-223 share that first byte.
        if len(data) >= 12 and 127 < data[0] < 192 and not 192 <= data[1] <= 223:
            ssrc = int.from_bytes(data[8:12], "big")
            self.by_ssrc[ssrc] = self.by_ssrc.get(ssrc, 0) + len(data)


class FreezeDetector:
    """Counts video freezes as W3C webrtc-stats defines them.

    A freeze is a gap between two frames of at least max(3 x the mean frame
    interval, the mean interval + 150 ms), the mean taken over recent frames.
    """

    def __init__(self) -> None:
        self.count = 0
        self.frozen_s = 0.0
        self._intervals: deque[float] = deque(maxlen=FREEZE_HISTORY)
        self._last: float | None = None

    def frame(self, at: float) -> None:
        """One frame shown at time `at` (seconds)."""
        if self._last is not None:
            gap = at - self._last
            if self._intervals:
                mean = sum(self._intervals) / len(self._intervals)
                if gap >= max(3 * mean, mean + 0.150):
                    self.count += 1
                    self.frozen_s += gap
            self._intervals.append(gap)
        self._last = at


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


def jitter_ms(stat: Any) -> float | None:
    """inbound-rtp jitter in milliseconds (aiortc reports RTP clock units)."""
    if stat is None:
        return None
    return round(stat.jitter / (90.0 if stat.kind == "video" else 48.0), 1)


class _Mark(NamedTuple):
    """Counters at one sample, to take the next sample's differences from."""

    at: float
    wire: int
    frames: int
    packets: int
    lost: int
    latencies: int


class TrackMeter:
    """Consumes one remote track and records what arrived."""

    def __init__(self, track: MediaStreamTrack, receiver: Any, wire: WireCounter):
        self.kind = track.kind
        self.track = track
        self.wire = wire
        self.ssrcs: set[int] = set()  # the stream's SSRC, and its retransmission SSRC once used
        self.freezes = FreezeDetector()
        self.first_at: float | None = None  # wall clock of the first decoded frame
        self.last_at: float | None = None
        self.frames = 0
        self.video_numbers: set[int] = set()
        self.stamp_senders: set[int] = set()
        self.latencies_ms: list[int] = []
        self.bad_stamps = 0
        self._audio: deque = deque(maxlen=TONE_WINDOW_FRAMES)  # decoded av.AudioFrames
        self.series: list[dict[str, Any]] = []  # one sample a second, see sample()
        self._mark = _Mark(time.time(), 0, 0, 0, 0, 0)  # the first sample covers the track's first second
        self._count_bytes(receiver)
        self._task = asyncio.create_task(self._consume())

    def _count_bytes(self, receiver: Any) -> None:
        # Learn which SSRCs are this stream's; their bytes are counted by the WireCounter.
        inner = receiver._handle_rtp_packet

        async def counting(packet, arrival_time_ms):
            self.ssrcs.add(packet.ssrc)
            await inner(packet, arrival_time_ms)

        receiver._handle_rtp_packet = counting

    @property
    def wire_bytes(self) -> int:
        """Bytes of this stream's datagrams as received (SRTP packets, RTP header included)."""
        return sum(self.wire.by_ssrc.get(ssrc, 0) for ssrc in self.ssrcs)

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
                    self.freezes.frame(now)
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

    def sample(self, now: float, stat: Any) -> None:
        """Add one sample of the time since the last: kbps, fps, loss, jitter, latency.

        `stat` is this stream's inbound-rtp entry of getStats() (or None).
        """
        packets = stat.packetsReceived if stat else 0
        lost = max(0, stat.packetsLost) if stat else 0
        mark = _Mark(now, self.wire_bytes, self.frames, packets, lost, len(self.latencies_ms))
        last, self._mark = self._mark, mark
        if now <= last.at:
            return
        seconds = now - last.at
        arrived, missed = packets - last.packets, max(0, lost - last.lost)
        latencies = self.latencies_ms[last.latencies :]
        self.series.append({
            "at": now,
            "kbps": round((mark.wire - last.wire) * 8 / seconds / 1000, 1),
            "fps": round((mark.frames - last.frames) / seconds, 1),
            "loss_pct": round(100.0 * missed / (arrived + missed), 2) if arrived + missed > 0 else 0.0,
            "jitter_ms": jitter_ms(stat),
            "latency_ms": round(statistics.median(latencies), 1) if latencies else None,
        })

    def tone_hz(self) -> float:
        if not self._audio:
            return 0.0
        channels = len(self._audio[0].layout.channels)
        pcm = np.concatenate([f.to_ndarray().reshape(-1)[::channels] for f in self._audio])
        return dominant_hz(pcm.astype(np.float32), AUDIO_RATE)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
