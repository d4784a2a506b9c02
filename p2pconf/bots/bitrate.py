"""How much video a bot sends on each link: the bitrate policies and the choice of clip rung.

- "fixed":    the clip's top rung on every link (spec.bitrate), whatever happens;
- "estimate": at most what the receiver estimates the link carries (REMB), as a
              browser's sender follows its bandwidth estimate: down at once, up a rung
              when the estimate has room for it.
"""

from __future__ import annotations

from typing import Protocol

POLICIES = ("fixed", "estimate")


class Rung(Protocol):
    width: int

    @property
    def bps(self) -> int: ...


def choose_rung(rungs: list[Rung], full_width: int, cap_bps: float, scale: int = 1, current: int | None = None,
                headroom: float = 1.0) -> int:
    """The index of the best rung (rungs best first) within `cap_bps` and at most 1/`scale` of
    the full width; the lowest such rung if none fits. From `current`, a higher rung needs
    `headroom` x its bitrate (so a link does not go up and straight down again)."""
    allowed = [i for i, r in enumerate(rungs) if r.width * scale <= full_width] or [len(rungs) - 1]
    for i in allowed:
        need = rungs[i].bps * (headroom if current is not None and i < current else 1.0)
        if need <= cap_bps:
            return i
    return allowed[-1]
