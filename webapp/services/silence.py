"""Silent workflows (the healthchecks.io model): a workflow that expects a success within N seconds
and has had none is announced once with workflow.silent; its next success emits
workflow.recovered (services.lifecycle). Run by the scheduler's sweep; safe from several
schedulers, since the announcement is a compare-and-set of `silent_at` in the event's transaction."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update

from ..extensions import db
from ..models import Workflow
from ..models.base import utcnow
from ..vocabulary import EventKind
from .lifecycle import emit


def silent_for(wf: Workflow, now: datetime) -> bool:
    """No success within the expected interval, counted from the last success or from when the
    expectation was set (a new expectation does not call an old workflow silent at once)."""
    if not wf.expect_success_within_sec:
        return False
    since = max(d for d in (wf.last_success_at, wf.expect_since, wf.created_at) if d is not None)
    return now - since > timedelta(seconds=wf.expect_success_within_sec)


def check_silent(now: datetime | None = None) -> int:
    now = now or utcnow()
    candidates = (db.session.query(Workflow)
                  .filter(Workflow.expect_success_within_sec.is_not(None), Workflow.silent_at.is_(None),
                          Workflow.paused_at.is_(None),  # a paused workflow is quiet on purpose
                          Workflow.deleted_at.is_(None)).all())
    handed = []  # hand-overs of the notifications, made after the commits
    for wf in candidates:
        if not silent_for(wf, now):
            continue
        won = db.session.execute(update(Workflow).where(Workflow.id == wf.id, Workflow.silent_at.is_(None),
                                                        Workflow.paused_at.is_(None))  # not paused since
                                 .values(silent_at=now)).rowcount
        if not won:
            continue
        hand_over = emit(wf.team_id, wf.id, None, EventKind.SILENT)  # about the workflow, no run
        db.session.commit()
        handed.append(hand_over)
    db.session.commit()
    for hand_over in handed:
        try:
            hand_over()
        except Exception:  # written: the notification sweep hands it over
            pass
    return len(handed)
