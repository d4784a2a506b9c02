"""How much video a bot sends per link (bitrate.py, player.py): the rungs, and a sender that follows
its receiver's estimate on a loopback that carries less than the clip."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from p2pconf.bots.bitrate import choose_rung
from p2pconf.bots.clip import THUMB_BPS, video_clip
from p2pconf.bots.sources import VideoSpec

from .conftest import wait_until
from .peers import video_pair

def test_a_rung_fits_the_cap_and_the_scale_and_going_up_needs_headroom():
    clip = video_clip(VideoSpec(640, 360, 15))
    rungs, width = clip.rungs, clip.spec.width
    assert choose_rung(rungs, width, float("inf")) == 0
    assert choose_rung(rungs, width, 0) == len(rungs) - 1  # nothing fits: the least
    middle = rungs[2].bps
    assert choose_rung(rungs, width, middle) == 2
    assert choose_rung(rungs, width, middle, current=3, headroom=1.1) == 3  # not quite enough to climb
    assert choose_rung(rungs, width, middle * 1.1, current=3, headroom=1.1) == 2
    thumb = choose_rung(rungs, width, 1_500_000, scale=4)  # a thumbnail: a quarter of the width, whatever the cap
    assert rungs[thumb].width == 160 and rungs[thumb].target_bps <= THUMB_BPS


@pytest.fixture
def narrow_loopback():
    """Loopback that carries `rate` bit/s (tc tbf, a 200 ms queue like a home router); needs root."""
    if shutil.which("tc") is None:
        pytest.skip("needs tc")

    def narrow(rate: int) -> None:
        subprocess.run(["tc", "qdisc", "replace", "dev", "lo", "root", "tbf", "rate", str(rate), "burst", "16kb",
                        "latency", "200ms"], check=True)

    yield narrow
    subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], capture_output=True)


async def test_a_link_follows_the_receivers_estimate_down_to_what_the_line_carries(loopback, narrow_loopback):
    spec = VideoSpec(640, 360, 15)
    async with video_pair(spec, policy="estimate") as pair:
        rungs = pair.player.clip.rungs
        await wait_until(lambda: pair.track.estimate_bps is not None, timeout=15)
        assert pair.track.rung == 0  # the loopback carries the top rung
        narrow_loopback(rungs[0].bps // 2)
        await wait_until(lambda: pair.track.estimate_bps < rungs[0].bps // 2, timeout=20)
        await wait_until(lambda: rungs[pair.track.rung].bps < rungs[0].bps // 2, timeout=5)
        assert pair.track.keyframe_requests == 0  # a change of rung made its own keyframe


async def test_fixed_never_leaves_the_top_rung(loopback, narrow_loopback):
    async with video_pair(VideoSpec(640, 360, 15), policy="fixed") as pair:
        assert len(pair.player.clip.rungs) == 1  # only the top rung is encoded
        narrow_loopback(pair.player.clip.rungs[0].bps // 2)
        await wait_until(lambda: pair.track.estimate_bps is not None and
                         pair.track.estimate_bps < pair.player.clip.rungs[0].bps // 2, timeout=20)
        assert pair.track.rung == 0
