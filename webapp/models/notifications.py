"""Events (workflow.failed, .recovered, .silent, .missed), notification channels and their deliveries."""
from __future__ import annotations

from ..extensions import db
from ..vocabulary import EventKind
from .base import JSON, EncryptedJSON, utcnow



class Event(db.Model):
    __tablename__ = "events"
    id = db.Column(db.Integer, primary_key=True)
    team_id = db.Column(db.Integer, db.ForeignKey("teams.id", ondelete="CASCADE"), nullable=False, index=True)
    kind = db.Column(db.String(40), nullable=False)
    workflow_id = db.Column(db.Integer, db.ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False,
                            index=True)  # a workflow's delete cascades here
    # null for an event about a workflow rather than a run (workflow.silent, a missed fire)
    run_id = db.Column(db.Integer, db.ForeignKey("runs.id", ondelete="CASCADE"), nullable=True)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    # What a workflow event says besides its kind (how many instants a scheduler outage cost)
    detail = db.Column(db.Text, nullable=True)
    # One event per final run and kind, however often the code path is replayed (events without a
    # run are made once by the compare-and-set that decides them).
    __table_args__ = (db.UniqueConstraint("run_id", "kind"),)


class NotificationChannel(db.Model):
    __tablename__ = "notification_channels"
    id = db.Column(db.Integer, primary_key=True)
    team_id = db.Column(db.Integer, db.ForeignKey("teams.id", ondelete="CASCADE"), nullable=False, index=True)
    kind = db.Column(db.String(20), nullable=False)  # slack | discord | email | webhook
    name = db.Column(db.String(100), nullable=False)
    # URLs, addresses and secrets: encrypted at rest.
    config = db.Column(EncryptedJSON, nullable=False)
    events = db.Column(JSON, nullable=False, default=lambda: [EventKind.FAILED])
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    # Permanent failures (the endpoint refused the message for good) since the last delivery that
    # went through; at CHANNEL_DISABLE_AFTER the channel is disabled until a member enables it.
    failures_in_a_row = db.Column(db.Integer, nullable=False, default=0, server_default="0")
    last_error = db.Column(db.Text, nullable=True)
    last_error_at = db.Column(db.DateTime, nullable=True)
    disabled_at = db.Column(db.DateTime, nullable=True)  # no new notification is made for it meanwhile


class Notification(db.Model):
    """The outbox entry of one message to one channel (an event's, or a test's).

    Written in the transaction that creates the event; each delivery attempt is one RQ job that
    claims the row with a compare-and-set (pending -> sending), records a NotificationDelivery,
    and either finishes it or sets `next_attempt_at`. The scheduler's sweep enqueues what is due
    and was never (or no longer) handed to RQ, and takes back attempts whose worker died."""

    __tablename__ = "notifications"
    id = db.Column(db.Integer, primary_key=True)
    team_id = db.Column(db.Integer, db.ForeignKey("teams.id", ondelete="CASCADE"), nullable=False)
    channel_id = db.Column(db.Integer, db.ForeignKey("notification_channels.id", ondelete="CASCADE"),
                           nullable=False)
    event_id = db.Column(db.Integer, db.ForeignKey("events.id", ondelete="CASCADE"), nullable=True,
                         index=True)  # null: a test; indexed for the cascade of a removed run
    state = db.Column(db.String(10), nullable=False, default="pending")  # pending | sending | sent | failed
    attempts = db.Column(db.Integer, nullable=False, default=0)
    next_attempt_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    enqueued_at = db.Column(db.DateTime, nullable=True)
    claimed_at = db.Column(db.DateTime, nullable=True)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    __table_args__ = (db.UniqueConstraint("channel_id", "event_id"),
                      db.Index("ix_notifications_state_next", "state", "next_attempt_at"),
                      # One notification per team in flight, enforced by the database: two claims
                      # racing for one team's rows cannot both see "none sending" and both win.
                      db.Index("uq_notifications_one_sending_per_team", "team_id", unique=True,
                               postgresql_where=db.text("state = 'sending'"),
                               sqlite_where=db.text("state = 'sending'")))


class NotificationDelivery(db.Model):
    """One attempt to deliver a notification, recorded before it is made."""

    __tablename__ = "notification_deliveries"
    id = db.Column(db.Integer, primary_key=True)
    notification_id = db.Column(db.Integer, db.ForeignKey("notifications.id", ondelete="CASCADE"), nullable=True,
                                index=True)  # the sweep's stuck deliveries; a notification's delete
    channel_id = db.Column(db.Integer, db.ForeignKey("notification_channels.id", ondelete="CASCADE"),
                           nullable=False, index=True)
    event_id = db.Column(db.Integer, db.ForeignKey("events.id", ondelete="CASCADE"), nullable=True,
                         index=True)  # null: a test; indexed for the cascade of a removed run
    attempt = db.Column(db.Integer, nullable=False, default=1)
    status = db.Column(db.String(10), nullable=False, default="pending")  # pending | sent | failed
    response_code = db.Column(db.Integer, nullable=True)
    error = db.Column(db.Text, nullable=True)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
