#!/usr/bin/env python3
"""Benchmark: how well N bots form and keep a mesh on this machine.

Starts `p2pconf serve` on a free loopback port, then runs `p2pconf bots` for each
mesh size, video size, bitrate policy and process count, several times each, and
prints the medians of join_to_mesh_s, video_frames_delivered_ratio, CPU seconds
per second (100% = one core busy) and the median video link's kbit/s, with the
machine's 1-minute load when each run started. Rows that a target (TARGETS) speaks
of end with whether it is met, or by how much it is missed. Example:

    .venv/bin/python scripts/bench_mesh.py --sizes 6 --video 640x360@30,1280x720@30 --processes 1,2 --repeat 3

Benchmark a quiet machine: --max-load waits (polling every 30 s, up to --wait-s) for
the 1-minute load to drop below it before each run, and gives up if it does not.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


# (bots, video) -> (least share of video frames delivered, most CPU in % of one core or None)
TARGETS = {
    (6, "320x240@15"): (0.98, 150.0),
    (6, "640x360@30"): (0.99, None),
    (6, "1280x720@30"): (0.98, 180.0),
}


def verdict(row: dict) -> str:
    """"met" or how far the row misses its target; "" when no target speaks of it."""
    target = TARGETS.get((row["bots"], row["video"]))
    delivered, cpu = row["video_frames_delivered_ratio"], row["cpu_percent"]
    if target is None or delivered is None or cpu is None:
        return ""
    least, most = target
    misses = []
    if delivered < least:
        misses.append(f"delivered {delivered:.1%} is {100 * (least - delivered):.1f} points short of {least:.0%}")
    if most is not None and cpu > most:
        misses.append(f"CPU {cpu:.0f} % is {cpu - most:.0f} points over {most:.0f} %")
    goal = f">= {least:.0%} delivered" + (f" at <= {most:.0f} % CPU" if most is not None else "")
    return f"target ({goal}): " + ("met" if not misses else "MISSED: " + "; ".join(misses))


def wait_for_quiet(max_load: float | None, wait_s: float) -> float:
    """The 1-minute load, once it is below `max_load` (no wait without one); exits if it stays above."""
    deadline = time.monotonic() + wait_s
    while True:
        load = os.getloadavg()[0]
        if max_load is None or load < max_load:
            return load
        if time.monotonic() > deadline:
            raise SystemExit(f"the machine stayed busy (1-minute load {load:.2f} >= {max_load}) for {wait_s:.0f} s: "
                             "no figures from it")
        print(f"# waiting for a quiet machine: load {load:.2f}", file=sys.stderr, flush=True)
        time.sleep(30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "p2pconf.cli", "serve", "--port", str(port), "--data", str(data),
                             "--open-rooms"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1).close()
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


def run_once(url: str, room: str, count: int, video: str, processes: int, duration: float, audio_ms: int,
             policy: str, load: float) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        run = subprocess.run(
            [sys.executable, "-m", "p2pconf.cli", "bots", "--server", url, "--room", room, "--count", str(count),
             "--duration", str(duration), "--video", video, "--processes", str(processes), "--audio-ms", str(audio_ms),
             "--bitrate-policy", policy, "--json", out.name],
            capture_output=True, text=True, timeout=duration + 120)
        if run.returncode not in (0, 1) or not Path(out.name).stat().st_size:
            return {"error": run.stderr.strip().splitlines()[-1] if run.stderr.strip() else "no report", "load": load}
        report = json.loads(Path(out.name).read_text())
        video_kbps = [l["kbps"] for l in report["links"] if l["kind"] == "video"]
        return {**report, "load": load, "video_kbps": statistics.median(video_kbps) if video_kbps else None}


def sizes(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(x) for x in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="2-6", help="mesh sizes, '2-6' or '2,4,6'")
    ap.add_argument("--video", default="320x240@15,640x360@15")
    ap.add_argument("--processes", default="1,2", help="process counts to compare")
    ap.add_argument("--audio-ms", default="20", help="Opus frame lengths to compare, e.g. 20,60")
    ap.add_argument("--bitrate-policy", default="fixed", help="bitrate policies to compare, e.g. fixed,browser")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--json", help="also write all runs to this file")
    ap.add_argument("--max-load", type=float, help="wait before each run until the 1-minute load is below this")
    ap.add_argument("--wait-s", type=float, default=1200.0, help="how long to wait for that, at most")
    args = ap.parse_args()

    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"# bench_mesh on {machine}; {args.duration:.0f} s per run, median of {args.repeat}")
    print(f"{'video':<12} {'policy':<8} {'audio':>5} {'bots':>4} {'procs':>5} {'tracks':>9} {'join s':>7} {'delivered':>9} "
          f"{'cpu %':>6} {'kbps':>6} {'load':>5}")
    rows = []
    with tempfile.TemporaryDirectory() as data:
        server, url = start_server(Path(data))
        try:
            for video, policy, audio_ms, count, processes in itertools.product(
                args.video.split(","), args.bitrate_policy.split(","), [int(a) for a in args.audio_ms.split(",")],
                sizes(args.sizes), [int(p) for p in args.processes.split(",")],
            ):
                runs = [run_once(url, f"bench-{video}-{policy}-{audio_ms}-{count}-{processes}-{i}", count, video,
                                 processes, args.duration, audio_ms, policy, wait_for_quiet(args.max_load, args.wait_s))
                        for i in range(args.repeat)]
                good = [r for r in runs if "error" not in r]
                errors = [r["error"] for r in runs if "error" in r]

                def med(key, scale=1.0):
                    vals = [r[key] * scale for r in good if r.get(key) is not None]
                    return statistics.median(vals) if vals else None

                row = {"video": video, "bitrate_policy": policy, "audio_ms": audio_ms, "bots": count,
                       "processes": processes, "loads": [r["load"] for r in runs], "video_kbps": med("video_kbps"),
                       "tracks": f"{min((r['tracks_flowing'] for r in good), default=0)}/"
                                 f"{good[0]['tracks_expected'] if good else '?'}",
                       "join_to_mesh_s": med("join_to_mesh_s"),
                       "video_frames_delivered_ratio": med("video_frames_delivered_ratio"),
                       "cpu_percent": med("cpu_s_per_s", 100.0), "errors": errors, "machine": machine}
                row["verdict"] = verdict(row)
                rows.append(row)
                fmt = lambda v, f: "-" if v is None else format(v, f)
                print(f"{video:<12} {policy:<8} {audio_ms:>5} {count:>4} {processes:>5} {row['tracks']:>9} "
                      f"{fmt(row['join_to_mesh_s'], '.2f'):>7} "
                      f"{fmt(row['video_frames_delivered_ratio'], '.1%'):>9} "
                      f"{fmt(row['cpu_percent'], '.0f'):>6} {fmt(row['video_kbps'], '.0f'):>6} "
                      f"{fmt(statistics.median(row['loads']), '.2f'):>5}"
                      + (f"  {row['verdict']}" if row["verdict"] else "") + (f"  errors: {errors}" if errors else ""),
                      flush=True)
        finally:
            server.terminate()
            server.wait(timeout=10)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
