"""The stamps of the bots' video: one drawn into the picture, one carried beside it.

The picture stamp: three rows of 32 black/white blocks carry (sender, checksum),
a frame number and a time in milliseconds. Blocks are large enough to survive
lossy VP8 at low bitrates. The bots' clip (clip.py) draws the clip frame's
index into every picture, so a receiver that decodes can prove the picture.

The frame stamp (`FrameStamp`, 12 bytes) rides in an RTP header extension on
every packet of a frame (hooks.py): sender, frame number, send time (low 32
bits of the wall clock in ms) and the clip frame shown. Receivers count frames
and latency from it without decoding (rtpframes.py).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

BITS_PER_ROW = 32
ROWS = 3
MS_MODULO = 1 << 32


@dataclass(frozen=True)
class Stamp:
    sender: int  # 0..65535
    frame: int  # 0..2**32-1
    sent_ms: int  # wall clock ms modulo 2**32


def block_size(width: int) -> int:
    """Side of one stamp block in pixels for a frame `width` wide."""
    return max(4, width // BITS_PER_ROW)


def stamp_height(width: int) -> int:
    """Rows of pixels the stamp occupies at the top of the frame."""
    return ROWS * block_size(width)


def _checksum(sender: int, frame: int, sent_ms: int) -> int:
    data = sender.to_bytes(2, "big") + frame.to_bytes(4, "big") + sent_ms.to_bytes(4, "big")
    return zlib.crc32(data) & 0xFFFF


def _words(stamp: Stamp) -> list[int]:
    check = _checksum(stamp.sender, stamp.frame, stamp.sent_ms)
    return [(stamp.sender << 16) | check, stamp.frame, stamp.sent_ms]


def fits(width: int, height: int) -> bool:
    """Whether a picture this size has room for a stamp (at least 128 pixels wide)."""
    size = block_size(width)
    return width >= BITS_PER_ROW * size and height >= ROWS * size


def draw(luma: np.ndarray, stamp: Stamp) -> None:
    """Draw `stamp` into the top rows of a luma (Y) plane, in place (see fits())."""
    size = block_size(luma.shape[1])
    for row, word in enumerate(_words(stamp)):
        bits = (word >> np.arange(BITS_PER_ROW - 1, -1, -1)) & 1
        line = np.repeat(np.where(bits == 1, 235, 16).astype(np.uint8), size)
        luma[row * size : (row + 1) * size, : line.size] = line


def read(luma: np.ndarray) -> Stamp | None:
    """Read the stamp back from a decoded luma plane; None if it does not check out."""
    size = block_size(luma.shape[1])
    if not fits(luma.shape[1], luma.shape[0]):
        return None
    inner = slice(size // 4, size - size // 4)  # block centres, away from ringing at the edges
    words = []
    for row in range(ROWS):
        band = luma[row * size : (row + 1) * size, : BITS_PER_ROW * size][inner]
        blocks = band.reshape(band.shape[0], BITS_PER_ROW, size)[:, :, inner]
        bits = blocks.mean(axis=(0, 2)) > 125
        words.append(int("".join("1" if b else "0" for b in bits), 2))
    sender, check = words[0] >> 16, words[0] & 0xFFFF
    if _checksum(sender, words[1], words[2]) != check:
        return None
    return Stamp(sender=sender, frame=words[1], sent_ms=words[2])


@dataclass(frozen=True)
class FrameStamp:
    """What the RTP header extension says about one frame."""

    sender: int  # 0..65535, the bot's number
    frame: int  # 0..2**32-1, frames since the sender started
    sent_ms: int  # wall clock ms modulo 2**32, when the frame was handed to its links
    clip_index: int  # 0..65535, the clip frame shown (its picture stamp's frame number)

    FORMAT = struct.Struct("!HIIH")  # 12 bytes: fits a one-byte RTP header extension (at most 16)

    def pack(self) -> bytes:
        return self.FORMAT.pack(self.sender, self.frame, self.sent_ms % MS_MODULO, self.clip_index)

    @classmethod
    def unpack(cls, data: bytes) -> "FrameStamp | None":
        """The stamp in `data`, or None if it is not one."""
        if len(data) != cls.FORMAT.size:
            return None
        return cls(*cls.FORMAT.unpack(data))


def latency_ms(stamp: Stamp | FrameStamp, now_ms: int) -> int:
    """Milliseconds between the stamp's send time and `now_ms`, across the 2**32 wrap."""
    return (now_ms - stamp.sent_ms) % MS_MODULO
