"""One synthetic participant: its peer connections, negotiated as docs/protocol.md says.

The rule that keeps a mesh glare-free: the newcomer offers to every member that
`joined` lists, and only the offerer of a pair ever offers again (an ICE restart
after a failure). The other side asks for it with `renegotiate`. aiortc cannot
roll back a local offer, so it could never be the polite peer of "perfect
negotiation"; with this rule it never has to be.

When the server refuses the bot for good (a final close code, or `forbidden`
on a re-join; see client.py), the bot stops its media, closes its peer
connections and keeps the reason in `refused`; the runner ends the run.

Media: the bot plays its clip and tone (clip.py, player.py) on every link, at the
rung its bitrate policy picks (bitrate.py), and measures every incoming track from
RTP (measure.py). It decodes one incoming video to prove the pictures: the one of
the participant who joined right before it (the first bot: of the newest), so that
every sender's pictures are checked by one receiver.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from . import hooks
from .bitrate import DEFAULT_BUDGET_KBPS, POLICIES, split_budget
from .client import SignalingClient
from .clip import audio_loop, video_clip
from .measure import TrackMeter, WireCounter
from .player import AudioPlayer, LinkTrack, Player, VideoPlayer
from .sources import VideoSpec, tone_hz

log = logging.getLogger("p2pconf.bot")
Message = dict[str, Any]
SAMPLE_S = 1.0  # one sample per link and second for the report's series
UPLOAD_EVERY = 2  # samples between two `stats` messages to the server (as browsers do)


@dataclass
class BotOptions:
    video: VideoSpec | None = field(default_factory=VideoSpec)  # None: audio-only call
    # Send ICE candidates as separate messages, as browsers do, instead of inside the SDP.
    trickle: bool = False
    # offer a screen line (recvonly) too, to see a screen shared by peers we offer to; off by
    # default: in the restart drill it cost frozen seconds on bot-to-bot links (not yet understood)
    screen_line: bool = False
    audio_ms: int = 20  # Opus frame length; longer frames mean fewer packets and less CPU
    invite: str | None = None  # a guest link: enter through it instead of naming the room
    bitrate_policy: str = "fixed"  # bitrate.py: "fixed", "estimate" or "browser"
    check_pictures: bool = True  # decode one incoming video to prove the pictures

    def __post_init__(self) -> None:
        if self.bitrate_policy not in POLICIES:
            raise ValueError(f"bitrate policy must be one of {', '.join(POLICIES)}, not {self.bitrate_policy!r}")


@dataclass(eq=False)
class PeerLink:
    """Everything this bot holds about one remote participant."""

    peer_id: str
    name: str
    offerer: bool  # True when this bot offers on this link
    media: Message = field(default_factory=dict)
    pc: RTCPeerConnection | None = None
    tracks: list[LinkTrack] = field(default_factory=list)
    meters: dict[str, TrackMeter] = field(default_factory=dict)
    wire: WireCounter = field(default_factory=WireCounter)  # datagrams received on this connection
    rtt_series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # kind -> (at, rtt ms)
    sent_mark: tuple[float, int] | None = None  # (at, outbound-rtp bytesSent) at the last sample
    pending: list[Message] = field(default_factory=list)  # candidates before the remote description
    states: list[str] = field(default_factory=list)
    inbox: asyncio.Queue = field(default_factory=asyncio.Queue)
    worker: asyncio.Task | None = None


def line_kind(pc: RTCPeerConnection, receiver) -> str:
    """"audio", "video" (the camera) or "screen": the second video line (docs/protocol.md "Media lines").

    aiortc keeps its transceivers in m-line order, as an offerer and as an answerer.
    """
    video = [t.receiver for t in pc.getTransceivers() if t.kind == "video"]
    return "screen" if len(video) > 1 and receiver is video[1] else receiver.track.kind


def split_candidates(sdp: str) -> tuple[str, list[Message]]:
    """Take the a=candidate lines out of an SDP, as a trickling browser would send them."""
    lines, candidates, mid, index = [], [], None, -1
    for line in sdp.splitlines():
        if line.startswith("m="):
            index += 1
            mid = None
        elif line.startswith("a=mid:"):
            mid = line[6:]
        if line.startswith("a=candidate:"):
            candidates.append({"candidate": line[2:], "sdpMid": mid, "sdpMLineIndex": index})
        elif line != "a=end-of-candidates":
            lines.append(line)
    return "\r\n".join(lines) + "\r\n", candidates


class Bot:
    """A headless participant that sends a synthetic camera and tone and measures every link."""

    def __init__(self, index: int, server: str, room: str, options: BotOptions | None = None, name: str | None = None):
        self.index = index
        self.room = room
        self.name = name or f"bot-{index}"
        self.options = options or BotOptions()
        self.tone_hz = tone_hz(index)
        self.client = SignalingClient(server, self._on_message)
        self.links: dict[str, PeerLink] = {}
        self.errors: list[Message] = []
        self.joined_at: float | None = None
        self.refused: Message | None = None  # {"type": "refused", "code", "reason"} from the client
        self.media = {
            "mode": "audio+video" if self.options.video else "audio-only",
            "mic": True,
            "cam": self.options.video is not None,
        }
        self.sources: dict[str, Player] = {}  # made in start(), once the clip is encoded
        self.peer_order: list[str] = []  # the other participants, in the order they joined
        self.focus_of: dict[str, str | None] = {}  # whom each participant shows in its centre
        self.focus: str | None = None  # whom this bot shows in its centre ("browser" policy)
        self.decode_from: str | None = None  # whose video this bot decodes to prove the pictures
        self._joined_alone = False
        self._ice_servers: list[RTCIceServer] = []
        self._sampler: asyncio.Task | None = None
        self._retiring: set[asyncio.Task] = set()  # replaced connections still closing

    # -- life cycle ------------------------------------------------------------------

    async def _make_media(self) -> None:
        """The players: the clip is encoded once per process (in a thread: it takes a second or two)."""
        if self.sources:
            return
        hooks.install_stamp_extension()
        self.sources["audio"] = AudioPlayer(audio_loop(self.tone_hz, self.options.audio_ms))
        if self.options.video:
            clip = await asyncio.to_thread(video_clip, self.options.video, self.options.bitrate_policy == "fixed")
            self.sources["video"] = VideoPlayer(clip, self.index, self.options.bitrate_policy)

    async def start(self) -> None:
        """Connect, join the room and offer to everyone already in it."""
        await self._make_media()
        if self.options.invite:
            entered = await self.client.enter_invite(self.options.invite, self.name)
            self.room = entered["room"]["id"]
        welcome = await self.client.connect()
        self._ice_servers = [
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in welcome.get("iceServers", [])
        ]
        for source in self.sources.values():
            source.start()
        joined = await self.client.join(self.room, self.name, self.media)
        self.joined_at = time.time()
        if joined.get("mode") == "audio-only" and "video" in self.sources:  # an audio-only call: no video at all
            await self.sources.pop("video").stop()
            self.media.update(mode="audio-only", cam=False)
        self._learn_peers(joined["peers"])
        self._offer_to(joined["peers"])
        self._sampler = asyncio.create_task(self._sample_links())

    async def set_media(self, **changes: Any) -> None:
        """Change mic/cam and tell the room (the bot keeps sending; it only reports)."""
        self.media.update(changes)
        await self.client.send({"type": "media", "media": changes})

    async def stop_sending(self) -> None:
        for source in self.sources.values():
            await source.stop()

    async def close(self) -> None:
        if self._sampler:
            self._sampler.cancel()
        await self.stop_sending()
        await self.client.close()
        for link in list(self.links.values()):
            await self._drop(link)
        if self._retiring:
            await asyncio.wait(self._retiring, timeout=5)

    # -- who is who: join order, focus -----------------------------------------------

    def _learn_peers(self, peers: list[Message]) -> None:
        """The members already in the room (`joined`), in the server's order: the order they joined."""
        self.peer_order = [p["id"] for p in peers]
        self.focus_of.update({p["id"]: p.get("focus") for p in peers})
        self._joined_alone = not peers
        self.decode_from = self.peer_order[-1] if peers else None  # who joined right before
        self._peers_changed()

    def _peer_joined(self, peer: Message) -> None:
        if peer["id"] not in self.peer_order:
            self.peer_order.append(peer["id"])
        self.focus_of[peer["id"]] = peer.get("focus")
        if self._joined_alone:  # the first in the room checks the newest, who has nobody after it
            self.decode_from = peer["id"]
        self._peers_changed()

    def _peer_left(self, peer_id: str) -> None:
        if peer_id in self.peer_order:
            self.peer_order.remove(peer_id)
        self.focus_of.pop(peer_id, None)
        if self.decode_from == peer_id:
            self.decode_from = self.peer_order[-1] if self.peer_order else None
        self._peers_changed()

    def _peers_changed(self) -> None:
        for link in self.links.values():
            self._check_pictures(link)
        if self.options.bitrate_policy == "browser":
            # As a browser does until its user picks someone: the first other participant in the centre.
            focus = self.peer_order[0] if self.peer_order else None
            if focus != self.focus:
                self.focus = focus
                asyncio.ensure_future(self._send_focus(focus))

    async def _send_focus(self, focus: str | None) -> None:
        try:
            await self.client.send({"type": "focus", "peer": focus})
        except Exception:  # a connection that is going away: the server learns it again after a resume
            log.warning("%s: could not send its focus", self.name, exc_info=True)

    def _check_pictures(self, link: PeerLink) -> None:
        meter = link.meters.get("video")
        if meter is not None:
            meter.check_pictures(self.options.check_pictures and link.peer_id == self.decode_from)

    def _split_budget(self) -> None:
        """The "browser" policy: cap each link's video as p2pconf's page does (bitrate.py)."""
        budget = self.client.welcome.get("uploadKbps") or DEFAULT_BUDGET_KBPS
        links = [l for l in self.links.values() if any(t.kind == "video" for t in l.tracks)]
        limits = split_budget(budget, {l.peer_id: self.focus_of.get(l.peer_id) == self.client.id for l in links})
        for link in links:
            for track in link.tracks:
                if track.kind == "video":
                    track.limit = limits[link.peer_id]

    # -- signaling -------------------------------------------------------------------

    def _offer_to(self, peers: list[Message]) -> None:
        for peer in peers:
            link = self._link(peer["id"], peer.get("name", "?"), offerer=True)
            link.media = peer.get("media", {})
            link.inbox.put_nowait({"type": "_start"})

    def _link(self, peer_id: str, name: str, offerer: bool) -> PeerLink:
        link = self.links.get(peer_id)
        if link is None:
            link = self.links[peer_id] = PeerLink(peer_id, name, offerer)
            link.worker = asyncio.create_task(self._work(link))
        return link

    async def _on_message(self, msg: Message) -> None:
        kind = msg.get("type")
        if kind == "peer-joined":
            peer = msg["peer"]
            self._link(peer["id"], peer["name"], offerer=False).media = peer.get("media", {})
            self._peer_joined(peer)
        elif kind == "peer-left":
            self._peer_left(msg["id"])
            link = self.links.get(msg["id"])
            if link:
                await self._drop(link)
        elif kind == "peer-focus":
            self.focus_of[msg["id"]] = msg.get("focus")
        elif kind == "peer-media":
            if link := self.links.get(msg["id"]):
                link.media = msg["media"]
        elif kind in ("offer", "answer", "candidate", "renegotiate"):
            if link := self.links.get(msg["from"]):
                link.inbox.put_nowait(msg)
        elif kind == "resumed":  # same id, same room: the links carry on as they are
            log.info("%s: resumed its session after a broken connection", self.name)
        elif kind == "reconnected":
            for link in list(self.links.values()):
                await self._drop(link)
            self.peer_order, self.focus_of, self.focus = [], {}, None
            self._learn_peers(msg["joined"]["peers"])
            self._offer_to(msg["joined"]["peers"])
        elif kind == "refused":  # final: the client will not reconnect, so stop everything now
            if self._sampler:
                self._sampler.cancel()
            await self.stop_sending()
            for link in list(self.links.values()):
                await self._drop(link)
            self.refused = msg  # set once stopped
        elif kind == "error":
            log.warning("%s: server error %s: %s", self.name, msg.get("code"), msg.get("message"))
            self.errors.append(msg)

    async def _work(self, link: PeerLink) -> None:
        """Handle one link's signaling in order, so its negotiation never interleaves."""
        while True:
            msg = await link.inbox.get()
            try:
                await self._step(link, msg)
            except Exception:  # a broken remote description must not kill the bot
                log.exception("%s: link to %s failed on %s", self.name, link.name, msg.get("type"))

    async def _step(self, link: PeerLink, msg: Message) -> None:
        kind = msg["type"]
        if kind == "_start":
            await self._send_offer(link, restart=False)
        elif kind in ("_failed", "renegotiate"):
            if link.offerer:
                await self._send_offer(link, restart=True)
            else:
                await self.client.send({"type": "renegotiate", "to": link.peer_id})
        elif kind == "offer":
            if link.pc is None or msg.get("restart"):
                self._new_pc(link)
            await link.pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "offer"))
            await self._flush_candidates(link)
            offered = {t.kind for t in link.pc.getTransceivers()}
            for kind_, source in self.sources.items():
                if kind_ in offered:
                    self._add_track(link, source)
            await link.pc.setLocalDescription(await link.pc.createAnswer())
            await self._send_description(link, "answer")
        elif kind == "answer" and link.pc is not None:
            await link.pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "answer"))
            await self._flush_candidates(link)
        elif kind == "candidate":
            link.pending.append(msg.get("candidate"))
            if link.pc is not None and link.pc.remoteDescription is not None:
                await self._flush_candidates(link)

    async def _send_offer(self, link: PeerLink, restart: bool) -> None:
        self._new_pc(link)
        link.pending = []  # candidates of an earlier session are void
        for source in self.sources.values():
            self._add_track(link, source)
        if self.options.screen_line and "video" in self.sources:  # docs/protocol.md "Media lines"
            link.pc.addTransceiver("video", direction="recvonly")
        await link.pc.setLocalDescription(await link.pc.createOffer())
        await self._send_description(link, "offer", restart=restart)

    async def _send_description(self, link: PeerLink, kind: str, restart: bool = False) -> None:
        sdp = link.pc.localDescription.sdp  # aiortc: every candidate is already inside
        candidates: list[Message] = []
        if self.options.trickle:
            sdp, candidates = split_candidates(sdp)
        msg: Message = {"type": kind, "to": link.peer_id, "sdp": sdp}
        if restart:
            msg["restart"] = True
        await self.client.send(msg)
        if self.options.trickle:
            for candidate in [*candidates, None]:
                await self.client.send({"type": "candidate", "to": link.peer_id, "candidate": candidate})

    async def _flush_candidates(self, link: PeerLink) -> None:
        pending, link.pending = link.pending, []
        for cand in pending:
            if cand is None:
                await link.pc.addIceCandidate(None)
                continue
            if not cand.get("candidate"):
                # Firefox ends each m-line's candidates with "", the data channel's line first; aiortc's
                # None would end every line's, and all share the first line's transport (BUNDLE): the
                # checks failed before its candidates came. Only the null that follows ends them.
                continue
            candidate = candidate_from_sdp(cand["candidate"].removeprefix("candidate:"))
            candidate.sdpMid, candidate.sdpMLineIndex = cand.get("sdpMid"), cand.get("sdpMLineIndex")
            await link.pc.addIceCandidate(candidate)

    # -- media -----------------------------------------------------------------------

    def _new_pc(self, link: PeerLink) -> None:
        if link.pc is not None:
            self._retire(link)
        # Always pass the configured list: with none, aiortc would add a public STUN server.
        # max-bundle: with aiortc's default ("balanced"), an answerer's second video line keeps
        # a transport that BUNDLE then discards, and a shared screen never arrives.
        pc = RTCPeerConnection(RTCConfiguration(iceServers=list(self._ice_servers),
                                                bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        link.pc = pc

        wire = link.wire = WireCounter()

        @pc.on("track")
        def on_track(track) -> None:
            receiver = next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)
            if not link.meters:  # the first track: its transport carries them all (BUNDLE)
                wire.attach(receiver.transport.transport)
            kind = line_kind(pc, receiver)
            link.meters[kind] = TrackMeter(kind, receiver, wire, stamped=kind != "screen")
            self._check_pictures(link)

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc is not link.pc:
                return
            link.states.append(pc.connectionState)
            if pc.connectionState == "failed":
                link.inbox.put_nowait({"type": "_failed"})

    def _add_track(self, link: PeerLink, source: Player) -> None:
        track = source.track()
        link.tracks.append(track)
        sender = link.pc.addTrack(track)
        hooks.route_keyframe_requests(sender, track.request_keyframe)
        if track.kind == "video":
            hooks.watch_remb(sender, track.on_estimate)

    def _retire(self, link: PeerLink) -> None:
        """Close a replaced connection in the background (its numbers do not reach the report)."""
        old = PeerLink(link.peer_id, link.name, link.offerer, pc=link.pc, tracks=link.tracks, meters=link.meters)
        link.tracks, link.meters = [], {}
        task = asyncio.create_task(self._close_pc(old))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _close_pc(self, link: PeerLink) -> None:
        for meter in link.meters.values():
            await meter.stop()
        for track in link.tracks:
            track.stop()
        if link.pc is not None:
            await link.pc.close()

    async def _drop(self, link: PeerLink) -> None:
        self.links.pop(link.peer_id, None)
        if link.worker:
            link.worker.cancel()
        await self._close_pc(link)

    # -- numbers -----------------------------------------------------------------------

    async def _sample_links(self) -> None:
        """Every second: sample every link; every UPLOAD_EVERY seconds tell the server."""
        n = 0
        while True:
            await asyncio.sleep(SAMPLE_S)
            n += 1
            if self.options.bitrate_policy == "browser":
                self._split_budget()
            summary: Message = {}
            for link in list(self.links.values()):
                try:
                    summary[link.peer_id] = await self._sample(link)
                except Exception:  # e.g. a link closing under us: skip it this time, but say so
                    log.warning("%s: sampling %s failed", self.name, link.name, exc_info=True)
            if n % UPLOAD_EVERY == 0 and summary:
                await self.client.send({"type": "stats", "peers": summary})

    async def _sample(self, link: PeerLink) -> Message:
        """One sample of one link; returns its entry of the `stats` message (docs/protocol.md)."""
        if link.pc is None:
            return {}
        now = time.time()
        stats = await link.pc.getStats()
        latest = [s for m in link.meters.values() if (s := m.sample(now))]
        rtts = []
        for stat in stats.values():
            if stat.type == "remote-inbound-rtp" and stat.roundTripTime is not None:
                rtts.append(round(stat.roundTripTime * 1000, 1))
                link.rtt_series.setdefault(stat.kind, []).append((now, rtts[-1]))
        out_bytes = sum(s.bytesSent for s in stats.values() if s.type == "outbound-rtp")
        last_out, link.sent_mark = link.sent_mark, (now, out_bytes)
        entry: Message = {
            "kbpsIn": round(sum(s["kbps"] for s in latest), 1),
            "lossPct": min(100.0, max((s["loss_pct"] for s in latest), default=0.0)),
            "rttMs": max(rtts, default=None),
            "path": "direct",  # bots gather host candidates only
        }
        if last_out and now > last_out[0]:
            entry["kbpsOut"] = round((out_bytes - last_out[1]) * 8 / (now - last_out[0]) / 1000, 1)
        return entry

    def flowing(self) -> int:
        """Remote tracks that have delivered at least one frame."""
        return sum(1 for link in self.links.values() for m in link.meters.values() if m.first_at is not None)

    async def results(self) -> Message:
        """Everything this bot knows, as plain data for report.py (see docs/report.md)."""
        links = {}
        for link in list(self.links.values()):
            stats = await link.pc.getStats() if link.pc is not None else {}
            remote_in = {s.kind: s for s in stats.values() if s.type == "remote-inbound-rtp"}
            entry: Message = {"peer_id": link.peer_id, "media": link.media, "states": link.states, "sent": {}, "received": {}}
            for track in link.tracks:
                rtt = remote_in.get(track.kind)
                entry["sent"][track.kind] = {
                    "first": track.first_number,
                    "offered": track.offered,
                    "dropped": track.dropped,
                    "keyframe_requests": track.keyframe_requests,
                    "rtt_ms": round(rtt.roundTripTime * 1000, 1) if rtt and rtt.roundTripTime is not None else None,
                    "rtt_series": link.rtt_series.get(track.kind, []),
                }
            for kind, meter in link.meters.items():
                if kind == "screen" and meter.first_at is None:
                    continue  # a screen line nobody shared on
                entry["received"][kind] = {
                    "first_at": meter.first_at,
                    "last_at": meter.last_at,
                    "frames": meter.frames,
                    "bytes": meter.wire_bytes,
                    "ssrcs": sorted(meter.ssrcs),
                    "packets": meter.packets.received,
                    "packets_lost": meter.packets.lost,
                    "jitter_ms": meter.packets.jitter_ms,
                    "series": meter.series,
                    "freezes": meter.freezes.count,
                    "frozen_s": round(meter.freezes.frozen_s, 2),
                    "numbers": sorted(meter.video_numbers),
                    "latencies_ms": meter.latencies_ms,
                    "bad_stamps": meter.bad_stamps,
                    "decoded": meter.decoded,
                    "bad_pictures": meter.bad_pictures,
                    "tone_hz": round(meter.tone_hz(), 1) if kind == "audio" else None,
                }
            links[link.name] = entry
        return {
            "name": self.name,
            "index": self.index,
            "id": self.client.id,
            "joined_at": self.joined_at,
            "tone_hz": self.tone_hz,
            "video": str(self.options.video) if self.options.video else None,
            "frames_sent": {k: s.frames_sent for k, s in self.sources.items()},
            "errors": self.errors,
            "resumes": self.client.resumes,  # came back under the same id after a broken connection
            "rejoins": self.client.reconnects,  # came back as a newcomer (the server had lost it)
            "links": links,
        }
