"""Cron fires from the database: exactly once per (workflow, instant), however many schedulers run.

Each due workflow's `next_run_at` is advanced with a compare-and-set, and the run row carries a
unique (workflow, scheduledFor): two schedulers, or one fire seen twice, cannot fire twice.
A scheduler that was down fires at most the latest missed instant, and only if it is younger
than the workflow's timeout.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from webapp.extensions import db
from webapp.models import Run, Workflow
from webapp.models.base import utcnow
from webapp.services import cron
from webapp.services.runs import fire, hand_over, request_cancel

log = logging.getLogger(__name__)
BATCH = 1000


def fire_due(now: datetime | None = None) -> int:
    now = now or utcnow()
    fired = 0
    due = (db.session.query(Workflow)
           .filter(Workflow.next_run_at <= now, Workflow.deleted_at.is_(None), Workflow.schedule.is_not(None))
           .order_by(Workflow.next_run_at).limit(BATCH).all())
    to_hand_over: list[Run] = []
    for wf in due:
        run = _fire_one(wf, now)
        if run is not None:
            fired += 1
            if run.status == "queued":
                to_hand_over.append(run)
    for run in to_hand_over:
        hand_over(run)
    return fired


def _fire_one(wf: Workflow, now: datetime) -> Run | None:
    instant = wf.next_run_at
    try:
        latest = cron.latest_at_or_before(wf.schedule, wf.timezone, now) or instant
        latest = max(latest, instant)
        following = cron.next_instant(wf.schedule, wf.timezone, latest)
    except Exception:
        log.exception("bad schedule on %s; unscheduling", wf.public_id)
        following, latest = None, None
    owned = db.session.execute(
        update(Workflow).where(Workflow.id == wf.id, Workflow.next_run_at == instant)
        .values(next_run_at=following)).rowcount
    if not owned:  # another scheduler advanced it
        db.session.rollback()
        return None
    if latest is None or (now - latest) > timedelta(seconds=wf.timeout_sec):
        db.session.commit()  # too old to be worth running: skip to the next instant
        return None
    run = _fire_with_policy(wf, latest)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return None
    return run


def _fire_with_policy(wf: Workflow, instant: datetime) -> Run:
    active = []
    if wf.concurrency_policy != "allow":
        active = (db.session.query(Run)
                  .filter(Run.workflow_id == wf.id, Run.status.in_(("queued", "running"))).all())
    if active and wf.concurrency_policy == "forbid":
        run = fire(wf, "schedule", dict(wf.env or {}), scheduled_for=instant, commit=False)
        run.status = "cancelled"
        run.finished_at = utcnow()
        run.error = "skipped: the previous run was still in progress (concurrencyPolicy forbid)"
        return run
    if active and wf.concurrency_policy == "replace":
        db.session.commit()
        for old in active:
            try:
                request_cancel(old)
            except Exception:
                log.info("could not cancel %s to replace it", old.public_id)
    return fire(wf, "schedule", dict(wf.env or {}), scheduled_for=instant, commit=False)


def repair_next_run_at() -> int:
    """Scheduled workflows without a next instant (e.g. after an import) get one."""
    fixed = 0
    for wf in db.session.query(Workflow).filter(Workflow.schedule.is_not(None), Workflow.deleted_at.is_(None),
                                                Workflow.next_run_at.is_(None)).all():
        wf.next_run_at = cron.next_instant(wf.schedule, wf.timezone, utcnow())
        fixed += 1
    db.session.commit()
    return fixed
