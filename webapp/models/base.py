"""Column helpers shared by the models."""
from __future__ import annotations

import secrets
import string
from datetime import datetime, timezone

from sqlalchemy.types import JSON, LargeBinary, TypeDecorator

from ..crypto import decrypt, encrypt
from .clock import clock

_ALPHABET = string.ascii_lowercase + string.digits


def utcnow() -> datetime:
    """Now on the database's clock (models/clock.py), naive UTC: stored the same way on SQLite and
    PostgreSQL. Outside an app, this host's clock."""
    return clock.now()


def new_public_id(prefix: str, length: int = 20) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def isoformat(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.isoformat(timespec="milliseconds") + "Z"


class EncryptedText(TypeDecorator):
    """Text encrypted at rest with a key derived from SECRET_KEY; stored bytes never hold it clear."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else encrypt(value)

    def process_result_value(self, value, dialect):
        return None if value is None else decrypt(bytes(value))


class EncryptedJSON(EncryptedText):
    cache_ok = True

    def process_bind_param(self, value, dialect):
        import json
        return None if value is None else encrypt(json.dumps(value))

    def process_result_value(self, value, dialect):
        import json
        return None if value is None else json.loads(decrypt(bytes(value)))


__all__ = ["JSON", "EncryptedText", "EncryptedJSON", "utcnow", "new_public_id", "isoformat"]
