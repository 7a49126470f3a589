"""Cursors of newest-first lists (runs, the audit log): the last row's id, opaque to callers."""
from __future__ import annotations

import base64
import binascii

from .errors import Invalid


def decode(cursor: str) -> int:
    try:
        value = int(base64.urlsafe_b64decode(cursor.encode() + b"==").decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        value = 0
    if not 0 < value <= 2**63 - 1:
        raise Invalid("cursor is not valid", {"cursor": "not a cursor this API gave out"})
    return value


def encode(row_id: int) -> str:
    return base64.urlsafe_b64encode(str(row_id).encode()).decode().rstrip("=")
