"""The end of a run: one terminal transition, and in the same transaction what follows it (the
automatic retry's run row, the workflow.failed / workflow.recovered event and its pending
notifications, the chain runs of its downstream workflows). Nothing that follows a terminal
status can be lost between the commit and the hand-over to Redis: what was written is handed
over again by the scheduler's sweep."""
from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from flask import current_app
from sqlalchemy import case, func, select, update

from .. import faults, metrics
from ..extensions import db
from ..models import Event, Notification, NotificationChannel, Run, Workflow
from ..models.base import utcnow
from ..runoutput.stream import LeaseLost, publish_end
from ..vocabulary import ACTIVE, RETRIED, EventKind, RunStatus, Trigger
from . import backfills, chains, dispatch, retrying
from .runs import fire, handle, hand_over_many
from .transitions import count_terminal


def owned_update(run: Run, owner: str, **values) -> None:
    """Write to a running run only while `owner` still owns it; LeaseLost otherwise."""
    done = db.session.execute(update(Run).where(Run.id == run.id, Run.status == RunStatus.RUNNING,
                                                Run.owner_token == owner).values(**values)).rowcount
    if not done:
        db.session.rollback()
        raise LeaseLost(run.public_id)
    db.session.commit()


def complete(run: Run, status: str, *, exit_code: int | None = None, error: str | None = None,
             image_digest: str | None = None, expect: tuple[str, ...] = ACTIVE,
             owner: str | None = None) -> bool:
    """Move a run from one of the `expect` statuses (and, given `owner`, only while that worker
    owns it) to a terminal status, once. False if the compare-and-set lost: nothing changes."""
    now = utcnow()
    started = db.session.scalar(select(Run.started_at).where(Run.id == run.id))
    values = dict(status=status, exit_code=exit_code, error=error, finished_at=now,
                  duration_ms=int((now - started).total_seconds() * 1000) if started else None)
    if status in RETRIED:
        # Cancel beats retry: a run whose cancel was requested ends cancelled whatever ends it (a
        # lost host, a lost worker, a crash), decided in the same statement as the transition, so
        # a cancel written a moment before cannot be missed. Its error says what ended it.
        requested = Run.cancel_requested_at.is_not(None)
        values.update(status=case((requested, "cancelled"), else_=status),
                      error=case((requested, func.coalesce(Run.cancel_reason, error)), else_=error))
    if image_digest:
        values["image_digest"] = image_digest
    where = [Run.id == run.id, Run.status.in_(expect)]
    if owner is not None:
        where.append(Run.owner_token == owner)
    done = db.session.execute(update(Run).where(*where).values(**values)).rowcount
    if not done:
        db.session.rollback()
        db.session.refresh(run)
        return False
    db.session.refresh(run)
    count_terminal(run.workflow_id, run.status, run.trigger)
    after_commit = _after_terminal(run)
    db.session.commit()
    faults.stop_here("after-terminal")
    if run.duration_ms is not None:
        metrics.observe("run_duration_seconds", run.team_id, run.duration_ms / 1000)
    publish_end(run.public_id, run.status)
    try:
        after_commit()
    except Exception:  # written already: the sweep hands it over
        current_app.logger.warning("could not hand over what follows %s; the sweep will", run.public_id)
    return True


def _after_terminal(run: Run) -> Callable[[], None]:
    """Add the retry or the event, the chain runs the end fires, its backfill's next instants and
    the workflow's own state to the transaction; returns the hand-over to make after it. The
    workflow's row is written last: from that write to the commit no scheduler can take the row
    (it passes over a held one), so the hold is kept to the last few statements."""
    retried, hand_over = _retry_or_event(run)
    chained = chains.fire_downstream(run, chains.reached(run, retried), fire)
    db.session.flush()
    handles = [handle(r) for r in chained]
    backfilled = backfills.advance_after(run)
    marked = _mark_workflow(run, retried)

    def all_of_them() -> None:
        hand_over()
        marked()
        hand_over_many(handles)
        backfilled()
    return all_of_them


def _retry_or_event(run: Run) -> tuple[bool, Callable[[], None]]:
    """(whether a retry follows, the hand-over of the retry or of the failure's notifications)."""
    wf = run.workflow
    if run.status not in RETRIED:
        return False, lambda: None
    why_not = retrying.refusal(wf, run)
    if why_not is not None:
        run.retry_decision = f"not retried: {why_not}"
        return False, _emit(run, EventKind.FAILED)
    delay = retrying.delay_sec(wf, run.attempt)
    retry = fire(wf, Trigger.RETRY, dict(run.env), attempt=run.attempt + 1, retry_of=run, payload=run.payload,
                 backfill_id=run.backfill_id, due_at=run.finished_at + timedelta(seconds=delay))  # from the end
    db.session.flush()
    run.retry_decision = retrying.retried(wf, retry, delay)
    if retry.due_at > utcnow():
        return True, lambda: None  # the sweep hands it over when its backoff is over
    h = handle(retry)
    return True, lambda: hand_over_many([h])


def _mark_workflow(run: Run, retried: bool) -> Callable[[], None]:
    """The workflow's alert state after the end: failing after a final failure; after a success its
    last success, and, failing or silent before, heard from again (one workflow.recovered says
    so). Returns the hand-over of the recovered event's notifications."""
    if run.status in RETRIED and not retried:
        db.session.execute(update(Workflow).where(Workflow.id == run.workflow_id).values(alert_state="failing"))
    elif run.status == RunStatus.SUCCEEDED:
        db.session.execute(update(Workflow).where(Workflow.id == run.workflow_id,
                                                  Workflow.last_success_at.is_(None) |
                                                  (Workflow.last_success_at < run.finished_at))
                           .values(last_success_at=run.finished_at))
        recovered = db.session.execute(
            update(Workflow).where(Workflow.id == run.workflow_id,
                                   (Workflow.alert_state == "failing") | Workflow.silent_at.is_not(None))
            .values(alert_state="ok", silent_at=None)).rowcount
        if recovered:
            return _emit(run, EventKind.RECOVERED)
    return lambda: None


def _emit(run: Run, kind: str) -> Callable[[], None]:
    return emit(run.team_id, run.workflow_id, run.id, kind)


def emit(team_id: int, workflow_id: int, run_id: int | None, kind: str,
         detail: str | None = None) -> Callable[[], None]:
    """The event and one pending notification per subscribed channel, in the caller's transaction
    (whose compare-and-set decided that the event happens); returns the hand-over to make after
    the commit. `run_id` is None for an event about the workflow itself (silent, missed), whose
    `detail` says what happened when its kind alone does not."""
    event = Event(team_id=team_id, kind=kind, workflow_id=workflow_id, run_id=run_id, detail=detail)
    db.session.add(event)
    db.session.flush()
    channels = (db.session.query(NotificationChannel)
                .filter_by(team_id=team_id, disabled_at=None).order_by(NotificationChannel.id).all())
    pending = [Notification(team_id=team_id, channel_id=c.id, event_id=event.id)
               for c in channels if kind in (c.events or [])]
    db.session.add_all(pending)
    db.session.flush()
    ids = [n.id for n in pending]
    return lambda: dispatch.hand_over_notifications(ids)
