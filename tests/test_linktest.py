""""Verbindung testen": the server's round-trip and upload endpoints, who may use them, their
limits, the table the page predicts from, and the whole test in Chromium on a throttled line."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from playwright.async_api import expect

from p2pconf import linktest
from p2pconf.auth import CSRF_COOKIE

from .browser import new_page, screenshot, sign_in
from .org import base_of, signed_in

ROOT = Path(__file__).resolve().parent.parent


async def test_the_round_trip_and_upload_answer_signed_in_users_and_link_holders_only(org):
    anna = await signed_in(org, "anna")
    assert (await anna.json("GET", "/api/linktest")) == (200, {"ok": True})
    async with anna.http.post(anna.base + "/api/linktest", data=b"x" * 100_000,
                              headers={"X-CSRF-Token": anna.csrf}) as reply:
        got = await reply.json()
        assert reply.status == 200 and reply.headers["Cache-Control"] == "no-store"
    assert got["bytes"] == 100_000 and got["seconds"] >= 0

    stranger = org.browser()
    status, err = await stranger.json("GET", "/api/linktest")
    assert (status, err["code"]) == (401, "not-signed-in")
    _, made = await anna.json("POST", "/api/rooms", {"name": "Kunde"})
    token = made["invite"]["link"].rsplit("/", 1)[1]
    async with stranger.http.get(made["invite"]["link"]):  # the link page hands out its CSRF cookie
        pass
    holder = {"X-Invite-Token": token, "X-CSRF-Token": stranger.cookie(CSRF_COOKIE)}
    async with stranger.http.post(stranger.base + "/api/linktest", data=b"y" * 1000, headers=holder) as reply:
        assert reply.status == 200 and (await reply.json())["bytes"] == 1000
    for bad in ("nope", token[:-1], "x" * 65):
        async with stranger.http.get(stranger.base + "/api/linktest", headers={"X-Invite-Token": bad}) as reply:
            assert reply.status == 401, bad
    await anna.json("DELETE", f"/api/invites/{made['invite']['id']}")
    async with stranger.http.get(stranger.base + "/api/linktest", headers={"X-Invite-Token": token}) as reply:
        assert reply.status == 401  # a revoked link tests nothing any more
    # an upload is a state-changing request: without the CSRF token it is refused
    async with anna.http.post(anna.base + "/api/linktest", data=b"z") as reply:
        assert (reply.status, (await reply.json())["code"]) == (403, "csrf")


async def test_uploads_are_bounded_in_size_and_in_number_per_address(org):
    anna = await signed_in(org, "anna")
    headers = {"X-CSRF-Token": anna.csrf}
    too_big = io.BytesIO(b"0" * (linktest.MAX_UPLOAD + 1))
    async with anna.http.post(anna.base + "/api/linktest", data=too_big, headers=headers) as reply:
        assert (reply.status, (await reply.json())["code"]) == (413, "too-large")

    async def streamed():  # no Content-Length: counted as it arrives
        for _ in range(linktest.MAX_UPLOAD // 65536 + 2):
            yield b"0" * 65536
    async with anna.http.post(anna.base + "/api/linktest", data=streamed(), headers=headers) as reply:
        assert reply.status == 413
    statuses = []
    for _ in range(linktest.UPLOADS_BURST + 2):
        async with anna.http.post(anna.base + "/api/linktest", data=b"1", headers=headers) as reply:
            statuses.append(reply.status)
    assert 429 in statuses[linktest.UPLOADS_BURST - 2:] and statuses[0] == 200
    async with anna.http.get(anna.base + "/api/linktest") as reply:
        assert reply.status == 200  # round trips are not uploads: still answered


def test_the_shipped_table_is_the_measured_one():
    shipped = json.loads((ROOT / "web" / "static" / "linktable.json").read_text())
    measured = json.loads((ROOT / "docs" / "capacity-browsers.json").read_text())  # the browser calls' table
    assert shipped["rows"] == [{"uplink_mbit": r["uplink_mbit"], "largest_mesh": r["largest_mesh"]}
                               for r in measured["table"]]


async def _throttle_upload(page, mbit: float | None) -> None:
    """Chromium's own network emulation (DevTools): the page's uploads at `mbit`, or unlimited."""
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Network.enable")
    await cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1,
        "uploadThroughput": mbit * 1e6 / 8 if mbit else -1})


async def test_the_start_page_says_how_large_a_call_the_line_carries(org, chromium):
    page = await new_page(chromium)
    await sign_in(page, base_of(org), "anna")
    result = page.get_by_role("status")
    await page.get_by_role("button", name="Verbindung testen").click()
    await expect(result).to_have_text(re.compile(r"^Ihre Leitung trägt Videokonferenzen mit bis zu 6 Teilnehmern\. "
                                                 r"Gemessen: Upload [\d.,]+ Mbit/s, Umlaufzeit \d+ ms\.$"),
                                      timeout=30_000)
    await expect(page.get_by_role("button", name="Verbindung testen")).to_be_enabled()
    await _throttle_upload(page, 1.5)  # between the table's 1 and 2 Mbit/s rows
    await page.get_by_role("button", name="Verbindung testen").click()
    await expect(page.get_by_role("progressbar", name="Verbindung testen")).to_be_visible()
    await expect(result).to_have_text(re.compile(r"^Ihre Leitung trägt Videokonferenzen mit bis zu 5 Teilnehmern\. "
                                                 r"Gemessen: Upload 1[.,]\d Mbit/s"), timeout=30_000)
    await expect(page.get_by_role("progressbar")).to_be_hidden()
    await screenshot(page, "linktest-desktop")


async def test_a_guest_tests_the_line_before_joining(org, chromium):
    anna = await signed_in(org, "anna")
    _, made = await anna.json("POST", "/api/rooms", {"name": "Kunde"})
    page = await new_page(chromium, locale="en-GB")
    await page.goto(made["invite"]["link"])
    await _throttle_upload(page, 0.3)  # under the table's slowest line
    await page.get_by_role("button", name="Test connection").click()
    await expect(page.get_by_role("status")).to_have_text(
        re.compile(r"^Your line is too slow for video conferences; calls with sound only may work\. "
                   r"Measured: upload 0\.\d Mbit/s"), timeout=30_000)
