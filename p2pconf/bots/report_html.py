"""The bots' report as files: report.json and a self-contained report.html with plots.

Plots are drawn with matplotlib's object API (no pyplot, no display) as inline SVG,
so the page needs nothing but itself. Names come from participants, browsers
included: they are escaped in the HTML and never parsed as mathtext in plots.
"""

from __future__ import annotations

import html
import io
import json
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from .report import format_table

Message = dict[str, Any]
PLOT_STYLE = {"text.parse_math": False, "svg.fonttype": "none", "font.size": 9}


def write_report(report: Message, folder: str | Path) -> tuple[Path, Path]:
    """Write report.json and report.html into `folder` (created if missing)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, html_path = folder / "report.json", folder / "report.html"
    json_path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    html_path.write_text(render_html(report), encoding="utf-8")
    return json_path, html_path


def svg(figure: Figure) -> str:
    """A figure as an inline <svg> element."""
    out = io.StringIO()
    figure.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = out.getvalue()
    return text[text.index("<svg") :]


def participants(report: Message) -> list[str]:
    return sorted({l["from"] for l in report["links"]} | {l["to"] for l in report["links"]})


def pair_matrix(report: Message, key: str, combine=sum) -> list[list[float | None]]:
    """N x N values of `key` per (sender row, receiver column), audio and video combined."""
    names = participants(report)
    cells: dict[tuple[str, str], list[float]] = {}
    for l in report["links"]:
        if l.get(key) is not None:
            cells.setdefault((l["from"], l["to"]), []).append(l[key])
    return [[combine(cells[(a, b)]) if (a, b) in cells else None for b in names] for a in names]


def bitrate_plot(report: Message) -> str:
    """Per link over time: video kbit/s, frames per second and picture size, then audio kbit/s."""
    video = [l for l in report["links"] if l["kind"] in ("video", "screen")]
    audio = [l for l in report["links"] if l["kind"] == "audio"]
    sizes: dict[int, set[str]] = {}  # picture height -> "WxH" seen at it
    with matplotlib.rc_context(PLOT_STYLE):
        figure = Figure(figsize=(9, 9), layout="constrained")
        kbps, fps, size, heard = figure.subplots(4, 1, sharex=True, height_ratios=(3, 2, 2, 2))
        for l in video:
            t = [s["t"] for s in l["series"]]
            label = f"{l['from']} → {l['to']}" + (" (screen)" if l["kind"] == "screen" else "")
            (line,) = kbps.plot(t, [s["kbps"] for s in l["series"]], label=label, linewidth=1)
            fps.plot(t, [s["fps"] for s in l["series"]], linewidth=1, color=line.get_color())
            heights = [s.get("height") for s in l["series"]]
            size.plot(t, [h if h is not None else float("nan") for h in heights], linewidth=1, color=line.get_color(),
                      drawstyle="steps-post")
            for s in l["series"]:
                if s.get("height") is not None:
                    sizes.setdefault(s["height"], set()).add(f"{s['width']}×{s['height']}")
        for l in audio:
            heard.plot([s["t"] for s in l["series"]], [s["kbps"] for s in l["series"]], linewidth=1)
        for ax, name in ((kbps, "video kbps"), (fps, "video fps"), (size, "picture size"), (heard, "audio kbps")):
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
        fps.set_ylim(bottom=0)
        if sizes:
            size.set_yticks(sorted(sizes), [" / ".join(sorted(sizes[h])) for h in sorted(sizes)])
            size.set_ylim(0, max(sizes) * 1.15)
        else:
            size.text(0.5, 0.5, "no keyframe sizes", ha="center", va="center", transform=size.transAxes)
        heard.set_xlabel("seconds since the first join")
        handles, labels = kbps.get_legend_handles_labels()
        if labels:
            figure.legend(handles, labels, loc="outside right upper", fontsize=7, ncols=1 + len(labels) // 24)
        figure.suptitle("Per link: bitrate, frame rate and picture size")
        return svg(figure)


def matrix_plot(report: Message) -> str:
    names = participants(report)
    with matplotlib.rc_context(PLOT_STYLE):
        figure = Figure(figsize=(9, 4.2), layout="constrained")
        for ax, key, title, fmt, cmap in zip(
            figure.subplots(1, 2),
            ("kbps", "loss_pct"),
            ("kbps (audio + video)", "loss % (worst of audio, video)"),
            ("{:.0f}", "{:.1f}"),
            ("Blues", "Reds"),
        ):
            values = pair_matrix(report, key, sum if key == "kbps" else max)
            grid = [[v if v is not None else float("nan") for v in row] for row in values]
            top = 10.0 if key == "loss_pct" else max([v for row in values for v in row if v is not None], default=1.0)
            ax.imshow(grid, cmap=cmap, vmin=0, vmax=top)
            for i, row in enumerate(values):
                for j, v in enumerate(row):
                    dark = v is not None and v > 0.6 * top  # light text on a dark cell
                    ax.text(j, i, "–" if v is None else fmt.format(v), ha="center", va="center", fontsize=8,
                            color="white" if dark else "black")
            ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
            ax.set_yticks(range(len(names)), names)
            ax.set_xlabel("to (receiver)")
            ax.set_ylabel("from (sender)")
            ax.set_title(title)
        return svg(figure)


def latency_plot(report: Message) -> str:
    values = sorted(s["latency_ms"] for l in report["links"] if l["kind"] == "video"
                    for s in l["series"] if s.get("latency_ms") is not None)
    with matplotlib.rc_context(PLOT_STYLE):
        figure = Figure(figsize=(9, 3.2), layout="constrained")
        ax = figure.subplots()
        if values:
            ax.hist(values, bins=min(40, max(5, len(values) // 5)), color="#4c8dff")
        ax.set_xlabel("end-to-end video latency, ms (median of each second, every video link)")
        ax.set_ylabel("link-seconds")
        ax.set_title("Latency distribution" + ("" if values else ": no video samples"))
        return svg(figure)


def render_html(report: Message) -> str:
    """The whole page: summary, three plots, the per-link table and the run's settings."""
    ratio = report.get("video_frames_delivered_ratio")
    summary = [
        ("participants", report["participants"]),
        ("tracks flowing", f"{report['tracks_flowing']}/{report['tracks_expected']}"),
        ("join to mesh", f"{report['join_to_mesh_s']} s" if report["join_to_mesh_s"] is not None else "–"),
        ("video frames delivered", "–" if ratio is None else f"{ratio:.1%}"),
        ("freezes", sum(l.get("freezes", 0) for l in report["links"])),
        ("duration", f"{report['duration_s']} s"),
    ]
    settings = {k: v for k, v in report.items() if k not in ("links",) and not isinstance(v, (list, dict))}
    cells = "".join(f"<div><b>{html.escape(str(v))}</b><span>{html.escape(k)}</span></div>" for k, v in summary)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>p2pconf bots report</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5rem auto; max-width: 70rem; padding: 0 1rem; color: #222; }}
.summary {{ display: flex; flex-wrap: wrap; gap: 1rem; }}
.summary div {{ border: 1px solid #ddd; border-radius: 6px; padding: 0.5rem 1rem; min-width: 8rem; }}
.summary b {{ display: block; font-size: 1.4rem; }} .summary span {{ color: #666; }}
.bad b {{ color: #c62828; }} svg {{ max-width: 100%; height: auto; }}
pre {{ background: #f6f6f6; padding: 0.75rem; overflow-x: auto; font-size: 12px; }}
</style></head><body>
<h1>Bots report: {"mesh formed" if report["mesh_formed"] else "mesh did NOT form"}</h1>
<section class="summary{'' if report['mesh_formed'] else ' bad'}">{cells}</section>
<h2>Bitrate, frame rate and picture size per link</h2>{bitrate_plot(report)}
<h2>Link matrix</h2>{matrix_plot(report)}
<h2>Latency</h2>{latency_plot(report)}
<h2>Links</h2><pre>{html.escape(format_table(report))}</pre>
<h2>Run</h2><pre>{html.escape(json.dumps(settings, indent=1))}</pre>
</body></html>
"""
