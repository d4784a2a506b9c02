"""Capacity runs: bots in network namespaces with shaped uplinks (needs root, as CI runs it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

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


def test_the_lab_is_removed_even_when_building_it_fails():
    before = namespaces()
    lab = netlab.Lab(2, prefix="p2pctest")
    lab.namespaces.append("p2pctest-hub")  # already taken: building must fail and clean up
    subprocess.run(["ip", "netns", "add", "p2pctest-hub"], check=True)
    with pytest.raises(netlab.LabError):
        with netlab.Lab(2, prefix="p2pctest"):
            pass
    lab.close()
    assert namespaces() == before


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


def test_loss_and_delay_need_netem_and_say_so_when_the_kernel_lacks_it(tmp_path):
    before = namespaces()
    done = subprocess.run([*P2PCONF, "capacity", "--count", "2", "--uplink", "8", "--delay", "40", "--loss", "1",
                           "--duration", "3", "--report", str(tmp_path)], capture_output=True, text=True, timeout=120)
    if "no netem" in done.stderr:  # this kernel (CI's firecracker VM) has no sch_netem
        assert done.returncode == 1 and not (tmp_path / "capacity.json").exists()
    else:  # with netem, the added delay shows in every link's round trip (2 x 40 ms)
        assert done.returncode == 0, done.stderr
        report = json.loads((tmp_path / "runs" / "uplink-8-bots-2" / "report.json").read_text())
        assert all(l["rtt_ms"] is None or l["rtt_ms"] >= 70 for l in report["links"])
    assert namespaces() == before


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
