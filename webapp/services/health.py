"""The health of a project's workflows: success rate and duration percentiles over 24 h and 7 days,
last success, schedule lag; failing and silent ones first. SQL aggregates only: one grouped pass
over the last week's finished runs (durations counted into histogram buckets, percentiles read
from them the way Prometheus' histogram_quantile does; the lag summed alongside)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, select

from ..extensions import db
from ..metrics import DURATION_BUCKETS
from ..models import Run, Workflow
from ..models.base import utcnow
from ..vocabulary import RunStatus, TERMINAL, Trigger
from .access import Principal
from .workflows import get_project


@dataclass
class Window:
    runs: int = 0
    succeeded: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))

    @property
    def success_rate(self) -> float | None:
        return self.succeeded / self.runs if self.runs else None

    def percentile(self, q: float) -> float | None:
        """Seconds, interpolated inside the bucket that holds the q-th run (None without runs)."""
        total = sum(self.buckets)
        if not total:
            return None
        rank, seen = q * total, 0
        for i, n in enumerate(self.buckets):
            if n and seen + n >= rank:
                lower = DURATION_BUCKETS[i - 1] if i else 0.0
                if i == len(DURATION_BUCKETS):
                    return lower
                return lower + (DURATION_BUCKETS[i] - lower) * (rank - seen) / n
            seen += n
        return DURATION_BUCKETS[-1]


@dataclass
class WorkflowHealth:
    workflow: Any  # a row with the workflow's columns that the view shows
    day: Window
    week: Window
    lag_sum: float = 0.0
    lag_count: int = 0
    lag_max: float | None = None

    @property
    def lag_avg(self) -> float | None:
        return self.lag_sum / self.lag_count if self.lag_count else None

    @property
    def state(self) -> str:
        if self.workflow.alert_state == "failing":
            return "failing"
        if self.workflow.silent_at:
            return "silent"
        return "ok"

    @property
    def order(self) -> tuple:
        rate = self.day.success_rate
        return ({"failing": 0, "silent": 1, "ok": 2}[self.state], 1.0 if rate is None else rate,
                self.workflow.name.lower())


def _seconds_between(later, earlier):
    if db.engine.dialect.name == "postgresql":
        return func.extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def project_health(principal: Principal, team_id: int, project_id: int, now: datetime | None = None
                   ) -> list[WorkflowHealth]:
    project = get_project(principal, team_id, project_id)
    now = now or utcnow()
    week_ago, day_ago = now - timedelta(days=7), now - timedelta(days=1)
    workflows = db.session.execute(
        select(Workflow.id, Workflow.public_id, Workflow.team_id, Workflow.name, Workflow.schedule,
               Workflow.alert_state, Workflow.silent_at, Workflow.last_success_at)
        .where(Workflow.project_id == project.id, Workflow.deleted_at.is_(None))).all()
    out = {wf.id: WorkflowHealth(wf, Window(), Window()) for wf in workflows}
    if not out:
        return []
    bucket = case(*[(Run.duration_ms <= int(b * 1000), i) for i, b in enumerate(DURATION_BUCKETS)],
                  else_=len(DURATION_BUCKETS))
    recent = Run.finished_at >= day_ago
    ok = Run.status == RunStatus.SUCCEEDED
    lag = case((and_(Run.trigger == Trigger.SCHEDULE, Run.started_at.is_not(None)),
                _seconds_between(Run.started_at, Run.scheduled_for)), else_=None)
    rows = db.session.execute(
        select(Run.workflow_id, case((Run.duration_ms.is_(None), -1), else_=bucket).label("b"),
               func.count(), func.sum(case((ok, 1), else_=0)),
               func.sum(case((recent, 1), else_=0)), func.sum(case((and_(recent, ok), 1), else_=0)),
               func.sum(lag), func.count(lag), func.max(lag))
        .join(Workflow, Workflow.id == Run.workflow_id)
        .where(Workflow.project_id == project.id, Workflow.deleted_at.is_(None), Run.status.in_(TERMINAL),
               Run.finished_at >= week_ago)
        .group_by(Run.workflow_id, "b"))
    for wf_id, b, n7, s7, n24, s24, lag_sum, lag_count, lag_max in rows:
        h = out[wf_id]
        if lag_count:
            h.lag_sum += float(lag_sum)
            h.lag_count += lag_count
            h.lag_max = max(float(lag_max), h.lag_max if h.lag_max is not None else float(lag_max))
        h.week.runs += n7
        h.week.succeeded += s7 or 0
        h.day.runs += n24 or 0
        h.day.succeeded += s24 or 0
        if b >= 0:
            h.week.buckets[b] += n7
            h.day.buckets[b] += n24 or 0
    return sorted(out.values(), key=lambda h: h.order)


def silent_count(project) -> int:
    """Silent workflows of a project the caller has already been allowed to see."""
    return db.session.scalar(select(func.count()).select_from(Workflow).where(
        Workflow.project_id == project.id, Workflow.deleted_at.is_(None), Workflow.silent_at.is_not(None)))
