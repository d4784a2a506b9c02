"""Proof of the picture: decode a sample of one link's frames and check each picture's stamp.

Frames are counted from RTP (rtpframes.py) on every link; one link per sender
also decodes (the bot decides which, bot.py). It decodes one keyframe-to-keyframe
stretch in every EVERY_S seconds, in a thread of its own (libvpx leaves the GIL
while it decodes), and checks that each picture shows the clip frame its
FrameStamp names, at the size the keyframe announced.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import av
import numpy as np

from . import stamp as stamps
from .rtpframes import Frame

EVERY_S = 3.0  # one stretch of frames decoded in this many seconds
BACKLOG = 30  # frames waiting for the decoder; more and the stretch is cut short


class PictureCheck:
    def __init__(self) -> None:
        self.decoded = 0
        self.bad = 0  # pictures that did not show what their stamp said
        self.unreadable = 0  # pictures too small to carry a stamp
        self.sizes: set[tuple[int, int]] = set()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="picture-check")
        self._codec = av.CodecContext.create("libvpx", "r")
        self._decoding = False
        self._next_at = 0.0
        self._backlog = 0
        self._lock = threading.Lock()

    def feed(self, frame: Frame, now: float) -> None:
        """One frame as shown (in order, from the keyframe on)."""
        if frame.keyframe:
            self._decoding = now >= self._next_at
            if self._decoding:
                self._next_at = now + EVERY_S
        if not self._decoding or frame.stamp is None:
            return
        with self._lock:
            if self._backlog >= BACKLOG:  # the machine cannot keep up: stop until the next stretch
                self._decoding = False
                return
            self._backlog += 1
        self._pool.submit(self._decode, frame.data(), frame.stamp.clip_index)

    def _decode(self, data: bytes, clip_index: int) -> None:
        try:
            self._check(data, clip_index)
        finally:
            with self._lock:
                self._backlog -= 1

    def _check(self, data: bytes, clip_index: int) -> None:
        try:
            pictures = self._codec.decode(av.Packet(data))
        except av.FFmpegError:
            self.bad += 1
            return
        for picture in pictures:
            self.decoded += 1
            self.sizes.add((picture.width, picture.height))
            if not stamps.fits(picture.width, picture.height):
                self.unreadable += 1
                continue
            plane = picture.planes[0]
            rows = stamps.stamp_height(picture.width)
            luma = np.frombuffer(plane, np.uint8, count=rows * plane.line_size).reshape(rows, plane.line_size)
            found = stamps.read(luma[:, : picture.width])
            if found is None or found.frame != clip_index:
                self.bad += 1

    def close(self) -> None:
        self._pool.shutdown(wait=True)  # at most BACKLOG frames: a moment
