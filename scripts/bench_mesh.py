#!/usr/bin/env python3
"""Benchmark: how well N bots form and keep a mesh on this machine.

Starts `p2pconf serve` on a free loopback port, then runs `p2pconf bots` for each
mesh size, video size and process count, several times each, and prints the
medians of join_to_mesh_s, video_frames_delivered_ratio and CPU seconds per
second (100% = one core busy). Example:

    .venv/bin/python scripts/bench_mesh.py --sizes 2-6 --video 320x240@15,640x360@15 --repeat 3
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


def run_once(url: str, room: str, count: int, video: str, processes: int, duration: float, audio_ms: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        run = subprocess.run(
            [sys.executable, "-m", "p2pconf.cli", "bots", "--server", url, "--room", room, "--count", str(count),
             "--duration", str(duration), "--video", video, "--processes", str(processes), "--audio-ms", str(audio_ms),
             "--json", out.name],
            capture_output=True, text=True, timeout=duration + 120)
        if run.returncode not in (0, 1) or not Path(out.name).stat().st_size:
            return {"error": run.stderr.strip().splitlines()[-1] if run.stderr.strip() else "no report"}
        return json.loads(Path(out.name).read_text())


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
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--json", help="also write all runs to this file")
    args = ap.parse_args()

    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"# bench_mesh on {machine}; {args.duration:.0f} s per run, median of {args.repeat}")
    print(f"{'video':<12} {'audio':>5} {'bots':>4} {'procs':>5} {'tracks':>9} {'join s':>7} {'delivered':>9} {'cpu %':>6}")
    rows = []
    with tempfile.TemporaryDirectory() as data:
        server, url = start_server(Path(data))
        try:
            for video, audio_ms, count, processes in itertools.product(
                args.video.split(","), [int(a) for a in args.audio_ms.split(",")], sizes(args.sizes),
                [int(p) for p in args.processes.split(",")],
            ):
                runs = [run_once(url, f"bench-{video}-{audio_ms}-{count}-{processes}-{i}", count, video,
                                 processes, args.duration, audio_ms) for i in range(args.repeat)]
                good = [r for r in runs if "error" not in r]
                errors = [r["error"] for r in runs if "error" in r]

                def med(key, scale=1.0):
                    vals = [r[key] * scale for r in good if r.get(key) is not None]
                    return statistics.median(vals) if vals else None

                row = {"video": video, "audio_ms": audio_ms, "bots": count, "processes": processes,
                       "tracks": f"{min((r['tracks_flowing'] for r in good), default=0)}/"
                                 f"{good[0]['tracks_expected'] if good else '?'}",
                       "join_to_mesh_s": med("join_to_mesh_s"),
                       "video_frames_delivered_ratio": med("video_frames_delivered_ratio"),
                       "cpu_percent": med("cpu_s_per_s", 100.0), "errors": errors, "machine": machine}
                rows.append(row)
                fmt = lambda v, f: "-" if v is None else format(v, f)
                print(f"{video:<12} {audio_ms:>5} {count:>4} {processes:>5} {row['tracks']:>9} "
                      f"{fmt(row['join_to_mesh_s'], '.2f'):>7} "
                      f"{fmt(row['video_frames_delivered_ratio'], '.1%'):>9} "
                      f"{fmt(row['cpu_percent'], '.0f'):>6}" + (f"  errors: {errors}" if errors else ""),
                      flush=True)
        finally:
            server.terminate()
            server.wait(timeout=10)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
