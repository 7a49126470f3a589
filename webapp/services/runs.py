"""Runs: fire, trigger, retry, cancel, list and read, with the contract's rules."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import DateTime, Integer, String, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import contains_eager

from ..extensions import db
from ..models import Run, Workflow
from ..models.arrays import unnested
from ..models.base import new_public_id, utcnow
from ..models.clock import db_now
from ..vocabulary import STATUSES, TRIGGERS, RunStatus, Trigger
from . import actors, budget, dispatch, envgroups, hooks, idempotency, pausing, quotas
from . import audit, paging, roles
from .access import Principal, require_environment_access, require_public_id, require_team
from .errors import Conflict, Invalid, NotFound
from .transitions import cancel_in_transaction
from .workflows import get_project, get_workflow, visible

MAX_PAGE = 100

# what a run copies of its workflow when fired: a later edit of the workflow never reaches it
FROM_WORKFLOW = ("image", "command", "timeout_sec", "memory_mb", "cpus", "network", "worker_pool")


def fire(wf: Workflow, trigger: str, env: dict, *, attempt: int = 1, retry_of: Run | None = None,
         scheduled_for: datetime | None = None, due_at: datetime | None = None,
         triggered_by: Run | None = None, payload: str | None = None, backfill_id: int | None = None,
         by: str | None = None) -> Run:
    """Add the run row of one fire to the session: its caller commits it in its own transaction
    (with the claim, the key, the terminal status it follows) and hands it over after."""
    now = utcnow()
    groups = retry_of.env_groups if retry_of is not None else envgroups.pinned(wf)
    run = Run(public_id=new_public_id("run_"), env_groups=groups, fired_by=by, team_id=wf.team_id, workflow_id=wf.id,
              trigger=trigger, attempt=attempt, retry_of_id=retry_of.id if retry_of else None,
              triggered_by_id=triggered_by.id if triggered_by else None, payload=payload, backfill_id=backfill_id,
              status=RunStatus.QUEUED, env=env, **{name: getattr(wf, name) for name in FROM_WORKFLOW},
              scheduled_for=scheduled_for, queued_at=now, due_at=due_at or now)
    run.workflow = wf
    db.session.add(run)
    return run


def fire_scheduled(fires: list[tuple[Workflow, datetime, datetime]]) -> list[tuple[int, str, int, str]]:
    """The run rows of claimed scheduled fires, (workflow, instant, due at) each, in the caller's
    transaction; their hand-over handles. On PostgreSQL the fires of workflows without env groups
    are one INSERT … SELECT from the workflows' rows (the env copied as stored, still encrypted),
    the values of each fire passed as four arrays: ORM objects and a statement of thirty
    parameters a row were most of ten thousand fires' time. The others go through fire()."""
    setwise = db.engine.dialect.name == "postgresql"
    many, one_by_one = [], []
    for wf, instant, due in fires:
        if setwise and not wf.env_group_ids:
            many.append((wf, instant, due))
        else:
            one_by_one.append(fire(wf, Trigger.SCHEDULE, dict(wf.env or {}), scheduled_for=instant, due_at=due))
    db.session.flush()
    return [handle(run) for run in one_by_one] + (_insert_scheduled(many) if many else [])


def _insert_scheduled(fires: list[tuple[Workflow, datetime, datetime]]) -> list[tuple[int, str, int, str]]:
    runs, workflows = Run.__table__, Workflow.__table__
    public_ids = [new_public_id("run_") for _ in fires]
    given = unnested("fires", ("workflow_id", Integer, [wf.id for wf, _, _ in fires]),
                     ("public_id", String, public_ids),
                     ("scheduled_for", DateTime, [instant for _, instant, _ in fires]),
                     ("due_at", DateTime, [due for _, _, due in fires]))
    source = (select(given.c.public_id, workflows.c.team_id, workflows.c.id, literal(str(Trigger.SCHEDULE)),
                     literal(str(RunStatus.QUEUED)), workflows.c.env, *(workflows.c[name] for name in FROM_WORKFLOW),
                     given.c.scheduled_for, db_now(), given.c.due_at)
              .join_from(given, workflows, workflows.c.id == given.c.workflow_id))
    names = ["public_id", "team_id", "workflow_id", "trigger", "status", "env", *FROM_WORKFLOW, "scheduled_for",
             "queued_at", "due_at"]
    made = db.session.execute(insert(runs).from_select(names, source)
                              .returning(runs.c.id, runs.c.public_id, runs.c.timeout_sec, runs.c.worker_pool)).all()
    order = {public_id: i for i, public_id in enumerate(public_ids)}
    return sorted((tuple(row) for row in made), key=lambda made_run: order[made_run[1]])


def hand_over(run: Run) -> None:
    hand_over_many([handle(run)])


def handle(run: Run) -> tuple[int, str, int, str]:
    """What the hand-over needs of a run, read while it is loaded (before a commit expires it)."""
    return run.id, run.public_id, run.timeout_sec, run.worker_pool


def hand_over_many(runs: list[tuple[int, str, int, str]]) -> None:
    """Enqueue due runs (as handles). If Redis is away the scheduler's sweep enqueues them later."""
    if not runs:
        return
    try:
        dispatch.enqueue_runs([(public_id, timeout, pool) for _, public_id, timeout, pool in runs])
    except RedisError as e:
        current_app.logger.warning("could not enqueue %d runs (%s); the scheduler will", len(runs), e)
        return
    except Exception:
        current_app.logger.exception("could not enqueue %d runs; the scheduler will", len(runs))
        return
    table = Run.__table__
    db.session.execute(update(table).where(table.c.id.in_([handle[0] for handle in runs]))
                       .values(enqueued_at=db_now()))
    db.session.commit()


@dataclass(frozen=True)
class Fired:
    """A manual fire's run; `replayed` when an Idempotency-Key answered an earlier fire's run."""
    run: Run
    replayed: bool = False


def trigger_workflow(principal: Principal, team_id: int, public_id: str, env: dict,
                     key: str | None = None) -> Fired:
    """A manual fire, from the API or the dashboard: spends the team's trigger budget once the
    call is known to be allowed (refusals and replays cost nothing)."""
    wf = get_workflow(principal, team_id, public_id, "run.trigger")
    merged = {**(wf.env or {}), **env}

    def allowed() -> None:
        pausing.require_triggers(wf)
        quotas.check_run_env(team_id, merged)
    return _fire_once(team_id, key, idempotency.fingerprint("trigger", wf.public_id, env), allowed,
                      lambda: _audited(principal, "run.trigger",
                                       fire(wf, Trigger.MANUAL, merged, by=actors.who(principal)),
                                       {"env": audit.env_changes({}, env)} if env else None))


def _audited(principal: Principal | None, action: str, run: Run, diff: dict | None = None, **how) -> Run:
    """The run a manual act made, with its audit row (the same transaction)."""
    db.session.flush()
    audit.record(principal, run.team_id, action, "run", run.public_id,
                 {"workflow": run.workflow.public_id, **(diff or {})}, **how)
    return run


def _fire_once(team_id: int, key: str | None, request_hash: str, allowed, make) -> Fired:
    """The run `make` adds to the session, committed and handed over, once per Idempotency-Key
    (webapp/services/idempotency.py): a key seen before answers its first run, whatever became of
    the workflow or the run since; else `allowed` raises what refuses the fire, before the team's
    queue and budget are asked."""
    if key is not None:
        first = idempotency.first_run(team_id, key, request_hash)
        if first is not None:
            return Fired(first, replayed=True)
    allowed()
    quotas.check_queue(team_id)
    budget.spend_trigger(team_id)
    run = make()
    if key is not None:
        idempotency.claim(team_id, key, request_hash, run)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # a concurrent request with the same key committed first
        first = idempotency.first_run(team_id, key, request_hash) if key is not None else None
        if first is None:
            raise
        return Fired(first, replayed=True)
    if run.due_at <= utcnow():
        hand_over(run)
    return Fired(run)


def get_run(principal: Principal, team_id: int, public_id: str) -> Run:
    require_team(principal, team_id)
    return find_run(principal, public_id, team_id)


def find_run(principal: Principal, public_id: str, team_id: int | None = None) -> Run:
    """A run of `team_id`, or without it of any of the principal's teams (a run page's link names
    no team)."""
    require_public_id(public_id)
    run = db.session.query(Run).filter_by(public_id=public_id).first()
    teams = principal.team_ids if team_id is None else {team_id}
    if run is None or run.team_id not in teams:
        raise NotFound("no such run")
    require_environment_access(principal, run.workflow.environment.is_production)
    return run


def retry_run(principal: Principal, team_id: int, public_id: str, key: str | None = None) -> Fired:
    """A manual re-fire of a terminal run with the same env: a fresh attempt chain."""
    run = get_run(principal, team_id, public_id)
    roles.require(principal, team_id, "run.retry")

    def allowed() -> None:
        if not run.terminal:
            raise Conflict(f"the run is {run.status}; only a finished run can be retried")
        if run.workflow.deleted_at is not None:
            raise Conflict("the workflow was deleted")
        pausing.require_triggers(run.workflow)
    return _fire_once(team_id, key, idempotency.fingerprint("retry", run.public_id), allowed,
                      lambda: _audited(principal, "run.retry",
                                       fire(run.workflow, Trigger.RETRY, dict(run.env), retry_of=run,
                                            payload=run.payload, by=actors.who(principal)),
                                       {"retryOf": run.public_id}))


def fire_webhook(token: str, body: bytes, headers, key: str | None = None, source: dict | None = None) -> Fired:
    """A POST to a workflow's hook (services.hooks): its body becomes the run's payload."""
    hook, wf = hooks.hook_of(token)
    hooks.check_body(hook, body, headers)  # before any answer, a replayed one too
    request_hash = idempotency.fingerprint("webhook", wf.public_id, {"sha256": hashlib.sha256(body).hexdigest()})
    return _fire_once(wf.team_id, key, request_hash, lambda: pausing.require_triggers(wf),
                      lambda: _audited(None, "run.trigger",
                                       fire(wf, Trigger.WEBHOOK, dict(wf.env or {}), payload=hooks.encode(body),
                                            by=f"webhook {hook.token_prefix}…"),
                                       actor=f"webhook {hook.token_prefix}…", source=source))


def cancel_run(principal: Principal, run: Run) -> Run:
    """A run the caller has loaded (get_run, find_run): each face loads it once."""
    roles.require(principal, run.team_id, "run.cancel")
    audit.record(principal, run.team_id, "run.cancel", "run", run.public_id, {"status": [run.status, "cancelled"]})
    return request_cancel(run, by=actors.who(principal))


def request_cancel(run: Run, reason: str | None = None, by: str | None = None) -> Run:
    """Queued: cancelled now, before any container exists. Running: the owning worker stops it.
    `reason` becomes the run's `error` (a user's cancel has none). The commit expires the run: a
    caller that reads it again reads the cancel."""
    if run.terminal:
        raise Conflict(f"the run is already {run.status}")
    signal = cancel_in_transaction(run, reason, by)
    db.session.commit()
    signal()
    return run


def list_runs(principal: Principal, team_id: int, public_id: str, limit: int = 20,
              cursor: str | None = None) -> tuple[list[Run], str | None]:
    """Newest first. The cursor is the last id seen, so runs that arrive later never shift a page."""
    wf = get_workflow(principal, team_id, public_id)
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid("limit is 1 to 100", {"limit": f"1 to {MAX_PAGE}"})
    return _newest_first(db.session.query(Run).filter(Run.workflow_id == wf.id), limit, cursor)


def _newest_first(query, limit: int, cursor: str | None) -> tuple[list[Run], str | None]:
    """A page of `query`'s runs, newest first, and the cursor of the next page (the last id seen,
    so runs that arrive meanwhile never shift a page), or None on the last."""
    if cursor:
        query = query.filter(Run.id < paging.decode(cursor))
    runs = query.order_by(Run.id.desc()).limit(limit + 1).all()
    more = len(runs) > limit
    runs = runs[:limit]
    return runs, (paging.encode(runs[-1].id) if more else None)


RANGES = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400, "all": None}


@dataclass(frozen=True)
class RunFilter:
    """The Runs tab's filters, as they appear in its URL."""
    status: str = ""
    workflow: str = ""  # a workflow's public id
    trigger: str = ""
    range: str = "all"

    @classmethod
    def from_args(cls, args) -> RunFilter:
        """Filters from query arguments; Invalid names each bad one."""
        f = cls(status=args.get("status", ""), workflow=args.get("workflow", ""),
                trigger=args.get("trigger", ""), range=args.get("range", "") or "all")
        fields = {}
        if f.status and f.status not in STATUSES:
            fields["status"] = f"one of {', '.join(STATUSES)}"
        if f.trigger and f.trigger not in TRIGGERS:
            fields["trigger"] = f"one of {', '.join(TRIGGERS)}"
        if f.range not in RANGES:
            fields["range"] = f"one of {', '.join(RANGES)}"
        if f.workflow:
            try:
                require_public_id(f.workflow)
            except NotFound:
                fields["workflow"] = "not a workflow id"
        if fields:
            raise Invalid("the filters are not valid", fields)
        return f


def project_runs(principal: Principal, team_id: int, project_id: int, filters: RunFilter, limit: int = 50,
                 cursor: str | None = None) -> tuple[list[Run], str | None]:
    """The runs of every workflow of a project, newest first, filtered, a page at a time."""
    project = get_project(principal, team_id, project_id)
    # Run.team_id: the team's own runs are walked (ix_runs_team_newest), never other teams' newer ones
    query = (db.session.query(Run).join(Workflow, Workflow.id == Run.workflow_id)
             .options(contains_eager(Run.workflow))
             .filter(Run.team_id == project.team_id, Workflow.project_id == project.id))
    query = visible(query, principal, project)
    if filters.status == "queued":  # as shown: claimed runs whose container has not started are queued
        query = query.filter((Run.status == RunStatus.QUEUED) | ((Run.status == RunStatus.RUNNING) & Run.started_at.is_(None)))
    elif filters.status == "running":
        query = query.filter(Run.status == RunStatus.RUNNING, Run.started_at.is_not(None))
    elif filters.status:
        query = query.filter(Run.status == filters.status)
    if filters.trigger:
        query = query.filter(Run.trigger == filters.trigger)
    if filters.workflow:
        query = query.filter(Workflow.public_id == filters.workflow)
    if RANGES[filters.range]:
        query = query.filter(Run.queued_at >= utcnow() - timedelta(seconds=RANGES[filters.range]))
    return _newest_first(query, limit, cursor)


def run_url(run: Run) -> str:
    return f"{current_app.config['BASE_URL']}/runs/{run.public_id}"


def workflow_url(wf: Workflow) -> str:
    return f"{current_app.config['BASE_URL']}/teams/{wf.team_id}/workflows/{wf.public_id}"


def last_runs(workflow_ids: list[int]) -> dict[int, Run]:
    """The newest run of each workflow, in one query (the index on (workflow_id, id) serves it)."""
    if not workflow_ids:
        return {}
    newest = (db.session.query(func.max(Run.id)).filter(Run.workflow_id.in_(workflow_ids))
              .group_by(Run.workflow_id))
    return {run.workflow_id: run for run in db.session.query(Run).filter(Run.id.in_(newest)).all()}


def recent_runs(workflow_id: int, count: int) -> list[Run]:
    """The last `count` runs, oldest first (for the duration chart)."""
    runs = (db.session.query(Run).filter(Run.workflow_id == workflow_id).order_by(Run.id.desc())
            .limit(count).all())
    return runs[::-1]
