"""Shared fixtures: a server with short timers, protocol sockets, bounded polls."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
from aiohttp import WSMsgType

from p2pconf.bots.bot import Bot
from p2pconf.bots.netif import use_host_addresses
from p2pconf.config import Config
from p2pconf.protocol import PROTOCOL_VERSION
from p2pconf.server import create_app

from .browser import launched
from .org import SSO_SECRET, Browser, add_user
from .services import postgres_server, redis_server


# docs/report.schema.json: what the bots' reports must look like
REPORT_SCHEMA = json.loads((Path(__file__).parent.parent / "docs" / "report.schema.json").read_text())


async def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, step: float = 0.02) -> Any:
    """Poll `predicate` until it is truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(step)


@pytest.fixture
def loopback():
    """Bots gather ICE candidates on 127.0.0.1 only, like everything else in the suite."""
    use_host_addresses(["127.0.0.1"])
    yield
    use_host_addresses(None)


@pytest.fixture
async def bots():
    """Bots a test starts (append them); all are closed afterwards."""
    started: list[Bot] = []
    yield started
    await asyncio.gather(*(b.close() for b in started), return_exceptions=True)


@pytest.fixture
async def chromium():
    async with launched() as browser:
        yield browser


@pytest.fixture
def config(tmp_path) -> Config:
    # open_rooms: the protocol tests join rooms by name; access control has its own tests
    # resume_grace_s=1: a broken socket's room hears of it within 2 s (30 s by default)
    return Config(data_dir=tmp_path / "data", heartbeat_s=1.0, client_ping_s=0.5, open_rooms=True, resume_grace_s=1.0)


@pytest.fixture
async def client(aiohttp_client, config):
    """An aiohttp test client for a fresh app built from `config`."""
    return await aiohttp_client(create_app(config))


class Peer:
    """One protocol socket in a test, with helpers to send and to await a message type."""

    def __init__(self, ws):
        self.ws = ws
        self.id: str | None = None
        self.welcome: dict[str, Any] = {}

    async def send(self, **msg: Any) -> None:
        await self.ws.send_json(msg)

    async def recv(self, timeout: float = 3.0) -> dict[str, Any]:
        frame = await self.ws.receive(timeout=timeout)
        assert frame.type == WSMsgType.TEXT, f"expected a message, got {frame.type!r} {frame.data!r}"
        return frame.json()

    async def expect(self, kind: str, timeout: float = 3.0) -> dict[str, Any]:
        msg = await self.recv(timeout)
        assert msg["type"] == kind, msg
        return msg

    async def silent(self, seconds: float = 0.2) -> None:
        """Assert that nothing arrives for `seconds`."""
        try:
            frame = await self.ws.receive(timeout=seconds)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"unexpected message {frame.data!r}")

    async def join(self, room: str, name: str, media: dict[str, Any] | None = None) -> dict[str, Any]:
        await self.send(type="join", room=room, name=name, media=media or {})
        return await self.expect("joined")


async def three_in_a_room(connect, room: str = "r") -> tuple[Peer, Peer, Peer]:
    """Peers A, B and C joined to `room`, in that order, with the join announcements read."""
    a, b, c = await connect(), await connect(), await connect()
    for peer, name in ((a, "A"), (b, "B"), (c, "C")):
        await peer.join(room, name)
    await a.expect("peer-joined"), await a.expect("peer-joined"), await b.expect("peer-joined")
    return a, b, c


@pytest.fixture
def connect(client):
    """connect(origin=None, hello=True) -> Peer, greeted unless hello=False."""

    async def _connect(hello: bool = True, **kwargs: Any) -> Peer:
        peer = Peer(await client.ws_connect("/ws", **kwargs))
        if hello:
            await peer.send(type="hello", version=PROTOCOL_VERSION)
            peer.welcome = await peer.expect("welcome")
            peer.id = peer.welcome["id"]
        return peer

    return _connect


# -- the organisation side: a server with users anna, bert and carla -----------------------


# -- where the store is: SQLite by default; @both_stores runs a test on PostgreSQL too ------------

both_stores = pytest.mark.parametrize("store_location", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server of the suite's own, for the whole session (tests/services.py)."""
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def redis_service():
    """A Redis server of the suite's own, for the whole session (tests/services.py)."""
    with redis_server() as url:
        yield url


@pytest.fixture
def redis_url(redis_service):
    """The suite's Redis, emptied for this test."""
    import redis as redis_sync
    client = redis_sync.Redis.from_url(redis_service)
    client.flushall()
    client.close()
    return redis_service


@pytest.fixture
def pg_database(postgres):
    """A fresh database on the suite's PostgreSQL, dropped afterwards; its URL."""
    name = f"t{uuid.uuid4().hex[:16]}"
    postgres.sql(f"CREATE DATABASE {name}")
    yield f"{postgres.url}/{name}"
    postgres.sql(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def store_location(request, tmp_path) -> str | Path:
    """What Store.open is given: the data directory (SQLite) or a PostgreSQL URL."""
    if getattr(request, "param", "sqlite") == "postgresql":
        return request.getfixturevalue("pg_database")
    return tmp_path / "data"


@pytest.fixture
def org_config(tmp_path, store_location) -> Config:
    # Default liveness timers: loaded CI machines must not make busy browsers look dead.
    return Config(data_dir=tmp_path / "data", database=None if isinstance(store_location, Path) else store_location,
                  ring_timeout_s=0.6,
                  login_limit=3, login_window_s=60, sso_secret=SSO_SECRET)


@pytest.fixture
def org_host() -> str:
    """Where the organisation's test server listens (tests/test_firefox.py: on its veth pair)."""
    return "127.0.0.1"


@pytest.fixture
async def org(aiohttp_server, org_config, org_host):
    server = await aiohttp_server(create_app(org_config), host=org_host)
    app = server.app
    await add_user(app, "anna", "Anna Berg", email="anna@example.org")
    await add_user(app, "bert", "Bert Kraus")
    await add_user(app, "carla", "Carla Diaz")
    browsers: list[Browser] = []

    def browser() -> Browser:
        b = Browser(str(server.make_url("/")))
        browsers.append(b)
        return b

    server.browser = browser
    yield server
    for b in browsers:
        await b.close()
