"""Events (workflow.failed, workflow.recovered), notification channels and their deliveries."""
from __future__ import annotations

from ..extensions import db
from .base import JSON, EncryptedJSON, utcnow

EVENTS = ("workflow.failed", "workflow.recovered")


class Event(db.Model):
    __tablename__ = "events"
    id = db.Column(db.Integer, primary_key=True)
    team_id = db.Column(db.Integer, db.ForeignKey("teams.id", ondelete="CASCADE"), nullable=False, index=True)
    kind = db.Column(db.String(40), nullable=False)
    workflow_id = db.Column(db.Integer, db.ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False)
    run_id = db.Column(db.Integer, db.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    # One event per final run and kind, however often the code path is replayed.
    __table_args__ = (db.UniqueConstraint("run_id", "kind"),)


class NotificationChannel(db.Model):
    __tablename__ = "notification_channels"
    id = db.Column(db.Integer, primary_key=True)
    team_id = db.Column(db.Integer, db.ForeignKey("teams.id", ondelete="CASCADE"), nullable=False, index=True)
    kind = db.Column(db.String(20), nullable=False)  # slack | discord | email | webhook
    name = db.Column(db.String(100), nullable=False)
    # URLs, addresses and secrets: encrypted at rest.
    config = db.Column(EncryptedJSON, nullable=False)
    events = db.Column(JSON, nullable=False, default=lambda: ["workflow.failed"])
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    disabled_at = db.Column(db.DateTime, nullable=True)


class NotificationDelivery(db.Model):
    __tablename__ = "notification_deliveries"
    id = db.Column(db.Integer, primary_key=True)
    channel_id = db.Column(db.Integer, db.ForeignKey("notification_channels.id", ondelete="CASCADE"),
                           nullable=False, index=True)
    event_id = db.Column(db.Integer, db.ForeignKey("events.id", ondelete="CASCADE"), nullable=True)  # null: a test
    attempt = db.Column(db.Integer, nullable=False, default=1)
    status = db.Column(db.String(10), nullable=False, default="pending")  # pending | sent | failed
    response_code = db.Column(db.Integer, nullable=True)
    error = db.Column(db.Text, nullable=True)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
