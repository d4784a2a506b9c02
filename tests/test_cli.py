"""The `p2pconf` command as an admin or QA engineer runs it: serve, then bots against it."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
import urllib.request

import pytest

from .conftest import both_stores
from .services import free_port

P2PCONF = [sys.executable, "-m", "p2pconf.cli"]


def start_server(data, *extra: str, scheme: str = "http", context=None) -> tuple[subprocess.Popen, str]:
    """`p2pconf serve` on a free port; returns once /healthz answers (bounded)."""
    port = free_port()
    proc = subprocess.Popen([*P2PCONF, "serve", "--port", str(port), "--data", str(data), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"{scheme}://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1, context=context).close()
            return proc, url
        except OSError:
            time.sleep(0.1)  # bounded by the deadline above
    proc.kill()
    raise AssertionError(f"server did not come up: {proc.communicate()[0]}")


def stop_server(proc: subprocess.Popen) -> str:
    proc.terminate()
    return proc.communicate(timeout=10)[0]


@pytest.fixture
def served(tmp_path):
    """Start `p2pconf serve` with extra args; yields its base URL."""
    procs = []

    def start(*extra: str) -> str:
        proc, url = start_server(tmp_path / "data", *extra)
        procs.append(proc)
        return url

    yield start
    for proc in procs:
        stop_server(proc)


def bots(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([*P2PCONF, "bots", *args], capture_output=True, text=True, timeout=timeout)


def test_bots_report_a_full_mesh_and_write_json(served, tmp_path):
    url = served("--open-rooms")
    out = tmp_path / "report.json"
    run = bots("--server", url, "--room", "cli", "--count", "3", "--duration", "3", "--processes", "2",
               "--json", str(out))
    assert run.returncode == 0, run.stderr
    assert "3 participants, 12/12 tracks flowing" in run.stdout
    assert "tracks" in run.stderr  # progress was shown
    report = json.loads(out.read_text())
    assert report["tracks_expected"] == report["tracks_flowing"] == 12
    assert report["processes"] == 2  # bots from two processes merged into one report
    assert {(l["from"], l["to"]) for l in report["links"]} == {
        (f"bot-{i}", f"bot-{j}") for i in (1, 2, 3) for j in (1, 2, 3) if i != j}


def test_bots_exit_nonzero_with_a_reason_when_the_room_is_full(served):
    url = served("--max-room-size", "2", "--open-rooms")
    for processes in ("1", "2"):
        run = bots("--server", url, "--room", "tiny", "--count", "3", "--duration", "1", "--processes", processes)
        assert run.returncode == 1
        assert run.stderr.strip().splitlines()[-1].startswith("p2pconf bots: the server refused: room-full")


def test_bots_exit_nonzero_when_no_server_answers():
    run = bots("--server", f"http://127.0.0.1:{free_port()}", "--count", "2", "--duration", "1", "--processes", "1")
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("p2pconf bots:") and "Connect" in last


def test_bad_arguments_are_refused_clearly():
    run = bots("--video", "huge")
    assert run.returncode == 2 and "320x240@15" in run.stderr
    run = bots("--count", "0")
    assert run.returncode == 2 and "--count" in run.stderr


def admin(*args: str, data, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*P2PCONF, *args, "--data", str(data)], input=stdin, capture_output=True, text=True,
                          timeout=60)


def test_admin_commands_work_while_the_server_runs_and_bots_use_the_link(served, tmp_path):
    url = served("--public-url", "http://127.0.0.1")  # recorded for links; the Origin check is not involved
    data = tmp_path / "data"
    added = admin("users", "add", "anna", "--name", "Anna Berg", "--password-stdin", data=data,
                  stdin="a long password\n")
    assert added.returncode == 0, added.stderr
    assert "anna" in admin("users", "list", data=data).stdout
    made = admin("rooms", "invite", "QA mesh", "--expires", "2h", "--by", "anna", data=data)
    assert made.returncode == 0, made.stderr
    link = made.stdout.strip()
    assert link.startswith("http://127.0.0.1/j/")
    served_link = url + link[len("http://127.0.0.1"):]
    run = bots("--invite", served_link, "--count", "2", "--duration", "2")
    assert run.returncode == 0, run.stderr
    assert "2 participants, 4/4 tracks flowing" in run.stdout
    assert "QA mesh" in admin("rooms", "list", data=data).stdout
    assert admin("rooms", "revoke", link, data=data).returncode == 0
    run = bots("--invite", served_link, "--count", "2", "--duration", "2")
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].startswith("p2pconf bots: the server refused: invite-revoked")


def test_admin_errors_are_one_clear_line(tmp_path):
    data = tmp_path / "data"
    bad = admin("users", "add", "no spaces allowed", "--name", "X", data=data)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "login" in bad.stderr
    assert admin("rooms", "revoke", "http://x/j/nothing", data=data).returncode == 1
    expires = admin("rooms", "invite", "R", "--expires", "soon", data=data)  # a bad option: exit 2
    assert expires.returncode == 2 and expires.stderr.count("\n") == 1 and "--expires" in expires.stderr
    run = bots("--invite", "http://127.0.0.1:1/rooms/x")
    assert run.returncode == 2 and "guest link" in run.stderr


@pytest.mark.parametrize("option", [
    ["--invite-ttl", "soon"], ["--invite-ttl", "0d"], ["--max-room-size", "0"], ["--max-room-size", "99"],
    ["--port", "70000"], ["--port", "http"], ["--upload-kbps", "-5"], ["--ring-timeout", "0"],
    ["--ring-timeout", "nan"], ["--public-url", "conf.example.org"], ["--public-url", "https://x.org/path"],
    ["--trusted-proxy", "proxy.local"], ["--stun", "http://stun.example.org"], ["--turn", "stun:x:3478"],
    ["--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"], ["--frame-ancestors", "*"],
])
def test_serve_refuses_a_bad_option_in_one_line_with_exit_2(tmp_path, option):
    run = subprocess.run([*P2PCONF, "serve", "--data", str(tmp_path / "data"), *option], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("p2pconf serve: argument " + option[0])
    assert "Traceback" not in run.stderr and not (tmp_path / "data").exists()  # nothing was started


def test_serve_warns_when_listening_beyond_loopback_without_public_url(tmp_path):
    # the suite's network namespace has nothing but loopback: 0.0.0.0 reaches nothing else
    proc = subprocess.Popen([*P2PCONF, "serve", "--host", "0.0.0.0", "--port", str(free_port()),
                             "--data", str(tmp_path / "data")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    output = stop_server_after_line(proc, "p2pconf ")
    assert "warning: listening on 0.0.0.0 without --public-url" in output


def stop_server_after_line(proc: subprocess.Popen, start: str) -> str:
    """Read the server's output until a line starts with `start` (bounded), then stop it."""
    lines = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if not line or line.startswith(start):
            break
    return "".join(lines) + stop_server(proc)


def test_serve_on_an_empty_store_creates_nobody_and_says_how_to_add_someone(tmp_path):
    proc, _ = start_server(tmp_path / "data")
    output = stop_server(proc)
    assert "No users yet" in output and "p2pconf users add" in output
    listing = admin("users", "list", data=tmp_path / "data")
    assert listing.stdout.strip().count("\n") == 0  # the header only: nobody was created


def self_signed(tmp_path) -> tuple[str, str]:
    """A certificate for 127.0.0.1, written as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


def test_serve_speaks_https_with_its_own_certificate(tmp_path):
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(cafile=cert)
    proc, url = start_server(tmp_path / "data", "--tls-cert", cert, "--tls-key", key, scheme="https",
                             context=context)
    try:
        with urllib.request.urlopen(url + "/login", context=context, timeout=5) as page:
            assert page.status == 200
            assert "Secure" in page.headers["Set-Cookie"]  # the CSRF cookie, on an https site
    finally:
        output = stop_server(proc)
    assert "on https://" in output


def test_users_import_checks_every_row_first_and_disable_ends_access(tmp_path):
    data = tmp_path / "data"
    good = tmp_path / "staff.csv"
    good.write_text("login,name,email,password\nanna,Anna Berg,anna@example.org,a long password\n"
                    "bert,Bert Kraus,,\n", encoding="utf-8")
    bad = tmp_path / "bad.csv"
    bad.write_text("login,name,email,password\ncarla,Carla,,a long password\n,No Login,,\n", encoding="utf-8")
    refused = admin("users", "import", str(bad), data=data)
    assert refused.returncode == 1 and "line 3" in refused.stderr
    assert "carla" not in admin("users", "list", data=data).stdout  # nothing was imported
    done = admin("users", "import", str(good), data=data)
    assert done.returncode == 0 and "imported 2 users" in done.stdout
    again = admin("users", "import", str(good), data=data)
    assert "skipped 2" in again.stdout
    assert admin("users", "disable", "anna", data=data).returncode == 0
    listing = admin("users", "list", data=data).stdout.splitlines()
    assert any(line.startswith("anna") and "disabled" in line for line in listing)
    assert any(line.startswith("bert") and line.rstrip().endswith("no") for line in listing)  # SSO only


def test_verbose_access_log_never_shows_guest_or_sso_tokens(tmp_path):
    port = free_port()
    proc = subprocess.Popen([*P2PCONF, "-v", "serve", "--port", str(port), "--data", str(tmp_path / "data")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    guest_token, sso_jwt = "A" * 16 + "b" * 16, "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(base + "/healthz", timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)  # bounded by the deadline
    for path in (f"/j/{guest_token}", f"/sso?token={sso_jwt}"):
        try:
            urllib.request.urlopen(base + path, timeout=5).close()
        except OSError:
            pass  # 404/401 pages are fine: only the log matters here
    output = stop_server(proc)
    assert "GET /j/<redacted>" in output and "token=<redacted>" in output
    assert guest_token not in output and sso_jwt not in output


@pytest.mark.parametrize("command", [["serve", "--port", "1"], ["users", "list"], ["rooms", "list"]])
def test_an_unreachable_postgresql_is_one_line_and_exit_1(command):
    done = subprocess.run([*P2PCONF, *command, "--database", "postgresql://p2pconf@127.0.0.1:1/p2pconf"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().endswith("cannot connect to PostgreSQL: [Errno 111] Connect call failed "
                                        "('127.0.0.1', 1)") and "Traceback" not in done.stderr


def test_an_unreachable_redis_is_one_line_and_exit_1_and_a_wrong_url_exit_2(tmp_path):
    done = subprocess.run([*P2PCONF, "serve", "--port", str(free_port()), "--data", str(tmp_path / "data"),
                           "--redis", "redis://127.0.0.1:1/0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("p2pconf serve: cannot reach Redis at redis://127.0.0.1:1/0")
    done = subprocess.run([*P2PCONF, "serve", "--redis", "http://cache"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "must be a Redis URL" in done.stderr


def test_a_database_that_is_no_postgresql_url_is_refused_before_anything_starts(tmp_path):
    done = subprocess.run([*P2PCONF, "users", "list", "--database", "mysql://x/y"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "must be a PostgreSQL URL" in done.stderr


@both_stores
def test_the_admin_cli_works_on_either_database(store_location):
    where = ["--database", store_location] if isinstance(store_location, str) else ["--data", str(store_location)]
    added = subprocess.run([*P2PCONF, "users", "add", "anna", "--name", "Anna Berg", *where],
                           capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    listed = subprocess.run([*P2PCONF, "users", "list", *where], capture_output=True, text=True, timeout=60)
    assert "Anna Berg" in listed.stdout
