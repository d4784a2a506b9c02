"""The `p2pconf` command: `serve` runs the server, `bots` runs synthetic participants."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import json
import logging
import os
import sys
from pathlib import Path

from .config import Config


def _serve(args: argparse.Namespace) -> int:
    from .server import serve

    if bool(args.tls_cert) != bool(args.tls_key):
        print("p2pconf serve: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    config = Config(
        host=args.host,
        port=args.port,
        data_dir=Path(args.data),
        public_url=args.public_url,
        trusted_proxies=args.trusted_proxy,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
        max_room_size=args.max_room_size,
        stun_urls=args.stun,
        turn_urls=args.turn,
        turn_secret=os.environ.get("P2PCONF_TURN_SECRET") or None,
    )
    if config.turn_urls and not config.turn_secret:
        print("p2pconf serve: --turn needs the shared secret in P2PCONF_TURN_SECRET", file=sys.stderr)
        return 2
    serve(config)
    return 0


def _bots(args: argparse.Namespace) -> int:
    from .bots.report import format_table
    from .bots.runner import ProgressPrinter, RunOptions, describe_failure, run_bots
    from .bots.sources import VideoSpec

    try:
        video = None if args.audio_only else VideoSpec.parse(args.video)
    except ValueError as exc:
        print(f"p2pconf bots: {exc}", file=sys.stderr)
        return 2
    opts = RunOptions(
        server=args.server,
        room=args.room,
        count=args.count,
        duration_s=args.duration,
        video=video,
        trickle=args.trickle,
        audio_ms=args.audio_ms,
        processes=args.processes,
    )
    printer = ProgressPrinter()
    try:
        report = asyncio.run(run_bots(opts, progress=printer))
    except Exception as exc:  # one line, not a traceback: QA reads this in CI logs
        printer.done()
        reason = str(exc) if isinstance(exc, RuntimeError) else describe_failure(exc)
        print(f"p2pconf bots: {reason}", file=sys.stderr)
        return 1
    printer.done()
    print(format_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"report written to {args.json}")
    if not report["mesh_formed"]:
        missing = ", ".join(report["missing"][:5]) + (" ..." if len(report["missing"]) > 5 else "")
        print(
            f"p2pconf bots: mesh did not form: {report['tracks_flowing']}/{report['tracks_expected']} "
            f"tracks flowing (missing {missing})",
            file=sys.stderr,
        )
        return 1
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="p2pconf", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the signaling server and web pages")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--data", default="data", help="data directory (default ./data)")
    s.add_argument("--public-url", help="origin users see, e.g. https://conf.example.org")
    s.add_argument("--trusted-proxy", action="append", default=[], metavar="ADDR",
                   help="reverse proxy address or network whose X-Forwarded-* headers are believed")
    s.add_argument("--tls-cert", help="PEM certificate chain: serve https")
    s.add_argument("--tls-key", help="PEM private key for --tls-cert")
    s.add_argument("--max-room-size", type=int, default=6)
    s.add_argument("--stun", action="append", default=[], metavar="URL", help="STUN URL for clients")
    s.add_argument("--turn", action="append", default=[], metavar="URL",
                   help="TURN URL; the secret comes from P2PCONF_TURN_SECRET")
    s.set_defaults(func=_serve)

    b = sub.add_parser("bots", help="run synthetic participants in a room and report every link")
    b.add_argument("--server", default="http://127.0.0.1:8080")
    b.add_argument("--room", default="bots")
    b.add_argument("--count", type=int, default=6)
    b.add_argument("--duration", type=float, default=20.0, help="seconds of media (default 20)")
    b.add_argument("--video", default="320x240@15", metavar="WxH@FPS")
    b.add_argument("--audio-only", action="store_true", help="send no video at all")
    b.add_argument("--audio-ms", type=int, choices=(20, 40, 60), default=20,
                   help="Opus frame length in ms (browsers: 20; 60 sends a third of the packets)")
    b.add_argument("--trickle", action="store_true", help="send ICE candidates separately, as browsers do")
    b.add_argument("--processes", type=int, default=1,
                   help="spread the bots over this many processes")
    b.add_argument("--json", metavar="FILE", help="write the report (docs/report.md) to FILE")
    b.set_defaults(func=_bots)
    return p


def main(argv: list[str] | None = None) -> int:
    faulthandler.enable()
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.command == "bots" and not 1 <= args.count <= 32:
        print("p2pconf bots: --count must be 1 to 32", file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
