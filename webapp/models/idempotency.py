"""Idempotency keys of the fires a client may send twice (webapp/services/idempotency.py)."""
from __future__ import annotations

from ..extensions import db
from .base import utcnow


class IdempotencyKey(db.Model):
    """One `Idempotency-Key` of a team and the run its first request made, inserted in that run's
    transaction: the unique (team, key) lets one of two concurrent requests commit, never both."""

    __tablename__ = "idempotency_keys"
    id = db.Column(db.Integer, primary_key=True)
    team_id = db.Column(db.Integer, db.ForeignKey("teams.id", ondelete="CASCADE"), nullable=False)
    key = db.Column(db.String(255), nullable=False)
    # sha256 of what the request asked (its route, its target, its body): the same key sent with
    # another request is refused rather than answered with a run it did not ask for
    request_hash = db.Column(db.String(64), nullable=False)
    run_id = db.Column(db.Integer, db.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow, index=True)
    __table_args__ = (db.UniqueConstraint("team_id", "key", name="uq_idempotency_keys_team_key"),)
