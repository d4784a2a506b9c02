"""A server process SIGKILLed in the middle of a 6-way call of bots (scripts/restart_drill.py).

Two real `p2pconf serve --redis` processes, bots in two processes of their own. What
must hold: every track keeps flowing, every frame arrives, the killed process's bots
resume under their own ids (none joins again as a newcomer), and a newcomer on the
restarted process is introduced to all six. (Freezes around the kill are not yet zero:
see the README, "Restarts and several processes".)
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def load_drill():
    """scripts/restart_drill.py as a module its bot processes can import too (spawn)."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    return importlib.import_module("restart_drill")


def test_a_killed_process_costs_the_call_no_track_no_frame_and_no_renegotiation(redis_url):
    out = load_drill().drill(redis_url, before_s=4, after_s=10, video="160x120@15", audio_ms=60)
    assert out["tracks"] == "60/60", out["missing"]
    assert out["video_frames_delivered_ratio"] >= 0.99, out
    assert [out["resumed"][f"bot-{n}"] for n in (1, 3, 5)] == [1, 1, 1], out
    assert not any(out["rejoined"].values()), out
    assert out["newcomer_met_all"], out
    assert out["server_warnings"] == []
