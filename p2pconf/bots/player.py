"""A bot's sending side: its clip and tone, looped in real time into one track per link.

One `Player` per kind and bot ticks at the frame rate and hands every link's
`LinkTrack` its next packet; aiortc's RTCRtpSender packetises a packet it gets
from a track without encoding anything. Each video link keeps its own place in
the clip and its own rung (bitrate.py decides which): it starts at a keyframe,
and a PLI, a change of rung or a frame it had to drop moves it on to the next
keyframe of the clip at once, as an encoder would make one. Every video frame
leaves with its FrameStamp (stamp.py) in an RTP header extension (hooks.py).
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from dataclasses import dataclass

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from . import hooks
from . import stamp as stamps
from .bitrate import Limit, choose_rung
from .clip import AudioLoop, VideoClip
from .sources import AUDIO_RATE, VIDEO_CLOCK

UP_HEADROOM = 1.1  # a link goes up a rung when the estimate has 10 % to spare


@dataclass
class Item:
    """One frame for one link."""

    data: bytes
    number: int  # the player's frame number
    keyframe: bool
    stamp: bytes | None  # FrameStamp.pack(), video only


class LinkTrack(MediaStreamTrack):
    """One link's track: the packets its RTCRtpSender asks for, and (video) its place in the clip."""

    QUEUE = 8  # frames; when the sender falls further behind, the queue is dropped

    def __init__(self, player: Player):
        super().__init__()
        self.kind = player.kind
        self.player = player
        self.started = False  # aiortc's sender has asked for the first packet
        self.offered = 0  # frames this link should have carried since its first keyframe
        self.dropped = 0  # of those, frames the sender never took
        self.first_number: int | None = None
        self.keyframe_requests = 0  # PLI and FIR from the receiver
        # video: the rung and the clip index of the next frame
        self.rung = 0
        self.position = 0
        self.keyframe_wanted = True
        self.limit: Limit | None = None  # the browser policy's cap for this link
        self.estimate_bps: int | None = None  # the receiver's latest REMB
        self._queue: deque[Item] = deque()
        self._ready = asyncio.Event()

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self.keyframe_wanted = True

    def on_estimate(self, bps: int) -> None:
        self.estimate_bps = bps

    def push(self, item: Item) -> None:
        if self.first_number is None:
            if not item.keyframe:
                return  # a receiver can only start decoding at a keyframe
            self.first_number = item.number
        self.offered += 1
        if len(self._queue) >= self.QUEUE:  # what follows would refer to frames never sent
            self.dropped += len(self._queue)
            self._queue.clear()
            self.keyframe_wanted = True
            if not item.keyframe:
                self.dropped += 1
                return
        self._queue.append(item)
        self._ready.set()

    async def recv(self) -> av.Packet:
        if not self.started:
            self.started = True
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        item = self._queue.popleft()
        hooks.sending_stamp(item.stamp)  # this task sends the frame's packets next
        packet = av.Packet(item.data)
        packet.pts, packet.time_base = item.number * self.player.pts_step, self.player.time_base
        return packet

    def stop(self) -> None:
        super().stop()
        self.player.tracks.discard(self)
        self._ready.set()


class Player:
    """Ticks at `rate` per second and gives every started track its next frame."""

    def __init__(self, kind: str, rate: float, pts_step: int, clock: int):
        self.kind = kind
        self.rate = rate
        self.pts_step, self.time_base = pts_step, fractions.Fraction(1, clock)
        self.tracks: set[LinkTrack] = set()
        self.frames_sent = 0
        self._task: asyncio.Task | None = None

    def track(self) -> LinkTrack:
        """A new track for one peer connection."""
        track = LinkTrack(self)
        self.tracks.add(track)
        return track

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop sending; the tracks stay open so frames in flight still arrive."""
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

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
            sent_ms = int(time.time() * 1000)
            for track in list(self.tracks):
                if track.started and track.readyState == "live":
                    item = self._frame(track, number, sent_ms)
                    if item is not None:
                        track.push(item)
            number += 1
            self.frames_sent += 1

    def _frame(self, track: LinkTrack, number: int, sent_ms: int) -> Item | None:
        raise NotImplementedError


class AudioPlayer(Player):
    def __init__(self, loop: AudioLoop):
        super().__init__("audio", 1000 / loop.frame_ms, loop.samples, AUDIO_RATE)
        self.loop = loop

    def _frame(self, track: LinkTrack, number: int, sent_ms: int) -> Item:
        return Item(self.loop.frames[number % len(self.loop.frames)], number, True, None)


class VideoPlayer(Player):
    def __init__(self, clip: VideoClip, sender: int, policy: str = "fixed"):
        super().__init__("video", clip.spec.fps, VIDEO_CLOCK // clip.spec.fps, VIDEO_CLOCK)
        self.clip, self.sender, self.policy = clip, sender, policy
        self._every_second = clip.spec.fps

    def choose(self, track: LinkTrack) -> int:
        """The rung `track` should send now (bitrate.py)."""
        if self.policy == "fixed":
            return 0
        cap, scale = float("inf"), 1
        if track.estimate_bps is not None:
            cap = track.estimate_bps
        if self.policy == "browser" and track.limit is not None:
            cap, scale = min(cap, track.limit.max_bps), track.limit.scale
        return choose_rung(self.clip.rungs, self.clip.spec.width, cap, scale, track.rung, UP_HEADROOM)

    def _frame(self, track: LinkTrack, number: int, sent_ms: int) -> Item:
        if number % self._every_second == 0 or track.keyframe_wanted:  # a change of rung costs a keyframe
            rung = self.choose(track)
            if rung != track.rung:
                track.rung, track.keyframe_wanted = rung, True
        if track.keyframe_wanted:
            track.position = self.clip.next_keyframe(track.position)
            track.keyframe_wanted = False
        rung = self.clip.rungs[track.rung]
        index = track.position
        track.position = (index + 1) % self.clip.length
        stamp = stamps.FrameStamp(self.sender, number, sent_ms, index).pack()
        return Item(rung.frames[index], number, rung.keyframes[index], stamp)
