"""Delivery of events to the team's subscribed channels: each attempt recorded, transient errors
retried with backoff (honouring Retry-After), permanent ones not; one message per channel and event."""
from __future__ import annotations

import logging
import time

from flask import current_app

from webapp.extensions import db
from webapp.models import Event, NotificationChannel, NotificationDelivery, Run
from webapp.models.base import isoformat, utcnow
from webapp.notify import TRANSPORTS, Message, TransportError
from webapp.services.runs import run_url

log = logging.getLogger(__name__)
BACKOFF_BASE_SEC = 1.0
RETRY_AFTER_CAP_SEC = 60.0


def message_for(run: Run, kind: str) -> Message:
    wf = run.workflow
    return Message(event=kind, workflow_name=wf.name, workflow_id=wf.public_id, run_id=run.public_id,
                   status=run.status, exit_code=run.exit_code, attempts=run.attempt, error=run.error,
                   url=run_url(run), finished_at=isoformat(run.finished_at))


def deliver_event(event_id: int) -> None:
    event = db.session.get(Event, event_id)
    if event is None:
        return
    run = db.session.get(Run, event.run_id)
    message = message_for(run, event.kind)
    channels = (db.session.query(NotificationChannel)
                .filter_by(team_id=event.team_id, disabled_at=None).order_by(NotificationChannel.id).all())
    for channel in channels:
        if event.kind not in (channel.events or []):
            continue
        already = (db.session.query(NotificationDelivery)
                   .filter_by(channel_id=channel.id, event_id=event.id, status="sent").first())
        if already is None:
            deliver(channel, message, event.id)


def deliver_test(channel_id: int) -> None:
    channel = db.session.get(NotificationChannel, channel_id)
    if channel is None:
        return
    message = Message(event="test", workflow_name="example-workflow", workflow_id="wf_example",
                      run_id="run_example", status="failed", exit_code=1, attempts=1,
                      error="this is a test notification",
                      url=f"{current_app.config['BASE_URL']}/", finished_at=isoformat(utcnow()))
    deliver(channel, message, None)


def deliver(channel: NotificationChannel, message: Message, event_id: int | None) -> bool:
    transport = TRANSPORTS[channel.kind](channel.config, current_app.config)
    attempts = current_app.config["NOTIFY_MAX_ATTEMPTS"]
    for attempt in range(1, attempts + 1):
        row = NotificationDelivery(channel_id=channel.id, event_id=event_id, attempt=attempt, status="pending")
        db.session.add(row)
        db.session.commit()  # the attempt is on record before it is made
        try:
            row.response_code = transport.notify(message)
            row.status = "sent"
            db.session.commit()
            return True
        except TransportError as e:
            row.status, row.error, row.response_code = "failed", e.message[:1000], e.status
            db.session.commit()
            if e.permanent or attempt == attempts:
                log.warning("delivery to channel %s failed: %s", channel.id, e.message)
                return False
            delay = BACKOFF_BASE_SEC * 2 ** (attempt - 1)
            if e.retry_after is not None:
                delay = min(RETRY_AFTER_CAP_SEC, max(delay, e.retry_after))
            time.sleep(delay)
        except Exception as e:  # a bug must not leave the attempt pending forever
            log.exception("delivery to channel %s crashed", channel.id)
            db.session.rollback()
            row.status, row.error = "failed", f"internal error: {type(e).__name__}"
            db.session.commit()
            return False
    return False
