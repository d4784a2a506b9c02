"""What a bot measures on each incoming track.

aiortc's getStats() has no frame or byte counts per stream, and its inbound-rtp
entry may describe the retransmission (RTX) stream instead of the media stream,
so everything is counted here: frames (and their stamps) from RTP as they become
decodable (rtpframes.py), bytes as datagrams arrive (`WireCounter`), packets,
loss and jitter from the media stream's RTP headers (`StreamCounter`). Pictures
are decoded only on the links chosen to prove them (pictures.py).
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from typing import Any, NamedTuple

import numpy as np

from . import hooks
from . import stamp as stamps
from .pictures import PictureCheck
from .rtpframes import AudioPackets, Frame, VideoFrames
from .sources import AUDIO_RATE

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
        hooks.count_datagrams(ice_transport, self.count)

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
    """Measures one remote track from its receiver's RTP packets; decodes only when asked to."""

    def __init__(self, kind: str, receiver: Any, wire: WireCounter, stamped: bool = True):
        """`kind`: "audio", "video" or "screen"; `stamped`: the video carries the bots' frame stamps
        (a shared screen does not)."""
        self.kind = "audio" if kind == "audio" else "video"
        self.stamped = stamped
        self.wire = wire
        self.ssrcs: set[int] = set()  # the stream's SSRC, and its retransmission SSRC once used
        self.media_ssrc: int | None = None  # the first SSRC seen; retransmissions come later
        self.packets = StreamCounter(90_000 if self.kind == "video" else 48_000)
        self.freezes = FreezeDetector()
        self.first_at: float | None = None  # wall clock of the first frame shown
        self.last_at: float | None = None
        self.frames = 0
        self.video_numbers: set[int] = set()
        self.stamp_senders: set[int] = set()
        self.latencies_ms: list[int] = []
        self.bad_stamps = 0  # frames of a stamped stream without a stamp
        self.pictures: PictureCheck | None = None  # while this link proves the pictures
        self._checked = (0, 0)  # decoded and bad pictures of earlier checks
        self.series: list[dict[str, Any]] = []  # one sample a second, see sample()
        self._mark = _Mark(time.time(), 0, 0, 0, 0, 0)  # the first sample covers the track's first second
        self.sink: VideoFrames | AudioPackets
        if self.kind == "video":
            self.sink = VideoFrames(self._on_video, codec=lambda pt: hooks.codec_name(receiver, pt))
        else:
            self.sink = AudioPackets(self._on_audio)
        hooks.watch_rtp(receiver, self._on_rtp)
        hooks.take_frames(receiver, self.sink)

    def _on_rtp(self, packet, arrival_time_ms: int) -> None:
        self.ssrcs.add(packet.ssrc)
        if self.media_ssrc is None:
            self.media_ssrc = packet.ssrc
        if packet.ssrc == self.media_ssrc:
            self.packets.add(packet.sequence_number, packet.timestamp, arrival_time_ms)

    @property
    def wire_bytes(self) -> int:
        """Bytes of this stream's datagrams as received (SRTP packets, RTP header included)."""
        return sum(self.wire.by_ssrc.get(ssrc, 0) for ssrc in self.ssrcs)

    def _shown(self, now: float) -> None:
        if self.first_at is None:
            self.first_at = now
        self.last_at = now
        self.frames += 1

    def _on_audio(self, now: float) -> None:
        self._shown(now)

    def _on_video(self, frame: Frame, now: float) -> None:
        self._shown(now)
        self.freezes.frame(now)
        if frame.stamp is not None:
            self.video_numbers.add(frame.stamp.frame)
            self.stamp_senders.add(frame.stamp.sender)
            self.latencies_ms.append(stamps.latency_ms(frame.stamp, int(now * 1000) % stamps.MS_MODULO))
        elif self.stamped:
            self.bad_stamps += 1
        if self.pictures is not None:
            self.pictures.feed(frame, now)

    def check_pictures(self, on: bool) -> None:
        """Decode a sample of this link's video and check its pictures (pictures.py), or stop."""
        if on and self.pictures is None and isinstance(self.sink, VideoFrames):
            self.pictures = PictureCheck()
            self.sink.keep_data = True
        elif not on and self.pictures is not None:
            self.sink.keep_data = False
            self.pictures.close()
            self._checked = (self.decoded, self.bad_pictures)
            self.pictures = None

    @property
    def decoded(self) -> int:
        """Pictures decoded to check them, on this link so far."""
        return self._checked[0] + (self.pictures.decoded if self.pictures else 0)

    @property
    def bad_pictures(self) -> int:
        """Decoded pictures that did not show the clip frame their stamp named."""
        return self._checked[1] + (self.pictures.bad if self.pictures else 0)

    @property
    def size(self) -> tuple[int, int] | None:
        """The picture size of the latest keyframe (VP8), if known."""
        return self.sink.size if isinstance(self.sink, VideoFrames) else None

    def sample(self, now: float) -> dict[str, Any] | None:
        """Add (and return) one sample of the time since the last: kbps, fps, size, loss, jitter, latency."""
        mark = _Mark(now, self.wire_bytes, self.frames, self.packets.received, self.packets.lost,
                     len(self.latencies_ms))
        last, self._mark = self._mark, mark
        if now <= last.at:
            return None
        seconds = now - last.at
        arrived, missed = mark.packets - last.packets, max(0, mark.lost - last.lost)
        latencies = self.latencies_ms[last.latencies :]
        size = self.size
        self.series.append(sample := {
            "at": now,
            "kbps": round((mark.wire - last.wire) * 8 / seconds / 1000, 1),
            "fps": round((mark.frames - last.frames) / seconds, 1),
            "width": size[0] if size else None,
            "height": size[1] if size else None,
            "loss_pct": round(100.0 * missed / (arrived + missed), 2) if arrived + missed > 0 else 0.0,
            "jitter_ms": self.packets.jitter_ms,
            "latency_ms": round(statistics.median(latencies), 1) if latencies else None,
        })
        return sample

    def tone_hz(self) -> float:
        if not isinstance(self.sink, AudioPackets):
            return 0.0
        return dominant_hz(self.sink.pcm(), AUDIO_RATE)

    async def stop(self) -> None:
        self.check_pictures(False)
