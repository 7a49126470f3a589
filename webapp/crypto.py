"""Secrets at rest: Fernet with a key derived from SECRET_KEY by HKDF-SHA256."""
from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache

from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app


@lru_cache(maxsize=8)
def _fernet(secret: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"workflows-at-rest",
               info=b"fernet-v1").derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(key))


@lru_cache(maxsize=8)
def _readers(secret: str, production: bool) -> MultiFernet:
    """The current key, then (outside production only) the old public development default: values
    saved by a development installation before it had a key of its own stay readable (and are
    re-saved with the new). Production never reads with a key everyone knows."""
    from .config import DEV_SECRET
    keys = [_fernet(secret)] + ([_fernet(DEV_SECRET)] if secret != DEV_SECRET and not production else [])
    return MultiFernet(keys)


def encrypt(text: str) -> bytes:
    return _fernet(current_app.config["SECRET_KEY"]).encrypt(text.encode())


def decrypt(token: bytes) -> str:
    return _readers(current_app.config["SECRET_KEY"], current_app.config["ENV_NAME"] == "production").decrypt(token).decode()


def hash_api_key(key: str) -> str:
    """API keys carry 190+ random bits, so SHA-256 is the right hash (a slow one buys nothing)."""
    return hashlib.sha256(key.encode()).hexdigest()


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
