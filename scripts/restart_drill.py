#!/usr/bin/env python3
"""Drill: a server process dies in the middle of a call, and the call does not notice.

Starts Redis (or uses --redis) and two `p2pconf serve --redis` processes, puts six bots
in one room (three on each process), lets the call run, kills one process with SIGKILL,
starts it again on the same port, lets the call run on, and lets a newcomer join on the
restarted process. The bots run in two processes of their own (as `p2pconf bots --processes`).
Prints the bots' verdict: tracks flowing among the six, freezes, video frames
delivered, how each bot came back (resumed or re-joined), and whom the newcomer met.

    .venv/bin/python scripts/restart_drill.py                  # 10 s, kill, 10 s
    .venv/bin/python scripts/restart_drill.py --before 20 --after 20 --json drill.json

Done when: 60/60 tracks, 0 freezes, >= 99 % of video frames, every bot resumed, and the
newcomer is introduced to all six.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from p2pconf.bots.client import SignalingClient  # noqa: E402
from p2pconf.bots.report import build_report  # noqa: E402
from p2pconf.bots.runner import RunOptions, _run_group  # noqa: E402
from p2pconf.bots.sources import VideoSpec  # noqa: E402
from tests.services import free_port, redis_server  # noqa: E402

ROOM = "Drill"


def start_server(data: Path, port: int, redis_url: str, log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "p2pconf.cli", "serve", "--host", "127.0.0.1", "--port",
                                 str(port), "--data", str(data), "--open-rooms", "--redis", redis_url,
                                 "--max-room-size", "7"], stdout=out, stderr=subprocess.STDOUT,
                                # the servers' CPU is not the participants' in a real call: here both
                                # share 2 cores, and a restart's start-up (~1.5 s of CPU) must not
                                # starve the bots' encoders
                                preexec_fn=lambda: os.nice(10))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not start:\n" + log.read_text(errors="replace")[-2000:])


def bots_child(server: str, first_index: int, slots: list[int], start_at: float, stop_at: float, out,
               release, video: str, audio_ms: int) -> None:
    """A process of bots (like `p2pconf bots --processes`): they join at `start_at`, send
    until `stop_at`, hand back what they measured, and stay in the call until `release`
    (leaving earlier would take their links out of the others' results)."""
    time.sleep(max(0.0, start_at - time.time()))
    try:
        opts = RunOptions(server=server, room=ROOM, count=6, first_index=first_index, video=VideoSpec.parse(video),
                          audio_ms=audio_ms)
        asyncio.run(_run_group(opts, slots,
                               None, stop_at, collected=lambda group: (out.put(group.results), release.wait(120))))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        out.put(f"{type(exc).__name__}: {exc}")


async def newcomer_meets(server: str) -> list[str]:
    """A participant joining now: the peer ids it is introduced to (a signaling client only:
    its media would be one more bot for the machine's two cores)."""
    async def ignore(msg) -> None:
        pass

    client = SignalingClient(server, ignore)
    try:
        await client.connect()
        joined = await client.join(ROOM, "Newcomer")
        return sorted(peer["id"] for peer in joined["peers"])
    finally:
        await client.close()


def drill(redis_url: str, before_s: float, after_s: float, down_s: float = 1.0, kill: bool = True,
          video: str = "320x240@15", audio_ms: int = 20) -> dict:
    """Run the drill; the numbers it found."""
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="restart-drill-") as tmp:
        data, ports = Path(tmp) / "data", (free_port(), free_port())
        logs = [Path(tmp) / "a.log", Path(tmp) / "b.log"]
        servers = [start_server(data, port, redis_url, log) for port, log in zip(ports, logs)]
        urls = [f"http://127.0.0.1:{port}/" for port in ports]
        out, release, children = ctx.Queue(), ctx.Event(), []
        t0 = time.time() + 3  # the children's imports first
        kill_at = t0 + 8 + before_s  # 8 s: the mesh forms
        stop_at = kill_at + down_s + after_s
        try:
            # bots 1, 3, 5 on A, then 2, 4, 6 on B (joins at the same moment on two processes: see the README)
            for server, slots, start in ((urls[0], [0, 2, 4], t0), (urls[1], [1, 3, 5], t0)):
                children.append(ctx.Process(target=bots_child, args=(server, 1, slots, start, stop_at, out,
                                                                     release, video, audio_ms)))
            for child in children:
                child.start()
            time.sleep(max(0.0, kill_at - time.time()))
            if kill:
                servers[0].send_signal(signal.SIGKILL)
                servers[0].wait(timeout=10)
                time.sleep(down_s)
                servers[0] = start_server(data, ports[0], redis_url, logs[0])
            time.sleep(max(0.0, stop_at - 3 - time.time()))
            met = asyncio.run(newcomer_meets(urls[0]))  # on the restarted process
            results = []
            for _ in children:
                got = out.get(timeout=max(1.0, stop_at - time.time()) + 60)
                if isinstance(got, str):
                    raise RuntimeError(got)
                results += got
        finally:
            release.set()
            for child in children:
                child.join(timeout=10)
                if child.is_alive():
                    child.terminate()
            for proc in servers:
                if proc.poll() is None:
                    proc.terminate()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=10)
                    if proc.poll() is None:
                        proc.kill()
            troubles = [line for log in logs for line in log.read_text(errors="replace").splitlines()
                        if " WARNING " in line or " ERROR " in line or "Traceback" in line]
    report = build_report(results, stopped_at=stop_at)
    video = [link for link in report["links"] if link["kind"] == "video"]
    return {
        "tracks": f"{report['tracks_flowing']}/{report['tracks_expected']}",
        "missing": report["missing"],
        "freezes": sum(link["freezes"] for link in video),
        "frozen": sorted(f"{link['from']}->{link['to']}: {link['freezes']}" for link in video if link["freezes"]),
        "video_frames_delivered_ratio": report["video_frames_delivered_ratio"],
        "resumed": {r["name"]: r["resumes"] for r in results},
        "rejoined": {r["name"]: r["rejoins"] for r in results},
        "newcomer_met_all": met == sorted(r["id"] for r in results),
        "server_warnings": troubles[:10],
        "frames_received_by": {r["name"]: sum(e["received"].get("video", {}).get("frames", 0)
                                              for e in r["links"].values()) for r in results},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--redis", help="a Redis URL (default: start a throw-away redis-server)")
    ap.add_argument("--before", type=float, default=10.0, help="seconds of call before the kill")
    ap.add_argument("--after", type=float, default=10.0, help="seconds of call after the process is back")
    ap.add_argument("--no-kill", action="store_true", help="the same call without the kill (a baseline)")
    ap.add_argument("--video", default="320x240@15", metavar="WxH@FPS", help="the bots' camera (default 320x240@15)")
    ap.add_argument("--audio-ms", type=int, choices=(20, 40, 60), default=20, help="Opus frame length")
    ap.add_argument("--json", help="also write the numbers to this file")
    args = ap.parse_args()
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    with contextlib.ExitStack() as stack:
        url = args.redis or stack.enter_context(redis_server())
        out = drill(url, args.before, args.after, kill=not args.no_kill, video=args.video, audio_ms=args.audio_ms)
    print(f"# restart drill on {os.cpu_count()} cores, load {load} at start")
    for key, value in out.items():
        print(f"{key}: {value}")
    ok = (out["tracks"] == "60/60" and out["freezes"] == 0 and (out["video_frames_delivered_ratio"] or 0) >= 0.99
          and (args.no_kill or all(out["resumed"][f"bot-{n}"] == 1 for n in (1, 3, 5)))
          and not any(out["rejoined"].values())
          and out["newcomer_met_all"])
    print("verdict:", "the call never noticed" if ok else "**the call noticed**")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
