"""Link quality in Chromium: stats upload, tile indicator, matrix view, per-receiver bitrate, download."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.async_api import expect

from p2pconf.appkeys import HUB
from p2pconf.bots.bot import Bot, BotOptions

from p2pconf.bots.sources import VideoSpec
from p2pconf.browserlab import write_camera_clip

from .browser import enter_as_guest, launched, new_page, screenshot, tile, wait_playing
from .conftest import wait_until
from .org import base_of, guest_link


@pytest.fixture
async def webcam_chromium(tmp_path):
    """Chromium whose fake camera shows a detailed moving picture, as a real webcam does."""
    clip = write_camera_clip(tmp_path / "camera.y4m", VideoSpec(640, 360, 15))
    async with launched(f"--use-file-for-fake-video-capture={clip}") as browser:
        yield browser


def session_named(org, name: str):
    return next((s for s in org.app[HUB].sessions.values() if s.name == name), None)


async def test_stats_reach_the_server_show_on_tiles_in_the_matrix_and_in_the_download(org, chromium, loopback, bots):
    link = await guest_link(org, "Qualität")
    page = await new_page(chromium)
    await enter_as_guest(page, link, "Erste")
    bot = Bot(1, base_of(org), "", BotOptions(invite=link))
    bots.append(bot)
    await bot.start()
    await wait_playing(tile(page, "bot-1").locator("video"))

    # the browser uploads per-peer numbers; the server keeps the latest
    bot_id = bot.client.id
    await wait_until(lambda: (s := session_named(org, "Erste")) and s.stats.get(bot_id, {}).get("kbpsIn", 0) > 100,
                     timeout=15)
    uploaded = session_named(org, "Erste").stats[bot_id]
    assert uploaded["path"] == "direct" and uploaded["kbpsOut"] > 50 and uploaded["lossPct"] < 5
    # the bot is just another client: it uploads its side the same way
    browser_id = session_named(org, "Erste").id
    await wait_until(lambda: session_named(org, "bot-1").stats.get(browser_id, {}).get("kbpsIn", 0) > 20, timeout=10)

    dot = tile(page, "bot-1").locator(".quality")
    await expect(dot).to_have_attribute("data-quality", "good", timeout=15_000)
    await expect(dot).to_have_attribute("aria-label", "Verbindung gut")

    # the matrix view: every ordered pair, as the receiver reported it
    await page.get_by_role("button", name="Verbindungsqualität").click()
    matrix = page.locator("#link-matrix")
    await expect(matrix.locator('td[data-from="bot-1"][data-to="Erste"]')).to_contain_text("kbps")
    await expect(matrix.locator('td[data-from="Erste"][data-to="bot-1"]')).to_contain_text("kbps", timeout=10_000)
    await expect(matrix.locator("th", has_text="bot-1").first).to_be_visible()
    await screenshot(page, "link-quality-desktop")
    await page.get_by_role("button", name="Schließen").click()

    # a link that stops delivering turns its tile's indicator bad within the 5 s window
    await bot.stop_sending()
    await expect(dot).to_have_attribute("data-quality", "bad", timeout=15_000)
    assert "packets/s" in await dot.get_attribute("aria-label")

    # after the call: the summary as a JSON download
    await page.get_by_role("button", name="Beenden").click()
    async with page.expect_download() as info:
        await page.get_by_role("link", name="Verbindungsdaten herunterladen").click()
    download = await info.value
    summary = json.loads(Path(await download.path()).read_text(encoding="utf-8"))
    assert summary["room"] and summary["me"] == "Erste"
    (peer,) = summary["peers"]
    assert peer["name"] == "bot-1" and peer["path"] == "direct"
    assert peer["kbpsIn"]["mean"] > 50 and peer["badSeconds"] >= 1 and len(peer["series"]) >= 5
    assert summary["lastMatrix"]["type"] == "link-matrix"


VIDEO_OUT = """async (name) => {
    const peer = [...window.p2pconf.mesh.peers.values()].find(p => p.name === name);
    const read = async () => {
        let bytes = 0;
        (await peer.pc.getStats()).forEach(s => { if (s.type === 'outbound-rtp' && s.kind === 'video') bytes += s.bytesSent; });
        return [performance.now(), bytes];
    };
    const [t0, b0] = await read();
    await new Promise(r => setTimeout(r, 2000));
    const [t1, b1] = await read();
    const e = peer.pc.getSenders().find(s => s.track && s.track.kind === 'video').getParameters().encodings[0];
    return {kbps: (b1 - b0) * 8 / (t1 - t0), maxBitrate: e.maxBitrate, scale: e.scaleResolutionDownBy};
}"""


async def test_full_quality_goes_only_to_the_peer_that_shows_you_in_its_centre(org, webcam_chromium, loopback, bots):
    link = await guest_link(org, "Mitte")
    sender, watcher = await new_page(webcam_chromium), await new_page(webcam_chromium)
    await enter_as_guest(sender, link, "Sender")
    await enter_as_guest(watcher, link, "Zuschauer")
    bot = Bot(1, base_of(org), "", BotOptions(invite=link))  # shows nobody in a centre
    bots.append(bot)
    await bot.start()
    await wait_playing(tile(watcher, "Sender").locator("video"))
    await tile(watcher, "Sender").click()
    await expect(tile(watcher, "Sender")).to_have_attribute("aria-current", "true")
    await wait_until(lambda: (s := session_named(org, "Zuschauer")) and s.focus == session_named(org, "Sender").id,
                     timeout=5)

    rates: dict = {}

    async def centre_gets_three_times_the_thumbnail() -> bool:
        rates["centre"] = await sender.evaluate(VIDEO_OUT, "Zuschauer")
        rates["thumb"] = await sender.evaluate(VIDEO_OUT, "bot-1")
        return rates["centre"]["kbps"] >= 3 * rates["thumb"]["kbps"] > 0

    for _ in range(12):  # congestion control ramps the centre link up over some seconds
        if await centre_gets_three_times_the_thumbnail():
            break
    assert rates["centre"]["kbps"] >= 3 * rates["thumb"]["kbps"] > 0, rates
    assert rates["thumb"]["maxBitrate"] == 150_000 and rates["thumb"]["scale"] == 4
    assert rates["centre"]["scale"] == 1 and rates["centre"]["maxBitrate"] + 150_000 <= 2_000_000  # the budget
    # the bot still decodes the thumbnail stream
    bot_link = next(l for l in bot.links.values() if l.name == "Sender")
    frames = bot_link.meters["video"].frames
    await wait_until(lambda: bot_link.meters["video"].frames > frames + 10, timeout=10)


RULES = """async () => {
    const q = await import('/static/js/quality.js');
    const second = (packets, lost, rttMs = 20) => ({seconds: 1, packets, lost, rttMs});
    const steady = Array.from({length: 6}, () => second(60, 0));
    const split = q.splitBudget(2000, [{id: 'a', centred: true}, {id: 'b', centred: false}, {id: 'c', centred: false}]);
    const tight = q.splitBudget(300, [{id: 'a', centred: true}, {id: 'b', centred: false}, {id: 'c', centred: false}]);
    const total = (m) => [...m.values()].reduce((sum, e) => sum + e.maxBitrate, 0);
    return {
        tooEarly: q.judge(steady.slice(0, 2)),
        steady: q.judge(steady).bad,
        lossy: q.judge([...steady, second(35, 15), second(35, 15), second(35, 15), second(35, 15), second(35, 15)]),
        quiet: q.judge(Array.from({length: 6}, () => second(8, 0))),
        slow: q.judge([...steady.slice(1), second(60, 0, 1600)]),
        oldLossForgotten: q.judge([second(0, 100), ...steady]).bad,
        split: Object.fromEntries(split), splitTotal: total(split),
        tight: Object.fromEntries(tight), tightTotal: total(tight),
    };
}"""


async def test_the_indicator_rule_and_the_budget_split(org, chromium):
    page = await new_page(chromium)
    await page.goto(base_of(org) + "/login")
    r = await page.evaluate(RULES)
    assert r["tooEarly"] is None and r["steady"] is False  # needs 3 s of samples, then judges
    assert r["lossy"]["bad"] and r["lossy"]["reasons"] == ["loss 30 %"]  # 30 % over the last 5 s
    assert r["quiet"]["reasons"] == ["8.0 packets/s"]
    assert r["slow"]["reasons"] == ["rtt 1600 ms"]
    assert r["oldLossForgotten"] is False  # older than 5 s
    assert r["split"]["a"] == {"maxBitrate": 1_500_000, "scaleResolutionDownBy": 1}
    assert r["split"]["b"] == {"maxBitrate": 150_000, "scaleResolutionDownBy": 4}
    assert r["splitTotal"] <= 2_000_000
    assert r["tight"]["b"]["maxBitrate"] == 100_000 and r["tightTotal"] <= 300_000  # a thin uplink: all shrink
