"""Typed keys for the state the application holds (aiohttp's AppKey)."""

from __future__ import annotations

import weakref

from aiohttp import web

from .auth import Identity, LoginThrottle
from .calls import Calls
from .config import Config
from .signaling import Hub
from .store import Store

CONFIG = web.AppKey("config", Config)
HUB = web.AppKey("hub", Hub)
STORE = web.AppKey("store", Store)
CALLS = web.AppKey("calls", Calls)
THROTTLE = web.AppKey("throttle", LoginThrottle)
SOCKETS = web.AppKey("sockets", weakref.WeakSet)

# Per request: who is asking, and a double-submit CSRF cookie a page handed out.
IDENTITY = web.RequestKey("identity", Identity)
NEW_CSRF_COOKIE = web.RequestKey("new_csrf_cookie", str)
