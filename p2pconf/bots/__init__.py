"""Synthetic participants ("bots"): aiortc peers that speak docs/protocol.md like a browser.

- stamp.py    the machine-readable stamp drawn into every video frame
- sources.py  synthetic camera and microphone, encoded once per bot for all its links
- measure.py  what a bot measures on each incoming track: bytes on the wire, RTP loss and
              jitter, frames, freezes, latency, tone; one sample per second
- client.py   the signaling client (the Python twin of web/static/js/protocol.js)
- bot.py      one participant: its peer connections and the newcomer-offers rule
- runner.py   N bots in one room, progress, and the end-of-run report
- report.py   report aggregation and the per-link table
- report_html.py  report.json and the self-contained report.html with plots
"""
