"""Real Chromium participants in the capacity lab (`p2pconf capacity --browsers N`).

Each browser is Debian's Chromium in a lab host's network namespace (its uplink shaped
like a bot's), driven by Playwright through a wrapper that starts it with `ip netns exec`.
It enters the run's room by its guest link like a person, with a fake camera that plays a
detailed 1280x720 clip (Chromium's own fake camera is a flat picture a few dozen kbit/s
carry), and keeps the real page's per-receiver split; each browser shows the next one in
its centre. Once a second each page's getStats
is read; what the page's user sees of each other participant (resolution, frames per
second, freezes, loss) is kept, tagged by whether that participant is in the page's
centre or a thumbnail, with what the page sends.

Needs Playwright (pip install playwright; it never downloads a browser here) and Debian's
chromium.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import statistics
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .bots.sources import SyntheticCamera, VideoSpec

CHROMIUM = os.environ.get("P2PCONF_CHROMIUM", "/usr/bin/chromium")
CAMERA = VideoSpec(1280, 720, 30)
JOIN_TIMEOUT_MS = 60_000
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    "--disable-features=WebRtcHideLocalIpsWithMdns", "--autoplay-policy=no-user-gesture-required",
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--headless=new",
]
# Cumulative counters of every link of the page's call, read once a second.
COUNTERS = """async () => {
  const call = window.p2pconf && window.p2pconf.call;
  if (!call || !call.mesh) return null;
  const peers = {};
  for (const peer of call.mesh.peers.values()) {
    const report = await peer.pc.getStats();
    let video = null, sentBytes = 0, sent = null, relayed = false;
    report.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        const pair = report.get(s.selectedCandidatePairId);
        const ends = pair ? [report.get(pair.localCandidateId), report.get(pair.remoteCandidateId)] : [];
        relayed = relayed || ends.some((c) => c && c.candidateType === 'relay');
      }
      if (s.type === 'inbound-rtp' && s.kind === 'video' && (!video || (s.bytesReceived || 0) > video.bytes)) {
        video = {bytes: s.bytesReceived || 0, width: s.frameWidth || 0, height: s.frameHeight || 0,
                 frames: s.framesDecoded || 0, freezes: s.freezeCount || 0, packets: s.packetsReceived || 0,
                 lost: Math.max(0, s.packetsLost || 0)};
      } else if (s.type === 'outbound-rtp') {
        sentBytes += (s.bytesSent || 0) + (s.headerBytesSent || 0);
        if (s.kind === 'video' && (!sent || (s.bytesSent || 0) > sent.bytes)) {
          sent = {bytes: s.bytesSent || 0, width: s.frameWidth || 0, height: s.frameHeight || 0};
        }
      }
    });
    peers[peer.id] = {name: peer.name, video, sentBytes, sent, relayed};
  }
  return {at: performance.now(), centre: call.centre, peers};
}"""


class BrowserLabError(RuntimeError):
    """Chromium or Playwright is missing, or a page could not join."""


def write_camera_clip(path: Path, spec: VideoSpec = CAMERA, seconds: int = 2) -> Path:
    """A Y4M clip for Chromium's --use-file-for-fake-video-capture: the bots' moving picture with
    a webcam's fine moving detail, so the encoder needs a webcam's bitrate."""
    width, height, fps = spec.width, spec.height, spec.fps
    camera = SyntheticCamera(spec, sender=9)
    grain = np.random.default_rng(7).integers(0, 48, size=(height, width), dtype=np.uint8)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for n in range(fps * seconds):
            yuv = camera.frame(n, 0).to_ndarray()  # I420: Y plane, then U and V
            yuv[:height] = yuv[:height] // 4 * 3 + np.roll(grain, 3 * n, axis=1)  # detail that moves
            out.write(b"FRAME\n" + yuv.tobytes())
    return path


def check_can_run() -> None:
    """BrowserLabError saying what is missing for real browsers in the lab."""
    if not shutil.which(CHROMIUM):
        raise BrowserLabError(f"--browsers needs Debian's chromium ({CHROMIUM}): apt-get install chromium")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        raise BrowserLabError("--browsers needs Playwright: pip install playwright (it drives Debian's chromium)") \
            from None


def _wrapper(folder: Path, namespace: str) -> Path:
    """An executable that starts Chromium in `namespace` (Playwright starts it with its arguments)."""
    path = folder / f"chromium-{namespace}"
    path.write_text(f'#!/bin/sh\nexec ip netns exec {namespace} {CHROMIUM} "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@dataclass
class Seat:
    """One Chromium participant: its page and the samples taken of it."""

    name: str
    page: Any
    samples: list[dict] = field(default_factory=list)


class Browsers:
    """N Chromium participants in lab namespaces, for one run (an async context manager)."""

    def __init__(self, namespaces: list[str], folder: Path, origin: str):
        self.namespaces, self.folder, self.origin = namespaces, folder, origin
        self.seats: list[Seat] = []
        self._pw = self._manager = None
        self._browsers: list[Any] = []

    async def __aenter__(self) -> "Browsers":
        check_can_run()
        from playwright.async_api import async_playwright
        self.folder.mkdir(parents=True, exist_ok=True)
        clip = self.folder / "camera-1280x720.y4m"
        if not clip.exists():
            await asyncio.to_thread(write_camera_clip, clip)
        self._manager = async_playwright()
        self._pw = await self._manager.__aenter__()
        try:
            for namespace in self.namespaces:
                self._browsers.append(await self._pw.chromium.launch(
                    executable_path=str(_wrapper(self.folder, namespace)),
                    args=[*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={clip}",
                          f"--unsafely-treat-insecure-origin-as-secure={self.origin}"]))
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        for browser in self._browsers:
            try:
                await browser.close()
            except Exception:  # noqa: BLE001 - a browser that died is closed already
                pass
        if self._manager is not None:
            await self._manager.__aexit__(None, None, None)

    async def join(self, link: str) -> None:
        """Every browser enters the room by `link` as "Browser n" and has its own picture."""
        for n, browser in enumerate(self._browsers, 1):
            context = await browser.new_context(viewport={"width": 1280, "height": 720}, locale="de-DE")
            page = await context.new_page()
            name = f"Browser {n}"
            try:
                await page.goto(link)
                await page.get_by_label("Anzeigename").fill(name)
                await page.get_by_role("button", name="Beitreten").click()
                await page.wait_for_function("() => window.p2pconf && window.p2pconf.call && window.p2pconf.call.joined",
                                             timeout=JOIN_TIMEOUT_MS)
            except Exception as exc:
                raise BrowserLabError(f"{name} could not join: {exc}".splitlines()[0]) from None
            self.seats.append(Seat(name, page))
        # People look at people: each browser shows the next one in its centre (a click on its tile),
        # so every browser sends full quality to one other and thumbnails to the rest.
        if len(self.seats) > 1:
            for seat, other in zip(self.seats, self.seats[1:] + self.seats[:1]):
                await seat.page.locator(".tile").filter(
                    has=seat.page.locator(".name", has_text=re.compile(f"^{re.escape(other.name)}$"))).click(
                    timeout=JOIN_TIMEOUT_MS)

    async def sample_until(self, done: asyncio.Event, every_s: float = 1.0) -> None:
        """Read every page's counters once a second until `done` is set."""
        while not done.is_set():
            for seat in self.seats:
                try:
                    counters = await seat.page.evaluate(COUNTERS)
                except Exception:  # noqa: BLE001 - a page that broke shows as missing samples
                    counters = None
                if counters:
                    seat.samples.append(counters)
            try:
                await asyncio.wait_for(done.wait(), every_s)
            except asyncio.TimeoutError:
                pass

    def summary(self) -> list[dict]:
        """What each browser's user saw and sent (see seen())."""
        return [{"name": seat.name, **seen(seat.samples)} for seat in self.seats]


def _links(before: dict, after: dict) -> list[dict]:
    """Per remote participant between two readings: what arrived of its video, as what."""
    seconds = max(0.001, (after["at"] - before["at"]) / 1000)
    links = []
    for peer_id, now in after["peers"].items():
        then = before["peers"].get(peer_id)
        if not then or not now["video"] or not then["video"]:
            continue
        v0, v1 = then["video"], now["video"]
        packets, lost = v1["packets"] - v0["packets"], v1["lost"] - v0["lost"]
        links.append({"peer": now["name"], "role": "centre" if after["centre"] == peer_id else "thumbnail",
                      "relayed": now["relayed"],
                      "fps": (v1["frames"] - v0["frames"]) / seconds, "width": v1["width"], "height": v1["height"],
                      "freezes": v1["freezes"] - v0["freezes"], "packets": packets, "lost": max(0, lost),
                      "kbps": (v1["bytes"] - v0["bytes"]) * 8 / seconds / 1000})
    return links


def seen(samples: list[dict]) -> dict:
    """A browser's run in numbers: how many others it saw moving pictures of (`peers`), and over a
    TURN relay (`relayed`); for its
    centre and its thumbnails the median resolution (height) and frames per second, freezes
    and loss; its upload in kbit/s."""
    links = [link for a, b in zip(samples, samples[1:]) for link in _links(a, b)]
    result: dict[str, Any] = {"seconds": round((samples[-1]["at"] - samples[0]["at"]) / 1000, 1) if samples else 0.0,
                              "peers": len({link["peer"] for link in links if link["fps"] > 0}),
                              "relayed": len({link["peer"] for link in links if link["relayed"]})}
    for role in ("centre", "thumbnail"):
        mine = [link for link in links if link["role"] == role]
        packets, lost = sum(l["packets"] for l in mine), sum(l["lost"] for l in mine)
        result[role] = {
            "height": statistics.median(l["height"] for l in mine) if mine else None,
            "fps": round(statistics.median(l["fps"] for l in mine), 1) if mine else None,
            "freezes": sum(l["freezes"] for l in mine),
            "loss_pct": round(100 * lost / (packets + lost), 2) if packets + lost else 0.0,
        } if mine else None
    if len(samples) >= 2:
        sent = sum(p["sentBytes"] for p in samples[-1]["peers"].values()) - \
            sum(p["sentBytes"] for p in samples[0]["peers"].values())
        result["upload_kbps"] = round(sent * 8 / max(0.001, result["seconds"]) / 1000, 1)
    else:
        result["upload_kbps"] = None
    return result
