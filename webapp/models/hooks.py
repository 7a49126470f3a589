"""A workflow's inbound webhook (webapp/services/hooks.py)."""
from __future__ import annotations

from ..extensions import db
from .base import EncryptedText, utcnow


class WorkflowHook(db.Model):
    """`POST /hooks/<token>` fires the workflow. Only the token's sha256 is kept; a rotation
    replaces it (the old token stops at once), a revocation keeps it so the old token is told
    it was revoked (410) rather than unknown."""

    __tablename__ = "workflow_hooks"
    id = db.Column(db.Integer, primary_key=True)
    workflow_id = db.Column(db.Integer, db.ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False,
                            unique=True)
    token_hash = db.Column(db.String(64), nullable=False, unique=True)
    token_prefix = db.Column(db.String(16), nullable=False)  # shown in lists, never enough to call it
    # The HMAC secret a signed hook checks bodies with (X-Hub-Signature-256 or Stripe-Signature)
    secret = db.Column(EncryptedText, nullable=True)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    revoked_at = db.Column(db.DateTime, nullable=True)
