"""Checked command-line values: each converter refuses a bad value with one clear line.

argparse calls them (`type=`); `Parser` prints that line and exits 2, with no
usage dump and never a traceback.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys

from yarl import URL

DURATION_RE = re.compile(r"^(\d+)([smhd])$")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message}\n")


def parse_duration(text: str) -> float:
    """"90s", "30m", "12h", "7d" -> seconds (ValueError otherwise)."""
    match = DURATION_RE.match(text.strip())
    if not match or int(match[1]) == 0:
        raise ValueError(f"a duration looks like 30m, 12h or 7d, not {text!r}")
    return int(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]


def duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def int_in(low: int, high: int):
    """An integer from low to high."""
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be a whole number from {low} to {high}, not {text!r}")
        return value
    return convert


def float_in(low: float, high: float):
    """A number from low to high (above low when low is 0)."""
    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high or (low == 0 and value == 0):
            raise argparse.ArgumentTypeError(f"must be a number from {low:g} to {high:g}, not {text!r}")
        return value
    return convert


def origin(text: str) -> str:
    """An http(s) origin: scheme and host (and port), no path."""
    url = URL(text.strip())
    if url.scheme not in ("http", "https") or not url.host or url.path not in ("", "/") or url.query_string \
            or url.fragment or url.user:
        raise argparse.ArgumentTypeError(f"must be an origin like https://conf.example.org, not {text!r}")
    return str(url.origin())


def database_url(text: str) -> str:
    """A PostgreSQL connection URL (postgresql://user@host:port/dbname)."""
    if not text.strip().startswith(("postgresql://", "postgres://")):
        raise argparse.ArgumentTypeError("must be a PostgreSQL URL like postgresql://p2pconf@db.example.org/p2pconf "
                                         "(without it the data directory's SQLite file is used)")
    return text.strip()


def redis_url(text: str) -> str:
    """A Redis URL (redis://, rediss:// or unix://)."""
    if not text.strip().startswith(("redis://", "rediss://", "unix://")):
        raise argparse.ArgumentTypeError(f"must be a Redis URL like redis://127.0.0.1:6379/0, not {text!r}")
    return text.strip()


def network(text: str) -> str:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an address or network like 10.0.0.5 or 10.0.0.0/24, "
                                         f"not {text!r}") from None
    return text


def ice_url(*schemes: str):
    """A STUN or TURN URL with one of `schemes`, like turn:turn.example.org:3478."""
    def convert(text: str) -> str:
        scheme, _, rest = text.partition(":")
        if scheme not in schemes or not rest or any(c.isspace() for c in text):
            raise argparse.ArgumentTypeError(f"must be a URL like {schemes[0]}:host:3478, not {text!r}")
        return text
    return convert


def readable_file(text: str) -> str:
    try:
        with open(text, "rb"):
            return text
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {text!r}: {exc.strerror}") from None


def fail(prog: str, message: str) -> int:
    """Print one line for a refused combination of options; the exit code 2."""
    print(f"{prog}: {message}", file=sys.stderr)
    return 2
