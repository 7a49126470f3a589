"""The audit log: one row for each change of state, written in the change's own transaction."""
from __future__ import annotations

from sqlalchemy import BigInteger, Integer, event

from ..extensions import db
from .base import JSON, utcnow


class AuditEntry(db.Model):
    """Never changed once written (an UPDATE raises); removed only by the retention sweep
    (AUDIT_RETENTION_DAYS). No route changes or deletes one."""
    __tablename__ = "audit_log"
    id = db.Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at = db.Column(db.DateTime, nullable=False, default=utcnow, index=True)
    # null: a sign-in attempt for an address no team has
    team_id = db.Column(db.Integer, db.ForeignKey("teams.id", ondelete="CASCADE"), nullable=True)
    actor = db.Column(db.String(200), nullable=False)  # in words: an email, "API key ci (hs_live_ab…)", "operator (CLI)"
    actor_user_id = db.Column(db.Integer, nullable=True)  # no foreign key: the row outlives its actor
    actor_key_id = db.Column(db.Integer, nullable=True)
    ip = db.Column(db.String(64), nullable=True)
    user_agent = db.Column(db.String(300), nullable=True)
    action = db.Column(db.String(40), nullable=False)  # services/roles.py's names, and login.* / sso.login
    target_type = db.Column(db.String(40), nullable=False)
    target = db.Column(db.String(200), nullable=False)
    diff = db.Column(JSON, nullable=True)  # {field: [before, after]}, secret values never in it

    __table_args__ = (db.Index("ix_audit_log_team_id_id", "team_id", "id"),
                      db.Index("ix_audit_log_team_id_action_id", "team_id", "action", "id"))


@event.listens_for(AuditEntry, "before_update")
def _never_changed(_mapper, _connection, _target):
    raise RuntimeError("an audit row is never changed")
