"""Frames from RTP packets, without decoding: what a receiver could show, and when.

aiortc hands every media packet of a receiver (retransmissions unwrapped) to
`VideoFrames.add` instead of its jitter buffer (hooks.take_frames). A frame is
the packets of one RTP timestamp; it is complete when every sequence number
from its first packet (the VP8 payload descriptor's start bit, or the packet
after the previous frame's marker) to its marker packet has arrived. A complete
frame is shown (`on_frame`) when a decoder could decode it: it is a keyframe,
or it follows the frame shown last without a gap in the sequence numbers.
After a gap, frames wait up to HOLD_S for the missing one (a retransmission);
then they are given up, a keyframe is asked for (PLI) and nothing is shown
until one comes, as a browser would freeze. VP8 keyframes also tell the
picture's size.

Audio: every Opus packet is a frame (`AudioPackets`); the last ones are kept for
the tone, which is decoded only when asked for.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import av
import numpy as np

from . import hooks
from .stamp import FrameStamp

HOLD_S = 1.0  # how long complete frames wait for a missing one before it is given up
PLI_EVERY_S = 0.5  # at most one keyframe request per this long while frames are given up
TONE_PACKETS = 50  # the tone is found in the last 50 audio packets (a second at 20 ms)


@dataclass
class Frame:
    timestamp: int
    first_seq: int | None = None  # extended sequence numbers
    last_seq: int | None = None
    parts: dict[int, bytes] = field(default_factory=dict)  # seq -> depayloaded data (kept only to decode)
    seqs: set[int] = field(default_factory=set)
    keyframe: bool | None = None  # None: the codec does not say (treated as decodable on its own)
    size: tuple[int, int] | None = None
    stamp: FrameStamp | None = None
    first_at: float = 0.0
    complete_at: float | None = None

    @property
    def complete(self) -> bool:
        return (self.first_seq is not None and self.last_seq is not None
                and len(self.seqs) == self.last_seq - self.first_seq + 1)

    def data(self) -> bytes:
        return b"".join(self.parts[s] for s in sorted(self.parts))


def vp8_info(payload: bytes) -> tuple[bool, bytes]:
    """(starts a frame, the VP8 data after the payload descriptor) of one RTP payload (RFC 7741)."""
    first = payload[0]
    start = bool(first & 0x10) and (first & 0x0F) == 0
    pos = 1
    if first & 0x80:  # X: extension octet
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K
            pos += 1
    return start, payload[pos:]


def vp8_keyframe(data: bytes) -> tuple[bool, tuple[int, int] | None]:
    """Whether a frame's first VP8 bytes are a keyframe, and its size if so (RFC 6386, 9.1)."""
    if not data:
        return False, None
    if data[0] & 0x01:
        return False, None
    if len(data) >= 10 and data[3:6] == b"\x9d\x01\x2a":
        return True, (int.from_bytes(data[6:8], "little") & 0x3FFF, int.from_bytes(data[8:10], "little") & 0x3FFF)
    return True, None


def h264_keyframe(payload: bytes) -> bool:
    """Whether an H.264 RTP payload (RFC 6184) carries an IDR slice or a sequence parameter set."""
    nal = payload[0] & 0x1F
    if nal == 24:  # STAP-A: size-prefixed NAL units
        pos = 1
        while pos + 2 < len(payload):
            size = int.from_bytes(payload[pos : pos + 2], "big")
            if payload[pos + 2] & 0x1F in (5, 7):
                return True
            pos += 2 + size
        return False
    if nal == 28 and len(payload) > 1:  # FU-A: the fragment's own type
        return payload[1] & 0x1F in (5, 7)
    return nal in (5, 7)


class VideoFrames(hooks.FrameSink):
    """One video stream's frames, from its media packets (see the module's doc)."""

    def __init__(self, on_frame: Callable[[Frame, float], None], codec: Callable[[int], str | None] = lambda pt: "VP8",
                 clock: Callable[[], float] = time.time):
        self.on_frame = on_frame
        self._codec = codec  # payload type -> codec name
        self._codecs: dict[int, str | None] = {}
        self.clock = clock
        self.keep_data = False  # keep the frames' bytes, for a decoder
        self.size: tuple[int, int] | None = None  # the latest keyframe's
        self.complete = 0  # frames complete, shown or not
        self.shown = 0
        self.given_up = 0  # complete frames that could not be decoded (after a gap, before a keyframe)
        self.pli = 0
        self._pending: dict[int, Frame] = {}  # timestamp -> frame, not yet complete or not yet shown
        self._held = 0  # of those, complete
        self._finished: set[int] = set()  # timestamps of recent frames shown or given up
        self._finished_order: deque[int] = deque()
        self._markers: set[int] = set()  # recent marker sequence numbers (codecs without a start bit)
        self._packets = 0
        self._highest: int | None = None  # extended sequence number
        self._shown_last: int | None = None  # last_seq of the frame shown last
        self._broken = True  # nothing to decode from until a keyframe
        self._last_pli = 0.0

    def _extend(self, seq: int) -> int:
        if self._highest is None:
            self._highest = seq
            return seq
        ext = self._highest + (seq - self._highest + 32768) % 65536 - 32768
        self._highest = max(self._highest, ext)
        return ext

    def add(self, packet) -> tuple[bool, None]:
        now = self.clock()
        seq = self._extend(packet.sequence_number)
        ts = packet.timestamp
        if ts in self._finished:
            return False, None  # a late copy of a frame already shown or given up
        frame = self._pending.get(ts)
        if frame is None:
            frame = self._pending[ts] = Frame(ts, first_at=now)
        if seq in frame.seqs:
            return False, None
        frame.seqs.add(seq)
        if frame.stamp is None and (raw := hooks.stamp_of(packet)) is not None:
            frame.stamp = FrameStamp.unpack(raw)
        name = self._codecs.get(packet.payload_type)
        if name is None:
            name = self._codecs[packet.payload_type] = self._codec(packet.payload_type)
        payload = packet.payload
        if name == "VP8" and payload:
            if payload[0] & 0x10 or self.keep_data:  # S: a partition starts here
                start, data = vp8_info(payload)
                if start:
                    frame.first_seq = seq
                    frame.keyframe, frame.size = vp8_keyframe(data)
                if self.keep_data:
                    frame.parts[seq] = data
        elif name == "H264" and payload:
            frame.keyframe = bool(frame.keyframe) or h264_keyframe(payload)
        if packet.marker:
            frame.last_seq = seq
            if name != "VP8":
                self._starts_after(seq, now)
        if frame.first_seq is None and seq - 1 in self._markers:
            frame.first_seq = seq  # the packet after the previous frame's marker
        self._check_complete(frame, now)
        self._packets += 1
        if self._held or self._packets % 64 == 0:
            return self._release(now), None
        return False, None

    def _starts_after(self, marker_seq: int, now: float) -> None:
        """A frame whose codec marks no start begins right after the previous frame's marker."""
        self._markers.add(marker_seq)
        if len(self._markers) > 256:
            self._markers = set(sorted(self._markers)[128:])
        for frame in self._pending.values():
            if frame.first_seq is None and marker_seq + 1 in frame.seqs:
                frame.first_seq = marker_seq + 1
                self._check_complete(frame, now)

    def _check_complete(self, frame: Frame, now: float) -> None:
        if frame.complete_at is None and frame.complete:
            frame.complete_at = now
            self.complete += 1
            self._held += 1

    def _release(self, now: float) -> bool:
        """Show what a decoder could decode now; returns whether to ask for a keyframe."""
        ask = False
        while done := sorted((f for f in self._pending.values() if f.complete), key=lambda f: f.first_seq):
            nxt = done[0]
            if self._shown_last is not None and nxt.first_seq <= self._shown_last:
                self._give_up([nxt])  # completed after later frames were shown: too late
            elif nxt.keyframe is not False:  # a keyframe, or a codec that cannot tell
                self._show(nxt, now)
            elif not self._broken and nxt.first_seq == self._shown_last + 1:
                self._show(nxt, now)  # the next frame
            elif self._broken:  # nothing to decode it from until a keyframe
                self._give_up([nxt])
                ask = True
            elif keys := [f for f in done if f.keyframe]:  # what comes before a complete keyframe is not needed
                self._give_up([f for f in done if f.first_seq < keys[0].first_seq])
            elif now - nxt.complete_at > HOLD_S:  # the missing frame did not come
                self._broken = True
            else:
                break  # wait for the missing frame
        self._forget_incomplete(now)
        if ask and now - self._last_pli >= PLI_EVERY_S:
            self._last_pli = now
            self.pli += 1
            return True
        return False

    def _finish(self, frame: Frame) -> None:
        del self._pending[frame.timestamp]
        if frame.complete_at is not None:
            self._held -= 1
        self._finished.add(frame.timestamp)
        self._finished_order.append(frame.timestamp)
        if len(self._finished_order) > 128:
            self._finished.discard(self._finished_order.popleft())

    def _show(self, frame: Frame, now: float) -> None:
        self._finish(frame)
        self._shown_last = frame.last_seq
        self._broken = False
        if frame.size is not None:
            self.size = frame.size
        self.shown += 1
        self.on_frame(frame, now)

    def _give_up(self, frames: list[Frame]) -> None:
        for frame in frames:
            self._finish(frame)
            self.given_up += 1

    def _forget_incomplete(self, now: float) -> None:
        """Incomplete frames older than HOLD_S are lost for good (a later frame will say so)."""
        for frame in [f for f in self._pending.values() if not f.complete and now - f.first_at > HOLD_S]:
            self._finish(frame)


class AudioPackets(hooks.FrameSink):
    """One audio stream's packets: each is a frame; the last TONE_PACKETS are kept for the tone."""

    def __init__(self, on_frame: Callable[[float], None], clock: Callable[[], float] = time.time):
        self.on_frame = on_frame
        self.clock = clock
        self._recent: deque[bytes] = deque(maxlen=TONE_PACKETS)
        self._seen: deque[int] = deque(maxlen=64)

    def add(self, packet) -> tuple[bool, None]:
        if packet.sequence_number in self._seen:
            return False, None
        self._seen.append(packet.sequence_number)
        self._recent.append(packet._data)
        self.on_frame(self.clock())
        return False, None

    def pcm(self) -> np.ndarray:
        """The kept packets, decoded (opus_pcm)."""
        return opus_pcm(list(self._recent))


def opus_pcm(packets: list[bytes]) -> np.ndarray:
    """Opus packets decoded: the first channel, float samples at 48 kHz."""
    decoder = av.CodecContext.create("libopus", "r")
    out = []
    for data in packets:
        for frame in decoder.decode(av.Packet(data)):
            samples = frame.to_ndarray()
            out.append(samples[0] if frame.format.is_planar else samples.reshape(-1)[:: len(frame.layout.channels)])
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)
