"""The event log: one line per sign-in, join, leave, resume, refusal, throttle, flood,
revocation and process start or stop.

Each line is `event=NAME key=value ...` on the `p2pconf.audit` logger, so an
admin can grep it or feed it to fail2ban; `--log-format json` writes the same
fields as one JSON object a line (JsonLines). `peer` is the session id that
follows one client across reconnects and processes (a resumed session keeps
it). Values are quoted when they hold spaces or anything unprintable (a login
is user input: no forged log lines). Passwords and tokens are never logged, and
`RedactTokens` keeps guest-link and SSO tokens out of aiohttp's access log.
"""

from __future__ import annotations

import json
import logging
import re

log = logging.getLogger("p2pconf.audit")

_SAFE = re.compile(r"^[\w.@:/+-]{1,128}$")
# /j/<guest token> in paths and token=<JWT> in query strings
_SECRETS = re.compile(r"(/j/)[^\s/?\"]+|(token=)[^\s&\"]+")


def event(name: str, **fields: object) -> None:
    """Log one event; fields that are None are left out."""
    kept = {"event": name, **{k: v for k, v in fields.items() if v is not None}}
    parts = []
    for key, value in kept.items():
        text = str(value)
        parts.append(f"{key}={text if _SAFE.match(text) else json.dumps(text[:200])}")
    log.info(" ".join(parts), extra={"fields": kept})


class JsonLines(logging.Formatter):
    """Every record as one JSON object: time, level, logger, and an event's own fields
    (or `message` for other records)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {"time": round(record.created, 3), "level": record.levelname.lower(),
                                   "logger": record.name}
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update((k, v if isinstance(v, (int, float, bool)) else str(v)[:200]) for k, v in fields.items())
        else:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def use_format(kind: str) -> None:
    """Make the root logger's handlers write `kind` lines: "plain" or "json"."""
    if kind == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonLines())


def redact(text: str) -> str:
    """`text` with guest-link and SSO tokens replaced by `<redacted>`."""
    return _SECRETS.sub(lambda m: (m.group(1) or m.group(2)) + "<redacted>", text)


class RedactTokens(logging.Filter):
    """A filter for aiohttp's access log: requests are logged without their tokens."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), ()
        return True
