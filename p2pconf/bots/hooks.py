"""Every place where the bots reach into aiortc's or aioice's private parts, and only here.

Written for aiortc 1.16.0 and aioice 0.13.0 (AIORTC_VERSION, AIOICE_VERSION);
tests/test_hooks.py checks each hook against real peer connections, so an
upgrade that moves one of these fails there first, by name.

- gather_on               which addresses aioice gathers host candidates on
- count_datagrams         every datagram an ICE transport hands to DTLS, as received
- watch_rtp               every RTP packet a receiver gets, before aiortc handles it
- take_frames             a receiver's media packets go to our assembler instead of
                          aiortc's jitter buffer and decoder thread (nothing is decoded)
- route_keyframe_requests a PLI/FIR for a sender calls our function
- watch_remb              the receiver's estimate (REMB) for a sender calls our function
- the frame stamp         an RTP header extension, URI STAMP_URI, that bots offer
                          for video and put on every packet of a frame
                          (install_stamp_extension, sending_stamp, stamp_of)
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any, Awaitable, Callable

import aioice
import aioice.ice
import aiortc
from aiortc import codecs as aiortc_codecs
from aiortc import rtp as aiortc_rtp
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters

AIORTC_VERSION = "1.16.0"
AIOICE_VERSION = "0.13.0"

log = logging.getLogger("p2pconf.bots.hooks")
if (aiortc.__version__, aioice.__version__) != (AIORTC_VERSION, AIOICE_VERSION):
    log.warning("p2pconf's bots were written for aiortc %s and aioice %s, not %s and %s: run tests/test_hooks.py",
                AIORTC_VERSION, AIOICE_VERSION, aiortc.__version__, aioice.__version__)


# -- ICE --------------------------------------------------------------------------------------

_default_host_addresses = aioice.ice.get_host_addresses


def gather_on(addresses: list[str] | None) -> None:
    """Gather host candidates on `addresses` only; None restores aioice's default (every interface
    but loopback)."""
    if addresses is None:
        aioice.ice.get_host_addresses = _default_host_addresses
        return

    def fixed(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in addresses if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = fixed


def count_datagrams(ice_transport: Any, count: Callable[[bytes], None]) -> None:
    """Call `count(datagram)` for everything an RTCIceTransport hands to its DTLS transport."""
    inner = ice_transport._recv

    async def counting() -> bytes:
        data = await inner()
        count(data)
        return data

    ice_transport._recv = counting


# -- receivers ----------------------------------------------------------------------------------


def watch_rtp(receiver: Any, on_packet: Callable[[Any, int], None]) -> None:
    """Call `on_packet(packet, arrival_ms)` for every RTP packet (RTX included) an RTCRtpReceiver
    gets, before aiortc counts, unwraps and reassembles it."""
    inner = receiver._handle_rtp_packet

    async def watching(packet, arrival_time_ms):
        on_packet(packet, arrival_time_ms)
        await inner(packet, arrival_time_ms)

    receiver._handle_rtp_packet = watching


class FrameSink:
    """What take_frames wants: add(packet) -> (send_pli, None) for every media packet (RTX unwrapped)."""

    def add(self, packet: Any) -> tuple[bool, None]:  # pragma: no cover - an interface
        raise NotImplementedError


def take_frames(receiver: Any, sink: FrameSink) -> None:
    """Give every media packet of `receiver` to `sink` instead of aiortc's jitter buffer.

    aiortc still counts it, sends NACKs, REMB and receiver reports, and unwraps RTX
    (packet.payload keeps the payload descriptor, packet._data has it stripped); it then
    calls jitter_buffer.add(packet) -> (pli, frame) and decodes the frame in a thread.
    The sink never returns a frame, so nothing is decoded; when it says pli, aiortc sends
    a Picture Loss Indication for the stream.
    """
    receiver._RTCRtpReceiver__jitter_buffer = sink


def codec_name(receiver: Any, payload_type: int) -> str | None:
    """The codec ("VP8", "opus", "rtx", ...) of `payload_type` on a started receiver."""
    codec = receiver._RTCRtpReceiver__codecs.get(payload_type)
    return codec.name if codec is not None else None


# -- senders ------------------------------------------------------------------------------------


def route_keyframe_requests(sender: Any, request: Callable[[], None]) -> None:
    """A PLI or FIR for an RTCRtpSender calls `request()`: aiortc would only flag its own
    encoder, which never runs for packets that are already encoded."""
    sender._send_keyframe = request


def watch_remb(sender: Any, on_estimate: Callable[[int], None]) -> None:
    """Call `on_estimate(bps)` with every Receiver Estimated Maximum Bitrate for this sender.

    aiortc hands REMB only to its own encoder, clamped to 250 kbit/s .. 1.5 Mbit/s.
    """
    inner: Callable[[Any], Awaitable[None]] = sender._handle_rtcp_packet

    async def watching(packet) -> None:
        if isinstance(packet, aiortc_rtp.RtcpPsfbPacket) and packet.fmt == aiortc_rtp.RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = aiortc_rtp.unpack_remb_fci(packet.fci)
            except ValueError:
                pass
            else:
                if sender._ssrc in ssrcs:
                    on_estimate(bitrate)
        await inner(packet)

    sender._handle_rtcp_packet = watching


# -- the frame stamp: an RTP header extension -------------------------------------------------

STAMP_URI = "urn:p2pconf:frame-stamp"
STAMP_ID = 14  # one-byte header ids are 1..14; aiortc uses 1 to 3 (ids are shared under BUNDLE)
_sending: contextvars.ContextVar[bytes | None] = contextvars.ContextVar("p2pconf_stamp", default=None)
_installed = False


def sending_stamp(value: bytes | None) -> None:
    """The stamp for the packets the calling task serialises next.

    A track's recv() runs in its RTCRtpSender's task, which packetises and sends the
    frame recv() returned before it asks for the next: set it there. A packet keeps
    the stamp it was first sent with, so a retransmission carries the same one.
    """
    _sending.set(value)


def stamp_of(packet: Any) -> bytes | None:
    """The frame stamp a received RTP packet carried, if any."""
    return getattr(packet.extensions, "p2pconf_stamp", None)


def install_stamp_extension() -> None:
    """Offer the frame stamp for video, and write and read it where it was negotiated.

    Bots agree on it with each other; a browser leaves it out of its answer (and never
    offers it), so its links carry nothing unusual.
    """
    global _installed
    if _installed:
        return
    _installed = True
    video = aiortc_codecs.HEADER_EXTENSIONS["video"]
    if all(e.uri != STAMP_URI for e in video):
        video.append(RTCRtpHeaderExtensionParameters(id=STAMP_ID, uri=STAMP_URI))

    Map = aiortc_rtp.HeaderExtensionsMap
    configure, get, set_ = Map.configure, Map.get, Map.set

    def configure_with_stamp(self, parameters) -> None:
        configure(self, parameters)
        for ext in parameters.headerExtensions:
            if ext.uri == STAMP_URI:
                self._p2pconf_stamp_id = ext.id

    def get_with_stamp(self, extension_profile: int, extension_value: bytes):
        values = get(self, extension_profile, extension_value)
        sid = getattr(self, "_p2pconf_stamp_id", None)
        if sid is None or not extension_value:
            return values
        # Only bots send it, always first (set_with_stamp): one look at the first byte, not a
        # second parse of every packet's extensions.
        if extension_profile == 0xBEDE and extension_value[0] >> 4 == sid:
            values.p2pconf_stamp = extension_value[1 : 2 + (extension_value[0] & 0x0F)]
        elif extension_profile == 0x1000 and extension_value[0] == sid and len(extension_value) > 1:
            values.p2pconf_stamp = extension_value[2 : 2 + extension_value[1]]
        return values

    def set_with_stamp(self, values) -> tuple[int, bytes]:
        profile, packed = set_(self, values)
        sid = getattr(self, "_p2pconf_stamp_id", None)
        if sid is None:
            return profile, packed
        stamp = getattr(values, "p2pconf_stamp", None)
        if stamp is None:
            stamp = _sending.get()
            if stamp is None:
                return profile, packed
            values.p2pconf_stamp = stamp  # a retransmission of this packet carries the same
        if profile == 0x1000:
            element = bytes((sid, len(stamp))) + stamp
        else:
            profile, element = 0xBEDE, bytes(((sid << 4) | (len(stamp) - 1),)) + stamp
        value = element + packed  # padding (zero bytes) between elements is allowed
        return profile, value + b"\x00" * (-len(value) % 4)

    Map.configure, Map.get, Map.set = configure_with_stamp, get_with_stamp, set_with_stamp
