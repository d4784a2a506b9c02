"""The security log: one line per refusal, throttle, flood or revocation.

Each line is `event=NAME key=value ...` on the `p2pconf.audit` logger, so an
admin can grep it or feed it to fail2ban. Values are quoted when they hold
spaces or anything unprintable (a login is user input: no forged log lines).
Passwords and tokens are never logged, and `RedactTokens` keeps guest-link and
SSO tokens out of aiohttp's access log.
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
    """Log one security event; fields that are None are left out."""
    parts = [f"event={name}"]
    for key, value in fields.items():
        if value is None:
            continue
        text = str(value)
        parts.append(f"{key}={text if _SAFE.match(text) else json.dumps(text[:200])}")
    log.info(" ".join(parts))


def redact(text: str) -> str:
    """`text` with guest-link and SSO tokens replaced by `<redacted>`."""
    return _SECRETS.sub(lambda m: (m.group(1) or m.group(2)) + "<redacted>", text)


class RedactTokens(logging.Filter):
    """A filter for aiohttp's access log: requests are logged without their tokens."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), ()
        return True
