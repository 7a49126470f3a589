"""API keys: shown once, stored as a SHA-256 hash, found by prefix, compared in constant time."""
from __future__ import annotations

import re
import secrets
from datetime import timedelta

from ..crypto import hash_api_key, same_hash
from ..extensions import db
from ..models import ApiKey, Team
from ..models.base import utcnow
from .errors import Invalid, NotFound

PREFIX_LEN = 16
KEY_CHARS = re.compile(r"[A-Za-z0-9_-]+")  # "hs_live_" + 8 random characters


MAX_DAYS = 3650


def create_key(team_id: int, scope: str = "full", mode: str = "live", name: str = "",
               expires_in_days: int | None = None) -> tuple[ApiKey, str]:
    """A new key, and the key itself (shown once); it expires after `expires_in_days` if given."""
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_DAYS:
        raise Invalid("a key expires after 1 to 3650 days", {"expiresInDays": f"1 to {MAX_DAYS} days"})
    if scope not in ("full", "read"):
        raise Invalid("scope is full or read", {"scope": "full or read"})
    if mode not in ("live", "test"):
        raise Invalid("mode is live or test", {"mode": "live or test"})
    if db.session.get(Team, team_id) is None:
        raise NotFound(f"no team {team_id}")
    raw = f"hs_{mode}_{secrets.token_urlsafe(32)}"  # 43 url-safe characters, 256 bits
    now = utcnow()
    key = ApiKey(team_id=team_id, name=name[:100], prefix=raw[:PREFIX_LEN], key_hash=hash_api_key(raw),
                 scope=scope, mode=mode, created_at=now,
                 expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None)
    db.session.add(key)
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


def list_keys(team_id: int) -> list[ApiKey]:
    return db.session.query(ApiKey).filter_by(team_id=team_id).order_by(ApiKey.id.desc()).all()


def revoke(team_id: int, key_id: int) -> ApiKey:
    key = db.session.get(ApiKey, key_id)
    if key is None or key.team_id != team_id:
        raise NotFound("no such key")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        db.session.commit()
    return key
