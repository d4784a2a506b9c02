"""Two real aiortc peer connections over loopback, without a server: a bot's video player on one
side, whatever a test attaches to the receiver on the other."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from p2pconf.bots import hooks
from p2pconf.bots.clip import VideoClip, video_clip
from p2pconf.bots.player import LinkTrack, VideoPlayer
from p2pconf.bots.sources import VideoSpec

from .conftest import wait_until

SMALL = VideoSpec(320, 240, 15)


@dataclass
class Pair:
    sender_pc: RTCPeerConnection
    receiver_pc: RTCPeerConnection
    player: VideoPlayer
    track: LinkTrack
    sender: Any  # RTCRtpSender
    receiver: Any = None  # RTCRtpReceiver, once the track arrived


def _without_stamp(sdp: str) -> str:
    """The SDP a browser would send: it has never heard of the frame stamp."""
    return "".join(line + "\r\n" for line in sdp.splitlines() if hooks.STAMP_URI not in line)


@contextlib.asynccontextmanager
async def video_pair(spec: VideoSpec = SMALL, policy: str = "fixed", sender_number: int = 3,
                     on_receiver: Callable[[Any], None] | None = None, browser_offer: bool = False,
                     clip: VideoClip | None = None) -> AsyncIterator[Pair]:
    """A sender playing the clip of `spec` to a receiver; `on_receiver(receiver)` is called as its
    track arrives (before any packet). `browser_offer`: the offer loses the stamp extension on the
    way, as if the receiver were a browser that answers without it. `clip`: another clip than the
    bots' own for `spec`."""
    hooks.install_stamp_extension()
    config = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    a, b = RTCPeerConnection(config), RTCPeerConnection(config)
    player = VideoPlayer(clip or video_clip(spec, policy == "fixed"), sender_number, policy)
    track = player.track()
    sender = a.addTrack(track)
    hooks.route_keyframe_requests(sender, track.request_keyframe)
    hooks.watch_remb(sender, track.on_estimate)
    pair = Pair(a, b, player, track, sender)

    @b.on("track")
    def on_track(remote) -> None:
        pair.receiver = next(t.receiver for t in b.getTransceivers() if t.receiver.track is remote)
        if on_receiver:
            on_receiver(pair.receiver)

    try:
        await a.setLocalDescription(await a.createOffer())
        offer = a.localDescription.sdp
        await b.setRemoteDescription(RTCSessionDescription(_without_stamp(offer) if browser_offer else offer, "offer"))
        await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(b.localDescription)
        await wait_until(lambda: a.connectionState == "connected" and b.connectionState == "connected", timeout=10)
        player.start()
        yield pair
    finally:
        await player.stop()
        await a.close()
        await b.close()
