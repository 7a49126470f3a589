"""API keys: shown once, stored as a SHA-256 hash, found by prefix, compared in constant time."""
from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta

from ..crypto import hash_api_key, same_hash
from ..extensions import db
from ..models import ApiKey, Team
from ..models.base import utcnow
from ..vocabulary import Role
from . import audit, roles
from .access import Principal
from .errors import Forbidden, Invalid, NotFound

PREFIX_LEN = 16
KEY_CHARS = re.compile(r"[A-Za-z0-9_-]+")  # "hs_live_" + 8 random characters


MAX_DAYS = 3650
SCOPES = {"full": Role.ADMIN, "read": Role.VIEWER}  # the contract's key scopes, as roles


def create_key(principal: Principal, team_id: int, role: str = Role.ADMIN, mode: str = "live", name: str = "",
               expires_in_days: int | None = None, expires_at: datetime | None = None) -> tuple[ApiKey, str]:
    """A new key, and the key itself (shown once); it expires after `expires_in_days`, or at
    `expires_at`, if given. Its role is at most its maker's."""
    roles.require(principal, team_id, "key.create")
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_DAYS:
        raise Invalid("a key expires after 1 to 3650 days", {"expiresInDays": f"1 to {MAX_DAYS} days"})
    now = utcnow()
    if expires_at is not None and not now < expires_at <= now + timedelta(days=MAX_DAYS):
        raise Invalid("a key expires in the future, within 3650 days", {"expiresAt": "in the future, within 3650 days"})
    role = roles.parse(role)
    if not roles.at_least(principal.roles[team_id], Role(role)):
        raise Forbidden(f"a key's role is at most its maker's: you are {principal.roles[team_id]}",
                        {"role": f"at most {principal.roles[team_id]}"})
    if mode not in ("live", "test"):
        raise Invalid("mode is live or test", {"mode": "live or test"})
    if db.session.get(Team, team_id) is None:
        raise NotFound(f"no team {team_id}")
    raw = f"hs_{mode}_{secrets.token_urlsafe(32)}"  # 43 url-safe characters, 256 bits
    key = ApiKey(team_id=team_id, name=name[:100], prefix=raw[:PREFIX_LEN], key_hash=hash_api_key(raw),
                 role=role, mode=mode, created_at=now, created_by_id=principal.user_id,
                 expires_at=now + timedelta(days=expires_in_days) if expires_in_days else expires_at)
    db.session.add(key)
    audit.record(principal, team_id, "key.create", "api_key", key.prefix + "…",
                 {"name": [None, key.name], "role": [None, role], "mode": [None, mode],
                  **({"expiresAt": [None, key.expires_at.isoformat()]} if key.expires_at else {})})
    db.session.commit()
    return key, raw


def expired(key: ApiKey) -> bool:
    return key.expires_at is not None and key.expires_at <= utcnow()


def authenticate(raw: str) -> ApiKey | None:
    """The unrevoked key that `raw` is (expired or not: the caller says which), or None. Records
    last use (at most once a minute)."""
    if not raw.startswith(("hs_live_", "hs_test_")) or len(raw) > 200 or not KEY_CHARS.fullmatch(raw):
        return None
    digest = hash_api_key(raw)
    match = None
    for key in db.session.query(ApiKey).filter_by(prefix=raw[:PREFIX_LEN]).all():
        if same_hash(key.key_hash, digest) and key.revoked_at is None:
            match = key
    if match is not None and not expired(match):
        now = utcnow()
        if match.last_used_at is None or (now - match.last_used_at).total_seconds() > 60:
            match.last_used_at = now
            db.session.commit()
    return match


def list_keys(principal: Principal, team_id: int) -> list[ApiKey]:
    roles.require(principal, team_id, "key.read")
    return db.session.query(ApiKey).filter_by(team_id=team_id).order_by(ApiKey.id.desc()).all()


def revoke(principal: Principal, team_id: int, key_id: int) -> ApiKey:
    roles.require(principal, team_id, "key.revoke")
    key = db.session.get(ApiKey, key_id)
    if key is None or key.team_id != team_id:
        raise NotFound("no such key")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        audit.record(principal, team_id, "key.revoke", "api_key", key.prefix + "…", {"name": [key.name, None]})
        db.session.commit()
    return key
