"""A backfill: one run per schedule instant of a past range (webapp/services/backfills.py)."""
from __future__ import annotations

from ..extensions import db
from .base import utcnow


class Backfill(db.Model):
    """The range's instants are fired in order, at most `max_concurrent` of its runs active at
    once: `next_at` is the next instant to fire (null once every instant is fired, or when it was
    cancelled). Its row is written first by whoever fires its next instants, so two of them (two
    of its runs ending at once, the scheduler's sweep) fire each instant once."""

    __tablename__ = "backfills"
    id = db.Column(db.Integer, primary_key=True)
    public_id = db.Column(db.String(32), nullable=False, unique=True)
    team_id = db.Column(db.Integer, db.ForeignKey("teams.id", ondelete="CASCADE"), nullable=False)
    workflow_id = db.Column(db.Integer, db.ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False,
                            index=True)
    # The schedule as it was when the backfill was asked for: a later edit does not change its instants.
    schedule = db.Column(db.String(200), nullable=False)
    timezone = db.Column(db.String(64), nullable=False)
    from_at = db.Column(db.DateTime, nullable=False)
    to_at = db.Column(db.DateTime, nullable=False)
    max_concurrent = db.Column(db.Integer, nullable=False)
    total = db.Column(db.Integer, nullable=False)  # instants in the range
    made = db.Column(db.Integer, nullable=False, default=0)  # instants fired
    skipped = db.Column(db.Integer, nullable=False, default=0)  # instants that had a run already
    next_at = db.Column(db.DateTime, nullable=True, index=True)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    created_by = db.Column(db.String(200), nullable=True)
    cancelled_at = db.Column(db.DateTime, nullable=True)

    workflow = db.relationship("Workflow")
