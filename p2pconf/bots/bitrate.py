"""How much video a bot sends on each link: the bitrate policies and the choice of clip rung.

- "fixed":    the clip's top rung on every link (spec.bitrate), whatever happens;
- "estimate": at most what the receiver estimates the link carries (REMB), as a
              browser's sender follows its bandwidth estimate: down at once, up a rung
              when the estimate has room for it;
- "browser":  "estimate", within p2pconf's split of the upload budget (uploadKbps
              from `welcome`): full quality to the peers that show this bot in their
              centre, a thumbnail (a quarter of the size, <= 150 kbit/s) to the others;
              the bot centres the first other participant, as a browser does until its
              user picks someone (web/static/js/call.js, quality.js splitBudget).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

POLICIES = ("fixed", "estimate", "browser")
THUMB_KBPS = 150  # web/static/js/quality.js
FULL_KBPS = 1500
THUMB_SCALE = 4
DEFAULT_BUDGET_KBPS = 2000  # web/static/js/call.js, when welcome names no uploadKbps


@dataclass(frozen=True)
class Limit:
    """One link's cap, as a browser sets it with RTCRtpSender.setParameters."""

    max_bps: int
    scale: int  # scaleResolutionDownBy


def split_budget(budget_kbps: float, centred: dict[str, bool]) -> dict[str, Limit]:
    """quality.js splitBudget: the video budget over the peers (id -> shows us in its centre)."""
    if not centred:
        return {}
    thumb = min(THUMB_KBPS, budget_kbps / len(centred))
    full_count = sum(centred.values())
    rest = budget_kbps - thumb * (len(centred) - full_count)
    full = max(thumb, min(FULL_KBPS, rest / full_count)) if full_count else 0
    return {peer: Limit(round(full * 1000), 1) if c else Limit(round(thumb * 1000), THUMB_SCALE)
            for peer, c in centred.items()}


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
