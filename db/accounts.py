"""Accounts for a team server: who may sign in, with which password, and who may publish and manage models.

A reviewer row becomes an *account* once it has a password hash. Passwords are hashed with scrypt from the
standard library (a memory-hard KDF), each with its own random salt, and compared in constant time. Roles are
``reviewer`` (review, label, save looks) and ``admin`` (also publish, import and manage models).

**Team mode** is on when ``ATELIER_TEAM=1`` or when any account exists; ``atelier app`` on an address other than
loopback refuses to start without an admin account and then turns it on. In team mode everyone signs in; without
it (one person on their own machine, ``make demo``) the app asks only for a name and everyone may do everything.

Signing in hands the browser a *session token*: the account name, the account's session epoch and an issue time,
signed with HMAC-SHA256 under a secret kept in ``ATELIER_HOME/session-secret``. It survives a reload; changing the
password or disabling the account bumps the epoch, which makes every token issued before invalid.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.rules import NotFound, apply_if_unchanged, check_name
from db.schema import ROLES, Reviewer, utcnow
from core.errors import AtelierError, InvalidInput
from core.settings import atelier_home

# scrypt's cost: 2**14 × 8 × 128 bytes = 16 MiB and about 50 ms per check; the parameters are stored in each hash,
# so raising them later leaves older hashes readable.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
TOKEN_LIFETIME_S = 14 * 24 * 3600
SECRET_FILE = "session-secret"
TEAM_ENV = "ATELIER_TEAM"


class AccountError(AtelierError):
    """Signing in or managing accounts failed; the message says why and what to do."""


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    has_password: bool
    disabled: bool
    created_at: datetime

    @property
    def admin(self) -> bool:
        return self.role == "admin"


# --------------------------------------------------------------------------------------------------------------
# Password hashing


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_password_rules(password: object) -> str:
    if not isinstance(password, str):
        raise AccountError("The password must be text.")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"The password is {len(password)} characters long; use at least {MIN_PASSWORD_LENGTH} "
                           "(a few words in a row are easy to remember).")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccountError(f"The password is longer than {MAX_PASSWORD_LENGTH} characters; use a shorter one.")
    return password


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$key`` with a fresh random salt (base64url without padding)."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=KEY_BYTES)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, encoded: str | None) -> bool:
    """True when ``password`` matches; a missing or malformed hash never matches (and never raises)."""
    try:
        scheme, n, r, p, salt, key = (encoded or "").split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(key)
        actual = hashlib.scrypt(password.encode("utf-8"), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
                                dklen=len(expected), maxmem=256 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


@functools.cache
def _dummy_hash() -> str:
    """A hash of nothing in particular: signing in as an unknown name costs the same scrypt as a wrong password,
    so the time it takes does not tell whether the name exists."""
    return hash_password(secrets.token_hex(16))


# --------------------------------------------------------------------------------------------------------------
# Accounts


def _account(row: Reviewer) -> Account:
    return Account(name=row.name, role=row.role, has_password=row.password_hash is not None,
                   disabled=row.disabled_at is not None, created_at=row.created_at)


def _row(session: Session, name: str) -> Reviewer:
    row = session.scalar(select(Reviewer).where(Reviewer.name == str(name).strip()))
    if row is None or row.password_hash is None:
        raise NotFound(f"There is no account {str(name).strip()!r}: `atelier users list` shows them, "
                       "`atelier users add NAME` creates one.")
    return row


def accounts_exist(session: Session) -> bool:
    return bool(session.scalar(select(func.count()).select_from(Reviewer).where(Reviewer.password_hash.is_not(None))))


def team_mode(session: Session) -> bool:
    """Sign-in is required: ``ATELIER_TEAM=1``, or the database has accounts."""
    return os.environ.get(TEAM_ENV, "").strip() == "1" or accounts_exist(session)


def list_accounts(session: Session) -> list[Account]:
    rows = session.scalars(select(Reviewer).where(Reviewer.password_hash.is_not(None)).order_by(Reviewer.name))
    return [_account(row) for row in rows]


def add_account(session: Session, name: str, password: str, *, admin: bool = False) -> Account:
    """Create an account. A name that already has reviews but no password (from single-user use) becomes the
    account, so that person keeps their reviews."""
    clean = check_name("account name", name, 100)
    encoded = hash_password(check_password_rules(password))
    role = "admin" if admin else "reviewer"
    row = session.scalar(select(Reviewer).where(Reviewer.name == clean))
    if row is None:
        row = Reviewer(name=clean, created_at=utcnow(), password_hash=encoded, role=role)
        session.add(row)
        try:
            with session.begin_nested():
                session.flush()
        except IntegrityError:
            raise AccountError(f"{clean!r} was just created by someone else.") from None
        return _account(row)
    # The epoch moves on: a cookie handed out for this name in single-user mode must not sign in as the account.
    if not apply_if_unchanged(session, update(Reviewer)
                              .where(Reviewer.id == row.id, Reviewer.password_hash.is_(None))
                              .values(password_hash=encoded, role=role, session_epoch=Reviewer.session_epoch + 1)):
        raise AccountError(f"{clean!r} already has an account: `atelier users passwd {clean}` sets a new password.")
    session.refresh(row)
    return _account(row)


def set_password(session: Session, name: str, password: str) -> Account:
    """A new password; every session signed in with the old one ends (the epoch moves on)."""
    row = _row(session, name)
    encoded = hash_password(check_password_rules(password))
    apply_if_unchanged(session, update(Reviewer).where(Reviewer.id == row.id)
                       .values(password_hash=encoded, session_epoch=Reviewer.session_epoch + 1))
    session.refresh(row)
    return _account(row)


def _active_admins(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Reviewer).where(
        Reviewer.role == "admin", Reviewer.password_hash.is_not(None), Reviewer.disabled_at.is_(None))) or 0)


def set_role(session: Session, name: str, role: str) -> Account:
    if role not in ROLES:
        raise AccountError(f"Unknown role {role!r}: use one of {', '.join(ROLES)}.")
    row = _row(session, name)
    # Locked, so two admins demoting each other at once cannot leave the team with none.
    session.execute(select(Reviewer.id).where(Reviewer.role == "admin").with_for_update())
    if row.role == "admin" and role != "admin" and row.disabled_at is None and _active_admins(session) <= 1:
        raise AccountError(f"{row.name!r} is the last admin; make someone else admin first.")
    if not apply_if_unchanged(session, update(Reviewer).where(Reviewer.id == row.id, Reviewer.role == row.role)
                              .values(role=role)):
        raise AccountError(f"{row.name!r}'s role was just changed by someone else; see `atelier users list`.")
    session.refresh(row)
    return _account(row)


def set_disabled(session: Session, name: str, disabled: bool) -> Account:
    """Disable (or enable again) an account: it can no longer sign in, its reviews stay, its sessions end."""
    row = _row(session, name)
    session.execute(select(Reviewer.id).where(Reviewer.role == "admin").with_for_update())
    if disabled and row.role == "admin" and row.disabled_at is None and _active_admins(session) <= 1:
        raise AccountError(f"{row.name!r} is the last admin; make someone else admin first.")
    condition = Reviewer.disabled_at.is_(None) if disabled else Reviewer.disabled_at.is_not(None)
    values = {"disabled_at": utcnow() if disabled else None, "session_epoch": Reviewer.session_epoch + 1}
    if not apply_if_unchanged(session, update(Reviewer).where(Reviewer.id == row.id, condition).values(**values)):
        raise AccountError(f"{row.name!r} is already {'disabled' if disabled else 'enabled'}.")
    session.refresh(row)
    return _account(row)


def authenticate(session: Session, name: str, password: str) -> Account:
    """The account when name and password match; one message for every failure, so it tells an outsider nothing."""
    row = session.scalar(select(Reviewer).where(Reviewer.name == str(name).strip()))
    encoded = row.password_hash if row is not None and row.password_hash is not None else _dummy_hash()
    matches = verify_password(str(password), encoded)
    if row is None or row.password_hash is None or not matches or row.disabled_at is not None:
        raise AccountError("Wrong name or password (ask your admin if you have forgotten it).")
    return _account(row)


def is_admin(session: Session, name: str | None) -> bool:
    """May this person publish and manage models? Everyone may outside team mode."""
    if not team_mode(session):
        return True
    if not name:
        return False
    row = session.scalar(select(Reviewer).where(Reviewer.name == name))
    return row is not None and row.role == "admin" and row.password_hash is not None and row.disabled_at is None


def require_admin(session: Session, name: str | None, action: str) -> None:
    if not is_admin(session, name):
        raise AccountError(f"Only an admin may {action}; ask one of the team's admins (`atelier users list`).")


# --------------------------------------------------------------------------------------------------------------
# Session tokens


def _secret(home: Path | None = None) -> bytes:
    """The server's signing key, created once (0600, written to a temporary file and renamed into place)."""
    path = (home or atelier_home()) / SECRET_FILE
    try:
        return _unb64(path.read_text().strip())
    except FileNotFoundError:
        pass
    temporary = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(_b64(secrets.token_bytes(32)))
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(temporary, path)  # never replaces a secret another process created first
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return _unb64(path.read_text().strip())


def _epoch(session: Session, name: str) -> int | None:
    row = session.scalar(select(Reviewer).where(Reviewer.name == name))
    return None if row is None else int(row.session_epoch or 0)


def issue_token(session: Session, name: str, *, home: Path | None = None, now: float | None = None) -> str:
    """A signed token naming this reviewer; verify it with :func:`verify_token`."""
    epoch = _epoch(session, name)
    if epoch is None:
        raise NotFound(f"Unknown reviewer {name!r}.")
    payload = _b64(json.dumps({"n": name, "e": epoch, "t": int(now if now is not None else time.time())},
                              separators=(",", ":")).encode("utf-8"))
    mac = hmac.new(_secret(home), payload.encode("ascii"), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}"


def verify_token(session: Session, token: str | None, *, home: Path | None = None,
                 now: float | None = None) -> str | None:
    """The reviewer a token names, or None when it is forged, expired, or ended by a new password / disabling.

    In team mode the name must be an enabled account; without team mode any known reviewer will do.
    """
    try:
        payload, mac = str(token or "").split(".")
        expected = hmac.new(_secret(home), payload.encode("ascii"), hashlib.sha256).digest()
        if not hmac.compare_digest(_unb64(mac), expected):
            return None
        data = json.loads(_unb64(payload))
        name, epoch, issued = str(data["n"]), int(data["e"]), int(data["t"])
    except (ValueError, KeyError, TypeError, UnicodeError):
        return None
    current = time.time() if now is None else now
    if not 0 <= current - issued <= TOKEN_LIFETIME_S:
        return None
    row = session.scalar(select(Reviewer).where(Reviewer.name == name))
    if row is None or int(row.session_epoch or 0) != epoch:
        return None
    if team_mode(session) and (row.password_hash is None or row.disabled_at is not None):
        return None
    return row.name


__all__ = [
    "Account", "AccountError", "InvalidInput", "MIN_PASSWORD_LENGTH", "TEAM_ENV", "accounts_exist", "add_account",
    "authenticate", "check_password_rules", "hash_password", "is_admin", "issue_token", "list_accounts",
    "require_admin", "set_disabled", "set_password", "set_role", "team_mode", "verify_password", "verify_token",
]
