#!/usr/bin/env python3
"""Benchmark: does a burst of sign-ins slow the signaling of calls that are running?

Starts `p2pconf serve` on a free loopback port (behind itself as a "trusted proxy",
so each sign-in can come from its own address and none is throttled), imports N
users with passwords, puts two peers into a room, and while they relay an offer
every 25 ms, sends N sign-ins at once (half with the right password). Prints the
relay latency (p50/p99/max) before and during the burst, and how the sign-ins
were answered (200 / 401 / 503 busy). Repeats and reports medians.

    .venv/bin/python scripts/bench_signin.py --signins 100 --repeat 3

Target (issue 9): signaling p99 <= 50 ms in another room during 100 concurrent sign-ins.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import aiohttp
from bench_mesh import free_port  # scripts/ is on sys.path when a script runs

PASSWORD = "benchmark password"


def start_server(data: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "p2pconf.cli", "serve", "--port", str(port), "--data", str(data),
                             "--open-rooms", "--trusted-proxy", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1).close()
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


async def relay_pair(http: aiohttp.ClientSession, url: str):
    """Two peers in room "bench"; returns (sender ws, receiver ws, receiver id)."""
    peers = []
    for name in ("A", "B"):
        ws = await http.ws_connect(url + "/ws")
        await ws.send_json({"type": "hello", "version": 1})
        welcome = await ws.receive_json(timeout=10)
        await ws.send_json({"type": "join", "room": "bench", "name": name})
        while (await ws.receive_json(timeout=10))["type"] != "joined":
            pass
        peers.append((ws, welcome["id"]))
    return peers[0][0], peers[1][0], peers[1][1]


async def measure(sender, receiver, to: str, until: asyncio.Future | float) -> list[float]:
    """Relay latencies (s) of offers sent every 25 ms until `until` is done (or that many seconds)."""
    latencies: list[float] = []
    end = time.monotonic() + until if isinstance(until, float) else None
    for _ in range(100_000):
        if (end and time.monotonic() >= end) or (not end and until.done()):
            break
        sent = time.monotonic()
        await sender.send_json({"type": "offer", "to": to, "sdp": f"v=0 {sent}"})
        while True:
            msg = await receiver.receive_json(timeout=30)
            if msg["type"] == "offer":
                latencies.append(time.monotonic() - float(msg["sdp"].split()[1]))
                break
        await asyncio.sleep(max(0.0, 0.025 - (time.monotonic() - sent)))
    return latencies


async def sign_in(url: str, n: int) -> int:
    """One client's sign-in from its own address: fetch the page (CSRF cookie), then POST."""
    headers = {"Origin": url, "X-Forwarded-For": f"10.{n // 250}.{n % 250}.1"}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), headers=headers) as http:
        async with http.get(url + "/login") as page:
            csrf = page.cookies["p2pconf_csrf"].value
        body = {"login": f"user{n}", "password": PASSWORD if n % 2 else "wrong password"}
        async with http.post(url + "/api/session", json=body, headers={"X-CSRF-Token": csrf}) as reply:
            return reply.status


def burst(url: str, count: int) -> list[int]:
    """`count` sign-ins at once; runs in a process of its own, so the 200 HTTP requests'
    client-side work does not delay the measuring pair's loop (only the server's is measured)."""
    async def all_at_once():
        return await asyncio.gather(*(sign_in(url, n) for n in range(count)))
    return asyncio.run(all_at_once())


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


async def one_run(url: str, count: int, pool: ProcessPoolExecutor) -> dict:
    async with aiohttp.ClientSession() as http:
        sender, receiver, to = await relay_pair(http, url)
        quiet = await measure(sender, receiver, to, 2.0)
        started = time.monotonic()
        signins = asyncio.get_running_loop().run_in_executor(pool, burst, url, count)
        during = await measure(sender, receiver, to, signins)
        statuses = await signins
        took = time.monotonic() - started
        await sender.close()
        await receiver.close()
    return {"quiet_p99": pct(quiet, 0.99), "p50": pct(during, 0.5), "p99": pct(during, 0.99),
            "max": max(during) * 1000, "burst_s": took, "samples": len(during),
            **{str(code): statuses.count(code) for code in sorted(set(statuses))}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--signins", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load {' '.join(load)}")
    with tempfile.TemporaryDirectory() as tmp:
        data, users = Path(tmp) / "data", Path(tmp) / "users.csv"
        with users.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["login", "name", "email", "password"])
            w.writerows([f"user{n}", f"User {n}", "", PASSWORD] for n in range(args.signins))
        subprocess.run([sys.executable, "-m", "p2pconf.cli", "users", "import", str(users), "--data", str(data)],
                       check=True, stdout=subprocess.DEVNULL)
        proc, url = start_server(data)
        pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        pool.submit(len, "").result()  # the burst process is up before the first run
        try:
            runs = []
            for i in range(args.repeat):
                runs.append(asyncio.run(one_run(url, args.signins, pool)))
                print(f"run {i + 1}: " + ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}"
                                                   for k, v in runs[-1].items()))
                time.sleep(16)  # let the previous burst's per-address windows and sessions settle
        finally:
            pool.shutdown()
            proc.terminate()
            proc.wait(timeout=10)
    med = {k: statistics.median(r.get(k, 0) for r in runs) for k in runs[0]}
    print(f"\nmedians of {args.repeat}: signaling during {args.signins} concurrent sign-ins: "
          f"p50 {med['p50']:.1f} ms, p99 {med['p99']:.1f} ms, max {med['max']:.1f} ms "
          f"(quiet p99 {med['quiet_p99']:.1f} ms); sign-ins answered 200: {med.get('200', 0):.0f}, "
          f"401: {med.get('401', 0):.0f}, 503: {med.get('503', 0):.0f} in {med['burst_s']:.2f} s")


if __name__ == "__main__":
    main()
