"""A secret shown once after a redirect (a new API key, a webhook's signing secret), kept out of
the session cookie, which is signed, not encrypted: whoever sees the cookie could read it. The
secret waits in Redis for REVEAL_TTL_SEC under a random handle, the cookie carries only the
handle, and the next page takes it out (GETDEL): shown once, a reload shows nothing more."""
from __future__ import annotations

import secrets

import redis
from flask import session

from ..connections import get_redis
from ..keys import REVEAL

REVEAL_TTL_SEC = 300


def stash(name: str, value: str) -> bool:
    """Keep `value` for the next page under `name`; False if Redis cannot (show it right away)."""
    handle = secrets.token_urlsafe(24)
    try:
        get_redis().set(REVEAL + handle, value, ex=REVEAL_TTL_SEC)
    except redis.RedisError:
        return False
    session[name] = handle
    return True


def take(name: str) -> str | None:
    """The value stashed under `name` for this session, once."""
    handle = session.pop(name, None)
    if not handle:
        return None
    try:
        value = get_redis().getdel(REVEAL + handle)
    except redis.RedisError:
        return None
    return value.decode() if value is not None else None
