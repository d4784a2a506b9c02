"""The `p2pconf` command as an admin or QA engineer runs it: serve, then bots against it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

P2PCONF = [sys.executable, "-m", "p2pconf.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    """Start `p2pconf serve` with extra args; yields its base URL."""
    procs = []

    def start(*extra: str) -> str:
        port = free_port()
        proc = subprocess.Popen([*P2PCONF, "serve", "--port", str(port), "--data", str(tmp_path / "data"), *extra],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return url
            except OSError:
                time.sleep(0.1)  # bounded by the deadline above
        raise AssertionError(f"server did not come up: {proc.stdout.read() if proc.poll() is not None else ''}")

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


def bots(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([*P2PCONF, "bots", *args], capture_output=True, text=True, timeout=timeout)


def test_bots_report_a_full_mesh_and_write_json(served, tmp_path):
    url = served("--open-rooms")
    out = tmp_path / "report.json"
    run = bots("--server", url, "--room", "cli", "--count", "3", "--duration", "3", "--processes", "2",
               "--json", str(out))
    assert run.returncode == 0, run.stderr
    assert "3 participants, 12/12 tracks flowing" in run.stdout
    assert "tracks" in run.stderr  # progress was shown
    report = json.loads(out.read_text())
    assert report["tracks_expected"] == report["tracks_flowing"] == 12
    assert report["processes"] == 2  # bots from two processes merged into one report
    assert {(l["from"], l["to"]) for l in report["links"]} == {
        (f"bot-{i}", f"bot-{j}") for i in (1, 2, 3) for j in (1, 2, 3) if i != j}


def test_bots_exit_nonzero_with_a_reason_when_the_room_is_full(served):
    url = served("--max-room-size", "2", "--open-rooms")
    for processes in ("1", "2"):
        run = bots("--server", url, "--room", "tiny", "--count", "3", "--duration", "1", "--processes", processes)
        assert run.returncode == 1
        assert run.stderr.strip().splitlines()[-1].startswith("p2pconf bots: the server refused: room-full")


def test_bots_exit_nonzero_when_no_server_answers():
    run = bots("--server", f"http://127.0.0.1:{free_port()}", "--count", "2", "--duration", "1", "--processes", "1")
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("p2pconf bots:") and "Connect" in last


def test_bad_arguments_are_refused_clearly():
    run = bots("--video", "huge")
    assert run.returncode == 2 and "320x240@15" in run.stderr
    run = bots("--count", "0")
    assert run.returncode == 2 and "--count" in run.stderr
