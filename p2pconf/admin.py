"""Admin commands on the data directory: `p2pconf users ...` and `p2pconf rooms ...`.

They open the same SQLite file as the server (WAL mode), so they work while it runs.
"""

from __future__ import annotations

import concurrent.futures
import csv
import os
import re
import sys
import time
from pathlib import Path
from typing import TextIO

from . import protocol
from .auth import EMAIL_RE, LOGIN_RE, hash_password
from .store import Store, StoreError

DEFAULT_ORIGIN = "http://127.0.0.1:8080"


class AdminError(Exception):
    """A refused admin command; printed as one line, exit code 1."""


def check_user_fields(login: str, name: str, email: str | None) -> tuple[str, str, str | None]:
    if not LOGIN_RE.match(login):
        raise AdminError(f"login {login!r}: 1 to 64 letters, digits or . _ @ -")
    try:
        name = protocol.clean_name(name)
    except protocol.ProtocolError:
        raise AdminError(f"name {name!r}: 1 to 40 printable characters") from None
    email = (email or "").strip() or None
    if email and (not EMAIL_RE.match(email) or not email.isprintable()):
        raise AdminError(f"email {email!r} is not an address")
    return login, name, email


def password_hash_or_error(password: str) -> str:
    try:
        return hash_password(password)
    except ValueError as exc:
        raise AdminError(str(exc)) from None


def hash_passwords(passwords: list[str | None]) -> list[str | None]:
    """argon2 hashes of the given passwords (None stays None), a thread per core (argon2
    releases the GIL): a hash takes a core for ~0.1 s, so 1,000 take a minute on one core."""
    todo = [p for p in passwords if p is not None]
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        done = iter(list(pool.map(hash_password, todo)))
    return [next(done) if p is not None else None for p in passwords]


async def users_add(store: Store, login: str, name: str, email: str | None, password: str | None) -> str:
    login, name, email = check_user_fields(login, name, email)
    pw_hash = password_hash_or_error(password) if password is not None else None
    try:
        await store.add_user(login, name, email, pw_hash)
    except StoreError as exc:
        raise AdminError(str(exc)) from None
    return f"added {login} ({name})" + ("" if pw_hash else ", no password: signs in through SSO only")


async def users_list(store: Store) -> str:
    rows = [f"{'login':<20} {'name':<30} {'email':<28} {'status':<9} password"]
    for u in await store.users():
        rows.append(f"{u.login:<20} {u.name:<30} {u.email or '-':<28} {'active' if u.active else 'disabled':<9} "
                    f"{'yes' if u.has_password else 'no'}")
    return "\n".join(rows)


async def users_disable(store: Store, login: str) -> str:
    try:
        await store.disable_user(login)
    except StoreError as exc:
        raise AdminError(str(exc)) from None
    return f"disabled {login}; their sessions are ended"


async def users_import(store: Store, file: TextIO) -> str:
    """Import login,name,email,password rows; all are checked before any is written."""
    reader = csv.DictReader(file)
    if not reader.fieldnames or not {"login", "name"} <= set(reader.fieldnames):
        raise AdminError("the CSV needs a header with at least login,name (and optionally email,password)")
    rows, problems = [], []
    for line, row in enumerate(reader, start=2):
        try:
            login, name, email = check_user_fields((row.get("login") or "").strip(), row.get("name") or "",
                                                   row.get("email"))
            password = row.get("password") or None
            if password is not None and not 8 <= len(password) <= 1024:
                raise AdminError("a password needs 8 to 1024 characters")
            rows.append((login, name, email, password))
        except AdminError as exc:
            problems.append(f"line {line}: {exc}")
    if problems:
        raise AdminError("nothing imported; fix these rows first: " + "; ".join(problems))
    taken = await store.existing_logins([row[0] for row in rows])
    new, skipped, seen = [], [], set()
    for row in rows:
        if row[0].lower() in taken or row[0].lower() in seen:
            skipped.append(row[0])
        else:
            seen.add(row[0].lower())
            new.append(row)
    hashes = hash_passwords([password for *_, password in new])
    await store.add_users([(login, name, email, pw_hash) for (login, name, email, _), pw_hash in zip(new, hashes)])
    shown = ", ".join(skipped[:20]) + (f" and {len(skipped) - 20} more" if len(skipped) > 20 else "")
    return f"imported {len(new)} users" + (f", skipped {len(skipped)} that exist: {shown}" if skipped else "")


async def rooms_invite(store: Store, name: str, ttl_s: float | None, by: str | None, public_url: str | None,
                       default_ttl_s: float) -> str:
    try:
        name = protocol.clean_room(name)
    except protocol.ProtocolError as exc:
        raise AdminError(f"room name: {exc.detail}") from None
    ttl = ttl_s or default_ttl_s
    creator = None
    if by:
        creator = await store.user_by_login(by)
        if creator is None:
            raise AdminError(f"no user {by!r}")
    room = await store.create_room(name, "guest", created_by=creator.id if creator else None)
    token, invite = await store.create_invite(room, ttl, created_by=creator.id if creator else None)
    origin = (public_url or await store.setting("public_url") or DEFAULT_ORIGIN).rstrip("/")
    return f"{origin}/j/{token}"


async def rooms_revoke(store: Store, token_or_link: str) -> str:
    token = token_or_link.strip().rstrip("/").rsplit("/", 1)[-1]
    invite = await store.invite_by_token(token)
    if invite is None:
        raise AdminError("no invite with that token or link")
    if invite.revoked_at is not None:
        return f"already revoked: {invite.room.name}"
    await store.revoke_invite(invite.id)
    return f"revoked the link to {invite.room.name!r}; its guests are signed out"


async def rooms_list(store: Store) -> str:
    rows = [f"{'invite':>6} {'room':<30} {'state':<8} expires"]
    now = time.time()
    for inv in await store.invites():
        rows.append(f"{inv.id:>6} {inv.room.name[:30]:<30} {inv.state(now):<8} "
                    f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(inv.expires_at))}")
    return "\n".join(rows)


async def run(location: str | Path, command, *args) -> str:
    """Open the store (a data directory or a PostgreSQL URL), run one admin command, close it."""
    try:
        store = await Store.open(location)
    except StoreError as exc:
        raise AdminError(str(exc)) from None
    try:
        return await command(store, *args)
    except StoreError as exc:  # e.g. busy: one line, never a traceback
        raise AdminError(str(exc)) from None
    finally:
        await store.close()


def read_password_stdin() -> str:
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise AdminError("--password-stdin: no password on standard input")
    return password
