"""Delivery of notifications: one attempt per RQ job, never a sleep in a worker slot.

A job claims its notification with a compare-and-set (pending and due -> sending), which also
requires that no other notification of the same team is being sent (a partial unique index holds
that under concurrent claims): one team's slow endpoint holds at most one notification slot, so
other teams' alerts go out on the others. The attempt is recorded before it is made. A transient
failure (network, 5xx, 429) sets `next_attempt_at` with exponential backoff honouring Retry-After,
and the scheduler's sweep enqueues it when due; a permanent one (other 4xx) ends the notification."""
from __future__ import annotations

import dataclasses
import logging
import threading

from flask import current_app
from sqlalchemy import and_, exists, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from webapp import process_log
from webapp.backoff import backoff
from webapp.extensions import db
from webapp.models import Event, Notification, NotificationChannel, NotificationDelivery, Run, Workflow
from webapp.models.base import isoformat, utcnow
from webapp.models.clock import db_now
from webapp.notify import TRANSPORTS, Message, TransportError
from webapp.services import channels
from webapp.services.runs import run_url, workflow_url
from webapp.vocabulary import EventKind, RunStatus

log = logging.getLogger(__name__)
BACKOFF_BASE_SEC = 1.0
BACKOFF_CAP_SEC = 3600.0  # an hour between attempts at most, however many NOTIFY_MAX_ATTEMPTS allows
RETRY_AFTER_CAP_SEC = 60.0


def message_for(run: Run, kind: str) -> Message:
    wf = run.workflow
    if kind == EventKind.MISSED:  # a fire skipped by forbid: the cancelled run says why
        return Message(event=kind, workflow_name=wf.name, workflow_id=wf.public_id, run_id=run.public_id,
                       status="skipped", exit_code=None, attempts=0, error=run.error, url=run_url(run),
                       finished_at=isoformat(run.finished_at))
    return Message(event=kind, workflow_name=wf.name, workflow_id=wf.public_id, run_id=run.public_id,
                   status=run.status, exit_code=run.exit_code, attempts=run.attempt, error=run.error,
                   url=run_url(run), finished_at=isoformat(run.finished_at))


def workflow_message(event: Event) -> Message:
    """An event about the workflow rather than one run: silent, or fires lost to downtime."""
    wf = db.session.get(Workflow, event.workflow_id)
    if event.kind == EventKind.SILENT:
        last = isoformat(wf.last_success_at) if wf.last_success_at else "never"
        detail = (f"no run has succeeded within {wf.expect_success_within_sec} s "
                  f"(expectSuccessWithinSec); last success: {last}")
        status = "silent"
    elif event.detail:
        detail, status = event.detail, "missed"
    elif wf.queue_full_at is not None:
        detail = ("fires are skipped: the team's queue is full (its limit queuedRuns); "
                  "they resume once its queued runs start")
        status = "missed"
    else:
        detail = "the scheduler was not running at the scheduled time, and the fire was too old to run late"
        status = "missed"
    return Message(event=event.kind, workflow_name=wf.name, workflow_id=wf.public_id, run_id="", status=status,
                   exit_code=None, attempts=0, error=detail, url=workflow_url(wf),
                   finished_at=isoformat(event.created_at))


def test_message() -> Message:
    return Message(event="test", workflow_name="example-workflow", workflow_id="wf_example",
                   run_id="run_example", status=RunStatus.FAILED, exit_code=1, attempts=1,
                   error="this is a test notification",
                   url=f"{current_app.config['BASE_URL']}/", finished_at=isoformat(utcnow()))


def claim(notification_id: int) -> Notification | None:
    """pending and due -> sending, unless its team already has a notification in flight. The
    claim is stamped and compared on the database's clock."""
    table = Notification.__table__
    other = aliased(Notification)
    team = db.session.query(Notification.team_id).filter(Notification.id == notification_id).scalar()
    if team is None:
        return None
    busy = exists().where(and_(other.team_id == team, other.state == "sending", other.id != notification_id))
    try:
        claimed = db.session.execute(
            update(table).where(table.c.id == notification_id, table.c.state == "pending",
                                table.c.next_attempt_at <= db_now(), ~busy)
            .values(state="sending", claimed_at=db_now(), attempts=table.c.attempts + 1, enqueued_at=None)
        ).rowcount
    except IntegrityError:
        # Another slot claimed one of this team's notifications in the same instant (neither saw
        # the other's uncommitted claim): the one-in-flight index let only one of them through.
        db.session.rollback()
        claimed = 0
    if not claimed:
        # Not due, taken by a duplicate job, or its team is busy: the sweep hands it over again.
        db.session.execute(update(table).where(table.c.id == notification_id, table.c.state == "pending")
                           .values(enqueued_at=None))
        db.session.commit()
        return None
    db.session.commit()
    return db.session.get(Notification, notification_id)


def deliver_notification(notification_id: int) -> None:
    n = claim(notification_id)
    if n is None:
        return
    with process_log.about(team_id=n.team_id):
        _deliver(n)


def _deliver(n: Notification) -> None:
    channel = db.session.get(NotificationChannel, n.channel_id)
    message = dataclasses.replace(_message(n), delivery_id=f"ntf_{n.id}")
    attempt = n.attempts  # this claim's number: what settle() checks that it still holds
    row = NotificationDelivery(channel_id=channel.id, event_id=n.event_id, notification_id=n.id,
                               attempt=attempt, status="pending")
    db.session.add(row)
    db.session.commit()  # the attempt is on record before it is made
    state, retry_in, permanent = _send(channel, message, row, attempt)
    db.session.commit()  # this attempt's own record, whatever became of the notification meanwhile
    if n.event_id is not None and channel.disabled_at is None:  # a test's outcome is shown to who sent it
        if channels.record_outcome(channel.id, row.error if row.status == "failed" else None, permanent=permanent):
            log.warning("channel %s disabled after %s permanent failures in a row: %s", channel.id,
                        current_app.config["CHANNEL_DISABLE_AFTER"], row.error)
    if not settle(row.notification_id, attempt, state, retry_in):
        log.warning("notification %s was taken back while its attempt %s ran; its outcome (%s) is "
                    "recorded on the attempt only", row.notification_id, attempt, row.status)


def _message(n: Notification) -> Message:
    if n.event_id is None:
        return test_message()
    event = db.session.get(Event, n.event_id)
    if event.run_id is None:  # about the workflow: silent, or fires lost to downtime
        return workflow_message(event)
    return message_for(db.session.get(Run, event.run_id), event.kind)


def _send(channel: NotificationChannel, message: Message, row: NotificationDelivery,
          attempt: int) -> tuple[str, float | None, bool]:
    """One attempt, written on `row`: (the notification's next state, the retry's delay, whether
    the failure is permanent). A channel disabled since the notification was made is not sent to."""
    if channel.disabled_at is not None and message.event != "test":
        row.status, row.error = "failed", "not sent: the channel is disabled"
        return "failed", None, False
    try:
        row.response_code = _attempt(channel, message)
        row.status = "sent"
        return "sent", None, False
    except TransportError as e:
        row.status, row.error, row.response_code = "failed", e.message[:1000], e.status
        if e.permanent or attempt >= current_app.config["NOTIFY_MAX_ATTEMPTS"]:
            log.warning("delivery to channel %s failed for good: %s", channel.id, e.message)
            return "failed", None, e.permanent
        retry_in = backoff(BACKOFF_BASE_SEC, attempt, cap=BACKOFF_CAP_SEC)
        if e.retry_after is not None:
            retry_in = min(RETRY_AFTER_CAP_SEC, max(retry_in, e.retry_after))
        return "pending", retry_in, False
    except Exception as e:  # a bug must not leave the attempt pending forever
        log.exception("delivery to channel %s crashed", channel.id)
        db.session.rollback()
        row.status, row.error = "failed", f"internal error: {type(e).__name__}"
        return "failed", None, False


def settle(notification_id: int, attempt: int, state: str, retry_in: float | None) -> bool:
    """The notification's state after its attempt `attempt`, only while that attempt still holds
    it (sending, and no later claim since): an attempt that outlived the sweep's patience must not
    overwrite what a later attempt wrote. False if it no longer held it."""
    table = Notification.__table__
    values = dict(state=state, claimed_at=None)
    if retry_in is not None:
        values["next_attempt_at"] = db_now(retry_in)
    done = db.session.execute(update(table).where(table.c.id == notification_id, table.c.state == "sending",
                                                  table.c.attempts == attempt).values(**values)).rowcount
    db.session.commit()
    return bool(done)


def _attempt(channel: NotificationChannel, message: Message) -> int | None:
    """The transport's send, cut at NOTIFY_DEADLINE_SEC whatever it waits on (a server that
    answers a byte at a time never trips a per-read timeout). A cut attempt is a failure to retry:
    the endpoint may still get it, which is what the delivery id is for."""
    app = current_app._get_current_object()
    deadline = app.config["NOTIFY_DEADLINE_SEC"]
    outcome: dict = {}

    def send():
        with app.app_context():
            try:
                outcome["code"] = TRANSPORTS[channel.kind](channel.config, app.config).notify(message)
            except BaseException as e:  # handed to the caller's thread
                outcome["error"] = e

    worker = threading.Thread(target=send, daemon=True, name=f"notify-{channel.id}")
    worker.start()
    worker.join(deadline)
    if worker.is_alive():
        raise TransportError(f"no answer within {deadline} s (NOTIFY_DEADLINE_SEC); given up")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("code")


# An attempt's worker died if its notification is still "sending" this long after the claim
# (an attempt is given up after NOTIFY_DEADLINE_SEC, at most 45 s).
STUCK_AFTER_SEC = 60
# A handed-over notification not claimed within this long lost its queue entry.
LOST_ENTRY_AFTER_SEC = 60
