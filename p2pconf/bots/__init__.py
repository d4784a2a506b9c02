"""Synthetic participants ("bots"): aiortc peers that speak docs/protocol.md like a browser.

- sources.py   the video size, the synthetic camera picture and the sine tone
- stamp.py     the stamp in every picture, and the frame stamp beside it (RTP header extension)
- clip.py      the picture encoded once per process in bitrate rungs, looped; the tone, looped
- player.py    a bot's sending side: the clip and tone into one track per link, a rung each
- bitrate.py   the bitrate policies (fixed, estimate, browser) and the choice of rung
- hooks.py     every reach into aiortc's and aioice's private parts (for aiortc 1.16.0)
- rtpframes.py frames from RTP packets without decoding: whole, decodable, stamped
- pictures.py  a sample of one link decoded to prove its pictures
- measure.py   what a bot measures on each incoming track: bytes on the wire, RTP loss and
               jitter, frames, freezes, latency, size, tone; one sample per second
- client.py    the signaling client (the Python twin of web/static/js/protocol.js)
- bot.py       one participant: its peer connections, the newcomer-offers rule, focus
- netif.py     which local addresses bots offer as ICE host candidates
- runner.py    N bots in one room, progress, and the end-of-run report
- report.py    report aggregation and the per-link table
- report_html.py  report.json and the self-contained report.html with plots
"""
