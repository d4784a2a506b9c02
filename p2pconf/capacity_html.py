"""The capacity results for people: capacity.html (the table, plots of the worst link
per mesh size, every run) and the table as Markdown for docs/capacity.md."""

from __future__ import annotations

import html
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from .bots.report_html import PLOT_STYLE, svg

Message = dict[str, Any]
LIMITS = {  # capacity_table()'s `limited_by`, in words
    "uplink": "the next size needs more uplink",
    "machine": "the next size fails on this machine even without a limit (CPU)",
    "sizes": "the largest size measured",
}


def format_capacity(result: Message) -> str:
    """The table as Markdown, ready for docs/capacity.md."""
    lines = ["| uplink | largest mesh | limited by |", "|---:|---:|---|"]
    for row in result["table"]:
        size = row["largest_mesh"]
        lines.append(f"| {row['uplink_mbit']:g} Mbit/s | {size if size else 'none'} | {LIMITS[row['limited_by']]} |")
    return "\n".join(lines)


def _plot(result: Message) -> str:
    with matplotlib.rc_context(PLOT_STYLE):
        figure = Figure(figsize=(9, 3.6), layout="constrained")
        fps_ax, loss_ax = figure.subplots(1, 2)
        uplinks = [None, *sorted({r["uplink_mbit"] for r in result["runs"]} - {None})]
        for uplink in uplinks:
            runs = sorted((r for r in result["runs"] if r["uplink_mbit"] == uplink), key=lambda r: r["count"])
            counts = [r["count"] for r in runs]
            label = "no limit" if uplink is None else f"{uplink:g} Mbit/s"
            style = {"marker": "o", "label": label, **({"color": "black", "linestyle": ":"} if uplink is None else {})}
            fps_ax.plot(counts, [r["worst_fps"] or 0 for r in runs], **style)
            loss_ax.plot(counts, [r["worst_loss_pct"] if r["worst_loss_pct"] is not None else 100 for r in runs],
                         **style)
        fps_ax.axhline(result["min_fps"], color="#c62828", linestyle="--", linewidth=1)
        loss_ax.axhline(result["max_loss_pct"], color="#c62828", linestyle="--", linewidth=1)
        fps_ax.set(title="worst link: frames per second", xlabel="participants", ylabel="fps")
        loss_ax.set(title="worst link: packet loss", xlabel="participants", ylabel="loss %", ylim=(-1, 101))
        for ax in (fps_ax, loss_ax):
            ax.grid(alpha=0.3)
            ax.set_xticks(sorted({r["count"] for r in result["runs"]}))
        loss_ax.legend(title="uplink")
        return svg(figure)


def _percent(share: float | None) -> str:
    return "–" if share is None else f"{share:.0%}"


IMPAIRMENTS = {  # netlab.impairment(): what added the loss and delay
    "netem": "tc netem",
    "nftables": "nftables (loss) and a TUN delay line (delay), as this kernel has no netem",
}


def _added_by(result: Message) -> str:
    method = result.get("impairment")
    if method is None:
        return ""
    return f" on every limited uplink (not in the control) by {html.escape(IMPAIRMENTS.get(method, method))}"


def render_capacity(result: Message) -> str:
    rows = "".join(
        f"<tr><td>{row['uplink_mbit']:g} Mbit/s</td><td>{row['largest_mesh'] or 'none'}</td>"
        f"<td>{LIMITS[row['limited_by']]}</td></tr>"
        for row in result["table"]
    )
    runs = "".join(
        f"<tr class=\"{'ok' if r['ok'] else 'bad'}\">"
        f"<td>{'none' if r['uplink_mbit'] is None else format(r['uplink_mbit'], 'g')}</td><td>{r['count']}</td>"
        f"<td>{html.escape(str(r['tracks']))}</td><td>{r['worst_fps']}</td><td>{r['worst_loss_pct']}</td>"
        f"<td>{r['median_kbps']}</td><td>{_percent(r.get('cpu_s_per_s'))}</td>"
        f"<td>{'fits' if r['ok'] else html.escape(r.get('error', 'does not fit'))}</td></tr>"
        for r in result["runs"]
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>p2pconf capacity</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5rem auto; max-width: 70rem; padding: 0 1rem; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1.5rem; }}
td, th {{ border: 1px solid #ddd; padding: 0.25rem 0.75rem; text-align: right; }}
tr.bad td {{ color: #c62828; }} svg {{ max-width: 100%; height: auto; }}
</style></head><body>
<h1>Mesh capacity per uplink</h1>
<p>Largest mesh in which every link keeps at least {result['min_fps']:g} video frames per second and
less than {result['max_loss_pct']:g} % packet loss. Video {html.escape(result['video'])},
{result['audio_ms']} ms audio frames,
{result['duration_s']:g} s per run, added loss {result['loss_pct']:g} %,
added delay {result['delay_ms']:g} ms{_added_by(result)}.</p>
<table><tr><th>uplink</th><th>largest mesh</th><th>limited by</th></tr>{rows}</table>
{_plot(result)}
<h2>Every run</h2>
<table><tr><th>uplink Mbit/s</th><th>bots</th><th>tracks</th><th>worst fps</th><th>worst loss %</th>
<th>median link kbps</th><th>CPU (1 core = 100 %)</th><th>result</th></tr>{runs}</table>
<p>Uplink "none" is the control: the same size with no limit. A size that fails there is beyond this
machine's CPU, and the table does not blame the uplink for it.
Each run's own report: <code>runs/uplink-U-bots-N/report.html</code>.</p>
</body></html>
"""
