"""How much video a bot sends per link (bitrate.py, player.py): p2pconf's split, the rungs, and a
sender that follows its receiver's estimate on a loopback that carries less than the clip."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from p2pconf.bots.bitrate import Limit, choose_rung, split_budget
from p2pconf.bots.bot import Bot, BotOptions
from p2pconf.bots.clip import THUMB_BPS, video_clip
from p2pconf.bots.sources import VideoSpec
from p2pconf.server import create_app

from .conftest import wait_until
from .peers import video_pair

QUALITY_JS = Path(__file__).parent.parent / "web" / "static" / "js" / "quality.js"
SPLITS = [(2000, [True, False, False]), (300, [True, False, False]), (2000, [False] * 5), (2000, [True] * 5),
          (2000, [True, False]), (100, [True, True, False, False, False]), (4000, [True])]


def js_split(budget: float, centred: list[bool]) -> dict:
    peers = json.dumps([{"id": str(i), "centred": c} for i, c in enumerate(centred)])
    script = (f"import({json.dumps(QUALITY_JS.as_uri())}).then(q => console.log(JSON.stringify("
              f"Object.fromEntries(q.splitBudget({budget}, {peers})))))")
    return json.loads(subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True).stdout)


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the page's quality.js")
def test_the_split_is_the_pages_own():
    for budget, centred in SPLITS:
        ours = split_budget(budget, {str(i): c for i, c in enumerate(centred)})
        page = js_split(budget, centred)
        assert {k: (v.max_bps, v.scale) for k, v in ours.items()} == \
            {k: (v["maxBitrate"], v["scaleResolutionDownBy"]) for k, v in page.items()}, (budget, centred)


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


async def test_browser_policy_sends_full_size_to_whoever_centres_the_bot_and_thumbnails_to_the_rest(
        aiohttp_server, config, loopback, bots):
    server = await aiohttp_server(create_app(config))
    url, spec = str(server.make_url("/")), VideoSpec(640, 360, 15)
    options = BotOptions(video=spec, bitrate_policy="browser")
    for n in (1, 2, 3):
        bots.append(Bot(n, url, "centre", options))
        await bots[-1].start()
    one, two, three = bots
    # Like a page until its user picks someone, each centres the first other participant.
    await wait_until(lambda: (one.focus, two.focus, three.focus) == (two.client.id, one.client.id, one.client.id))
    await wait_until(lambda: all(one.focus_of.get(b.client.id) == one.client.id for b in (two, three)))

    def sent_width(sender: Bot, receiver: Bot) -> int | None:
        link = sender.links.get(receiver.client.id)
        track = next((t for t in link.tracks if t.kind == "video"), None) if link else None
        return sender.sources["video"].clip.rungs[track.rung].width if track else None

    def received(receiver: Bot, sender: Bot):
        meter = receiver.links[sender.client.id].meters["video"]
        return meter.size

    # bot-1 is in two centres, bot-2 in one (bot-1's), bot-3 in none
    full, thumb = (640, 360), (160, 90)
    expected = {(one, two): full, (one, three): full, (two, one): full, (two, three): thumb,
                (three, one): thumb, (three, two): thumb}
    await wait_until(lambda: all(received(r, s) == size for (s, r), size in expected.items()), timeout=15)
    assert all(sent_width(s, r) == size[0] for (s, r), size in expected.items())
    # bot-1 is centred by both: 2000 kbit/s over two full links; bot-2 gives bot-1 the 1500 at most
    assert one.links[two.client.id].tracks[-1].limit == Limit(1_000_000, 1)
    assert two.links[one.client.id].tracks[-1].limit == Limit(1_500_000, 1)
    assert two.links[three.client.id].tracks[-1].limit == Limit(150_000, 4)
