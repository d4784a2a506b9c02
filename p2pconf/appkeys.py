"""Typed keys for the state the application holds (aiohttp's AppKey)."""

from __future__ import annotations

import weakref

from aiohttp import web

from .auth import HashPool, Identity, LoginThrottle
from .calls import Calls
from .config import Config
from .metrics import Metrics
from .signaling import Hub
from .store import Store

CONFIG = web.AppKey("config", Config)
HUB = web.AppKey("hub", Hub)
STORE = web.AppKey("store", Store)
CALLS = web.AppKey("calls", Calls)
THROTTLE = web.AppKey("throttle", LoginThrottle)
HASHES = web.AppKey("hashes", HashPool)
ACCESS = web.AppKey("access", "AccessWatch")  # access.AccessWatch (named: access.py imports these keys)
CLUSTER = web.AppKey("cluster", "Cluster")  # cluster.Cluster, with --redis (named: cluster.py imports signaling)
SOCKETS = web.AppKey("sockets", weakref.WeakSet)  # the server.Outbox of every open WebSocket
METRICS = web.AppKey("metrics", Metrics)
LINKTEST = web.AppKey("linktest", "UploadLimits")  # linktest.UploadLimits (named: linktest.py imports these keys)

# Per request: who is asking, a double-submit CSRF cookie a page handed out, and whether
# a trusted proxy forwarded it (its X-Forwarded-* were believed).
IDENTITY = web.RequestKey("identity", Identity)
NEW_CSRF_COOKIE = web.RequestKey("new_csrf_cookie", str)
VIA_PROXY = web.RequestKey("via_proxy", bool)
