"""Each team's quotas: what one team may hold of what all teams share (the database, the queue,
the schedulers' time). Installation-wide defaults (config), an operator's override per team
(`flask teams limits`), checked where workflows are written and runs are made."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select

from .. import cron
from ..extensions import db
from ..models import Run, Team, Workflow
from ..vocabulary import RunStatus
from . import audit
from .access import Principal
from .errors import Invalid, ServiceError


@dataclass(frozen=True)
class Limit:
    name: str  # as the API, the CLI and the Project page name it
    setting: str  # the installation's default (config)
    says: str


LIMITS = (
    Limit("workflows", "TEAM_MAX_WORKFLOWS", "workflows (not deleted)"),
    Limit("minScheduleIntervalSec", "MIN_SCHEDULE_INTERVAL_SEC", "shortest time between two fires of a schedule, seconds"),
    Limit("queuedRuns", "TEAM_MAX_QUEUED", "runs waiting in the queue; past it schedule fires are skipped and triggers refused"),
    Limit("envBytes", "WORKFLOW_MAX_ENV_BYTES", "bytes of env (names and values) of one workflow or one run"),
    Limit("outputBytesPerDay", "TEAM_MAX_OUTPUT_BYTES_PER_DAY",
          "bytes of run output stored per day (UTC); past it output is counted, not kept, and runs go on"),
    Limit("runRetentionDays", "RUN_RETENTION_DAYS", "days a finished run is kept, with its output (0: for ever)"),
    Limit("logRetentionDays", "LOG_RETENTION_DAYS", "days a finished run's output is kept (0: for ever)"),
)
BY_NAME = {limit.name: limit for limit in LIMITS}


class QuotaExceeded(ServiceError):
    """A team's quota is full: 429, naming the limit and its value."""
    status, code = 429, "quota_exceeded"

    def __init__(self, name: str, value: int, message: str):
        super().__init__(f"{message} (the team's limit {name} is {value})", {name: f"limit {value}"})


def limits_for(team_id: int) -> dict[str, int]:
    """The team's limits: its overrides over the installation's defaults."""
    return _with_defaults(db.session.scalar(select(Team.limits).where(Team.id == team_id)))


def limits_for_teams(rows) -> dict[int, dict[str, int]]:
    """The limits of each (team id, its overrides) of `rows`."""
    return {team_id: _with_defaults(overrides) for team_id, overrides in rows}


def _with_defaults(overrides: dict | None) -> dict[str, int]:
    cfg, overrides = current_app.config, overrides or {}
    return {limit.name: int(overrides.get(limit.name, cfg[limit.setting])) for limit in LIMITS}


def set_limits(team: Team, values: dict[str, int | None]) -> dict[str, int]:
    """An operator's overrides (None: back to the default); returns the limits now in force."""
    unknown = set(values) - set(BY_NAME)
    if unknown:
        raise Invalid(f"unknown limits: {', '.join(sorted(unknown))}", {n: "unknown limit" for n in unknown})
    bad = {name: "a whole number, 0 or more" for name, v in values.items() if v is not None and v < 0}
    if bad:
        raise Invalid("limits are whole numbers, 0 or more", bad)
    overrides = dict(team.limits or {})
    audit.record(Principal.operator({team.id}), team.id, "team.limits", "team", team.name,
                 {name: [overrides.get(name), value] for name, value in values.items()})
    for name, value in values.items():
        if value is None:
            overrides.pop(name, None)
        else:
            overrides[name] = value
    team.limits = overrides or None
    db.session.commit()
    return limits_for(team.id)


def env_bytes(env: dict | None) -> int:
    return sum(len(k.encode()) + len(str(v).encode()) for k, v in (env or {}).items())


def check_workflow(team_id: int, *, creating: bool, env: dict | None, schedule: str | None,
                   timezone: str | None) -> None:
    """A workflow write within the team's quotas: its count (on create), its env, its schedule."""
    limits = limits_for(team_id)
    if creating:
        count = db.session.scalar(select(func.count(Workflow.id)).where(
            Workflow.team_id == team_id, Workflow.deleted_at.is_(None)))
        if count >= limits["workflows"]:
            raise QuotaExceeded("workflows", limits["workflows"], f"the team has {count} workflows")
    fields = {}
    if env is not None and env_bytes(env) > limits["envBytes"]:
        fields["env"] = f"{env_bytes(env)} bytes; at most {limits['envBytes']} (the team's limit envBytes)"
    floor = limits["minScheduleIntervalSec"]
    if schedule and floor > 1:
        gap = shortest_interval(schedule, timezone or "UTC")
        if gap < floor:
            fields["schedule"] = (f"fires {gap:g} s apart at the closest; at least {floor} s "
                                  "(the team's limit minScheduleIntervalSec)")
    if fields:
        raise Invalid("the workflow is past the team's limits", fields)


def check_run_env(team_id: int, env: dict) -> None:
    limit = limits_for(team_id)["envBytes"]
    if env_bytes(env) > limit:
        raise Invalid("the run's env is past the team's limit",
                      {"env": f"{env_bytes(env)} bytes with the workflow's; at most {limit} (the team's limit envBytes)"})


INTERVAL_SAMPLE = 400  # fire instants looked at, from a fixed start: cron patterns repeat


def shortest_interval(schedule: str, timezone: str) -> float:
    """The shortest time between two consecutive fires of the schedule (seconds), from a sample."""
    start = datetime(2001, 1, 1)
    instants = cron.next_instants(schedule, timezone, start, INTERVAL_SAMPLE, before=start + timedelta(days=800))
    gaps = [(b - a).total_seconds() for a, b in zip(instants, instants[1:])]
    return min(gaps) if gaps else float("inf")


def queued_runs(team_id: int) -> int:
    return db.session.scalar(select(func.count(Run.id)).where(Run.team_id == team_id, Run.status == RunStatus.QUEUED))


def check_queue(team_id: int) -> None:
    """A manual trigger or retry while the team's queue is full: 429."""
    limit = limits_for(team_id)["queuedRuns"]
    count = queued_runs(team_id)
    if count >= limit:
        raise QuotaExceeded("queuedRuns", limit, f"the team has {count} runs waiting in the queue")


def queue_room(team_ids: set[int]) -> dict[int, int]:
    """Per team, how many more runs its queue takes now (the scheduler's batch): two queries
    whatever the number of teams."""
    counts = dict(db.session.execute(select(Run.team_id, func.count(Run.id)).where(
        Run.team_id.in_(team_ids), Run.status == RunStatus.QUEUED).group_by(Run.team_id)).all())
    overrides = dict(db.session.execute(select(Team.id, Team.limits).where(Team.id.in_(team_ids))).all())
    return {t: _with_defaults(overrides.get(t))["queuedRuns"] - counts.get(t, 0) for t in team_ids}


def usage(team_id: int) -> list[tuple[Limit, int, int | None]]:
    """Each limit of the team with its value and, where it counts something, what is in use now."""
    limits = limits_for(team_id)
    workflows = db.session.scalar(select(func.count(Workflow.id)).where(
        Workflow.team_id == team_id, Workflow.deleted_at.is_(None)))
    in_use = {"workflows": workflows, "queuedRuns": queued_runs(team_id)}
    return [(limit, limits[limit.name], in_use.get(limit.name)) for limit in LIMITS]
