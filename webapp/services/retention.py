"""How long a team's finished runs, and their stored output, are kept.

RUN_RETENTION_DAYS and LOG_RETENTION_DAYS are the installation's defaults, 0 (kept for ever: the
contract's permanent record); an operator overrides them per team as the quotas
runRetentionDays and logRetentionDays (`flask teams limits`). The sweep's `pruned` step removes
what is past them, oldest first, in small batches each in a short transaction of its own, so no
lock is held for long (a run's output first, then its row). A run whose output was removed keeps its row and says when (`log_pruned_at`); a team whose runs
were removed says up to when (`runs_pruned_before`), for the pages that list them."""
from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, select, update

from ..extensions import db
from ..models import Run, RunLogBlock, Team
from ..models.base import utcnow
from ..vocabulary import TERMINAL
from .quotas import limits_for_teams

RUNS_PER_BATCH = 100
BLOCKS_PER_DELETE = 5000
BATCHES_PER_STEP = 5  # per team and kind, per sweep: a backlog drains over several sweeps


def prune() -> int:
    """One sweep's share of what is past every team's retention; the runs touched."""
    touched = 0
    for team_id, limits in _teams_with_retention():
        if limits["logRetentionDays"]:
            touched += _prune_output(team_id, limits["logRetentionDays"])
        if limits["runRetentionDays"]:
            touched += _prune_runs(team_id, limits["runRetentionDays"])
    return touched


def pruned_before(team_id: int):
    """Runs of the team that finished before this were removed (None: none were)."""
    return db.session.scalar(select(Team.runs_pruned_before).where(Team.id == team_id))


def _teams_with_retention():
    cfg = current_app.config
    query = select(Team.id, Team.limits)
    if not (cfg["RUN_RETENTION_DAYS"] or cfg["LOG_RETENTION_DAYS"]):
        query = query.where(Team.limits.is_not(None))  # only overrides can ask for any
    rows = db.session.execute(query).all()
    db.session.commit()
    for team_id, limits in limits_for_teams(rows).items():
        if limits["runRetentionDays"] or limits["logRetentionDays"]:
            yield team_id, limits


def _prune_output(team_id: int, days: int) -> int:
    cutoff, done = utcnow() - timedelta(days=days), 0
    for _ in range(BATCHES_PER_STEP):
        ids = db.session.scalars(select(Run.id).where(Run.team_id == team_id, Run.finished_at < cutoff,
                                                      Run.log_pruned_at.is_(None))
                                 .order_by(Run.finished_at).limit(RUNS_PER_BATCH)).all()
        if not ids:
            break
        _delete_output(ids)
        db.session.execute(update(Run).where(Run.id.in_(ids)).values(log_pruned_at=utcnow()))
        db.session.commit()
        done += len(ids)
    db.session.commit()  # the read that found nothing more
    return done


def _prune_runs(team_id: int, days: int) -> int:
    cutoff, done = utcnow() - timedelta(days=days), 0
    for _ in range(BATCHES_PER_STEP):
        rows = db.session.execute(select(Run.id, Run.finished_at)
                                  .where(Run.team_id == team_id, Run.finished_at < cutoff, Run.status.in_(TERMINAL))
                                  .order_by(Run.finished_at).limit(RUNS_PER_BATCH)).all()
        if not rows:
            break
        ids = [row.id for row in rows]
        _delete_output(ids)
        # a kept run that retried or was fired by a removed one no longer points at it
        db.session.execute(update(Run).where(Run.retry_of_id.in_(ids)).values(retry_of_id=None))
        db.session.execute(update(Run).where(Run.triggered_by_id.in_(ids)).values(triggered_by_id=None))
        db.session.execute(delete(Run).where(Run.id.in_(ids)))  # events, idempotency keys: by cascade
        # oldest first, so the newest removed is the team's bound so far
        db.session.execute(update(Team).where(Team.id == team_id)
                           .values(runs_pruned_before=max(row.finished_at for row in rows)))
        db.session.commit()
        done += len(ids)
    db.session.commit()  # the read that found nothing more
    return done


def _delete_output(run_ids: list[int]) -> None:
    """The runs' stored blocks, BLOCKS_PER_DELETE at a time."""
    while True:
        chunk = select(RunLogBlock.id).where(RunLogBlock.run_id.in_(run_ids)).limit(BLOCKS_PER_DELETE)
        if not db.session.execute(delete(RunLogBlock).where(RunLogBlock.id.in_(chunk))).rowcount:
            return
        db.session.commit()
