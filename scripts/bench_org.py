#!/usr/bin/env python3
"""Benchmark: an organisation of 100,000 users on one server process.

1. Writes a CSV of N users with varied German and international names (no passwords)
   and times `p2pconf users import` of it; then imports, in a second run, the M
   users with passwords that the benchmark signs in as (their argon2 hashes are slow).
2. Starts `p2pconf serve --open-rooms` on a free loopback port on that store (SQLite in
   a temporary data directory, or PostgreSQL with --database; use an empty database).
3. Signs each of the M users in once and opens P WebSocket pages with those cookies
   (many pages per user, like tabs) in several client processes; each page sends
   `hello` and then `subscribe` with 50 logins of a "popular" set of K users.
4. For --duration seconds after all pages are up, at the same time:
   - a driver opens and closes pages of C popular users who have passwords (1,000
     presence changes a minute); the latency from the action (sending `hello`, or
     closing the socket) to the `presence` message at each watching page is measured
     on the shared CLOCK_MONOTONIC (time.monotonic is system-wide on Linux; checked);
   - 100 directory searches a second (`GET /api/users?q=...`, sometimes a next page
     by cursor) with name prefixes of 2-6 letters, some with accents, some misses;
   - a 6-peer room (anonymous, --open-rooms) relays an offer every 25 ms.
5. Prints a Markdown table with the targets, the server's peak RSS and CPU.

    .venv/bin/python scripts/bench_org.py                       # the full size (takes a few minutes)
    .venv/bin/python scripts/bench_org.py --users 2000 --pages 200 --duration 10   # smoke run

Targets: import <= 60 s (SQLite), search p99 <= 50 ms, presence p99 <= 200 ms,
signaling p99 <= 20 ms, server RSS <= 1.5 GiB.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import csv
import json
import math
import multiprocessing
import os
import platform
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
import urllib.request
from pathlib import Path

import aiohttp
from bench_mesh import free_port  # scripts/ is on sys.path when a script runs

PASSWORD = "benchmark password"
SESSION_COOKIE, CSRF_COOKIE = "p2pconf_session", "p2pconf_csrf"
GRACE_S = 3.0  # watchers keep listening this long after the window for its last deliveries
clock = time.monotonic  # CLOCK_MONOTONIC: one clock for every process on the machine
GIB = 1024 ** 3

# -- the organisation ------------------------------------------------------------------------------

FIRST = """Jürgen Jörg Björn Günter Sören Käthe Hans Peter Klaus Wolfgang Thomas Michael Andreas Stefan
Christian Martin Frank Uwe Dieter Horst Helmut Manfred Bernd Ralf Matthias Markus Tobias Florian Lukas
Maximilian Felix Jonas Leon Paul Niklas Moritz Jan Tim Sebastian Daniel Alexander Anna Maria Ursula
Monika Petra Sabine Renate Karin Brigitte Ingrid Gisela Claudia Susanne Andrea Birgit Heike Nicole
Stefanie Julia Katharina Lena Laura Lea Hannah Sophie Marie Emilia Mia Jana Anja Silke Doris Elke Gülsen
Ayşe Fatma Mehmet Mustafa Ömer Emre Çağla Zeynep Yusuf Ahmet Łukasz Małgorzata Agnieszka Paweł Krzysztof
Wojciech Zoë Renée Chloé Françoise François Hélène Jérôme Amélie José María Raúl Inês João Sérgio Ángel
Lucía Søren Åsa Bjørn Märta Ingrid Dragoş Ioana Mihai Ştefan Žaneta Jiří Tomáš Lenka Dušan Milena Nikolaos
Eleni Giorgos Dimitra Luca Giulia Matteo Chiara Francesca Nguyễn Linh Anh Minh Wei Mei Priya Rahul Aarav
Fatima Omar Leila Karim Olga Dmitri Natalia Sergej Iryna Oleksandr Mikael Noémie Ánh Aoife Siobhán Seán
Pádraig Eoin Zsófia Dániel Gábor Réka Ana-María Anna-Lena Hans-Jürgen Karl-Heinz Marie-Luise""".split()

LAST = """Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Schäfer Koch Bauer
Richter Klein Wolf Schröder Neumann Schwarz Zimmermann Braun Krüger Hofmann Hartmann Lange Schmitt Werner
Schmitz Krause Meier Lehmann Schmid Schulze Maier Köhler Herrmann König Walter Mayer Huber Kaiser Fuchs
Peters Lang Scholz Möller Weiß Jung Hahn Schubert Vogel Friedrich Keller Günther Frank Berger Winkler Roth
Beck Lorenz Baumann Franke Albrecht Schuster Simon Ludwig Böhm Winter Kraus Martin Schumacher Krämer Vogt
Stein Jäger Otto Sommer Groß Seidel Heinrich Brandt Haas Schreiber Graf Schulte Dietrich Ziegler Kuhn Kühn
Pohl Engel Horn Busch Bergmann Thomas Voigt Sauer Arnold Wolff Pfeiffer Brückner Gärtner Lüdtke Rößler
Dörfler Thürmer Yılmaz Kaya Demir Şahin Çelik Öztürk Aydın Özdemir Arslan Doğan Nowak Kowalski Wiśniewski
Dąbrowski Lewandowski Wójcik Kamińska Zieliński Novák Dvořák Černý Procházka Horváth Nagy Tóth Szabó
Rossi Russo Ferrari Esposito Bianchi Romano Colombo García Fernández González Rodríguez López Martínez
Sánchez Pérez Gómez Muñoz Dubois Lefèvre Moreau Girard Bonnet Mercier Lefèbvre Nguyễn Trần Lê Phạm
Papadopoulos Ivanović Petrović Jovanović Đorđević Popescu Ionescu Rădulescu Andersson Johansson Nilsson
Nielsen Jensen Hansen Sørensen Østergaard Kristiansen Ahmed Hussain Khan Singh Patel Sharma Kumar Chen Wang
Li Zhang Liu Ivanova Petrov Smirnov Kovalenko Shevchenko O'Brien Murphy Ó_Súilleabháin Kelly Smith Jones
Brown Wilson Taylor Virtanen Mäkinen Korhonen Häkkinen Fernandes Gonçalves Conceição""".split()
LAST = [w.replace("_", " ") for w in LAST]
PARTICLES = ["van", "van der", "von", "von der", "de", "de la", "da", "di", "zu"]
DOMAINS = ["example.org", "firma.example", "konzern.example.de", "stadtwerke.example", "uni.example.edu",
           "praxis-example.de", "example.com"]
_ASCII = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "ø": "o", "æ": "ae", "œ": "oe", "ł": "l",
                        "đ": "d", "ð": "d", "þ": "th", "ı": "i"})


def ascii_part(text: str) -> str:
    """A name as a login part: "Jürgen" -> "juergen", "Łukasz" -> "lukasz", "O'Brien" -> "obrien"."""
    t = unicodedata.normalize("NFKD", text.casefold().translate(_ASCII))
    return re.sub(r"[^a-z0-9]", "", "".join(c for c in t if not unicodedata.combining(c)))


def make_people(count: int, rng: random.Random) -> list[tuple[str, str, str]]:
    """`count` (login, name, e-mail) with unique logins; full names repeat, as in a real organisation."""
    people, taken, suffix = [], set(), collections.Counter()
    for _ in range(count * 2):  # bounded: nearly every round adds one
        if len(people) >= count:
            break
        first, last = rng.choice(FIRST), rng.choice(LAST)
        r = rng.random()
        if r < 0.07:
            first = f"{first} {rng.choice(FIRST)}"
        elif r < 0.15:
            last = f"{last}-{rng.choice(LAST)}"
        elif r < 0.19:
            last = f"{rng.choice(PARTICLES)} {last}"
        name = f"{first} {last}"
        if len(name) > 40:
            first, last = first.split()[0], last.split("-")[0]
            name = f"{first} {last}"[:40].strip()
        f, l = ascii_part(first.split()[0]), ascii_part(last.split()[-1].split("-")[0])
        style = rng.random()
        base = (f"{f}.{l}" if style < 0.5 else f"{f[0]}{l}" if style < 0.8 else f"{f}{l[0]}" if style < 0.9
                else f"{l}.{f}")[:56] or "user"
        login = base
        while login in taken:  # bounded: the suffix grows with every collision of this base
            suffix[base] += 1
            login = f"{base}{suffix[base] + 1}"
        taken.add(login)
        people.append((login, name, f"{login}@{rng.choice(DOMAINS)}"))
    return people


def make_queries(people: list[tuple[str, str, str]], rng: random.Random, count: int) -> list[str]:
    """What people type into the directory's search box."""
    skip = {"van", "der", "von", "de", "la", "da", "di", "zu"}
    queries = []
    for _ in range(count):
        login, name, email = rng.choice(people)
        words = [w for w in re.split(r"[\s\-']+", name) if w and w.lower() not in skip]
        n, r = rng.randint(2, 6), rng.random()
        if r < 0.40:
            q = words[-1][:n]  # the last name as written: "Mül", "Öz", "Dvoř"
        elif r < 0.58:
            q = words[0][:n]  # the first name: "Jür", "Ça"
        elif r < 0.68:
            q = ascii_part(words[-1])[:n]  # typed without accents: "muel", "dvor"
        elif r < 0.78:
            q = f"{words[0][:rng.randint(2, 4)]} {words[-1][:rng.randint(2, 4)]}"  # "jür mü"
        elif r < 0.86:
            q = login[:rng.randint(3, 8)]  # "j.mue", "anna.b"
        elif r < 0.88:
            local, domain = email.split("@")
            q = f"{local[:rng.randint(3, 6)]}@{domain[:3]}"  # "kraus@exa"
        else:
            q = "".join(rng.choice("qxzvjwy") for _ in range(n))  # a miss
        queries.append(q.lower() if rng.random() < 0.6 else q)
    return queries


def write_csv(path: Path, rows: list[tuple[str, str, str]], password: str | None) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["login", "name", "email"] + (["password"] if password else []))
        w.writerows([*row, password] if password else row for row in rows)


# -- the server ------------------------------------------------------------------------------------


def store_args(args, data: Path) -> list[str]:
    return ["--database", args.database] if args.database else ["--data", str(data)]


def store_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("P2PCONF_DATABASE", None)  # the store is named on the command line
    return env


def import_users(args, data: Path, file: Path) -> tuple[float, str]:
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "p2pconf.cli", "users", "import", str(file), *store_args(args, data)],
                         capture_output=True, text=True, env=store_env(), timeout=1800)
    took = time.monotonic() - started
    if run.returncode:
        raise SystemExit(f"users import failed: {run.stderr.strip() or run.stdout.strip()}")
    return took, run.stdout.strip()


def start_server(args, data: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "p2pconf.cli", "serve", "--host", "127.0.0.1",
                                 "--port", str(port), *store_args(args, data), "--open-rooms"],
                                stdout=out, stderr=subprocess.STDOUT, env=store_env())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1).close()
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    proc.wait(timeout=10)
    raise SystemExit("server did not start:\n" + log.read_text(errors="replace")[-2000:])


def proc_status(pid: int, key: str) -> int:
    """A kB value from /proc/PID/status (VmRSS, VmHWM), in bytes; 0 when gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


class RssSampler(threading.Thread):
    """The server's VmRSS every half second (a bounded number of times), keeping the maximum."""

    def __init__(self, pid: int, max_s: float):
        super().__init__(daemon=True)
        self.pid, self.max_samples, self.peak, self.window_peak = pid, int(max_s / 0.5) + 1, 0, 0
        self.in_window, self.stop = threading.Event(), threading.Event()

    def run(self) -> None:
        for _ in range(self.max_samples):
            rss = proc_status(self.pid, "VmRSS")
            self.peak = max(self.peak, rss)
            if self.in_window.is_set():
                self.window_peak = max(self.window_peak, rss)
            if self.stop.wait(0.5):
                break


async def sign_in_all(url: str, logins: list[str], deadline: float) -> dict[str, str]:
    """Each login signed in once (GET /login for the CSRF cookie, then POST /api/session): login -> cookie.
    Four at a time from one address: the throttle counts attempts in flight (5), the server hashes on one
    core; a 503 (busy) or 429 is retried after Retry-After, a bounded number of times."""
    tokens: dict[str, str] = {}
    sem = asyncio.Semaphore(4)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), headers={"Origin": url},
                                     timeout=aiohttp.ClientTimeout(total=60)) as http:
        async def one(login: str) -> None:
            async with sem:
                for _ in range(20):
                    if time.monotonic() > deadline:
                        break
                    async with http.get(url + "/login") as page:
                        await page.read()
                        csrf = page.cookies[CSRF_COOKIE].value
                    async with http.post(url + "/api/session", json={"login": login, "password": PASSWORD},
                                         headers={"X-CSRF-Token": csrf, "Cookie": f"{CSRF_COOKIE}={csrf}"}) as reply:
                        text = await reply.text()
                        if reply.status == 200:
                            tokens[login] = reply.cookies[SESSION_COOKIE].value
                            return
                        if reply.status not in (429, 503):
                            raise SystemExit(f"sign-in of {login}: HTTP {reply.status} {text[:200]}")
                        await asyncio.sleep(min(10.0, float(reply.headers.get("Retry-After", "1"))))
                raise SystemExit(f"sign-in of {login} did not succeed in time")
        await asyncio.gather(*(one(login) for login in logins))
    return tokens


# -- the client processes --------------------------------------------------------------------------


def ws_headers(url: str, token: str | None) -> dict[str, str]:
    return {"Origin": url, **({"Cookie": f"{SESSION_COOKIE}={token}"} if token else {})}


async def greeted(http: aiohttp.ClientSession, url: str, token: str | None) -> aiohttp.ClientWebSocketResponse:
    """A WebSocket that has sent `hello` and got `welcome` (autoping answers the server's pings)."""
    ws = await asyncio.wait_for(http.ws_connect(url + "/ws", headers=ws_headers(url, token), autoping=True,
                                                max_msg_size=256 * 1024), 30)
    await ws.send_json({"type": "hello", "version": 1})
    for _ in range(10):
        msg = await ws.receive_json(timeout=30)
        if msg["type"] == "welcome":
            return ws
    raise RuntimeError("no welcome")


async def wait_go(go, start_at, timeout: float) -> float | None:
    """The common start time (clock()), once the main process says go; None if it never does."""
    if not await asyncio.to_thread(go.wait, timeout):
        return None
    return start_at.value


async def sleep_until(t: float) -> None:
    await asyncio.sleep(max(0.0, t - clock()))


async def role_watchers(cfg: dict, results, go, start_at) -> dict:
    """Pages that subscribe and note every presence update they hear: (login, status, arrival)."""
    url, arrivals, failures, dropped = cfg["url"], [], collections.Counter(), 0
    recording = True
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     cookie_jar=aiohttp.DummyCookieJar()) as http:
        sem = asyncio.Semaphore(cfg["connect_concurrency"])
        pages, readers, watching = [], [], collections.Counter()

        async def read(ws) -> None:
            nonlocal dropped
            for _ in range(10 ** 9):  # ends when the socket closes
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                t = clock()
                if recording and '"presence"' in msg.data:
                    data = json.loads(msg.data)
                    if data.get("type") == "presence" and len(data["users"]) == 1:
                        ((login, status),) = data["users"].items()
                        arrivals.append((login, status, t))
            if recording:
                dropped += 1

        async def open_page(token: str, logins: list[str]) -> None:
            async with sem:
                try:
                    ws = await greeted(http, url, token)
                    await ws.send_json({"type": "subscribe", "logins": logins})
                    for _ in range(10):
                        msg = await ws.receive_json(timeout=30)
                        if msg["type"] == "presence":
                            break
                        if msg["type"] == "error":
                            raise RuntimeError(msg["code"])
                    else:
                        raise RuntimeError("no presence snapshot")
                    if len(msg["users"]) != len(set(logins)):
                        raise RuntimeError("snapshot of the wrong size")
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    failures[type(exc).__name__ + (f" {exc}" if str(exc) else "")] += 1
                    return
                pages.append(ws)
                watching.update(logins)
                readers.append(asyncio.create_task(read(ws)))

        tasks = [asyncio.create_task(open_page(token, logins)) for token, logins in cfg["pages"]]
        done, pending = await asyncio.wait(tasks, timeout=cfg["connect_timeout"])
        for task in pending:
            task.cancel()
        if pending:
            failures["connect timeout"] += len(pending)
        results.put(("ready", cfg["name"], {"pages": len(pages), "failures": dict(failures), "clock": clock()}))
        t0 = await wait_go(go, start_at, cfg["go_timeout"])
        if t0 is not None:
            await sleep_until(t0 + cfg["duration"] + GRACE_S)
        recording = False
        await asyncio.wait([asyncio.create_task(ws.close()) for ws in pages] or [asyncio.create_task(asyncio.sleep(0))], timeout=15)
        for task in readers:
            task.cancel()
    return {"arrivals": arrivals, "watching": dict(watching), "dropped": dropped}


async def role_driver(cfg: dict, results, go, start_at) -> dict:
    """Presence changes: the changers' pages are opened (online) and closed (offline) in turn, round robin,
    `rate` a second; each action's time (hello sent / close begun) is noted."""
    url, changers, rate = cfg["url"], cfg["changers"], cfg["changes_per_min"] / 60
    actions, errors, skipped, online, busy = [], collections.Counter(), 0, {}, set()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     cookie_jar=aiohttp.DummyCookieJar()) as http:
        results.put(("ready", cfg["name"], {"clock": clock()}))
        t0 = await wait_go(go, start_at, cfg["go_timeout"])
        if t0 is None:
            return {"actions": []}
        end = t0 + cfg["duration"]

        async def toggle(login: str, token: str) -> None:
            busy.add(login)
            try:
                if login in online:
                    ws, t = online.pop(login), clock()
                    await asyncio.wait_for(ws.close(), 10)
                    actions.append((login, "offline", t))
                else:
                    ws = await asyncio.wait_for(http.ws_connect(url + "/ws", headers=ws_headers(url, token)), 10)
                    t = clock()
                    await ws.send_json({"type": "hello", "version": 1})
                    msg = await ws.receive_json(timeout=10)
                    if msg["type"] != "welcome":
                        raise RuntimeError(msg.get("code", msg["type"]))
                    online[login] = ws
                    actions.append((login, "online", t))
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors[type(exc).__name__] += 1
            finally:
                busy.discard(login)

        tasks: set[asyncio.Task] = set()
        for i in range(int(rate * cfg["duration"]) + 1):
            await sleep_until(t0 + i / rate)
            if clock() >= end:
                break
            login, token = changers[i % len(changers)]
            if login in busy:
                skipped += 1
                continue
            task = asyncio.create_task(toggle(login, token))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=15)
        await sleep_until(end + GRACE_S + 1)  # the watchers have stopped listening: these closes are not counted
        await asyncio.wait([asyncio.create_task(ws.close()) for ws in online.values()] or [asyncio.create_task(asyncio.sleep(0))],
                           timeout=10)
    return {"actions": actions, "errors": dict(errors), "skipped": skipped}


async def role_search(cfg: dict, results, go, start_at) -> dict:
    """`rate` directory searches a second (open loop), signed in; one in ten asks for a next page."""
    url, rate, queries, tokens = cfg["url"], cfg["rate"], cfg["queries"], cfg["tokens"]
    rng = random.Random(cfg["seed"])
    latencies, statuses, skipped, cursors = [], collections.Counter(), 0, collections.deque(maxlen=100)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=cfg["max_inflight"]),
                                     cookie_jar=aiohttp.DummyCookieJar(),
                                     timeout=aiohttp.ClientTimeout(total=10)) as http:
        async def one(i: int) -> None:
            if cursors and rng.random() < 0.1:
                q, cursor = cursors.popleft()
                params = {"q": q, "cursor": cursor}
            else:
                q = queries[i % len(queries)]
                params = {"q": q}
            try:
                t = clock()
                async with http.get(url + "/api/users", params=params,
                                    headers=ws_headers(url, tokens[i % len(tokens)])) as reply:
                    answer = await reply.json(content_type=None)
                    took = clock() - t
                statuses[str(reply.status)] += 1
                if reply.status == 200:
                    latencies.append(took)
                    if answer.get("next"):
                        cursors.append((q, answer["next"]))
            except Exception as exc:  # noqa: BLE001 - counted and reported
                statuses[type(exc).__name__] += 1

        async with http.get(url + "/api/users", params={"q": "a"}, headers=ws_headers(url, tokens[0])) as reply:
            if reply.status != 200:
                raise RuntimeError(f"search answered HTTP {reply.status}: {(await reply.text())[:200]}")
        results.put(("ready", cfg["name"], {"clock": clock()}))
        t0 = await wait_go(go, start_at, cfg["go_timeout"])
        if t0 is None:
            return {"latencies": []}
        tasks: set[asyncio.Task] = set()
        for i in range(int(rate * cfg["duration"])):
            await sleep_until(t0 + i / rate)
            if len(tasks) >= cfg["max_inflight"]:
                skipped += 1
                continue
            task = asyncio.create_task(one(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=15)
    return {"latencies": latencies, "statuses": dict(statuses), "skipped": skipped}


async def role_signaling(cfg: dict, results, go, start_at) -> dict:
    """Six anonymous peers in one room; peer 1 sends peer 2 an offer every 25 ms (relay latency)."""
    url = cfg["url"]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        peers = []
        for k in range(6):
            ws = await greeted(http, url, None)
            await ws.send_json({"type": "join", "room": cfg["room"], "name": f"Teilnehmer {k + 1}"})
            for _ in range(20):
                msg = await ws.receive_json(timeout=10)
                if msg["type"] == "joined":
                    break
                if msg["type"] == "error":
                    raise RuntimeError(f"join: {msg['code']}")
            peers.append((ws, msg["id"]))

        async def drain(ws) -> None:  # idle peers read (and so answer pings) until closed
            for _ in range(10 ** 9):
                if (await ws.receive()).type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    break

        idle = [asyncio.create_task(drain(ws)) for ws, _ in peers[2:]]
        results.put(("ready", cfg["name"], {"clock": clock()}))
        t0 = await wait_go(go, start_at, cfg["go_timeout"])
        latencies, lost = [], 0
        (sender, _), (receiver, to) = peers[0], peers[1]
        if t0 is not None:
            end = t0 + cfg["duration"]
            await sleep_until(t0)
            for _ in range(int(cfg["duration"] / 0.025) + 2):
                sent = clock()
                if sent >= end:
                    break
                await sender.send_json({"type": "offer", "to": to, "sdp": f"v=0 {sent}"})
                try:
                    for _ in range(20):
                        msg = await receiver.receive_json(timeout=5)
                        if msg["type"] == "offer":
                            latencies.append(clock() - float(msg["sdp"].split()[1]))
                            break
                except asyncio.TimeoutError:
                    lost += 1
                await asyncio.sleep(max(0.0, 0.025 - (clock() - sent)))
        for ws, _ in peers:
            await ws.close()
        for task in idle:
            task.cancel()
    return {"latencies": latencies, "lost": lost}


ROLES = {"watchers": role_watchers, "driver": role_driver, "search": role_search, "signaling": role_signaling}


def worker(role: str, cfg: dict, results, go, start_at) -> None:
    try:
        out = asyncio.run(ROLES[role](cfg, results, go, start_at))
    except BaseException as exc:  # noqa: BLE001 - reported to the main process
        out = {"error": f"{type(exc).__name__}: {exc}"}
    results.put(("result", cfg["name"], out))


# -- the numbers -----------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def presence_latencies(actions: list, arrivals: list) -> tuple[list[float], int]:
    """Each arrival matched to the latest action of that login and status before it: (latencies, unmatched)."""
    times: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    for login, status, t in actions:
        times[(login, status)].append(t)
    for ts in times.values():
        ts.sort()
    latencies, unmatched = [], 0
    for login, status, t in arrivals:
        ts = times.get((login, status), [])
        i = bisect.bisect_right(ts, t) - 1
        if i < 0 or t - ts[i] > 10:
            unmatched += 1
        else:
            latencies.append(t - ts[i])
    return latencies, unmatched


def raise_file_limit(needed: int) -> str:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    note = f"open files: soft limit {soft} (hard {hard}), needed about {needed}"
    if soft != resource.RLIM_INFINITY and soft < needed:
        print(f"warning: {note}; raise the hard limit (ulimit -Hn) or pages will fail", file=sys.stderr)
    return note


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=100_000, help="users without password, imported and timed")
    ap.add_argument("--pages", type=int, default=5_000, help="WebSocket pages that subscribe")
    ap.add_argument("--popular", type=int, default=1_000, help="the set the pages' subscriptions are drawn from")
    ap.add_argument("--subscriptions", type=int, default=50, help="logins each page follows (at most 200)")
    ap.add_argument("--changers", type=int, help="popular users with passwords whose pages the driver opens and "
                                                 "closes (default min(50, max(10, pages/100)))")
    ap.add_argument("--password-users", type=int, help="users with passwords, changers included (default: changers"
                                                       " + one per 20 pages, at most 300 with the defaults)")
    ap.add_argument("--changes-per-min", type=float, default=1000.0, help="presence changes a minute")
    ap.add_argument("--search-rate", type=float, default=100.0, help="directory searches a second")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds measured after all pages are up")
    ap.add_argument("--processes", type=int, default=4, help="client processes holding the pages")
    ap.add_argument("--database", help="PostgreSQL URL (an empty database); default SQLite in a temp directory")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="also write the numbers to this file")
    ap.add_argument("--profile", metavar="FILE", help="record the server with py-spy (on PATH) during the window, "
                                                      "as collapsed stacks into FILE (a diagnosis, not a measurement)")
    args = ap.parse_args()
    changers_n = args.changers or min(50, max(10, args.pages // 100))
    password_n = args.password_users or changers_n + max(1, math.ceil(args.pages / 20))
    page_users_n = password_n - changers_n
    if page_users_n < 1 or args.popular < changers_n or args.popular > args.users + changers_n:
        ap.error("need password users > changers, and changers <= popular <= users + changers")
    if not 1 <= args.subscriptions <= 200 or args.processes < 1 or args.duration <= 0 or args.pages < 1:
        ap.error("subscriptions 1-200, processes >= 1, duration > 0, pages >= 1")
    if args.profile and not shutil.which("py-spy"):
        ap.error("--profile needs py-spy on PATH (pip install py-spy)")
    if changers_n / (args.changes_per_min / 60) > 8:
        ap.error("each changer would stay 8 s or more in one state (the server pings after 10 s): fewer --changers")

    files_note = raise_file_limit(args.pages + 2_000)
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
               f"load {load} at start")
    store = "PostgreSQL" if args.database else "SQLite"
    print(f"# bench_org on {machine}; {store}; {files_note}", flush=True)

    rng = random.Random(args.seed)
    people = make_people(args.users + password_n, rng)
    if len(people) < args.users + password_n:
        raise SystemExit("could not make enough unique logins")
    with_password, plain = people[:password_n], people[password_n:]
    changers, page_users = [p[0] for p in with_password[:changers_n]], [p[0] for p in with_password[changers_n:]]
    popular = changers + [p[0] for p in rng.sample(plain, args.popular - changers_n)]
    subs_n = min(args.subscriptions, len(popular))
    pages = [(page_users[i % page_users_n], rng.sample(popular, subs_n)) for i in range(args.pages)]
    queries = make_queries(people, rng, 5_000)

    workers: list[multiprocessing.Process] = []
    server = sampler = None
    with tempfile.TemporaryDirectory(prefix="bench_org-") as tmp:
        data, users_csv, pw_csv = Path(tmp) / "data", Path(tmp) / "users.csv", Path(tmp) / "password-users.csv"
        write_csv(users_csv, plain, None)
        write_csv(pw_csv, with_password, PASSWORD)
        import_s, said = import_users(args, data, users_csv)
        print(f"import of {len(plain):,} users: {import_s:.1f} s ({said})", flush=True)
        if "skipped" in said:
            print("warning: some users existed already; use an empty database for a meaningful import time")
        pw_s, said = import_users(args, data, pw_csv)
        print(f"import of {password_n} users with passwords (argon2): {pw_s:.1f} s", flush=True)
        try:
            server, url = start_server(args, data, Path(tmp) / "server.log")
            sampler = RssSampler(server.pid, max_s=3600)
            sampler.start()
            started = time.monotonic()
            tokens = asyncio.run(sign_in_all(url, changers + page_users, deadline=started + 600))
            print(f"signed in {len(tokens)} users in {time.monotonic() - started:.1f} s", flush=True)

            ctx = multiprocessing.get_context("spawn")
            results, go, start_at = ctx.Queue(), ctx.Event(), ctx.Value("d", 0.0)
            connect_timeout = 60 + args.pages / 50
            common = {"url": url, "duration": args.duration, "go_timeout": connect_timeout + 300}
            spawned_at = clock()

            def spawn(role: str, name: str, **cfg) -> None:
                p = ctx.Process(target=worker, args=(role, {**common, "name": name, **cfg}, results, go, start_at),
                                daemon=True)
                p.start()
                workers.append(p)

            def collect(kind: str, names: set[str], timeout: float) -> dict[str, dict]:
                got, deadline = {}, time.monotonic() + timeout
                while names - got.keys() and time.monotonic() < deadline:
                    try:
                        what, name, out = results.get(timeout=max(0.1, min(5.0, deadline - time.monotonic())))
                    except Exception:  # queue.Empty
                        if not any(p.is_alive() for p in workers):
                            break
                        continue
                    if what == kind or "error" in out:
                        got[name] = out
                    if "error" in out:
                        raise SystemExit(f"{name}: {out['error']}")
                missing = names - got.keys()
                if missing:
                    raise SystemExit(f"no {kind} from {', '.join(sorted(missing))} in time")
                return got

            # The pages first (they take longest), then the measuring clients.
            n_proc = min(args.processes, args.pages)
            watcher_names = {f"watchers-{k}" for k in range(n_proc)}
            for k in range(n_proc):
                spawn("watchers", f"watchers-{k}", connect_concurrency=25, connect_timeout=connect_timeout,
                      pages=[(tokens[login], logins) for login, logins in pages[k::n_proc]])
            started = time.monotonic()
            ready = collect("ready", watcher_names, connect_timeout + 60)
            connected = sum(r["pages"] for r in ready.values())
            failures = collections.Counter()
            for r in ready.values():
                failures.update(r["failures"])
            print(f"{connected} of {args.pages} pages connected and subscribed in {time.monotonic() - started:.1f} s"
                  + (f"; failures: {dict(failures)}" if failures else ""), flush=True)
            spawn("driver", "driver", changers=[(login, tokens[login]) for login in changers],
                  changes_per_min=args.changes_per_min)
            spawn("search", "search", rate=args.search_rate, queries=queries, seed=args.seed, max_inflight=200,
                  tokens=[tokens[login] for login in page_users[:10]])
            spawn("signaling", "signaling", room=f"bench-org-{os.getpid()}")
            ready.update(collect("ready", {"driver", "search", "signaling"}, 120))
            if not all(spawned_at <= r["clock"] <= clock() for r in ready.values()):
                raise SystemExit("time.monotonic differs between processes: this benchmark needs one shared clock")

            rss_connected = proc_status(server.pid, "VmRSS")
            t0 = clock() + 0.5
            start_at.value = t0
            go.set()
            time.sleep(max(0.0, t0 - clock()))
            cpu0, busy0 = proc_cpu_s(server.pid), machine_busy()
            if args.profile:
                spy = subprocess.Popen(["py-spy", "record", "--pid", str(server.pid), "--nonblocking", "--format",
                                        "raw", "--duration", str(math.ceil(args.duration)), "-o", args.profile],
                                       stdout=subprocess.DEVNULL)
            sampler.in_window.set()
            time.sleep(max(0.0, t0 + args.duration - clock()))
            cpu1, busy1 = proc_cpu_s(server.pid), machine_busy()
            sampler.in_window.clear()
            rss_window = max(sampler.window_peak, proc_status(server.pid, "VmRSS"))
            if args.profile:
                spy.wait(timeout=60)
            out = collect("result", watcher_names | {"driver", "search", "signaling"}, GRACE_S + 120)
            peak_rss = max(sampler.peak, proc_status(server.pid, "VmHWM"), proc_status(server.pid, "VmRSS"))
            for p in workers:
                p.join(timeout=10)
        finally:
            for p in workers:
                if p.is_alive():
                    p.terminate()
                    p.join(timeout=5)
            if sampler:
                sampler.stop.set()
            if server:
                server.terminate()
                try:
                    server.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait(timeout=5)

    arrivals = [a for k in watcher_names for a in out[k]["arrivals"]]
    watching = collections.Counter()
    for k in watcher_names:
        watching.update(out[k]["watching"])
    actions = out["driver"]["actions"]
    presence, unmatched = presence_latencies(actions, arrivals)
    expected = sum(watching[login] for login, _, _ in actions)
    search, signaling = out["search"]["latencies"], out["signaling"]["latencies"]
    cpu_pct = (cpu1 - cpu0) / args.duration * 100
    machine_pct = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]) * 100
    numbers = {
        "machine": machine, "store": store, "users": len(plain), "password_users": password_n,
        "changers": changers_n, "popular": len(popular), "import_s": import_s, "password_import_s": pw_s,
        "pages": args.pages, "pages_connected": connected, "page_failures": dict(failures),
        "pages_dropped": sum(out[k]["dropped"] for k in watcher_names),
        "subscriptions": sum(watching.values()), "duration_s": args.duration,
        "search_n": len(search), "search_p50_ms": pct(search, 0.5), "search_p99_ms": pct(search, 0.99),
        "search_statuses": out["search"]["statuses"], "search_skipped": out["search"]["skipped"],
        "presence_changes": len(actions), "presence_driver_errors": out["driver"]["errors"],
        "presence_deliveries": len(presence), "presence_expected": expected, "presence_unmatched": unmatched,
        "presence_p50_ms": pct(presence, 0.5), "presence_p99_ms": pct(presence, 0.99),
        "signaling_n": len(signaling), "signaling_lost": out["signaling"]["lost"],
        "signaling_p50_ms": pct(signaling, 0.5), "signaling_p99_ms": pct(signaling, 0.99),
        "rss_connected_bytes": rss_connected, "rss_window_peak_bytes": rss_window, "rss_peak_bytes": peak_rss,
        "server_cpu_percent": cpu_pct, "machine_cpu_percent": machine_pct,
    }

    def ms(a, b):
        return "-" if a is None else f"{a:.1f} / {b:.1f} ms"

    def met(ok: bool) -> str:
        return "met" if ok else "**not met**"

    n = numbers
    delivered = n["presence_deliveries"] / n["presence_expected"] if n["presence_expected"] else 0.0
    rows = [
        ("import of users (no passwords)", f"{n['users']:,} in {n['import_s']:.1f} s", "<= 60 s (SQLite)",
         met(n["import_s"] <= 60)),
        ("pages connected", f"{n['pages_connected']:,} of {n['pages']:,}" + (f", {n['pages_dropped']} dropped"
                                                                            if n["pages_dropped"] else ""),
         "all", met(n["pages_connected"] == n["pages"] and not n["pages_dropped"])),
        ("subscriptions", f"{n['subscriptions']:,} ({subs_n} per page of {n['popular']:,} popular)", "", ""),
        ("directory search p50 / p99", ms(n["search_p50_ms"], n["search_p99_ms"])
         + f" ({n['search_n']:,} at {args.search_rate:g}/s)", "p99 <= 50 ms",
         met(n["search_p99_ms"] is not None and n["search_p99_ms"] <= 50)),
        ("presence delivery p50 / p99", ms(n["presence_p50_ms"], n["presence_p99_ms"])
         + f" ({n['presence_deliveries']:,} deliveries of {n['presence_changes']:,} changes, {delivered:.1%} of "
           f"expected)", "p99 <= 200 ms",
         met(n["presence_p99_ms"] is not None and n["presence_p99_ms"] <= 200 and delivered >= 0.999)),
        ("signaling p50 / p99 (6-peer room)", ms(n["signaling_p50_ms"], n["signaling_p99_ms"])
         + f" ({n['signaling_n']:,} offers)", "p99 <= 20 ms",
         met(n["signaling_p99_ms"] is not None and n["signaling_p99_ms"] <= 20 and not n["signaling_lost"])),
        ("server RSS peak", f"{n['rss_peak_bytes'] / 2**20:,.0f} MiB (VmHWM, sign-ins' argon2 included; "
                            f"pages up {n['rss_connected_bytes'] / 2**20:,.0f} MiB, during the run "
                            f"{n['rss_window_peak_bytes'] / 2**20:,.0f} MiB)", "<= 1.5 GiB",
         met(0 < n["rss_peak_bytes"] <= 1.5 * GIB)),
        ("server CPU", f"{n['server_cpu_percent']:.0f} % of one core (machine {n['machine_cpu_percent']:.0f} % busy)",
         "", ""),
    ]
    print(f"\n{n['users']:,} + {password_n} users ({store}), {n['pages']:,} pages in {n_proc} processes, "
          f"{args.changes_per_min:g} presence changes/min, {args.duration:g} s; machine: {machine}\n")
    print("| measure | value | target | |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    problems = {k: v for k, v in {"page failures": n["page_failures"], "search answers": {
        s: c for s, c in n["search_statuses"].items() if s != "200"}, "searches skipped": n["search_skipped"],
        "driver errors": n["presence_driver_errors"], "unmatched presence": n["presence_unmatched"],
        "offers lost": n["signaling_lost"]}.items() if v}
    if problems:
        print(f"\nproblems: {problems}")
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
