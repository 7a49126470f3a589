"""Signing in and out, and the audit rows they leave (one per team of the user; an unknown
address's failed attempt has a row of no team, which the operator's export reads)."""
from __future__ import annotations

import functools

from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from ..models import User
from . import audit


@functools.cache
def _no_user_hash() -> str:
    """Checked when the email is unknown, so that a sign-in takes the same time either way. Made at
    the first such sign-in, not at import: every worker and CLI process imports this module."""
    return generate_password_hash("no user has this password")


def record(user: User | None, email: str, action: str, source: dict, diff: dict | None = None) -> None:
    """`action` of `user` (or of the unknown `email`) in each of the user's teams."""
    teams = [m.team_id for m in user.memberships] if user is not None else []
    for team_id in teams or [None]:
        audit.record(None, team_id, action, "user", email, diff, actor=email or "(no email)", source=source)


def with_password(email: str, password: str, source: dict) -> User | None:
    """The user whose password this is, or None; either way the attempt is in the audit log."""
    email = email.strip().lower()
    user = None if "\x00" in email else db.session.query(User).filter_by(email=email).first()
    if user is None:
        check_password_hash(_no_user_hash(), password)  # the same work as a real check
        ok = False
    else:
        ok = user.check_password(password)
    record(user, email[:200], "login" if ok else "login.failed", source, None if ok else {"method": "password"})
    db.session.commit()
    return user if ok else None


def sign_out(user: User, source: dict) -> None:
    """Ends every session of the user (all browsers, remember cookies and live-log sockets)."""
    user.session_version = (user.session_version or 1) + 1
    record(user, user.email, "logout", source)
    db.session.commit()
