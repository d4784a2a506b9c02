"""Capacity runs: bots in network namespaces with shaped uplinks (needs root, as CI runs it)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from .conftest import wait_until

from p2pconf import netlab
from p2pconf.cli import parser
from p2pconf.capacity import capacity_table, parse_counts, parse_uplinks, verdict

P2PCONF = [sys.executable, "-m", "p2pconf"]


def namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


def test_a_tiny_matrix_tells_a_thin_uplink_from_a_wide_one(tmp_path):
    before = namespaces()
    done = subprocess.run([*P2PCONF, "capacity", "--count", "2..3", "--uplink", "0.3,4", "--duration", "3",
                           "--report", str(tmp_path)], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "capacity.json").read_text())
    assert len(result["runs"]) == 6  # every combination, and each size once without a limit
    assert all(r["ok"] for r in result["runs"] if r["uplink_mbit"] is None), result["runs"]
    assert result["table"] == [{"uplink_mbit": 0.3, "largest_mesh": None, "limited_by": "uplink"},
                               {"uplink_mbit": 4.0, "largest_mesh": 3, "limited_by": "sizes"}]
    thin = next(r for r in result["runs"] if (r["uplink_mbit"], r["count"]) == (0.3, 2))
    # 0.3 Mbit/s carries less than one ~300 kbit/s stream: frames or packets go missing.
    assert thin["worst_loss_pct"] >= 2 or thin["worst_fps"] < 10
    assert "| 4 Mbit/s | 3 | the largest size measured |" in done.stdout
    assert (tmp_path / "capacity.html").read_text().count("<svg") == 1
    assert (tmp_path / "runs" / "uplink-4-bots-3" / "report.html").exists()
    assert namespaces() == before  # the run removed what it made


async def test_stopping_a_run_removes_its_namespaces(tmp_path):
    before = namespaces()
    with subprocess.Popen([*P2PCONF, "capacity", "--count", "3", "--uplink", "4", "--duration", "30",
                           "--report", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as run:
        try:
            await wait_until(lambda: len(namespaces() - before) == 4, timeout=30, step=0.2)  # hub and 3 hosts
            run.send_signal(signal.SIGTERM)
            assert run.wait(timeout=30) == 128 + signal.SIGTERM
        finally:
            run.kill()
    assert namespaces() == before


def veths() -> set[str]:
    listed = subprocess.run(["ip", "-o", "link", "show", "type", "veth"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip() for line in listed.splitlines() if line.strip()}


def test_the_lab_is_removed_even_when_building_it_fails(monkeypatch):
    """The build fails at its very last step, with the hub, both hosts and their veths made."""
    prefix = f"p2pct{os.getpid()}"

    def ours() -> set[str]:  # only this test's: others may run labs on this machine at the same time
        return {n for n in namespaces() if n.startswith(prefix)}

    veths_before = veths()
    done: list[tuple[str, ...]] = []
    real_ip = netlab._ip

    def ip(*args: str) -> None:
        if args == ("-n", f"{prefix}-h2", "link", "set", "lo", "up"):
            raise netlab.LabError("ip: the last step fails")
        real_ip(*args)
        done.append(args)

    monkeypatch.setattr(netlab, "_ip", ip)
    try:
        with pytest.raises(netlab.LabError, match="the last step fails"):
            with netlab.Lab(2, prefix=prefix):
                pass
        # It did build: the hub with its bridge, both host namespaces and both veth pairs.
        assert {("netns", "add", f"{prefix}-{n}") for n in ("hub", "h1", "h2")} <= set(done)
        assert [a[2] for a in done if a[:2] == ("link", "add")] == ["h1", "h2"]
        assert ours() == set()  # every namespace, and with them the bridge and the veths, is gone
        assert veths() == veths_before
    finally:
        for namespace in ours():  # a broken cleanup must not leave them on the machine
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


def test_without_root_it_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # an unprivileged admin
    args = parser().parse_args(["capacity", "--count", "2", "--uplink", "1", "--report", str(tmp_path)])
    assert args.func(args) == 2
    assert "needs root" in capsys.readouterr().err
    assert not (tmp_path / "capacity.json").exists()


@pytest.mark.parametrize("count, uplink", [("1..3", "1"), ("2..7", "1"), ("two", "1"), ("2", "0"), ("2", "fast")])
def test_bad_arguments_are_refused_before_anything_is_built(tmp_path, count, uplink):
    done = subprocess.run([*P2PCONF, "capacity", "--count", count, "--uplink", uplink, "--report", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("p2pconf capacity: --")


def kernel_has_netem() -> bool:
    """Ask the kernel directly (not the code under test): can tc add a netem qdisc?"""
    done = subprocess.run(["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                          capture_output=True, text=True)
    assert done.returncode == 0 or "qdisc kind is unknown" in done.stderr, done.stderr  # nothing else may fail
    return done.returncode == 0


def capacity_with_netem(tmp_path) -> tuple[subprocess.CompletedProcess, set[str], set[str]]:
    """Run a tiny capacity with --delay 40 --loss 1; returns it, and the run's namespaces seen during and after it."""
    seen: set[str] = set()
    with subprocess.Popen([*P2PCONF, "capacity", "--count", "2", "--uplink", "8", "--delay", "40", "--loss", "1",
                           "--duration", "3", "--report", str(tmp_path)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as run:
        prefix = f"p2pc{run.pid}-"
        try:
            deadline = time.monotonic() + 120
            while run.poll() is None and time.monotonic() < deadline:
                seen |= {n for n in namespaces() if n.startswith(prefix)}
                time.sleep(0.05)  # a bounded poll: how the run ends is what is checked
            stdout, stderr = run.communicate(timeout=10)
        finally:
            run.kill()
    left = {n for n in namespaces() if n.startswith(prefix)}
    return subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr), seen, left


def test_without_netem_loss_and_delay_are_refused_before_anything_is_built(tmp_path):
    if kernel_has_netem():
        pytest.skip("this kernel has netem: the next test checks what it does")
    done, seen, left = capacity_with_netem(tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"p2pconf capacity: {netlab.NO_NETEM}\n"
    assert "--loss and --delay need it" in done.stderr
    assert seen == set() and left == set()  # not built and cleaned up: never built
    assert not any(tmp_path.iterdir())


def test_with_netem_the_added_delay_shows_in_every_round_trip(tmp_path):
    if not kernel_has_netem():
        pytest.skip("this kernel has no netem: the test above checks the refusal")
    done, _, left = capacity_with_netem(tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "runs" / "uplink-8-bots-2" / "report.json").read_text())
    rtts = [l["rtt_ms"] for l in report["links"] if l["rtt_ms"] is not None]
    assert rtts and all(rtt >= 70 for rtt in rtts), rtts  # 2 x 40 ms, one way each
    assert left == set()


def test_loss_and_delay_go_into_netem_in_front_of_the_rate_limit():
    """Runs on every kernel: the tc commands a --loss/--delay run would give."""
    assert not any("netem" in c for c in netlab.shaping(8))
    assert netlab.shaping(8, loss_pct=1, delay_ms=40)[1:] == [
        ["qdisc", "add", "dev", "eth0", "root", "handle", "1:", "netem", "delay", "40ms", "loss", "1%"],
        ["qdisc", "add", "dev", "eth0", "parent", "1:", "handle", "2:", "tbf", "rate", "8000000bit",
         "burst", "10000", "latency", "200ms"]]


def test_the_netem_check_trusts_only_a_clear_answer(monkeypatch):
    """Runs on every kernel: unknown qdisc kind means no netem; other failures decide nothing."""
    answers = iter([(0, ""), (2, "Error: Specified qdisc kind is unknown.\n"),
                    (1, "unshare: Operation not permitted\n")])
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")

    def run(command, **kwargs):
        code, err = next(answers)
        return subprocess.CompletedProcess(command, code, stdout="", stderr=err)

    monkeypatch.setattr(subprocess, "run", run)
    assert [netlab.has_netem() for _ in range(3)] == [True, False, None]


def test_parsing_and_the_table():
    assert parse_counts("2..4") == [2, 3, 4] and parse_counts("6,2") == [2, 6]
    assert parse_uplinks("8,1,2.5") == [1.0, 2.5, 8.0]
    def run(uplink, count, ok):
        return {"uplink_mbit": uplink, "count": count, "ok": ok}

    control = [run(None, 2, True), run(None, 3, True), run(None, 4, False)]  # 4 is too much for this CPU
    runs = control + [run(1.0, 2, True), run(1.0, 3, False), run(1.0, 4, False),
                      run(2.0, 2, True), run(2.0, 3, True), run(2.0, 4, False),
                      run(8.0, 2, False), run(8.0, 3, False), run(8.0, 4, False)]
    assert capacity_table(runs, [1.0, 2.0, 8.0]) == [
        {"uplink_mbit": 1.0, "largest_mesh": 2, "limited_by": "uplink"},
        {"uplink_mbit": 2.0, "largest_mesh": 3, "limited_by": "machine"},
        {"uplink_mbit": 8.0, "largest_mesh": None, "limited_by": "uplink"}]
    assert capacity_table([run(None, 2, True), run(1.0, 2, True)], [1.0])[0]["limited_by"] == "sizes"


def test_a_run_fits_only_when_every_link_keeps_ten_fps_and_under_two_percent_loss():
    def report(fps: float, loss: float) -> dict:
        return {"mesh_formed": True, "tracks_flowing": 2, "tracks_expected": 2, "links": [
            {"kind": "video", "frames": int(fps * 10), "seconds": 10.0, "loss_pct": loss, "kbps": 200.0},
            {"kind": "audio", "loss_pct": 0.0, "kbps": 60.0}]}

    assert verdict(report(15, 0.0))["ok"]
    assert not verdict(report(9.9, 0.0))["ok"]
    assert not verdict(report(15, 2.0))["ok"]
    assert not verdict({**report(15, 0.0), "mesh_formed": False})["ok"]
