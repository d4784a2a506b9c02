"""Server configuration: one dataclass, filled by the CLI or by tests."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Config:
    """Everything `create_app` needs. Defaults suit a laptop on http://127.0.0.1:8080."""

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    # A PostgreSQL URL ("postgresql://p2pconf@db/p2pconf"); None: SQLite in data_dir.
    database: str | None = None
    # Origin of the site as users see it ("https://conf.example.org"); links and the
    # WebSocket Origin check use it. None: the origin of each request's Host.
    public_url: str | None = None
    # Reverse proxies whose X-Forwarded-* headers are believed (addresses or networks).
    trusted_proxies: list[str] = field(default_factory=list)
    tls_cert: Path | None = None
    tls_key: Path | None = None

    max_room_size: int = 6
    # Video a browser may send in all, over every peer (docs/capacity.md): browsers split it
    # into full quality for the peers that show them in the centre and thumbnails for the rest.
    upload_kbps: int = 2000
    # ICE servers handed to clients. STUN/TURN URLs, e.g. "stun:turn.example.org:3478".
    stun_urls: list[str] = field(default_factory=list)
    turn_urls: list[str] = field(default_factory=list)
    turn_secret: str | None = None  # coturn `static-auth-secret`
    turn_ttl_s: int = 12 * 3600

    # Liveness: the server pings after `heartbeat_s` of silence and drops a client that
    # has not answered `heartbeat_s / 2` later, so a vanished client is noticed within
    # 1.5 * heartbeat_s. Clients ping every `client_ping_s`.
    heartbeat_s: float = 10.0
    client_ping_s: float = 10.0
    # A participant whose socket broke keeps its peer id, room and place this long (resume).
    resume_grace_s: float = 30.0
    # Other server processes of the organisation share rooms and sessions through this Redis.
    redis_url: str | None = None

    # Per-connection token bucket: sustained messages per second and burst size (every frame counts).
    rate_per_s: float = 50.0
    rate_burst: int = 300
    # Bytes queued for one client before it counts as not reading (closed with 4009).
    outbox_bytes: int = 1024 * 1024

    # Organisation side.
    sso_secret: str | None = None  # HS256 key shared with the host platform; None: /sso is off
    invite_ttl_s: float = 7 * 24 * 3600
    ring_timeout_s: float = 30.0
    session_ttl_s: float = 12 * 3600
    login_limit: int = 5  # failed sign-ins per login and per address ...
    login_window_s: float = 900.0  # ... within this many seconds, then refused until the window passes
    # Password checks (argon2) run in this many threads, off the event loop (None: cores - 1);
    # at most hash_waiting more wait, further sign-ins get 503 at once (None: 4 per thread).
    hash_workers: int | None = None
    hash_waiting: int | None = None
    # HTTP requests started per event-loop iteration, so a burst cannot stall signaling (FairStart).
    requests_per_iteration: int = 4
    calls_per_minute: float = 10.0  # calls one user may start a minute
    # Lost rights (disabled users, revoked links, ended sessions) reach open sockets within this:
    access_poll_s: float = 1.0
    purge_interval_s: float = 60.0  # expired sessions, spent SSO tokens, old events
    # Origins allowed to embed the pages in a frame (the host platform); none by default.
    frame_ancestors: list[str] = field(default_factory=list)
    # Prometheus metrics on a port of their own (None: off), loopback unless told otherwise.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    log_format: str = "plain"  # or "json": one object per line (audit.JsonLines)
    # Let anyone who can reach /ws join any room by name (a lab or load-test server).
    open_rooms: bool = False

    @property
    def store_location(self) -> str | Path:
        """Where Store.open finds the data: the PostgreSQL URL, else the data directory."""
        return self.database or self.data_dir

    def trusted_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(p, strict=False) for p in self.trusted_proxies]
