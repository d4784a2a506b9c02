"""The wire protocol of docs/protocol.md: versions, limits, codes and message checks.

Everything here is plain data and pure functions, shared by the server
(`signaling.py`) and the Python client (`bots/client.py`), so both sides agree
on one definition of a valid message.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from typing import Any

PROTOCOL_VERSION = 1

MAX_MESSAGE_BYTES = 64 * 1024
MAX_NAME_CHARS = 40
MAX_ROOM_CHARS = 64
MAX_CANDIDATE_CHARS = 1024
MAX_SUBSCRIPTIONS = 200  # logins one connection may follow (docs/protocol.md, "Presence")
LOGIN_RE = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")  # logins are case-insensitive: ANNA is anna

# WebSocket close codes (docs/protocol.md, "Closing").
CLOSE_TOO_LARGE = 1009  # message over MAX_MESSAGE_BYTES
CLOSE_PROTOCOL = 4000  # handshake broken: first message not hello, bad version
CLOSE_REVOKED = 4003  # the guest link this connection came through was revoked
CLOSE_NOT_ADMITTED = 4004  # a member turned this guest away at the room's lobby
CLOSE_STALLED = 4009  # the client stopped reading its messages
CLOSE_REPLACED = 4409  # the session was resumed on another connection (this one is stale)
CLOSE_RESTART = 1012  # the server restarts (SIGTERM, a deploy): resume at once
CLOSE_RECONNECTING = 4100  # from a client: it closes to reconnect and resume (1000 from a client: gone)
CLOSE_SIGNED_OUT = 4001  # the session ended: signed out, user disabled or session expired
CLOSE_FLOOD = 4029  # rate limit exceeded
# After these the client must not reconnect: it is told why and stops (docs/protocol.md, "Closing").
FINAL_CLOSE_CODES = (CLOSE_PROTOCOL, CLOSE_SIGNED_OUT, CLOSE_REVOKED, CLOSE_NOT_ADMITTED, CLOSE_STALLED, CLOSE_FLOOD,
                     CLOSE_REPLACED)
MAX_JSON_DEPTH = 32  # objects and arrays nested deeper are refused (bad-json)

# Stable, machine-readable error codes carried by `error` messages.
ERRORS = {
    "bad-json": "The message is not a JSON object.",
    "bad-message": "A field is missing or has the wrong type.",
    "unknown-type": "Unknown message type.",
    "version-unsupported": "This server speaks another protocol version.",
    "not-joined": "Join a room first.",
    "already-joined": "This connection has already joined a room.",
    "room-full": "The room is full.",
    "forbidden": "You may not enter this room.",
    "unknown-peer": "No such peer in your room.",
    "forged-sender": "The sender field does not match this connection.",
    "rate-limited": "Too many messages.",
    "too-large": "The message is too large.",
    "too-many-subscriptions": f"Follow at most {MAX_SUBSCRIPTIONS} logins.",
}

MODES = ("audio+video", "audio-only")
SIGNAL_TYPES = ("offer", "answer", "candidate", "renegotiate")
QUALITY_TYPES = ("stats", "link-matrix", "focus")  # link quality (docs/protocol.md, "Link quality")
LOBBY_TYPES = ("admit", "refuse")  # a member's answer to a waiting guest (docs/protocol.md, "Lobby")
CLIENT_TYPES = ("hello", "join", "media", "leave", "ping", "subscribe", *SIGNAL_TYPES, *QUALITY_TYPES, *LOBBY_TYPES)

# The numbers of one `stats` entry and their largest sane values; `path` is one of PATHS.
STATS_LIMITS = {"kbpsIn": 1_000_000, "kbpsOut": 1_000_000, "lossPct": 100, "rttMs": 60_000}
PATHS = ("direct", "relay")


_NOT_TEXT = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")  # Unicode categories refused in names


class ProtocolError(Exception):
    """A message broke the protocol; `code` is one of ERRORS."""

    def __init__(self, code: str, detail: str | None = None):
        super().__init__(detail or ERRORS[code])
        self.code = code
        self.detail = detail or ERRORS[code]


def error_message(code: str, detail: str | None = None, ref: str | None = None) -> dict[str, Any]:
    """Build an `error` message; `ref` names the type of the message it answers."""
    msg: dict[str, Any] = {"type": "error", "code": code, "message": detail or ERRORS[code]}
    if ref:
        msg["ref"] = ref
    return msg


def loads(data: str | bytes) -> Any:
    """Parse one JSON text the way the protocol allows it, or raise ValueError.

    Refused beyond what json.loads refuses: NaN and infinities (not JSON for
    browsers), lone surrogates (they cannot be stored or re-encoded), and
    objects or arrays nested deeper than MAX_JSON_DEPTH.
    """
    try:
        value = json.loads(data, parse_constant=_not_a_number, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_encodable(item)
        elif isinstance(item, (dict, list)):
            if depth >= MAX_JSON_DEPTH:
                raise ValueError(f"nested deeper than {MAX_JSON_DEPTH}")
            if isinstance(item, dict):
                for key in item:
                    _check_encodable(key)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return value


def dumps(msg: Any) -> str:
    """Serialise a message; refuses NaN and infinities rather than emit invalid JSON."""
    return json.dumps(msg, allow_nan=False, separators=(",", ":"))


class Shared(dict):
    """A message the server sends to many connections (a room, a login's watchers): it is
    serialised once, by the first connection that sends it, not once per recipient."""

    __slots__ = ("_text",)

    def text(self) -> str:
        try:
            return self._text
        except AttributeError:
            self._text = dumps(self)
            return self._text


def encode(msg: dict[str, Any]) -> str:
    """The JSON text of a message to send (a Shared one's, made once)."""
    return msg.text() if isinstance(msg, Shared) else dumps(msg)


def _not_a_number(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is out of range")
    return number


def _check_encodable(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a string holds a lone surrogate") from None


def clean_text(value: Any, what: str, max_chars: int) -> str:
    """Check `value` is text without control or format characters, trim it and fold
    inner spaces, and check 1..max_chars remain.

    Refused anywhere in the value: C0/C1 controls (NUL, line breaks; a tab is folded
    like a space), bidirectional overrides and isolates, zero-width characters,
    unassigned and private-use code points, lone surrogates.
    """
    if not isinstance(value, str):
        raise ProtocolError("bad-message", f"{what} must be a string")
    text = " ".join(value.split())
    if not 1 <= len(text) <= max_chars or any(c != "\t" and unicodedata.category(c) in _NOT_TEXT for c in value):
        raise ProtocolError("bad-message", f"{what} must be 1 to {max_chars} printable characters")
    return text


def clean_name(value: Any) -> str:
    """A display name: 1..40 printable characters (see clean_text)."""
    return clean_text(value, "name", MAX_NAME_CHARS)


def clean_room(value: Any) -> str:
    """A room name or call title: 1..64 printable characters (see clean_text)."""
    return clean_text(value, "room", MAX_ROOM_CHARS)


def is_version(value: Any) -> bool:
    """True for exactly the integer PROTOCOL_VERSION (not 1.0, not true)."""
    return type(value) is int and value == PROTOCOL_VERSION


def clean_media(value: Any, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate a media state {mode, mic, cam, screen}; missing fields keep `previous`.

    `screen` (whether the client shares its screen) appears only once a client has said it.
    """
    state = dict(previous or {"mode": "audio+video", "mic": True, "cam": True})
    if value is None:
        return state
    if not isinstance(value, dict):
        raise ProtocolError("bad-message", "media must be an object")
    if "mode" in value:
        if value["mode"] not in MODES:
            raise ProtocolError("bad-message", f"media.mode must be one of {', '.join(MODES)}")
        state["mode"] = value["mode"]
    for key in ("mic", "cam", "screen"):
        if key in value:
            if not isinstance(value[key], bool):
                raise ProtocolError("bad-message", f"media.{key} must be true or false")
            state[key] = value[key]
    if state["mode"] == "audio-only":
        state["cam"] = False
    return state


def clean_logins(value: Any) -> list[str]:
    """The logins of a `subscribe`, lower-cased, duplicates folded, in the order given.

    bad-message for anything but a list of logins (LOGIN_RE), too-many-subscriptions
    beyond MAX_SUBSCRIPTIONS different ones.
    """
    if not isinstance(value, list):
        raise ProtocolError("bad-message", "logins must be a list of logins")
    logins: dict[str, None] = {}
    for login in value:
        if not isinstance(login, str) or not LOGIN_RE.fullmatch(login):
            raise ProtocolError("bad-message", "each login must be 1 to 64 letters, digits or . _ @ -")
        logins[login.lower()] = None
    if len(logins) > MAX_SUBSCRIPTIONS:
        raise ProtocolError("too-many-subscriptions", f"{len(logins)} logins; follow at most {MAX_SUBSCRIPTIONS}")
    return list(logins)


def check_signal(msg: dict[str, Any]) -> dict[str, Any]:
    """Check the payload of offer/answer/candidate/renegotiate; return what is forwarded."""
    kind = msg["type"]
    if kind in ("offer", "answer"):
        sdp = msg.get("sdp")
        if not isinstance(sdp, str) or not sdp:
            raise ProtocolError("bad-message", f"{kind} needs a non-empty sdp string")
        out: dict[str, Any] = {"sdp": sdp}
        if kind == "offer" and msg.get("restart") is True:
            out["restart"] = True
        return out
    if kind == "candidate":
        cand = msg.get("candidate", "missing")
        if cand is None:  # end of candidates
            return {"candidate": None}
        if not isinstance(cand, dict) or not isinstance(cand.get("candidate"), str) \
                or len(cand["candidate"]) > MAX_CANDIDATE_CHARS:
            raise ProtocolError("bad-message", "candidate needs {candidate, sdpMid or sdpMLineIndex} or null")
        mid, index = cand.get("sdpMid"), cand.get("sdpMLineIndex")
        if mid is not None and (not isinstance(mid, str) or len(mid) > 64):
            raise ProtocolError("bad-message", "sdpMid must be a string of at most 64 characters or null")
        if index is not None and (type(index) is not int or not 0 <= index <= 1024):
            raise ProtocolError("bad-message", "sdpMLineIndex must be an integer from 0 to 1024 or null")
        if mid is None and index is None:
            raise ProtocolError("bad-message", "candidate needs sdpMid or sdpMLineIndex")
        return {"candidate": {"candidate": cand["candidate"], "sdpMid": mid, "sdpMLineIndex": index}}
    return {}  # renegotiate carries nothing but its addressee


def clean_stats(value: Any, room_peers: set[str]) -> dict[str, dict[str, Any]]:
    """Check the `peers` object of a stats upload; keep entries of peers still in the room.

    An entry for a peer that is not (or no longer) in the room is dropped rather
    than refused: it may have left while the upload was on its way.
    """
    if not isinstance(value, dict) or len(value) > 64:
        raise ProtocolError("bad-message", "peers must be an object of at most 64 entries")
    out: dict[str, dict[str, Any]] = {}
    for peer_id, entry in value.items():
        if not isinstance(entry, dict):
            raise ProtocolError("bad-message", "each stats entry must be an object")
        clean: dict[str, Any] = {}
        for key, limit in STATS_LIMITS.items():
            number = entry.get(key)
            if number is None:
                continue
            # the range first: math.isfinite overflows on an integer of hundreds of digits
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not 0 <= number <= limit:
                raise ProtocolError("bad-message", f"{key} must be a number from 0 to {limit}")
            clean[key] = round(float(number), 1)
        path = entry.get("path")
        if path is not None:
            if path not in PATHS:
                raise ProtocolError("bad-message", f"path must be one of {', '.join(PATHS)}")
            clean["path"] = path
        if peer_id in room_peers:
            out[peer_id] = clean
    return out
