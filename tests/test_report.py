"""The report's arithmetic, its files, and freeze counting, from hand-made data."""

from __future__ import annotations

import json

import jsonschema
import pytest

from p2pconf.bots.measure import FreezeDetector, StreamCounter
from p2pconf.bots.report import build_report, format_table
from p2pconf.bots.report_html import render_html, write_report

from .conftest import REPORT_SCHEMA



def sample(at: float, kbps: float = 200.0) -> dict:
    return {"at": at, "kbps": kbps, "fps": 15.0, "loss_pct": 0.0, "jitter_ms": 1.0, "latency_ms": 70.0}


def received(frames: int, first_at: float = 10.0, numbers=(), **extra) -> dict:
    return {"first_at": first_at if frames else None, "last_at": first_at + 5 if frames else None, "frames": frames,
            "bytes": 50_000, "ssrcs": [1234], "packets": frames, "packets_lost": 0, "jitter_ms": 1.0,
            "numbers": list(numbers), "latencies_ms": [70, 80, 90], "bad_stamps": 0, "tone_hz": 500.0,
            "series": [sample(11.0), sample(12.0, 300.0)], "freezes": 0, "frozen_s": 0.0, **extra}


def bot(name: str, index: int, links: dict, video: bool = True) -> dict:
    return {"name": name, "index": index, "id": name, "joined_at": 9.0, "tone_hz": 400.0 + 100 * index,
            "video": "320x240@15" if video else None, "frames_sent": {}, "errors": [], "links": links}


def test_a_bot_with_a_browser_expects_the_browsers_tracks_and_counts_frames_from_stamps():
    browser_link = {"peer_id": "b", "media": {"mode": "audio+video", "mic": True, "cam": True}, "states": [],
                    "sent": {}, "received": {"audio": received(50), "video": received(20)}}
    other_bot = {"peer_id": "x", "media": {}, "states": [], "sent": {"video": {"first": 0, "offered": 10}},
                 "received": {"audio": received(50), "video": received(9, numbers=range(9))}}
    reply = {"peer_id": "y", "media": {}, "states": [], "sent": {"video": {"first": 0, "offered": 10}},
             "received": {"audio": received(50), "video": received(10, numbers=range(10))}}
    report = build_report([bot("bot-1", 1, {"Browser": browser_link, "bot-2": other_bot}),
                           bot("bot-2", 2, {"bot-1": reply})], stopped_at=20.0)
    assert report["tracks_expected"] == 4 + 2  # two bots both ways, plus the browser's audio and video
    assert report["tracks_flowing"] == 6 and report["mesh_formed"]
    assert report["video_frames_delivered_ratio"] == round(19 / 20, 4)  # 9 of 10 plus 10 of 10
    assert report["join_to_mesh_s"] == 1.0 and report["duration_s"] == 11.0
    link = next(l for l in report["links"] if (l["from"], l["to"], l["kind"]) == ("bot-2", "bot-1", "video"))
    assert (link["frames_sent"], link["frames_delivered"], link["latency_ms"]) == (10, 9, 80.0)
    assert "6/6 tracks flowing" in format_table(report)


def test_a_silent_participant_means_the_mesh_did_not_form():
    silent = {"peer_id": "b", "media": {"mode": "audio-only"}, "states": [], "sent": {},
              "received": {"audio": received(0)}}
    report = build_report([bot("bot-1", 1, {"Browser": silent})], stopped_at=20.0)
    assert (report["tracks_expected"], report["tracks_flowing"], report["mesh_formed"]) == (1, 0, False)
    assert report["missing"] == ["Browser->bot-1 audio"] and report["join_to_mesh_s"] is None


def two_bot_report(name_2: str = "bot-2") -> dict:
    sent = {"video": {"first": 0, "offered": 10, "rtt_series": [(11.1, 4.0), (12.1, 5.0)]}}
    one = {"peer_id": "x", "media": {}, "states": [], "sent": sent,
           "received": {"audio": received(50), "video": received(10, numbers=range(10), freezes=2, frozen_s=0.9)}}
    two = {"peer_id": "y", "media": {}, "states": [], "sent": sent,
           "received": {"audio": received(50), "video": received(10, numbers=range(10))}}
    return build_report([bot("bot-1", 1, {name_2: one}), bot(name_2, 2, {"bot-1": two})], stopped_at=20.0)


def test_links_carry_wire_kbps_freezes_and_a_series_timed_from_the_first_join():
    report = two_bot_report()
    jsonschema.validate(report, REPORT_SCHEMA)
    link = next(l for l in report["links"] if (l["from"], l["to"], l["kind"]) == ("bot-2", "bot-1", "video"))
    assert link["kbps"] == 80.0  # 50 000 bytes in the 5 s between first and last frame
    assert (link["bytes"], link["seconds"], link["freezes"], link["frozen_s"]) == (50_000, 5.0, 2, 0.9)
    assert [s["t"] for s in link["series"]] == [2.0, 3.0]  # joined at 9.0
    assert [s["rtt_ms"] for s in link["series"]] == [4.0, 5.0]  # the sender's nearest sample
    assert report["duration_s"] == 11.0


def test_the_schema_refuses_a_report_without_series():
    report = two_bot_report()
    del report["links"][0]["series"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, REPORT_SCHEMA)


def test_report_files_are_json_and_a_self_contained_page_with_three_plots(tmp_path):
    hostile = "<script>alert(1)</script> $x^2$"
    json_path, html_path = write_report(two_bot_report(hostile), tmp_path / "out")
    assert json.loads(json_path.read_text())["participants"] == 2
    page = html_path.read_text()
    assert page.count("<svg") == 3
    assert "<script" not in page and "&lt;script&gt;" in page  # names are text, in the table and the plots
    assert not any(ref in page for ref in ('src="', "<link", "@import", 'href="http'))  # nothing from elsewhere
    assert "mesh formed" in page and "<b>4/4</b>" in page  # 4 tracks between two bots


def test_the_page_plots_frame_rate_and_picture_size_beside_the_bitrate_of_each_link():
    report = two_bot_report()
    video = next(l for l in report["links"] if l["kind"] == "video")
    video["series"][0].update(width=640, height=360)
    video["series"][1].update(width=160, height=90, fps=7.5)  # a thumbnail now
    jsonschema.validate(report, REPORT_SCHEMA)
    page = render_html(report)
    for text in ("video kbps", "video fps", "picture size", "640×360", "160×90", "audio kbps"):
        assert f">{text}<" in page, text


def test_a_page_for_a_failed_audio_only_run_still_renders():
    silent = {"peer_id": "b", "media": {"mode": "audio-only"}, "states": [], "sent": {},
              "received": {"audio": received(0, series=[])}}
    page = render_html(build_report([bot("bot-1", 1, {"Browser": silent}, video=False)], stopped_at=20.0))
    assert "mesh did NOT form" in page and "no video samples" in page


def frames(detector: FreezeDetector, start: float, count: int, interval: float = 1 / 15) -> float:
    for i in range(count):
        detector.frame(start + i * interval)
    return start + (count - 1) * interval


def test_a_gap_of_three_frame_intervals_is_a_freeze_and_a_shorter_one_is_not():
    detector = FreezeDetector()
    last = frames(detector, 0.0, 30)
    detector.frame(last + 0.2)  # 3 x 66.7 ms = 200 ms, but the mean + 150 ms = 216.7 ms is the bar
    assert detector.count == 0
    last = frames(detector, last + 0.2, 30)
    detector.frame(last + 0.5)
    assert detector.count == 1 and detector.frozen_s == pytest.approx(0.5)


def test_at_a_low_frame_rate_the_bar_is_three_intervals():
    detector = FreezeDetector()
    last = frames(detector, 0.0, 10, interval=0.2)  # 5 fps: max(600 ms, 350 ms) = 600 ms
    detector.frame(last + 0.55)
    assert detector.count == 0
    detector.frame(last + 0.55 + 0.8)  # the mean is now 235 ms: the bar 705 ms
    assert detector.count == 1


def test_loss_comes_from_gaps_in_the_sequence_even_across_a_wrap():
    counter = StreamCounter(90_000)
    for seq in [65530, 65531, 65533, 65535, 0, 1, 3]:  # 65532, 65534 and 2 never arrive
        counter.add(seq, timestamp=0, arrival_ms=0)
    assert (counter.received, counter.lost) == (7, 3)
    counter.add(2, timestamp=0, arrival_ms=0)  # late, not lost after all
    assert counter.lost == 2


def test_jitter_follows_rfc_3550():
    steady, shaky = StreamCounter(48_000), StreamCounter(48_000)
    for i in range(200):  # 20 ms packets; the shaky stream arrives 0 or 10 ms late in turn
        steady.add(i, timestamp=i * 960, arrival_ms=i * 20)
        shaky.add(i, timestamp=i * 960, arrival_ms=i * 20 + (10 if i % 2 else 0))
    assert steady.jitter_ms == 0.0
    assert shaky.jitter_ms == pytest.approx(10.0, abs=0.5)  # |D| is 10 ms every packet
