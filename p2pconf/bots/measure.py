"""What a bot measures on each incoming track.

aiortc's getStats() has no frame or byte counts per stream, and its inbound-rtp
entry may describe the retransmission (RTX) stream instead of the media stream,
so everything is counted here: frames (and their stamps) as they are decoded,
bytes as datagrams arrive (`WireCounter`), packets, loss and jitter from the
media stream's RTP headers (`StreamCounter`).
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


class StreamCounter:
    """Packets received and lost, and interarrival jitter, of one RTP stream (RFC 3550, A.1 and A.8)."""

    def __init__(self, clock_rate: int):
        self.clock_rate = clock_rate
        self.received = 0
        self._base: int | None = None
        self._highest = 0  # extended sequence number (wraps of 16 bits counted)
        self._transit: float | None = None
        self._jitter = 0.0  # in RTP clock units

    def add(self, sequence_number: int, timestamp: int, arrival_ms: float) -> None:
        self.received += 1
        transit = arrival_ms * self.clock_rate / 1000 - timestamp
        if self._base is None:
            self._base = self._highest = sequence_number
        else:
            step = (sequence_number - self._highest + 32768) % 65536 - 32768
            self._highest = max(self._highest, self._highest + step)
            self._jitter += (abs(transit - self._transit) - self._jitter) / 16
        self._transit = transit

    @property
    def lost(self) -> int:
        """Packets missing from the sequence so far (duplicates never make it negative)."""
        return 0 if self._base is None else max(0, self._highest - self._base + 1 - self.received)

    @property
    def jitter_ms(self) -> float | None:
        return None if self._base is None else round(self._jitter * 1000 / self.clock_rate, 1)


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

    def __init__(self, track: MediaStreamTrack, receiver: Any, wire: WireCounter, stamped: bool = True):
        """`stamped`: the video carries the bots' frame stamps (a shared screen does not)."""
        self.kind = track.kind
        self.stamped = stamped
        self.track = track
        self.wire = wire
        self.ssrcs: set[int] = set()  # the stream's SSRC, and its retransmission SSRC once used
        self.media_ssrc: int | None = None  # the first SSRC seen; retransmissions come later
        self.packets = StreamCounter(90_000 if self.kind == "video" else 48_000)
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
        self._watch_packets(receiver)
        self._task = asyncio.create_task(self._consume())

    def _watch_packets(self, receiver: Any) -> None:
        # Learn this stream's SSRCs (the WireCounter has their bytes) and count the media stream's packets.
        inner = receiver._handle_rtp_packet

        async def counting(packet, arrival_time_ms):
            self.ssrcs.add(packet.ssrc)
            if self.media_ssrc is None:
                self.media_ssrc = packet.ssrc
            if packet.ssrc == self.media_ssrc:
                self.packets.add(packet.sequence_number, packet.timestamp, arrival_time_ms)
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
                    if self.stamped:
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

    def sample(self, now: float) -> dict[str, Any] | None:
        """Add (and return) one sample of the time since the last: kbps, fps, loss, jitter, latency."""
        mark = _Mark(now, self.wire_bytes, self.frames, self.packets.received, self.packets.lost,
                     len(self.latencies_ms))
        last, self._mark = self._mark, mark
        if now <= last.at:
            return None
        seconds = now - last.at
        arrived, missed = mark.packets - last.packets, max(0, mark.lost - last.lost)
        latencies = self.latencies_ms[last.latencies :]
        self.series.append(sample := {
            "at": now,
            "kbps": round((mark.wire - last.wire) * 8 / seconds / 1000, 1),
            "fps": round((mark.frames - last.frames) / seconds, 1),
            "loss_pct": round(100.0 * missed / (arrived + missed), 2) if arrived + missed > 0 else 0.0,
            "jitter_ms": self.packets.jitter_ms,
            "latency_ms": round(statistics.median(latencies), 1) if latencies else None,
        })
        return sample

    def tone_hz(self) -> float:
        if not self._audio:
            return 0.0
        channels = len(self._audio[0].layout.channels)
        pcm = np.concatenate([f.to_ndarray().reshape(-1)[::channels] for f in self._audio])
        return dominant_hz(pcm.astype(np.float32), AUDIO_RATE)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
