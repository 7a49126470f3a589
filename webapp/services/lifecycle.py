"""The end of a run: one terminal transition, then retries or events. Workers and sweepers call it."""
from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import Event, Run
from ..models.base import utcnow
from .runs import fire

ACTIVE = ("queued", "running")
BACKOFF_CAP_SEC = 300


def backoff_seconds(base: int, attempt: int) -> float:
    """About base, 2*base, 4*base ... capped at five minutes, with +-20% jitter; base 0 is at once."""
    if base <= 0:
        return 0.0
    delay = min(BACKOFF_CAP_SEC, base * 2 ** (attempt - 1))
    return min(BACKOFF_CAP_SEC, delay * random.uniform(0.8, 1.2))


def mark_started(run: Run, container_id: str) -> None:
    now = utcnow()
    db.session.execute(update(Run).where(Run.id == run.id).values(started_at=now, container_id=container_id))
    db.session.commit()


def complete(run: Run, status: str, *, exit_code: int | None = None, error: str | None = None,
             image_digest: str | None = None) -> bool:
    """Move a run to a terminal status once; False if it was already terminal (nothing changes)."""
    now = utcnow()
    started = db.session.scalar(select(Run.started_at).where(Run.id == run.id))
    values = dict(status=status, exit_code=exit_code, error=error, finished_at=now,
                  duration_ms=int((now - started).total_seconds() * 1000) if started else None)
    if image_digest:
        values["image_digest"] = image_digest
    done = db.session.execute(update(Run).where(Run.id == run.id, Run.status.in_(ACTIVE)).values(**values)).rowcount
    db.session.commit()
    db.session.refresh(run)
    if not done:
        return False
    from jobs.livelog import publish_end
    publish_end(run.public_id, status)
    _after_terminal(run)
    return True


def _after_terminal(run: Run) -> None:
    wf = run.workflow
    if run.status in ("failed", "timed_out"):
        if run.attempt <= wf.max_retries and wf.deleted_at is None:
            due = utcnow() + timedelta(seconds=backoff_seconds(wf.retry_backoff_sec, run.attempt))
            fire(wf, "retry", dict(run.env), attempt=run.attempt + 1, retry_of=run, due_at=due)
        else:
            emit(run, "workflow.failed")
    elif run.status == "succeeded":
        last = (db.session.query(Event).filter(Event.workflow_id == wf.id)
                .order_by(Event.id.desc()).first())
        if last is not None and last.kind == "workflow.failed":
            emit(run, "workflow.recovered")


def emit(run: Run, kind: str) -> Event | None:
    """Record an event (once per run and kind) and hand it to the notifier."""
    event = Event(team_id=run.team_id, kind=kind, workflow_id=run.workflow_id, run_id=run.id)
    db.session.add(event)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return None
    try:
        from jobs.queues import enqueue_notification
        enqueue_notification(event.id)
    except Exception:  # the event row stays; a later sweep may deliver it
        pass
    return event
