"""The report's arithmetic, from hand-made bot results."""

from __future__ import annotations

from p2pconf.bots.report import build_report, format_table


def received(frames: int, first_at: float = 10.0, numbers=(), **extra) -> dict:
    return {"first_at": first_at if frames else None, "last_at": first_at + 5 if frames else None, "frames": frames,
            "payload_bytes": 50_000, "packets": frames, "packets_lost": 0, "jitter_ms": 1.0,
            "numbers": list(numbers), "latencies_ms": [70, 80, 90], "bad_stamps": 0, "tone_hz": 500.0, **extra}


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
