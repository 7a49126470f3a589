"""`Idempotency-Key` on the fires a client may send twice (the API's trigger and retry): the same key
from the same team within KEY_TTL answers the run the first request made, never a second run.

The key's row is inserted in the transaction of the run it makes, under a unique (team, key): of
two concurrent requests, on any web processes, one commits; the other's commit fails, and it
answers the winner's run (webapp/services/runs.py). A key sent with another request (another
workflow, run or env) is refused (422) rather than answered with a run it did not ask for. Rows
older than KEY_TTL are deleted by the scheduler's sweep, and ignored before that."""
from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta

from sqlalchemy import delete, select

from ..extensions import db
from ..models import IdempotencyKey, Run
from ..models.base import utcnow
from .errors import Invalid, Mismatch

HEADER = "Idempotency-Key"
KEY_TTL = timedelta(hours=24)
KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII, no spaces: a UUID, a job name
PRUNE_BATCH = 1000


def valid_key(raw: str | None) -> str | None:
    """The header's key, None when absent, or Invalid naming the header."""
    if raw is None:
        return None
    if not KEY_PATTERN.fullmatch(raw):
        raise Invalid(f"{HEADER} is 1 to 255 printable ASCII characters without spaces",
                      {HEADER: "1 to 255 printable ASCII characters without spaces"})
    return raw


def fingerprint(action: str, target: str, body: dict | None = None) -> str:
    """What a request asks for, hashed: its action, its target's id and its body."""
    text = json.dumps([action, target, body or {}], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def first_run(team_id: int, key: str, request_hash: str) -> Run | None:
    """The run the key's first request made within KEY_TTL, or None; Mismatch when the key was
    sent with another request."""
    row = db.session.scalar(select(IdempotencyKey).where(
        IdempotencyKey.team_id == team_id, IdempotencyKey.key == key,
        IdempotencyKey.created_at > utcnow() - KEY_TTL))
    if row is None:
        return None
    if row.request_hash != request_hash:
        raise Mismatch(f"this {HEADER} was sent with another request in the last 24 hours",
                       {HEADER: "already used for another request"})
    return db.session.get(Run, row.run_id)


def claim(team_id: int, key: str, request_hash: str, run: Run) -> None:
    """The key's row for `run`, in the run's transaction (flushed: the run needs its id). An
    expired row of the same key goes first, in the same transaction."""
    db.session.execute(delete(IdempotencyKey).where(
        IdempotencyKey.team_id == team_id, IdempotencyKey.key == key,
        IdempotencyKey.created_at <= utcnow() - KEY_TTL))
    db.session.flush()
    db.session.add(IdempotencyKey(team_id=team_id, key=key, request_hash=request_hash, run_id=run.id,
                                  created_at=utcnow()))


def prune_expired() -> int:
    """Delete up to PRUNE_BATCH keys older than KEY_TTL (a sweep step)."""
    old = select(IdempotencyKey.id).where(IdempotencyKey.created_at <= utcnow() - KEY_TTL).limit(PRUNE_BATCH)
    ids = db.session.scalars(old).all()
    if ids:
        db.session.execute(delete(IdempotencyKey).where(IdempotencyKey.id.in_(ids)))
    db.session.commit()
    return len(ids)
