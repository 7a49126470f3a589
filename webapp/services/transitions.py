"""A run's state changes written inside the caller's transaction, for every path that makes them
(the API, the scheduler's replace policy, a deleted workflow's prepared fires, the lifecycle)."""
from __future__ import annotations

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from ..extensions import db
from ..models import Run, RunCount
from ..models.base import utcnow
from ..runoutput.stream import publish_end
from ..vocabulary import ACTIVE, RunStatus, Trigger
from . import dispatch


def count_terminal(workflow_id: int, status: str, trigger: str) -> None:
    """One more finished run in run_counts, in the transaction that makes the run terminal."""
    dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
    table = RunCount.__table__
    stmt = dialect.insert(table).values(workflow_id=workflow_id, status=status, trigger=trigger, n=1)
    db.session.execute(stmt.on_conflict_do_update(index_elements=["workflow_id", "status", "trigger"],
                                                  set_={"n": table.c.n + 1}))


def cancel_in_transaction(run: Run, reason: str | None = None, by: str | None = None):
    """Write the cancel in the current transaction (`by`: who asked, in words); returns what to
    call after the commit (the Redis fast path). The database is the record: a worker notices a cancel within a second
    even when Redis lost the signal."""
    now = utcnow()
    done = db.session.execute(
        update(Run).where(Run.id == run.id, Run.status == RunStatus.QUEUED)
        .values(status=RunStatus.CANCELLED, finished_at=now, cancel_requested_at=now, error=reason, cancelled_by=by)
    ).rowcount
    public_id = run.public_id
    if done:
        count_terminal(run.workflow_id, RunStatus.CANCELLED, run.trigger)
        return lambda: publish_end(public_id, RunStatus.CANCELLED)
    db.session.execute(update(Run).where(Run.id == run.id, Run.status == RunStatus.RUNNING,
                                         Run.cancel_requested_at.is_(None))
                       .values(cancel_requested_at=now, cancel_reason=reason, cancelled_by=by))

    def fast_path():
        try:
            dispatch.signal_cancel(public_id, reason)
        except Exception:  # the worker polls the database too
            current_app.logger.warning("could not signal the cancel of %s through Redis", public_id)
    return fast_path


def cancel_prepared(workflow_id: int, now, reason: str) -> list:
    """Cancel the workflow's scheduled fires made ahead of an instant after `now`
    (SCHEDULE_LEAD_SEC): fires of the future, not runs in flight, so no container starts. The
    caller has written the workflow's row first in this transaction, which locks it (PostgreSQL's
    row lock, SQLite's write lock): a scheduler's claim either committed before, and its run is
    read here, or waits and then finds next_run_at changed. Returns the signals to send after the
    commit."""
    db.session.flush()
    ahead = db.session.scalars(select(Run).where(
        Run.workflow_id == workflow_id, Run.trigger == Trigger.SCHEDULE, Run.status.in_(ACTIVE),
        Run.started_at.is_(None), Run.due_at > now)).all()
    return [cancel_in_transaction(run, reason) for run in ahead]
