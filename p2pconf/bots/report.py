"""Turn what every bot measured into the report of docs/report.md, and print it."""

from __future__ import annotations

import bisect
import statistics
from typing import Any

Message = dict[str, Any]


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def _series(got: Message, rtts: list[tuple[float, float]], start: float) -> list[Message]:
    """The receiver's per-second samples, timed from the run's start, with the sender's RTT.

    The sender samples on its own clock tick: each sample takes the sender's RTT sample
    nearest in time (`rtts` is in time order), if one is within 1.5 s.
    """
    times = [at for at, _ in rtts]
    out = []
    for sample in got["series"]:
        at = sample["at"]
        i = bisect.bisect_left(times, at)
        near = min((j for j in (i - 1, i) if 0 <= j < len(rtts)), key=lambda j: abs(times[j] - at), default=None)
        rtt = rtts[near][1] if near is not None and abs(times[near] - at) <= 1.5 else None
        out.append({"t": round(at - start, 2), "width": None, "height": None,
                    **{k: v for k, v in sample.items() if k != "at"}, "rtt_ms": rtt})
    return out


def _link(sender: Message | None, receiver: Message, sender_name: str, kind: str, got: Message, start: float) -> Message:
    sent = (sender or {}).get("links", {}).get(receiver["name"], {}).get("sent", {}).get(kind, {})
    seconds = (got["last_at"] - got["first_at"]) if got["first_at"] and got["last_at"] else 0.0
    total = got["packets"] + got["packets_lost"]
    link: Message = {
        "from": sender_name,
        "to": receiver["name"],
        "kind": kind,
        "kbps": round(got["bytes"] * 8 / seconds / 1000, 1) if seconds > 0 else 0.0,
        "bytes": got["bytes"],
        "seconds": round(seconds, 3),
        "ssrcs": got["ssrcs"],
        "loss_pct": round(100.0 * got["packets_lost"] / total, 2) if total else 0.0,
        "rtt_ms": sent.get("rtt_ms"),
        "jitter_ms": got["jitter_ms"],
    }
    if kind in ("video", "screen"):
        link["frames"] = got["frames"]
        link["freezes"] = got["freezes"]
        link["frozen_s"] = got["frozen_s"]
        link["latency_ms"] = _median(got["latencies_ms"])
        link["decoded"] = got.get("decoded", 0)
        link["bad_pictures"] = got.get("bad_pictures", 0)
        if sent.get("first") is not None:
            first, offered = sent["first"], sent["offered"]
            link["frames_sent"] = offered
            link["frames_delivered"] = sum(1 for n in got["numbers"] if first <= n < first + offered)
    else:
        link["packets"] = got["packets"]
        link["tone_hz"] = got["tone_hz"]
        if sender is not None:
            link["expected_tone_hz"] = sender["tone_hz"]
    link["series"] = _series(got, sent.get("rtt_series", []), start)
    return link


def build_report(results: list[Message], *, stopped_at: float, extra: Message | None = None) -> Message:
    """The run's report from each bot's `Bot.results()` (keys documented in docs/report.md)."""
    bots = {r["name"]: r for r in results}
    joins = [r["joined_at"] for r in results if r["joined_at"]]
    start = min(joins) if joins else stopped_at
    links: list[Message] = []
    for receiver in results:
        for sender_name, entry in sorted(receiver["links"].items()):
            for kind, got in sorted(entry["received"].items()):
                links.append(_link(bots.get(sender_name), receiver, sender_name, kind, got, start))
    links.sort(key=lambda l: (l["from"], l["to"], l["kind"]))

    # Expected: every ordered pair of bots, for each kind the sender sends; and every
    # other participant (a browser) a bot is connected to, for the kinds its mode sends.
    expected = {
        (s["name"], r["name"], kind)
        for s in results
        for r in results
        if s is not r
        for kind in (("audio", "video") if s["video"] else ("audio",))
    } | {
        (name, r["name"], kind)
        for r in results
        for name, entry in r["links"].items()
        if name not in bots
        for kind in (("audio",) if entry["media"].get("mode") == "audio-only" else ("audio", "video"))
    }
    flowing = {
        (sender, r["name"], kind)
        for r in results
        for sender, entry in r["links"].items()
        for kind, got in entry["received"].items()
        if got["frames"] > 0
    } & expected
    firsts = [
        bots[to]["links"][frm]["received"][kind]["first_at"] for frm, to, kind in flowing
    ]
    mesh_formed = bool(expected) and flowing == expected
    video = [l for l in links if l["kind"] == "video" and "frames_sent" in l and l["from"] in bots]
    sent_total = sum(l["frames_sent"] for l in video)
    checked = {l["from"] for l in video if l["decoded"]}
    return {
        "participants": len(results),
        "tracks_expected": len(expected),
        "tracks_flowing": len(flowing),
        "mesh_formed": mesh_formed,
        "join_to_mesh_s": round(max(firsts) - min(joins), 3) if mesh_formed and joins else None,
        "video_frames_delivered_ratio": (
            round(sum(l["frames_delivered"] for l in video) / sent_total, 4) if sent_total else None
        ),
        "duration_s": round(stopped_at - start, 2),
        "missing": [f"{f}->{t} {k}" for f, t, k in sorted(expected - flowing)],
        "pictures_decoded": sum(l["decoded"] for l in video),
        "pictures_bad": sum(l["bad_pictures"] for l in video),
        "senders_unchecked": sorted({l["from"] for l in video} - checked),
        **(extra or {}),
        "links": links,
    }


def format_table(report: Message) -> str:
    """The per-link table printed at the end of a run."""
    head = f"{'from':<12} {'to':<12} {'kind':<5} {'kbps':>7} {'frames':>7} {'loss%':>6} {'rtt ms':>7} {'jit ms':>7} {'lat ms':>7} {'tone Hz':>8}"
    rows = [head, "-" * len(head)]

    def cell(value: Any, width: int) -> str:
        return f"{'-' if value is None else value:>{width}}"

    for l in report["links"]:
        count = l.get("frames", l.get("packets"))
        rows.append(
            f"{l['from'][:12]:<12} {l['to'][:12]:<12} {l['kind']:<5} {cell(l['kbps'], 7)} {cell(count, 7)} "
            f"{cell(l['loss_pct'], 6)} {cell(l['rtt_ms'], 7)} {cell(l['jitter_ms'], 7)} "
            f"{cell(l.get('latency_ms'), 7)} {cell(l.get('tone_hz'), 8)}"
        )
    ratio = report["video_frames_delivered_ratio"]
    rows.append("")
    rows.append(
        f"{report['participants']} participants, {report['tracks_flowing']}/{report['tracks_expected']} tracks flowing, "
        f"join to mesh {report['join_to_mesh_s'] if report['join_to_mesh_s'] is not None else '-'} s, "
        f"video frames delivered {'-' if ratio is None else f'{ratio:.1%}'}"
    )
    if report.get("pictures_decoded"):
        unchecked = report.get("senders_unchecked") or []
        rows.append(f"pictures decoded to check them: {report['pictures_decoded']}, wrong: {report['pictures_bad']}"
                    + (f"; not checked: {', '.join(unchecked)}" if unchecked else ""))
    return "\n".join(rows)
