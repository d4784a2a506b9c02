"""A stamp drawn into the top of every synthetic video frame.

Three rows of 32 black/white blocks carry (sender, checksum), the frame number
and the send time in milliseconds (low 32 bits of the wall clock). Blocks are
large enough to survive lossy VP8 at low bitrates, so a receiver can count lost
frames and measure end-to-end latency from the decoded picture alone.
"""

from __future__ import annotations

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


def latency_ms(stamp: Stamp, now_ms: int) -> int:
    """Milliseconds between the stamp's send time and `now_ms`, across the 2**32 wrap."""
    return (now_ms - stamp.sent_ms) % MS_MODULO
