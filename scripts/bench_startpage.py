#!/usr/bin/env python3
"""Benchmark: is the start page as quick with 100,000 users as with 10?

For each directory size, imports that many users (no passwords, plus one user who
signs in), starts `p2pconf serve`, and times what a start page asks for as it opens:
the page itself, /api/me, /api/contacts and the first page of /api/users, then a
search as one types. Prints medians and p99 of many runs, and the bytes of directory
a page received.

    .venv/bin/python scripts/bench_startpage.py --sizes 10,100000 --repeat 200
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from bench_signin import start_server  # scripts/ is on sys.path when a script runs

PASSWORD = "benchmark password"
QUERIES = ["m", "mü", "mül", "schmidt", "anna b", "user12", "zzzz"]
FIRST = ["Anna", "Jürgen", "Zoë", "Søren", "Élodie", "Mehmet", "Łukasz", "Ana", "Björn", "Chloé", "Ömer", "Ines",
         "Paul", "Maria", "Thomas", "Fatma", "Olga", "Kenji", "Priya", "Lars"]
LAST = ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann",
        "Øster", "Dubois", "Yılmaz", "Nowak", "García", "Weiß", "Lefèvre", "Kraus", "Berg", "Novák", "Rossi",
        "Jansen", "Kowalski", "Ivanova", "Tanaka", "Singh", "Öztürk", "Lindqvist", "Horváth", "Papadopoulos"]


def write_users(path: Path, count: int) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["login", "name", "email", "password"])
        for n in range(count):
            first, last = FIRST[n % len(FIRST)], LAST[(n * 7 + n // len(FIRST)) % len(LAST)]
            w.writerow([f"user{n}", f"{first} {last}", f"user{n}@example.org", ""])


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


async def measure(url: str, repeat: int) -> dict:
    async with aiohttp.ClientSession(headers={"Origin": url}, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(url + "/login") as page:
            csrf = page.cookies["p2pconf_csrf"].value
        async with http.post(url + "/login", data={"login": "me", "password": PASSWORD, "csrf": csrf},
                             allow_redirects=False) as reply:
            assert reply.status == 302, reply.status
        opening, searching, directory_bytes = [], [], 0
        for i in range(repeat):
            started = time.monotonic()
            for path in ("/", "/api/me", "/api/contacts", "/api/users?q="):
                async with http.get(url + path) as reply:
                    body = await reply.read()
                    assert reply.status == 200, (path, reply.status)
                    if path.startswith("/api/users"):
                        directory_bytes = len(body)
            opening.append(time.monotonic() - started)
            started = time.monotonic()
            async with http.get(url + "/api/users", params={"q": QUERIES[i % len(QUERIES)]}) as reply:
                await reply.read()
            searching.append(time.monotonic() - started)
    return {"open_p50": pct(opening, 0.5), "open_p99": pct(opening, 0.99), "search_p50": pct(searching, 0.5),
            "search_p99": pct(searching, 0.99), "directory_bytes": directory_bytes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10,100000")
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, load {load}")
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            data, users = Path(tmp) / "data", Path(tmp) / "users.csv"
            write_users(users, size)
            started = time.monotonic()
            subprocess.run([sys.executable, "-m", "p2pconf.cli", "users", "import", str(users), "--data", str(data)],
                           check=True, stdout=subprocess.DEVNULL)
            imported = time.monotonic() - started
            subprocess.run([sys.executable, "-m", "p2pconf.cli", "users", "add", "me", "--name", "Me Myself",
                            "--password-stdin", "--data", str(data)], input=PASSWORD + "\n", text=True, check=True,
                           stdout=subprocess.DEVNULL)
            proc, url = start_server(data)
            try:
                result = asyncio.run(measure(url, args.repeat))
            finally:
                proc.terminate()
                proc.wait(timeout=10)
        rows.append((size, imported, result))
        print(f"{size} users: import {imported:.1f} s, " + ", ".join(f"{k} {v:.1f}" for k, v in result.items()))
    print("\n| users | import | open page p50 / p99 | search p50 / p99 | directory bytes a page got |")
    print("|---|---|---|---|---|")
    for size, imported, r in rows:
        print(f"| {size:,} | {imported:.1f} s | {r['open_p50']:.1f} / {r['open_p99']:.1f} ms | "
              f"{r['search_p50']:.1f} / {r['search_p99']:.1f} ms | {r['directory_bytes']:,} |")


if __name__ == "__main__":
    main()
