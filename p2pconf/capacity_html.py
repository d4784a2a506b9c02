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


def _seen(runs: list[Message], role: str, key: str) -> float | None:
    """The median over a run's browsers of what they saw of their `role` ("centre", "thumbnail")."""
    values = sorted(b[role][key] for r in runs for b in r.get("browsers", ()) if b[role] and b[role][key] is not None)
    return values[len(values) // 2] if values else None


def _view(runs: list[Message], role: str) -> str:
    height, fps = _seen(runs, role, "height"), _seen(runs, role, "fps")
    return "–" if height is None else f"{height:.0f}p at {fps:g} fps"


def browser_rows(result: Message) -> list[Message]:
    """Per mesh size and uplink, what the browsers' users saw (medians over the browsers)."""
    rows = []
    for r in sorted(result["runs"], key=lambda r: (r["count"], r["uplink_mbit"] or 0)):
        seen = r.get("browsers") or []
        uploads = [b["upload_kbps"] for b in seen if b["upload_kbps"] is not None]
        rows.append({
            "count": r["count"], "browsers": len(seen), "uplink_mbit": r["uplink_mbit"], "ok": r["ok"],
            "centre": _view([r], "centre"), "thumbnails": _view([r], "thumbnail"),
            "freezes": sum((b["centre"] or {}).get("freezes", 0) + (b["thumbnail"] or {}).get("freezes", 0)
                           for b in seen),
            "worst_loss_pct": r["worst_loss_pct"],
            "upload_kbps": round(sorted(uploads)[len(uploads) // 2]) if uploads else None,
        })
    return rows


def format_browsers(result: Message) -> str:
    """What the browsers' users saw, as Markdown for docs/capacity.md."""
    lines = ["| participants | of them browsers | uplink | centre | thumbnails | freezes | worst loss | "
             "upload per browser |", "|---:|---:|---:|---|---|---:|---:|---:|"]
    for row in browser_rows(result):
        uplink = "no limit" if row["uplink_mbit"] is None else f"{row['uplink_mbit']:g} Mbit/s"
        lines.append(f"| {row['count']} | {row['browsers']} | {uplink} | {row['centre']} | {row['thumbnails']} | "
                     f"{row['freezes']} | {row['worst_loss_pct']} % | {row['upload_kbps']} kbit/s |")
    return "\n".join(lines)


def _browser_loss(runs: list[Message]) -> float | None:
    """The worst loss any browser of the runs saw, on its centre or its thumbnails."""
    losses = [view["loss_pct"] for r in runs for b in r.get("browsers", ()) for view in (b["centre"], b["thumbnail"]) if view]
    return max(losses) if losses else None


def browser_figure(result: Message) -> Figure:
    """Per uplink, one line per mesh size: the frame rate of the browsers' centre, and the
    worst loss a browser saw."""
    with matplotlib.rc_context(PLOT_STYLE):
        figure = Figure(figsize=(9, 3.6), layout="constrained")
        fps_ax, loss_ax = figure.subplots(1, 2)
        uplinks = sorted({r["uplink_mbit"] for r in result["runs"]} - {None})
        for count in sorted({r["count"] for r in result["runs"]}):
            runs = {r["uplink_mbit"]: [r] for r in result["runs"] if r["count"] == count}
            fps_ax.plot(uplinks, [_seen(runs.get(u, []), "centre", "fps") or 0 for u in uplinks], marker="o",
                        label=f"{count}")
            loss_ax.plot(uplinks, [_browser_loss(runs.get(u, [])) or 0 for u in uplinks], marker="o", label=f"{count}")
        fps_ax.axhline(result["min_fps"], color="#c62828", linestyle="--", linewidth=1)
        fps_ax.set(title="browsers: centre frames per second", xlabel="uplink Mbit/s", ylabel="fps", ylim=(0, 20))
        loss_ax.set(title="browsers: worst loss seen (centre or thumbnail)", xlabel="uplink Mbit/s", ylabel="loss %",
                    ylim=(-1, 101))
        for ax in (fps_ax, loss_ax):
            ax.set_xscale("log", base=2)
            ax.set_xticks(uplinks, [f"{u:g}" for u in uplinks])
            ax.grid(alpha=0.3)
        loss_ax.legend(title="participants")
        return figure


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


def _browser_section(result: Message) -> str:
    if not result.get("browsers"):
        return ""
    rows = "".join(
        f"<tr class=\"{'ok' if row['ok'] else 'bad'}\"><td>{row['count']}</td><td>{row['browsers']}</td>"
        f"<td>{'none' if row['uplink_mbit'] is None else format(row['uplink_mbit'], 'g')}</td>"
        f"<td>{row['centre']}</td><td>{row['thumbnails']}</td><td>{row['freezes']}</td>"
        f"<td>{row['worst_loss_pct']}</td><td>{row['upload_kbps']}</td></tr>"
        for row in browser_rows(result))
    return f"""<h2>What the browsers' users saw</h2>
<p>The first {result['browsers']} seats of every run are Chromium pages (the rest bots); medians over
the browsers of each run.</p>
<table><tr><th>participants</th><th>browsers</th><th>uplink Mbit/s</th><th>centre</th><th>thumbnails</th>
<th>freezes</th><th>worst loss %</th><th>upload per browser kbit/s</th></tr>{rows}</table>
{svg(browser_figure(result))}"""


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
{_browser_section(result)}
<h2>Every run</h2>
<table><tr><th>uplink Mbit/s</th><th>bots</th><th>tracks</th><th>worst fps</th><th>worst loss %</th>
<th>median link kbps</th><th>CPU (1 core = 100 %)</th><th>result</th></tr>{runs}</table>
<p>Uplink "none" is the control: the same size with no limit. A size that fails there is beyond this
machine's CPU, and the table does not blame the uplink for it.
Each run's own report: <code>runs/uplink-U-bots-N/report.html</code>.</p>
</body></html>
"""
