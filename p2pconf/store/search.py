"""Directory search terms: how names, logins and e-mail addresses are folded and indexed.

Both databases index the same words, made here in Python, so a search behaves the
same on SQLite and PostgreSQL: case and accents do not matter ("muller" and "müller"
find "Müller"), German umlauts may also be typed as "ue" ("mueller"), and every word
is found by any prefix ("mül" finds "Müller"). A query's terms must all match.
"""

from __future__ import annotations

import base64
import json
import re
import unicodedata

MAX_QUERY_CHARS = 100
MAX_QUERY_TERMS = 5
PAGE_SIZE = 50  # at most this many people per answer
SHORT_PREFIX = 3  # prefixes up to this long are stored (user_prefixes), so a short term's people come in order
_TOP = "\U0010ffff"  # sorts after every character: [prefix, prefix + _TOP) holds every word starting so

# Letters that carry no combining accent to strip, and German umlauts' second spelling.
_PLAIN = str.maketrans({"ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"})
_UMLAUTS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue"})
_WORD_SPLIT = re.compile(r"[^\w]+")


def _unaccent(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def fold(text: str) -> str:
    """Lower case, accents removed, white space folded: the form every comparison uses."""
    return " ".join(_unaccent(text.casefold()).translate(_PLAIN).split())


def sort_key(name: str) -> str:
    """The key the directory is ordered by (folded name)."""
    return fold(name)


def _words(folded: str) -> list[str]:
    return [w for w in _WORD_SPLIT.split(folded) if w]


def words_of(name: str, login: str, email: str | None) -> set[str]:
    """Every indexed word of one user: the words of name, login and e-mail address
    ("anna.berg@example.org": anna, berg, example, org), umlauts also spelt out
    ("müller" also as "mueller")."""
    words: set[str] = set()
    for text in (name, login, email or ""):
        lowered = text.casefold()
        words.update(_words(fold(lowered)), _words(fold(lowered.translate(_UMLAUTS))))
    return words


def prefixes_of(words: set[str]) -> set[str]:
    """The short prefixes (1..SHORT_PREFIX characters) of a user's words: "berg" gives b, be, ber."""
    return {word[:n] for word in words for n in range(1, SHORT_PREFIX + 1)}


def query_terms(query: str) -> list[str]:
    """The folded words of a search query (at most MAX_QUERY_TERMS, duplicates dropped):
    "anna.b" is "anna" and "b", so a login or address is found as it is typed."""
    return list(dict.fromkeys(_words(fold(query[:MAX_QUERY_CHARS]))))[:MAX_QUERY_TERMS]


def prefix_range(term: str) -> tuple[str, str]:
    """Lower (inclusive) and upper (exclusive) bound of the words starting with `term`."""
    return term, term + _TOP


class BadCursor(ValueError):
    """A cursor that this server did not hand out."""


def encode_cursor(key: str, user_id: int) -> str:
    """An opaque cursor: the position after the last person of a page."""
    return base64.urlsafe_b64encode(json.dumps([key, user_id], ensure_ascii=False).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, int]:
    try:
        key, user_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError):
        raise BadCursor("not a cursor of this directory") from None
    if not isinstance(key, str) or type(user_id) is not int or len(key) > 200:
        raise BadCursor("not a cursor of this directory")
    return key, user_id
