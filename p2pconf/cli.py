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

from yarl import URL

from . import options
from .config import Config


def _serve(args: argparse.Namespace) -> int:
    from .server import serve

    if bool(args.tls_cert) != bool(args.tls_key):
        return options.fail("p2pconf serve", "--tls-cert and --tls-key go together")
    config = Config(
        host=args.host,
        port=args.port,
        data_dir=Path(args.data),
        database=args.database,
        public_url=args.public_url,
        trusted_proxies=args.trusted_proxy,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
        max_room_size=args.max_room_size,
        upload_kbps=args.upload_kbps,
        stun_urls=args.stun,
        turn_urls=args.turn,
        turn_secret=os.environ.get("P2PCONF_TURN_SECRET") or None,
        sso_secret=os.environ.get("P2PCONF_SSO_SECRET") or None,
        invite_ttl_s=args.invite_ttl,
        ring_timeout_s=args.ring_timeout,
        frame_ancestors=args.frame_ancestors,
        open_rooms=args.open_rooms,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        resume_grace_s=args.resume_grace,
        redis_url=args.redis,
        log_format=args.log_format,
    )
    if config.turn_urls and not config.turn_secret:
        return options.fail("p2pconf serve", "--turn needs the shared secret in P2PCONF_TURN_SECRET")
    serve(config)
    return 0


def _admin(args: argparse.Namespace) -> int:
    from . import admin

    data = args.database or Path(args.data)  # where the store is: PostgreSQL, or the data directory
    try:
        if args.command == "users":
            if args.action == "add":
                password = admin.read_password_stdin() if args.password_stdin else None
                out = asyncio.run(admin.run(data, admin.users_add, args.login, args.name, args.email, password))
            elif args.action == "list":
                out = asyncio.run(admin.run(data, admin.users_list))
            elif args.action == "disable":
                out = asyncio.run(admin.run(data, admin.users_disable, args.login))
            else:
                try:
                    with open(args.file, newline="", encoding="utf-8") as f:
                        out = asyncio.run(admin.run(data, admin.users_import, f))
                except OSError as exc:
                    raise admin.AdminError(f"cannot read {args.file}: {exc.strerror}") from None
        elif args.action == "invite":
            out = asyncio.run(admin.run(data, admin.rooms_invite, args.name, args.expires, args.by, args.public_url,
                                        Config().invite_ttl_s))
        elif args.action == "revoke":
            out = asyncio.run(admin.run(data, admin.rooms_revoke, args.token))
        else:
            out = asyncio.run(admin.run(data, admin.rooms_list))
    except admin.AdminError as exc:
        print(f"p2pconf {args.command} {args.action}: {exc}", file=sys.stderr)
        return 1
    print(out)
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
    server = args.server
    if args.invite:
        link = URL(args.invite)
        if link.scheme not in ("http", "https") or not link.host or not link.path.startswith("/j/"):
            print(f"p2pconf bots: --invite needs a guest link like https://host/j/TOKEN, not {args.invite!r}",
                  file=sys.stderr)
            return 2
        server = str(link.origin())
    opts = RunOptions(
        server=server,
        room=args.room,
        invite=args.invite,
        count=args.count,
        duration_s=args.duration,
        video=video,
        trickle=args.trickle,
        audio_ms=args.audio_ms,
        processes=args.processes,
        bitrate_policy=args.bitrate_policy,
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
    if args.report:
        from .bots.report_html import write_report

        for path in write_report(report, args.report):
            print(f"report written to {path}")
    if not report["mesh_formed"]:
        missing = ", ".join(report["missing"][:5]) + (" ..." if len(report["missing"]) > 5 else "")
        print(
            f"p2pconf bots: mesh did not form: {report['tracks_flowing']}/{report['tracks_expected']} "
            f"tracks flowing (missing {missing})",
            file=sys.stderr,
        )
        return 1
    return 0


def _capacity(args: argparse.Namespace) -> int:
    from . import browserlab
    from .bots.sources import VideoSpec
    from .capacity import CapacityOptions, parse_counts, parse_uplinks, run_capacity
    from .capacity_html import format_browsers, format_capacity
    from .netlab import LabError, check_can_build, impairment
    from .relaylab import check_can_relay

    try:
        opts = CapacityOptions(counts=parse_counts(args.count), uplinks_mbit=parse_uplinks(args.uplink),
                               duration_s=args.duration, loss_pct=args.loss, delay_ms=args.delay,
                               video=VideoSpec.parse(args.video), audio_ms=args.audio_ms, browsers=args.browsers,
                               relay=args.relay, bitrate_policy=args.bitrate_policy)
        if not 0 <= opts.loss_pct < 100 or not 0 <= opts.delay_ms <= 10_000 or opts.duration_s <= 0:
            raise ValueError("--loss is 0 to 99 %, --delay 0 to 10000 ms, --duration above 0")
        check_can_build()
        impairment(opts.loss_pct, opts.delay_ms)  # what cannot be added is refused before anything is built
        if opts.browsers:
            browserlab.check_can_run()
        if opts.relay:
            check_can_relay()
    except (ValueError, LabError, browserlab.BrowserLabError) as exc:
        print(f"p2pconf capacity: {exc}", file=sys.stderr)
        return 2
    try:
        result = run_capacity(opts, Path(args.report), progress=lambda line: print(line, flush=True))
    except LabError as exc:
        print(f"p2pconf capacity: {exc}", file=sys.stderr)
        return 1
    print(format_capacity(result))
    if opts.browsers:
        print(format_browsers(result))
    print(f"capacity written to {Path(args.report) / 'capacity.json'} and capacity.html")
    return 0


def add_store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="data", help="data directory (default ./data)")
    p.add_argument("--database", type=options.database_url, metavar="URL",
                   default=options.database_url(os.environ["P2PCONF_DATABASE"])
                   if os.environ.get("P2PCONF_DATABASE") else None,
                   help="PostgreSQL URL (or P2PCONF_DATABASE); default: SQLite in the data directory")


def parser() -> argparse.ArgumentParser:
    p = options.Parser(prog="p2pconf", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the signaling server and web pages")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=options.int_in(1, 65535), default=8080)
    add_store_options(s)
    s.add_argument("--public-url", type=options.origin, help="origin users see, e.g. https://conf.example.org")
    s.add_argument("--trusted-proxy", type=options.network, action="append", default=[], metavar="ADDR",
                   help="reverse proxy address or network whose X-Forwarded-* headers are believed")
    s.add_argument("--tls-cert", type=options.readable_file, help="PEM certificate chain: serve https")
    s.add_argument("--tls-key", type=options.readable_file, help="PEM private key for --tls-cert")
    s.add_argument("--max-room-size", type=options.int_in(2, 16), default=6, help="participants per room (2-16)")
    s.add_argument("--upload-kbps", type=options.int_in(100, 100_000), default=2000, metavar="KBPS",
                   help="video each browser may send in all, split over its peers (default 2000)")
    s.add_argument("--stun", type=options.ice_url("stun", "stuns"), action="append", default=[], metavar="URL",
                   help="STUN URL for clients")
    s.add_argument("--turn", type=options.ice_url("turn", "turns"), action="append", default=[], metavar="URL",
                   help="TURN URL; the secret comes from P2PCONF_TURN_SECRET")
    s.add_argument("--invite-ttl", type=options.duration, default=7 * 86400, metavar="DURATION",
                   help="guest links live this long (default 7d)")
    s.add_argument("--ring-timeout", type=options.float_in(1, 600), default=30.0, metavar="S",
                   help="an unanswered ring is missed after S s")
    s.add_argument("--frame-ancestors", type=options.origin, nargs="+", default=[], metavar="ORIGIN",
                   help="origins that may show the pages in a frame (the host platform); default: none")
    s.add_argument("--open-rooms", action="store_true",
                   help="let anyone join any room by name (load tests, labs); off: sign-in or guest link needed")
    s.add_argument("--metrics-port", type=options.int_in(1, 65535), metavar="PORT",
                   help="serve Prometheus metrics at /metrics on this port (default: off)")
    s.add_argument("--metrics-host", default="127.0.0.1",
                   help="address for --metrics-port (default 127.0.0.1: only this machine)")
    s.add_argument("--resume-grace", type=options.duration, default=30.0, metavar="DURATION",
                   help="how long a participant whose connection broke keeps its place (default 30s)")
    s.add_argument("--redis", metavar="URL", type=options.redis_url,
                   help="share rooms and sessions with other p2pconf processes through this Redis "
                        "(redis://host:6379/0); without it one process serves alone")
    s.add_argument("--log-format", choices=("plain", "json"), default="plain",
                   help="one line per event, as key=value text or as JSON objects (default plain)")
    s.set_defaults(func=_serve)

    u = sub.add_parser("users", help="manage the organisation's users")
    usub = u.add_subparsers(dest="action", required=True)
    ua = usub.add_parser("add", help="add a user")
    ua.add_argument("login")
    ua.add_argument("--name", required=True)
    ua.add_argument("--email")
    ua.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    usub.add_parser("list", help="list users")
    ud = usub.add_parser("disable", help="disable a user and end their sessions")
    ud.add_argument("login")
    ui = usub.add_parser("import", help="import users from a CSV file (login,name,email,password)")
    ui.add_argument("file")
    for sp in usub.choices.values():
        add_store_options(sp)
    u.set_defaults(func=_admin)

    r = sub.add_parser("rooms", help="guest rooms and their links")
    rsub = r.add_subparsers(dest="action", required=True)
    ri = rsub.add_parser("invite", help="create a guest room and print its link")
    ri.add_argument("name")
    ri.add_argument("--expires", type=options.duration, metavar="DURATION", help="e.g. 2h or 7d (default 7d)")
    ri.add_argument("--by", metavar="LOGIN", help="the user the link is created for")
    ri.add_argument("--public-url", type=options.origin,
                    help="origin for the link (default: what the server was started with)")
    rr = rsub.add_parser("revoke", help="revoke a guest link")
    rr.add_argument("token", metavar="TOKEN_OR_LINK")
    rsub.add_parser("list", help="list guest links")
    for sp in rsub.choices.values():
        add_store_options(sp)
    r.set_defaults(func=_admin)

    b = sub.add_parser("bots", help="run synthetic participants in a room and report every link")
    b.add_argument("--server", default="http://127.0.0.1:8080")
    b.add_argument("--room", default="bots", help="room name (servers started with --open-rooms)")
    b.add_argument("--invite", metavar="LINK", help="enter through this guest link, each bot with its own name")
    b.add_argument("--count", type=options.int_in(1, 32), default=6)
    b.add_argument("--duration", type=options.float_in(0, 86400), default=20.0, help="seconds of media (default 20)")
    b.add_argument("--video", default="320x240@15", metavar="WxH@FPS")
    b.add_argument("--audio-only", action="store_true", help="send no video at all")
    b.add_argument("--audio-ms", type=int, choices=(20, 40, 60), default=20,
                   help="Opus frame length in ms (browsers: 20; 60 sends a third of the packets)")
    b.add_argument("--trickle", action="store_true", help="send ICE candidates separately, as browsers do")
    b.add_argument("--processes", type=options.int_in(1, 32), default=1,
                   help="spread the bots over this many processes")
    b.add_argument("--bitrate-policy", choices=("fixed", "estimate", "browser"), default="fixed",
                   help="video per link: the clip's top rung (fixed), what the receiver estimates (estimate), "
                        "or that within p2pconf's centre/thumbnail split (browser)")
    b.add_argument("--json", metavar="FILE", help="write the report (docs/report.md) to FILE")
    b.add_argument("--report", metavar="DIR", help="write report.json and report.html (plots) into DIR")
    b.set_defaults(func=_bots)

    c = sub.add_parser("capacity", help="largest mesh per uplink: bots in shaped network namespaces (root)")
    c.add_argument("--count", default="2..6", help="mesh sizes, like 2..6 or 2,4 (default 2..6)")
    c.add_argument("--uplink", default="1,2,4,8", help="uplinks in Mbit/s (default 1,2,4,8)")
    c.add_argument("--loss", type=float, default=0.0, metavar="PCT",
                   help="added random loss on every limited uplink (netem; without it nftables)")
    c.add_argument("--delay", type=float, default=0.0, metavar="MS",
                   help="added one-way delay on every limited uplink (netem; without it a delay line)")
    c.add_argument("--duration", type=float, default=15.0, help="seconds of media per run (default 15)")
    c.add_argument("--video", default="320x240@15", metavar="WxH@FPS")
    c.add_argument("--audio-ms", type=int, choices=(20, 40, 60), default=20,
                   help="Opus frame length; 60 lets a small machine run more bots")
    c.add_argument("--browsers", type=options.int_in(0, 6), default=0, metavar="N",
                   help="the first N seats of every run are real Chromium pages (Debian's chromium, Playwright)")
    c.add_argument("--bitrate-policy", choices=("fixed", "estimate", "browser"), default="fixed",
                   help="the bots' video bitrate: fixed, the receiver's estimate, or a page's split (browser)")
    c.add_argument("--relay", action="store_true",
                   help="no two participants reach each other: every call through coturn in the hub (TURN)")
    c.add_argument("--report", default="capacity", metavar="DIR", help="where results go (default ./capacity)")
    c.set_defaults(func=_capacity)
    return p


def main(argv: list[str] | None = None) -> int:
    faulthandler.enable()
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
