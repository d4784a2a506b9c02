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

from p2pconf import capacity, netlab
from p2pconf.cli import parser
from p2pconf.capacity import capacity_table, parse_counts, parse_uplinks, verdict

P2PCONF = [sys.executable, "-m", "p2pconf"]


def namespaces(prefix: str = "") -> set[str]:
    """The machine's named network namespaces whose names start with `prefix`.

    Tests look at their own prefix only: other tests (tests/firefox.py) make namespaces at the same time.
    """
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {name for line in listed.splitlines() if line.strip() and (name := line.split()[0]).startswith(prefix)}


def lab_prefix(pid: int) -> str:
    """The namespaces of the capacity run in process `pid` (netlab.Lab's default prefix)."""
    return f"p2pc{pid}-"


def capacity_run(tmp_path, *args: str, timeout: float = 300) -> tuple[subprocess.CompletedProcess, int]:
    """`p2pconf capacity ARGS --report tmp_path`, bounded; its outcome and its pid (the lab's prefix)."""
    with subprocess.Popen([*P2PCONF, "capacity", *args, "--report", str(tmp_path)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as run:
        try:
            stdout, stderr = run.communicate(timeout=timeout)
        finally:
            run.kill()
    return subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr), run.pid


def test_a_tiny_matrix_tells_a_thin_uplink_from_a_wide_one(tmp_path):
    done, pid = capacity_run(tmp_path, "--count", "2..3", "--uplink", "0.3,4", "--duration", "3", timeout=240)
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
    assert namespaces(lab_prefix(pid)) == set()  # the run removed what it made


def test_real_browsers_take_the_first_seats_and_say_what_their_users_saw(tmp_path):
    done, pid = capacity_run(tmp_path, "--count", "3", "--uplink", "0.3,4", "--duration", "6", "--browsers", "2")
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "capacity.json").read_text())
    wide = next(r for r in result["runs"] if r["uplink_mbit"] == 4)
    assert wide["ok"] and wide["tracks"] == "4/4"  # the bot gets both browsers' audio and video
    browsers = wide["browsers"]
    assert [b["name"] for b in browsers] == ["Browser 1", "Browser 2"]
    for seen in browsers:
        assert seen["peers"] == seen["expected_peers"] == 2  # the other browser and the bot, moving
        # each browser shows the other in its centre: the page's own camera picture (640x360) at full
        # quality; the bot, a thumbnail, sends its fixed 320x240
        assert seen["centre"]["height"] == 360 and seen["centre"]["fps"] >= 10
        assert seen["thumbnail"]["height"] == 240
        assert seen["upload_kbps"] > 300
        assert seen["relayed"] == 0  # the lab's hosts reach each other directly
    thin = next(r for r in result["runs"] if r["uplink_mbit"] == 0.3)
    assert not thin["ok"]  # 0.3 Mbit/s cannot carry a browser's call with two others
    assert "| 3 | 2 | 4 Mbit/s | 360p at" in done.stdout
    assert (tmp_path / "capacity.html").read_text().count("<svg") == 2
    assert (tmp_path / "capacity-browsers.png").stat().st_size > 0
    assert namespaces(lab_prefix(pid)) == set()


def test_behind_strict_firewalls_bots_and_a_browser_talk_through_coturn(tmp_path):
    done, pid = capacity_run(tmp_path, "--count", "3", "--uplink", "4", "--duration", "6", "--relay",
                             "--browsers", "1")
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "capacity.json").read_text())
    assert result["relay"] is True
    for r in result["runs"]:
        assert r["ok"] and r["tracks"] == "8/8", r  # the bots get everyone's audio and video: through the relay
        seen = r["browsers"][0]
        assert seen["peers"] == seen["relayed"] == 2, seen  # the browser's every link is relayed
        # 3 participants send 2 streams each to the relay, which sends all 6 on: at least 6 thumbnails' worth
        assert r["relay_mbit"] > 0.5
    assert namespaces(lab_prefix(pid)) == set()
    assert subprocess.run(["pgrep", "-f", str(tmp_path / "relay")], capture_output=True).returncode == 1  # coturn ended


def test_without_chromium_browsers_are_refused_before_anything_is_built(tmp_path):
    done = subprocess.run([*P2PCONF, "capacity", "--count", "2", "--uplink", "4", "--browsers", "1",
                           "--report", str(tmp_path)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "P2PCONF_CHROMIUM": "/nonexistent/chromium"})
    assert done.returncode == 2
    assert done.stderr.strip() == ("p2pconf capacity: --browsers needs Debian's chromium (/nonexistent/chromium): "
                                   "apt-get install chromium")
    assert not (tmp_path / "capacity.json").exists()


async def test_stopping_a_run_removes_its_namespaces(tmp_path):
    with subprocess.Popen([*P2PCONF, "capacity", "--count", "3", "--uplink", "4", "--duration", "30",
                           "--report", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as run:
        try:
            await wait_until(lambda: len(namespaces(lab_prefix(run.pid))) == 4, timeout=30, step=0.2)  # hub, 3 hosts
            run.send_signal(signal.SIGTERM)
            assert run.wait(timeout=30) == 128 + signal.SIGTERM
        finally:
            run.kill()
    assert namespaces(lab_prefix(run.pid)) == set()


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


def delaylines(parent: int | None = None) -> set[int]:
    """Delay line processes (p2pconf/delayline.py) by pid: every one, or those `parent` started."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):  # ended meanwhile
            continue
        if b"p2pconf.delayline" in cmdline and parent in (None, ppid):
            found.add(int(pid))
    return found


ADDED_DELAY_MS, ADDED_LOSS_PCT = 40, 5


@pytest.fixture(scope="module")
def impaired_run(tmp_path_factory):
    """One tiny capacity run with added delay and loss: the run, its folder, and what was seen during and after it.

    netem where the kernel has it, nftables and the delay line where not: the same outcome either way.
    """
    folder = tmp_path_factory.mktemp("impaired")
    seen, lines = set(), set()
    with subprocess.Popen([*P2PCONF, "capacity", "--count", "2", "--uplink", "8", "--delay", str(ADDED_DELAY_MS),
                           "--loss", str(ADDED_LOSS_PCT), "--duration", "8", "--report", str(folder)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as run:
        try:
            deadline = time.monotonic() + 180
            while run.poll() is None and time.monotonic() < deadline:
                seen |= namespaces(lab_prefix(run.pid))
                lines |= delaylines(parent=run.pid)
                time.sleep(0.05)  # a bounded poll: how the run ends is what is checked
            stdout, stderr = run.communicate(timeout=10)
        finally:
            run.kill()
    left = namespaces(lab_prefix(run.pid))
    done = subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr)
    return done, folder, {"seen": seen, "left": left, "delaylines": lines, "delaylines_left": lines & delaylines()}


def run_report(folder, name: str) -> dict:
    return json.loads((folder / "runs" / name / "report.json").read_text())


def test_the_added_delay_shows_in_every_round_trip(impaired_run):
    done, folder, _ = impaired_run
    assert done.returncode == 0, done.stderr
    result = json.loads((folder / "capacity.json").read_text())
    assert result["impairment"] == ("netem" if kernel_has_netem() else "nftables")
    rtts = [l["rtt_ms"] for l in run_report(folder, "uplink-8-bots-2")["links"] if l["rtt_ms"] is not None]
    assert len(rtts) == 4, rtts  # both bots' audio and video
    # One delay each way (every uplink adds it), and not much more than that.
    assert all(2 * ADDED_DELAY_MS - 10 <= rtt <= 2 * ADDED_DELAY_MS + 60 for rtt in rtts), rtts
    control = [l["rtt_ms"] for l in run_report(folder, "uplink-none-bots-2")["links"] if l["rtt_ms"] is not None]
    assert control and all(rtt < ADDED_DELAY_MS for rtt in control), control  # the control runs unhindered


def test_the_added_loss_shows_as_measured_packet_loss(impaired_run):
    done, folder, _ = impaired_run
    assert done.returncode == 0, done.stderr
    links = run_report(folder, "uplink-8-bots-2")["links"]
    losses = [l["loss_pct"] for l in links]
    assert len(losses) == 4 and all(0 < loss < 3 * ADDED_LOSS_PCT for loss in losses), losses
    # Over the run's ~1,000 packets the mean is within about 3 standard deviations (0.7 % each) of what was added.
    assert ADDED_LOSS_PCT - 2.5 <= sum(losses) / len(losses) <= ADDED_LOSS_PCT + 2.5, losses
    assert all(l["loss_pct"] == 0 for l in run_report(folder, "uplink-none-bots-2")["links"])  # no loss in the control
    # Within its limit for a line that loses 5 % by itself, so 8 Mbit/s fits two bots.
    assert json.loads((folder / "capacity.json").read_text())["table"][0]["largest_mesh"] == 2


def test_an_impaired_run_leaves_no_namespace_and_no_delay_line(impaired_run):
    done, _, seen = impaired_run
    assert done.returncode == 0, done.stderr
    assert len(seen["seen"]) == 3 and seen["left"] == set()  # hub and two hosts, all gone
    if not kernel_has_netem():
        assert len(seen["delaylines"]) == 2  # one per host
    assert seen["delaylines_left"] == set()


async def test_stopping_an_impaired_run_removes_its_namespaces_and_delay_lines(tmp_path):
    with subprocess.Popen([*P2PCONF, "capacity", "--count", "3", "--uplink", "4", "--delay", "40", "--loss", "1",
                           "--duration", "30", "--report", str(tmp_path)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as run:
        try:
            await wait_until(lambda: len(namespaces(lab_prefix(run.pid))) == 4, timeout=30, step=0.2)  # hub, 3 hosts
            if not kernel_has_netem():  # the hosts' delay lines, once the limited runs begin
                await wait_until(lambda: len(delaylines(parent=run.pid)) == 3, timeout=90, step=0.2)
            lines = delaylines(parent=run.pid)
            run.send_signal(signal.SIGTERM)
            assert run.wait(timeout=30) == 128 + signal.SIGTERM
        finally:
            run.kill()
    assert namespaces(lab_prefix(run.pid)) == set()
    assert not lines & delaylines()


def test_a_delay_line_that_does_not_start_fails_the_lab_cleanly(monkeypatch):
    """Runs without netem only: the helper's module is wrong, so it never says ready."""
    if kernel_has_netem():
        pytest.skip("this kernel has netem: no delay line is used")
    prefix = f"p2pcd{os.getpid()}"
    monkeypatch.setattr(netlab, "DELAYLINE_MODULE", "p2pconf.no_such_module")
    try:
        with pytest.raises(netlab.LabError, match=r"the delay line in .*-h1 did not start: .*No module named"):
            with netlab.Lab(2, prefix=prefix) as lab:
                lab.shape(1, 8, 1, 40)
        assert namespaces(prefix) == set()
        assert delaylines(parent=os.getpid()) == set()
    finally:
        for namespace in namespaces(prefix):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


def test_a_failing_run_removes_the_rules_and_stops_the_delay_lines():
    """Runs without netem only: a run that fails with loss and delay in place."""
    if kernel_has_netem():
        pytest.skip("this kernel has netem: no delay line is used")
    prefix = f"p2pcf{os.getpid()}"
    try:
        with pytest.raises(RuntimeError, match="the run fails"):
            with netlab.Lab(2, prefix=prefix) as lab:
                for n in (1, 2):
                    lab.shape(n, 8, 1, 40)
                host = lab.host(1)
                rules = subprocess.run(["ip", "netns", "exec", host, "nft", "list", "ruleset"],
                                       capture_output=True, text=True).stdout
                assert "numgen random mod 10000 < 100 drop" in rules
                assert "lookup 77" in subprocess.run(["ip", "-n", host, "rule"], capture_output=True, text=True).stdout
                running = delaylines(parent=os.getpid())
                assert len(running) == 2
                raise RuntimeError("the run fails")
        assert namespaces(prefix) == set()  # with them their rules, routes and devices
        assert not running & delaylines()
    finally:
        for namespace in namespaces(prefix):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


def test_loss_and_delay_that_cannot_be_added_are_refused_in_one_line(tmp_path, monkeypatch, capsys):
    """Runs on every kernel: no netem and no nft, as on a machine without the nftables package."""
    monkeypatch.setattr(netlab, "has_netem", lambda: False)
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "nft" else real_which(name))
    monkeypatch.setattr(capacity, "run_capacity", lambda *args, **kwargs: pytest.fail("a run began"))
    args = parser().parse_args(["capacity", "--count", "2", "--uplink", "1", "--loss", "1",
                                "--report", str(tmp_path)])
    assert args.func(args) == 2
    assert capsys.readouterr().err == ("p2pconf capacity: this kernel has no netem qdisc, "
                                       "so --loss needs nftables: apt-get install nftables\n")
    assert not any(tmp_path.iterdir())


def test_without_netem_loss_goes_to_nftables_and_delay_to_the_delay_line(monkeypatch):
    """Runs on every kernel: the choice, and the rules a host gets."""
    monkeypatch.setattr(netlab, "has_netem", lambda: True)
    assert netlab.impairment(1, 0) == "netem" and netlab.impairment(0, 0) is None
    monkeypatch.setattr(netlab, "has_netem", lambda: False)
    assert netlab.impairment(1, 40) == "nftables"
    assert "oifname \"eth0\" numgen random mod 10000 < 150 drop" in netlab.loss_ruleset(1.5)
    assert not any("netem" in c for c in netlab.shaping(8, loss_pct=1, delay_ms=40, netem=False))
    assert netlab.delay_route(True) == ["ip", "rule", "add", "iif", "lo", "lookup", "77", "pref", "100"]


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
    # A line that loses 5 % by itself: the uplink may add 2 %, and chance as much again as the line's loss.
    assert verdict(report(15, 11.9), added_loss_pct=5)["ok"]
    assert not verdict(report(15, 12.0), added_loss_pct=5)["ok"]

    # With browsers: each browser's centre counts like a link, and each must see everyone else move.
    def browser(fps: float, loss: float = 0.0, peers: int = 2) -> dict:
        return {"peers": peers, "expected_peers": 2, "centre": {"height": 360, "fps": fps, "loss_pct": loss}}

    assert verdict(report(15, 0.0), browsers=[browser(14)])["ok"]
    assert not verdict(report(15, 0.0), browsers=[browser(14), browser(9)])["ok"]
    assert not verdict(report(15, 0.0), browsers=[browser(14, loss=2.0)])["ok"]
    assert not verdict(report(15, 0.0), browsers=[browser(14, peers=1)])["ok"]
    only_browsers = {"participants": 0, "mesh_formed": False, "links": [], "tracks_flowing": 0, "tracks_expected": 0}
    assert verdict(only_browsers, browsers=[browser(14), browser(14)])["ok"]
    assert not verdict(only_browsers)["ok"]
