"""Real servers the suite starts for itself: PostgreSQL and Redis (Debian's packages), on 127.0.0.1.

They run inside the suite's own network namespace (scripts/test) and are stopped
when the session ends. Where the package is missing, the tests that need it fail
under CI (scripts/test installs it) and are skipped elsewhere, saying why.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing(what: str, package: str):
    """A service this machine lacks: a failure in CI, a skip on a developer's machine."""
    message = f"{what} is not installed (Debian package {package}; scripts/test installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _as_postgres_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as Debian's `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class PostgresServer:
    url: str  # without a database name
    version: str
    port: int

    def sql(self, statement: str) -> None:
        """Run one statement as the superuser (psql, Debian's postgresql-client)."""
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port),
                        "-U", "postgres", "-d", "postgres", "-c", statement],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)


@contextlib.contextmanager
def postgres_server():
    """A throw-away PostgreSQL cluster on 127.0.0.1 (trust auth, no fsync); yields its base URL."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        missing("PostgreSQL", "postgresql")
    bin_dir = Path(found[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="p2pconf-pg-"))
    data, port = root / "data", free_port()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    try:
        subprocess.run(_as_postgres_user([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                                          "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off " \
                  f"-c full_page_writes=off -c max_connections=200"
        subprocess.run(_as_postgres_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                                          str(root / "log"), "-w", "-t", "60", "start"]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=90)
        try:
            yield PostgresServer(f"postgresql://postgres@127.0.0.1:{port}", bin_dir.parent.parent.name, port)
        finally:
            subprocess.run(_as_postgres_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def redis_server():
    """A throw-away Redis on 127.0.0.1 (no persistence); yields its URL (database 0)."""
    binary = shutil.which("redis-server")
    if binary is None:
        missing("Redis", "redis-server")
    root, port = Path(tempfile.mkdtemp(prefix="p2pconf-redis-")), free_port()
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                             "--dir", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # bounded: until it accepts connections
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {proc.returncode}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(root, ignore_errors=True)
