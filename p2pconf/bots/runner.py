"""Run N bots in one room, show progress, and build the report.

Bots can be spread over several processes (`processes`): each process runs its
share in its own event loop, and the parent merges what they measured. All
processes stop sending at the same wall-clock moment.

A bot the server refuses for good (bots/client.py, Refused) ends the whole run
at once with BotRefused, whose text names the bot and the code.
"""

from __future__ import annotations

import asyncio
import faulthandler
import multiprocessing
import queue
import resource
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import netlab
from .bot import Bot, BotOptions
from .client import Refused, ServerError
from .clip import VideoClip, seed_clip, video_clip
from .netif import is_loopback_url, use_host_addresses
from .report import build_report
from .sources import VideoSpec

DRAIN_S = 3.0  # at most this long for in-flight frames after sending stops
Progress = Callable[[dict[str, Any]], None]


class BotRefused(Exception):
    """A bot was refused by the server for good: "bot-2 refused by the server: 4003 the guest link was revoked"."""

    def __init__(self, bot: str, refusal: Refused):
        super().__init__(f"{bot} refused by the server: {refusal}")
        self.bot = bot
        self.code = refusal.code


def _check_refused(bots: list[Bot]) -> None:
    """Raise BotRefused for the first bot the server refused for good."""
    for bot in bots:
        if bot.refused:
            raise BotRefused(bot.name, Refused(bot.refused["code"], bot.refused["reason"]))


@dataclass
class RunOptions:
    server: str
    room: str
    count: int = 6
    duration_s: float = 20.0
    video: VideoSpec | None = field(default_factory=VideoSpec)
    trickle: bool = False
    audio_ms: int = 20
    invite: str | None = None  # guest link; the room comes from it
    processes: int = 1
    first_index: int = 1
    bitrate_policy: str = "fixed"  # bitrate.py
    # Network namespaces (p2pconf/netlab.py), one per process: process g runs in netns[g].
    netns: tuple[str, ...] = ()

    def tracks_per_bot(self) -> int:
        """Remote tracks each bot should receive: every other bot's audio (and video)."""
        return (self.count - 1) * (2 if self.video else 1)

    def bot_options(self) -> BotOptions:
        return BotOptions(video=self.video, trickle=self.trickle, audio_ms=self.audio_ms, invite=self.invite,
                          bitrate_policy=self.bitrate_policy)

    def clip(self) -> VideoClip | None:
        """The video clip every bot of the run plays, encoded here once (clip.py)."""
        return video_clip(self.video, self.bitrate_policy == "fixed") if self.video else None


@dataclass
class GroupResult:
    """What one process of bots hands back."""

    results: list[dict[str, Any]]
    stopped_at: float
    cpu_s_per_s: float  # this process, while media flowed (joined until sending stopped)


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


async def run_bots(opts: RunOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Run the bots of `opts` for its duration and return the report."""
    await asyncio.to_thread(opts.clip)  # before anyone joins: encoding takes a second or two
    if opts.processes <= 1:
        groups = [await _run_group(opts, list(range(opts.count)), progress, stop_at=None)]
    else:
        cancelled = threading.Event()
        try:
            groups = await asyncio.to_thread(_run_processes, opts, progress, cancelled)
        except asyncio.CancelledError:  # the thread would otherwise wait for its bots to finish
            cancelled.set()
            raise
    extra = {
        "server": opts.server,
        "room": opts.room,
        "video": str(opts.video) if opts.video else None,
        "audio_ms": opts.audio_ms,
        "bitrate_policy": opts.bitrate_policy,
        "processes": len(groups),
        "cpu_s_per_s": round(sum(g.cpu_s_per_s for g in groups), 3),
    }
    results = [r for g in groups for r in g.results]
    return build_report(results, stopped_at=max(g.stopped_at for g in groups), extra=extra)


async def _run_group(
    opts: RunOptions,
    slots: list[int],
    progress: Progress | None,
    stop_at: float | None,
    collected: Callable[[GroupResult], Any] | None = None,
) -> GroupResult:
    """Run the bots numbered by `slots` in this process; returns their results."""
    use_host_addresses(["127.0.0.1"] if is_loopback_url(opts.server) else None)
    bots = [Bot(opts.first_index + i, opts.server, opts.room, opts.bot_options()) for i in slots]
    try:
        for bot in bots:  # one after another: each newcomer offers to those already in
            try:
                await bot.start()
            except Refused as exc:
                raise BotRefused(bot.name, exc) from None
            _check_refused(bots)
        expected = len(bots) * opts.tracks_per_bot()
        stop_at = stop_at or time.time() + opts.duration_s
        cpu0, wall0 = _cpu_seconds(), time.time()
        while (now := time.time()) < stop_at:
            _check_refused(bots)
            if progress:
                progress({"joined": len(bots), "flowing": sum(b.flowing() for b in bots), "expected": expected,
                          "remaining_s": stop_at - now})
            await asyncio.sleep(min(0.5, max(0.0, stop_at - now)))
        _check_refused(bots)
        for bot in bots:
            await bot.stop_sending()
        stopped_at = time.time()
        cpu = (_cpu_seconds() - cpu0) / max(1e-6, stopped_at - wall0)
        await _drain(bots)
        group = GroupResult([await bot.results() for bot in bots], stopped_at, cpu)
        if collected:  # other processes may still be measuring: stay until released
            await asyncio.to_thread(collected, group)
        return group
    finally:
        await asyncio.gather(*(bot.close() for bot in bots), return_exceptions=True)


async def _drain(bots: list[Bot]) -> None:
    """Wait (bounded) until frames stop arriving, so in-flight ones are counted."""
    def received() -> int:
        return sum(m.frames for b in bots for l in b.links.values() for m in l.meters.values())

    deadline, last, quiet_since = time.monotonic() + DRAIN_S, -1, time.monotonic()
    while time.monotonic() < deadline:
        now_count = received()
        if now_count != last:
            last, quiet_since = now_count, time.monotonic()
        elif time.monotonic() - quiet_since > 0.5:
            return
        await asyncio.sleep(0.1)


def describe_failure(exc: BaseException) -> str:
    """One line for a run that could not start or finish."""
    if isinstance(exc, BotRefused):
        return str(exc)
    if isinstance(exc, ServerError):
        return f"the server refused: {exc}"
    return f"{type(exc).__name__}: {exc}"


# -- several processes ---------------------------------------------------------------------


def _child(opts: RunOptions, slots: list[int], stop_at: float, out: multiprocessing.Queue, release,
           namespace: str | None, clip: VideoClip | None) -> None:
    def report_progress(p: dict[str, Any]) -> None:
        out.put(("progress", slots[0], p))

    def collected(group: GroupResult) -> None:
        out.put(("done", slots[0], group))
        release.wait(timeout=60)  # leaving earlier would cut the others' links short

    async def main() -> None:
        await _run_group(opts, slots, report_progress, stop_at, collected)
        # aiortc closes a connection whose peer hung up in a task of its own: let those
        # finish before this process's loop ends, or they die pending.
        others = asyncio.all_tasks() - {asyncio.current_task()}
        if others:
            await asyncio.wait(others, timeout=2)

    faulthandler.enable()  # a crash in a codec prints where it happened
    if clip is not None:  # encoded by the parent: the processes start at once
        seed_clip(clip, opts.bitrate_policy == "fixed")
    try:
        if namespace:
            netlab.enter(namespace)  # before any socket or thread exists
        asyncio.run(main())
    except BaseException as exc:  # the parent reports it; never hang it
        out.put(("failed", slots[0], describe_failure(exc)))


def _run_processes(opts: RunOptions, progress: Progress | None, cancelled: threading.Event) -> list[GroupResult]:
    groups = [list(range(opts.count))[g :: opts.processes] for g in range(opts.processes)]
    groups = [g for g in groups if g]
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue = ctx.Queue()
    release = ctx.Event()
    # Leave time to start the interpreters and join, then all stop at once.
    stop_at = time.time() + 2.0 + 0.75 * len(groups) + opts.duration_s
    if opts.netns and len(opts.netns) < len(groups):
        raise ValueError(f"{len(groups)} bot processes need as many network namespaces, got {len(opts.netns)}")
    procs = [
        ctx.Process(target=_child, args=(opts, g, stop_at, out, release, opts.netns[i] if opts.netns else None,
                                         opts.clip()), daemon=True)
        for i, g in enumerate(groups)
    ]
    for p in procs:
        if not cancelled.is_set():
            p.start()
    latest: dict[int, dict[str, Any]] = {}
    done: dict[int, GroupResult] = {}
    failures: list[str] = []
    deadline = stop_at + DRAIN_S + 60
    try:
        while len(done) + len(failures) < len(procs) and time.time() < deadline and not cancelled.is_set():
            try:
                what, key, payload = out.get(timeout=0.5)
            except queue.Empty:
                dead = [p for p, g in zip(procs, groups) if p.exitcode is not None and g[0] not in done]
                if dead:  # crashed without a word: say so now instead of waiting for the deadline
                    failures.append(f"a bot process exited with code {dead[0].exitcode}")
                    break
                continue
            if what == "progress":
                latest[key] = payload
                if progress:
                    progress({
                        "joined": sum(p["joined"] for p in latest.values()),
                        "flowing": sum(p["flowing"] for p in latest.values()),
                        "expected": opts.count * opts.tracks_per_bot(),
                        "remaining_s": max(0.0, stop_at - time.time()),
                    })
            elif what == "done":
                done[key] = payload
            else:  # a process failed (say, a bot refused for good): the run is over, now
                failures.append(payload)
                break
    finally:
        release.set()
        for p in procs:
            if p.pid is None:  # never started: cancelled first
                continue
            if (failures or cancelled.is_set()) and p.is_alive():  # still measuring a run that is over
                p.terminate()
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    if failures or len(done) < len(procs):
        raise RuntimeError(failures[0] if failures else "a bot process did not finish in time")
    return list(done.values())


class ProgressPrinter:
    """Prints a bar of tracks flowing: redrawn in place on a terminal, every 5 s in a log."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.tty = stream.isatty()
        self._last = 0.0

    def __call__(self, p: dict[str, Any]) -> None:
        now = time.monotonic()
        if not self.tty and now - self._last < 5.0:
            return
        self._last = now
        width = 30
        filled = int(width * p["flowing"] / p["expected"]) if p["expected"] else width
        line = (f"[{'#' * filled}{'.' * (width - filled)}] tracks {p['flowing']}/{p['expected']}, "
                f"{p['joined']} joined, {p['remaining_s']:.0f} s left")
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")
