"""Workflows: create, read, update, delete, with the tenancy and key rules of the contract."""
from __future__ import annotations

from datetime import datetime

from flask import current_app
from sqlalchemy import func, select

from .. import cron
from ..extensions import db
from ..models import Environment, Project, Run, Workflow
from ..models.base import new_public_id, utcnow
from ..schemas import WorkflowCreate, WorkflowUpdate
from . import audit, chains, envgroups, pausing, pools, quotas, retrying, roles
from .access import Principal, require_environment_access, require_public_id, require_team
from .errors import Invalid, NotFound
from .registry_hosts import registry_problem
from .transitions import cancel_prepared

# API field -> model attribute, for the fields a workflow body may carry.
FIELDS = {
    "name": "name", "image": "image", "command": "command", "env": "env", "schedule": "schedule",
    "timeoutSec": "timeout_sec", "maxRetries": "max_retries", "timezone": "timezone",
    "concurrencyPolicy": "concurrency_policy", "retryBackoffSec": "retry_backoff_sec",
    "memoryMb": "memory_mb", "cpus": "cpus", "network": "network", "workerPool": "worker_pool",
    "onHostLost": "on_host_lost", "readOnlyRootfs": "read_only_rootfs",
    "expectSuccessWithinSec": "expect_success_within_sec", "retryPolicy": "retry_policy", "join": "chain_join",
    "catchUpWindowSec": "catch_up_window_sec",
}


def _value(body, api_name: str):
    """A body field as its column keeps it."""
    value = getattr(body, api_name)
    return retrying.stored(value) if api_name == "retryPolicy" else value


def _snapshot(wf: Workflow) -> dict:
    """The workflow's settings by API name, for the audit log's diff."""
    values = {api_name: getattr(wf, attr) for api_name, attr in FIELDS.items()}
    return {**values, "paused": wf.paused_at is not None, "envGroups": envgroups.names_of(wf.env_group_ids)}


def check_limits(body) -> None:
    """memoryMb and cpus within the installation's ceilings (MAX_MEMORY_MB, MAX_CPUS); the image's
    registry on a public address, or one the operator allowed."""
    cfg = current_app.config
    fields = {}
    if getattr(body, "image", None):
        problem = registry_problem(body.image, resolve_failures_ok=True)
        if problem:
            fields["image"] = problem
    if getattr(body, "memoryMb", None) is not None and body.memoryMb > cfg["MAX_MEMORY_MB"]:
        fields["memoryMb"] = f"at most {cfg['MAX_MEMORY_MB']} on this installation"
    if getattr(body, "cpus", None) is not None and body.cpus > cfg["MAX_CPUS"]:
        fields["cpus"] = f"at most {cfg['MAX_CPUS']:g} on this installation"
    if fields:
        raise Invalid("the workflow asks for more than this installation allows", fields)


def get_project(principal: Principal, team_id: int, project_id: int) -> Project:
    require_team(principal, team_id)
    project = db.session.get(Project, project_id)
    if project is None or project.team_id != team_id:
        raise NotFound("no such project")
    return project


SHOW = {"failing": "failing", "silent": "silent", "paused": "paused", "scheduled": "scheduled",
        "manual": "manual only"}


def _like(text: str) -> str:
    """A LIKE pattern that finds `text` anywhere, its own % and _ taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def visible(query, principal: Principal, project: Project):
    """`query` (on workflows, or on runs joined to them) without what hs_test_ keys may not see:
    the project's Production workflows."""
    if principal.mode == "test":
        query = query.filter(Workflow.environment_id != project.production.id)
    return query


def live_production_workflows():
    """Workflows not deleted, in a Production environment (any team: the caller narrows)."""
    return (db.session.query(Workflow).join(Environment, Workflow.environment_id == Environment.id)
            .filter(Workflow.deleted_at.is_(None), Environment.name == Environment.PRODUCTION))


def _project_workflows(principal: Principal, team_id: int, project_id: int, search: str = "", show: str = ""):
    """The live workflows of a project, narrowed by a search of name and image and by `show`."""
    project = get_project(principal, team_id, project_id)
    query = visible(db.session.query(Workflow).filter(Workflow.project_id == project.id,
                                                      Workflow.deleted_at.is_(None)), principal, project)
    if show and show not in SHOW:
        raise Invalid("show is not a known filter", {"show": f"one of {', '.join(SHOW)}"})
    if len(search) > 200:
        raise Invalid("the search is too long", {"q": "at most 200 characters"})
    if search.strip():
        pattern = _like(search.strip().lower())
        query = query.filter(func.lower(Workflow.name).like(pattern, escape="\\")
                             | func.lower(Workflow.image).like(pattern, escape="\\"))
    if show == "failing":
        query = query.filter(Workflow.alert_state == "failing")
    elif show == "silent":
        query = query.filter(Workflow.silent_at.is_not(None))
    elif show == "paused":
        query = query.filter(Workflow.paused_at.is_not(None))
    elif show == "scheduled":
        query = query.filter(Workflow.schedule.is_not(None))
    elif show == "manual":
        query = query.filter(Workflow.schedule.is_(None))
    return query


def list_workflows(principal: Principal, team_id: int, project_id: int, *, offset: int = 0,
                   limit: int | None = None, search: str = "", show: str = "") -> list[Workflow]:
    query = _project_workflows(principal, team_id, project_id, search, show).order_by(Workflow.id).offset(offset)
    return (query.limit(limit) if limit else query).all()


def workflow_choices(principal: Principal, team_id: int, project_id: int) -> list[tuple[str, str]]:
    """(public id, name) of the project's live workflows, by name: a filter's choices."""
    return [tuple(row) for row in _project_workflows(principal, team_id, project_id)
            .with_entities(Workflow.public_id, Workflow.name).order_by(Workflow.name)]


def count_workflows(principal: Principal, team_id: int, project_id: int, *, search: str = "",
                    show: str = "") -> int:
    return _project_workflows(principal, team_id, project_id, search, show).with_entities(Workflow.id).count()


def get_workflow(principal: Principal, team_id: int, public_id: str, action: str | None = None) -> Workflow:
    """The team's live workflow; with `action`, only for a principal whose role allows it."""
    require_team(principal, team_id)
    require_public_id(public_id)
    wf = db.session.query(Workflow).filter_by(public_id=public_id).first()
    if wf is None or wf.team_id != team_id or wf.deleted_at is not None:
        raise NotFound("no such workflow")
    if action is not None:
        roles.require(principal, team_id, action)
    require_environment_access(principal, wf.environment.is_production)
    return wf


def compute_next_run_at(wf: Workflow, after: datetime | None = None) -> datetime | None:
    if not wf.schedule or wf.deleted_at is not None or wf.paused_at is not None:
        return None
    return cron.next_instant(wf.schedule, wf.timezone, after or utcnow())


def create_workflow(principal: Principal, team_id: int, project_id: int, body: WorkflowCreate) -> Workflow:
    project = get_project(principal, team_id, project_id)
    roles.require(principal, team_id, "workflow.create")
    if body.projectId != project.id:
        raise Invalid("projectId must equal the project in the path",
                      {"projectId": "must equal the project in the path"})
    if body.environmentId is None:
        environment = project.production
    else:
        environment = db.session.get(Environment, body.environmentId)
        if environment is None or environment.project_id != project.id:
            raise Invalid("environmentId is not an environment of this project",
                          {"environmentId": "not an environment of this project"})
    require_environment_access(principal, environment.is_production)
    check_limits(body)
    quotas.check_workflow(team_id, creating=True, env=body.env, schedule=body.schedule, timezone=body.timezone)
    pools.check(team_id, body.workerPool)
    now = utcnow()
    wf = Workflow(public_id=new_public_id("wf_"), team_id=team_id, project_id=project.id,
                  environment_id=environment.id, created_at=now, updated_at=now)
    for api_name, attr in FIELDS.items():
        setattr(wf, attr, _value(body, api_name))
    wf.environment = environment
    wf.expect_since = now if wf.expect_success_within_sec else None
    wf.env_group_ids = envgroups.ids_of(team_id, body.envGroups) or None
    db.session.add(wf)
    chains.set_edges(wf, body.after)
    pausing.apply(principal, wf, body, body.model_fields_set, now)  # a new workflow has no runs to cancel
    wf.next_run_at = compute_next_run_at(wf, now)
    audit.record(principal, team_id, "workflow.create", "workflow", wf.public_id,
                 audit.changes({}, {k: v for k, v in _snapshot(wf).items() if v not in (None, False, [])}))
    db.session.commit()
    return wf


def update_workflow(principal: Principal, team_id: int, public_id: str, body: WorkflowUpdate) -> Workflow:
    wf = get_workflow(principal, team_id, public_id, "workflow.update")
    check_limits(body)
    given = body.model_fields_set
    snapshot = _snapshot(wf)
    quotas.check_workflow(team_id, creating=False, env=body.env if "env" in given else None,
                          schedule=(body.schedule if "schedule" in given else wf.schedule)
                          if given & {"schedule", "timezone"} else None,
                          timezone=body.timezone if "timezone" in given else wf.timezone)
    if "workerPool" in given:
        pools.check(team_id, body.workerPool)
    before = wf.expect_success_within_sec
    for api_name in given & FIELDS.keys():
        setattr(wf, FIELDS[api_name], _value(body, api_name))
    wf.updated_at = utcnow()
    if wf.expect_success_within_sec != before:
        # a new expectation counts from now; a workflow silent under the old one is not any more
        wf.expect_since = wf.updated_at if wf.expect_success_within_sec else None
        wf.silent_at = None
    if "after" in given:
        chains.set_edges(wf, body.after or [])
    if "envGroups" in given:
        wf.env_group_ids = envgroups.ids_of(team_id, body.envGroups or []) or None
    change = pausing.apply(principal, wf, body, given, wf.updated_at)
    if given & {"schedule", "timezone"} or change.reschedule_after:
        _reschedule(wf, change.reschedule_after or wf.updated_at)
    audit.record(principal, team_id, "workflow.update", "workflow", wf.public_id,
                 audit.changes(snapshot, _snapshot(wf)))
    db.session.commit()
    for signal in change.signals:
        signal()
    return wf


def _reschedule(wf: Workflow, after: datetime) -> None:
    """next_run_at counted from `after`. A fire prepared ahead of its instant (SCHEDULE_LEAD_SEC)
    holds that instant already: the next one is counted from after it, never the same instant
    twice. The row is written first, which locks it (PostgreSQL's row lock, SQLite's write lock):
    a scheduler's claim of an instant either committed before, and its run is read here, or waits
    for this edit and then finds next_run_at changed, so its compare-and-set fails."""
    db.session.flush()
    fired = db.session.scalar(select(func.max(Run.scheduled_for)).where(Run.workflow_id == wf.id))
    wf.next_run_at = compute_next_run_at(wf, max(after, fired) if fired else after)


PREPARED_GONE = "cancelled before its instant: its workflow was deleted"


def delete_workflow(principal: Principal, team_id: int, public_id: str) -> None:
    """In-flight runs continue; no new fires from now on (next_run_at cleared in the same commit).
    A scheduled fire made ahead of an instant still to come (SCHEDULE_LEAD_SEC) is a fire of the
    future, not a run in flight: it is cancelled in the same commit, and no container starts."""
    wf = get_workflow(principal, team_id, public_id, "workflow.delete")
    now = utcnow()
    wf.deleted_at = now
    wf.next_run_at = None
    signals = cancel_prepared(wf.id, now, PREPARED_GONE)
    audit.record(principal, team_id, "workflow.delete", "workflow", wf.public_id, {"name": [wf.name, None]})
    db.session.commit()
    for signal in signals:
        signal()
