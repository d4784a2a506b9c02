"""The organisation's data (see core.py): users, rooms, invites, sessions, the directory."""

from .core import (
    GUEST_REFUSED,
    INVITE_REVOKED,
    MAX_FAVORITES,
    SESSION_ENDED,
    USER_DISABLED,
    Event,
    Invite,
    Room,
    SessionRecord,
    Store,
    User,
    is_database_url,
    token_hash,
)
from .errors import StoreError
from .schema import SQLITE as MIGRATIONS  # the embedded default's steps (tests compare versions)
from .search import BadCursor

__all__ = ["GUEST_REFUSED", "INVITE_REVOKED", "MAX_FAVORITES", "MIGRATIONS", "SESSION_ENDED", "USER_DISABLED", "BadCursor", "Event",
           "Invite", "Room", "SessionRecord", "Store", "StoreError", "User", "is_database_url", "token_hash"]
