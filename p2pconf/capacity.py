"""How large a mesh fits through a given uplink: bots in shaped network namespaces.

For every uplink and mesh size, a fresh room of `count` bots runs, each bot in
its own namespace whose egress is limited to the uplink (p2pconf/netlab.py).
A size fits an uplink when the mesh forms and every link keeps at least
MIN_FPS video frames per second and less than MAX_LOSS_PCT packet loss
(loss_limit(): more when `--loss` adds loss of its own).

Every size also runs once with no limit at all (the control). A size that fails
even then is beyond what this machine's CPU can run, not beyond the uplink:
the table says so instead of blaming the network.

With `browsers`, the first seats of every run are real Chromium pages
(p2pconf/browserlab.py) and the rest bots; everyone enters by a guest link. Each
run then also says what the browsers' users saw of their centre and thumbnails,
and a size fits only when every browser's centre kept MIN_FPS as well.

With `relay`, no two hosts can reach each other: every call goes through coturn in the
hub (p2pconf/relaylab.py), and each run says how many Mbit/s the relay sent on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import statistics
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from aiohttp import web

from . import browserlab, netlab, relaylab
from .appkeys import STORE
from .bots.report import build_report
from .bots.report_html import write_report
from .bots.runner import RunOptions, run_bots
from .bots.sources import VideoSpec
from .capacity_html import browser_figure, render_capacity
from .config import Config
from .server import create_app

MIN_FPS = 10.0
MAX_LOSS_PCT = 2.0
PORT = 8080
Message = dict[str, Any]


@dataclass
class CapacityOptions:
    counts: list[int]
    uplinks_mbit: list[float]
    duration_s: float = 15.0
    loss_pct: float = 0.0
    delay_ms: float = 0.0
    video: VideoSpec = field(default_factory=VideoSpec)
    audio_ms: int = 20  # Opus frame length: 60 needs less CPU per bot (more bots on small machines)
    browsers: int = 0  # seats taken by real Chromium pages in every run (the others are bots)
    relay: bool = False  # every call through coturn in the hub, behind strict firewalls (relaylab.py)
    bitrate_policy: str = "fixed"  # the bots' (bots/bitrate.py): "browser" sends as a page does


def parse_counts(text: str) -> list[int]:
    """'2..6' or '2,4,6' -> mesh sizes, each 2 to 6."""
    if m := re.fullmatch(r"\s*(\d+)\s*\.\.\s*(\d+)\s*", text):
        counts = list(range(int(m[1]), int(m[2]) + 1))
    elif re.fullmatch(r"[\d,\s]+", text):
        counts = [int(part) for part in text.split(",") if part.strip()]
    else:
        counts = []
    if not counts or any(not 2 <= c <= 6 for c in counts):
        raise ValueError(f"--count wants sizes from 2 to 6 like 2..6 or 2,4, not {text!r}")
    return sorted(set(counts))


def parse_uplinks(text: str) -> list[float]:
    """'1,2,4,8' -> uplinks in Mbit/s (0.1 to 1000)."""
    try:
        uplinks = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        uplinks = []
    if not uplinks or any(not 0.1 <= u <= 1000 for u in uplinks):
        raise ValueError(f"--uplink wants Mbit/s from 0.1 to 1000 like 1,2,4,8, not {text!r}")
    return sorted(set(uplinks))


def loss_limit(added_loss_pct: float = 0.0) -> float:
    """The loss a link may show and still fit, when every uplink drops `added_loss_pct` by itself.

    The uplink may add MAX_LOSS_PCT, as without added loss. The added loss itself is
    random: a link of a short run sees it on average, and by chance up to about
    twice as much (a 10 s audio link at 60 ms frames carries ~170 packets; at 5 %,
    twice the loss is 3 standard deviations away), so the limit allows it twice.
    """
    return MAX_LOSS_PCT + 2 * added_loss_pct


def verdict(report: Message, added_loss_pct: float = 0.0, browsers: list[Message] = ()) -> Message:
    """Whether a run kept every link usable, and its worst link (the bots' links, and the
    centre of every browser in `browsers`, browserlab.seen())."""
    video = [l for l in report["links"] if l["kind"] == "video"]
    fps = [l["frames"] / l["seconds"] if l["seconds"] else 0.0 for l in video]
    fps += [b["centre"]["fps"] if b["centre"] else 0.0 for b in browsers]
    worst_fps = round(min(fps), 1) if fps else None
    worst_loss = max([l["loss_pct"] for l in report["links"]] + [b["centre"]["loss_pct"] for b in browsers if b["centre"]],
                     default=0.0)
    bots_formed = bool(browsers) if report.get("participants") == 0 else report["mesh_formed"]  # 0: browsers only
    formed = bots_formed and all(b["peers"] >= b["expected_peers"] for b in browsers)
    ok = formed and worst_loss < loss_limit(added_loss_pct) and (worst_fps is None or worst_fps >= MIN_FPS)
    return {"ok": ok, "worst_fps": worst_fps, "worst_loss_pct": worst_loss,
            "median_kbps": statistics.median(l["kbps"] for l in report["links"]) if report["links"] else None,
            "tracks": f"{report['tracks_flowing']}/{report['tracks_expected']}"}


def capacity_table(runs: list[Message], uplinks: list[float]) -> list[Message]:
    """Per uplink: the largest mesh size that passed, among the sizes this machine can run.

    `limited_by` says what stopped it: "uplink" (the next size failed only with the
    limit), "machine" (the next size fails even unlimited) or "sizes" (the largest
    size measured passed).
    """
    runnable = {r["count"] for r in runs if r["uplink_mbit"] is None and r["ok"]}
    counts = sorted({r["count"] for r in runs})
    rows = []
    for uplink in uplinks:
        passed = [r["count"] for r in runs if r["uplink_mbit"] == uplink and r["ok"] and r["count"] in runnable]
        largest = max(passed) if passed else None
        bigger = [c for c in counts if largest is None or c > largest]
        limited_by = "sizes" if not bigger else "machine" if bigger[0] not in runnable else "uplink"
        rows.append({"uplink_mbit": uplink, "largest_mesh": largest, "limited_by": limited_by})
    return rows


def run_capacity(opts: CapacityOptions, folder: Path, progress: Callable[[str], None] = print) -> Message:
    """Build the lab, run every (uplink, size), write capacity.json/html into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    _exit_on_signals()
    with netlab.Lab(max(opts.counts)) as lab:  # Lab deletes its namespaces on any way out
        if opts.loss_pct or opts.delay_ms:  # fail now, not after the first run
            lab.shape(1, opts.uplinks_mbit[0], opts.loss_pct, opts.delay_ms)
            lab.shape(1, None)
        # This process becomes the hub: the server listens on the bridge, bots get their own namespaces.
        netlab.enter(lab.hub)
        stopped: list[int] = []
        try:
            with relaylab.Relay(lab, folder / "relay") if opts.relay else contextlib.nullcontext() as relay:
                runs = asyncio.run(_run_all(opts, lab, folder, progress, stopped, relay))
        except asyncio.CancelledError:
            if not stopped:
                raise
            raise SystemExit(128 + stopped[0]) from None
    result = {
        "min_fps": MIN_FPS, "max_loss_pct": loss_limit(opts.loss_pct), "duration_s": opts.duration_s,
        "loss_pct": opts.loss_pct, "delay_ms": opts.delay_ms, "impairment": lab.method, "video": str(opts.video),
        "audio_ms": opts.audio_ms, "browsers": opts.browsers, "relay": opts.relay, "bitrate_policy": opts.bitrate_policy,
        "table": capacity_table(runs, opts.uplinks_mbit), "runs": runs,
    }
    (folder / "capacity.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    (folder / "capacity.html").write_text(render_capacity(result), encoding="utf-8")
    if opts.browsers:
        browser_figure(result).savefig(folder / "capacity-browsers.png", dpi=100)
    return result


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _exit_on_signals() -> None:
    """Ctrl-C or SIGTERM outside the event loop (while the lab is built): exit at once."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)


def _cancel_on_signals(stopped: list[int]) -> None:
    """While the runs go: a signal cancels the main task (run_bots stops its processes).

    Raising SystemExit from a signal handler in the middle of the loop skipped the
    server's cleanup, and the store's unclosed worker thread then kept the process
    from exiting; a cancel runs every `finally` on the way out.
    """
    loop, main = asyncio.get_running_loop(), asyncio.current_task()

    def stop(signum: int) -> None:
        stopped.append(signum)
        main.cancel()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop, signum)


async def _run_all(opts: CapacityOptions, lab: netlab.Lab, folder: Path, progress: Callable[[str], None],
                   stopped: list[int], relay: relaylab.Relay | None) -> list[Message]:
    _cancel_on_signals(stopped)
    with tempfile.TemporaryDirectory() as data:
        turn = {"turn_urls": relay.urls, "turn_secret": relay.secret} if relay else {}
        runner = web.AppRunner(create_app(Config(data_dir=Path(data), open_rooms=True, **turn)))
        await runner.setup()
        await web.TCPSite(runner, netlab.HUB_ADDRESS, PORT).start()
        try:
            runs = []
            total = (len(opts.uplinks_mbit) + 1) * len(opts.counts)
            for uplink in [None, *opts.uplinks_mbit]:  # None: the control, no limit
                for n in range(1, max(opts.counts) + 1):
                    lab.shape(n, uplink, opts.loss_pct, opts.delay_ms)
                for count in opts.counts:
                    label = "no limit" if uplink is None else f"uplink {uplink:g} Mbit/s"
                    seats = f"{min(opts.browsers, count)} browsers and {count - min(opts.browsers, count)} bots" \
                        if opts.browsers else f"{count} bots"
                    progress(f"[{len(runs) + 1}/{total}] {label}, {seats} ...")
                    relayed_before, started = relay.forwarded_bytes() if relay else 0, time.monotonic()
                    runs.append(await _one_run(opts, lab, folder, uplink, count, runner.app))
                    if relay:  # what the relay sent on, over the whole run (joining and leaving included)
                        runs[-1]["relay_mbit"] = round((relay.forwarded_bytes() - relayed_before) * 8 / 1e6
                                                       / (time.monotonic() - started), 2)
                    r = runs[-1]
                    progress(f"    {'fits' if r['ok'] else 'does not fit'}: tracks {r['tracks']}, "
                             f"worst fps {r['worst_fps']}, worst loss {r['worst_loss_pct']} %")
            return runs
        finally:
            await runner.cleanup()


async def _one_run(opts: CapacityOptions, lab: netlab.Lab, folder: Path, uplink: float | None, count: int,
                   app: web.Application) -> Message:
    name = f"uplink-{'none' if uplink is None else f'{uplink:g}'}-bots-{count}"
    browsers = min(opts.browsers, count)
    run_opts = RunOptions(
        server=f"http://{netlab.HUB_ADDRESS}:{PORT}", room=name, count=count - browsers,
        duration_s=opts.duration_s, video=opts.video, audio_ms=opts.audio_ms, processes=max(1, count - browsers),
        bitrate_policy=opts.bitrate_policy,
        netns=tuple(lab.host(n) for n in range(browsers + 1, count + 1)), first_index=browsers + 1,
    )
    entry: Message = {"uplink_mbit": uplink, "count": count}
    try:
        if browsers:
            report, seen = await _run_with_browsers(run_opts, app, [lab.host(n) for n in range(1, browsers + 1)],
                                                    folder / "browsers", name)
            entry["browsers"] = seen
        else:
            report, seen = await run_bots(run_opts), []
    except Exception as exc:  # a run that breaks is a run that does not fit; say why
        return {**entry, "ok": False, "error": str(exc), "worst_fps": None, "worst_loss_pct": None,
                "median_kbps": None, "tracks": "-"}
    if report["participants"]:
        write_report(report, folder / "runs" / name)
    if seen:
        (folder / "runs" / name).mkdir(parents=True, exist_ok=True)
        (folder / "runs" / name / "browsers.json").write_text(json.dumps(seen, indent=1) + "\n", encoding="utf-8")
    added_loss = opts.loss_pct if uplink is not None else 0.0  # the control runs without it (netlab.Lab.shape)
    return {**entry, **verdict(report, added_loss, seen), "cpu_s_per_s": report["cpu_s_per_s"]}


async def _run_with_browsers(run_opts: RunOptions, app: web.Application, namespaces: list[str], folder: Path,
                             name: str) -> tuple[Message, list[Message]]:
    """A run whose first seats are Chromium pages: all enter the room of a new guest link; the
    bots' report and what each browser saw while the bots ran."""
    room = await app[STORE].create_room(name, "guest")
    token, _ = await app[STORE].create_invite(room, 3600)
    origin = f"http://{netlab.HUB_ADDRESS}:{PORT}"
    async with browserlab.Browsers(namespaces, folder, origin) as browsers:
        await browsers.join(f"{origin}/j/{token}")
        done = asyncio.Event()
        sampling = asyncio.create_task(browsers.sample_until(done))
        try:
            if run_opts.count:
                report = await run_bots(replace(run_opts, invite=f"{origin}/j/{token}"))
            else:
                await asyncio.sleep(run_opts.duration_s)  # the browsers' call is the run
                report = build_report([], stopped_at=time.time(), extra={"cpu_s_per_s": 0.0})
        finally:
            done.set()
            await sampling
        return report, [{**seen, "expected_peers": len(namespaces) + run_opts.count - 1} for seen in browsers.summary()]

