"""Workflow routes."""
from __future__ import annotations

from flask import g, request

from ..schemas import TriggerBody, WorkflowCreate, WorkflowUpdate, parse
from ..services import chains, idempotency
from ..services import runs as run_service
from ..gate import masked, needs
from ..services import workflows as service
from .blueprint import bp
from .body import json_body
from .serialize import answer, fired_answer, workflow_shape
from .shapes import WorkflowList


@bp.get("/projects/<int:team_id>/<int:project_id>/workflows")
@needs("team.read")
def list_workflows(team_id: int, project_id: int):
    workflows = service.list_workflows(g.principal, team_id, project_id)
    hide = masked(team_id)
    edges = chains.edges_for([w.id for w in workflows])
    return answer(WorkflowList(workflows=[workflow_shape(w, hide, edges.get(w.id, [])) for w in workflows]))


@bp.post("/projects/<int:team_id>/<int:project_id>/workflows")
@needs("workflow.create")
def create_workflow(team_id: int, project_id: int):
    service.get_project(g.principal, team_id, project_id)
    body = parse(WorkflowCreate, json_body())
    wf = service.create_workflow(g.principal, team_id, project_id, body)
    return answer(workflow_shape(wf), 201)


@bp.get("/workflows/<int:team_id>/workflows/<workflow_id>")
@needs("team.read")
def get_workflow(team_id: int, workflow_id: str):
    return answer(workflow_shape(service.get_workflow(g.principal, team_id, workflow_id),
                                masked(team_id)))


@bp.patch("/workflows/<int:team_id>/workflows/<workflow_id>")
@needs("workflow.update")
def update_workflow(team_id: int, workflow_id: str):
    service.get_workflow(g.principal, team_id, workflow_id, "workflow.update")
    body = parse(WorkflowUpdate, json_body())
    return answer(workflow_shape(service.update_workflow(g.principal, team_id, workflow_id, body)))


@bp.delete("/workflows/<int:team_id>/workflows/<workflow_id>")
@needs("workflow.delete")
def delete_workflow(team_id: int, workflow_id: str):
    service.delete_workflow(g.principal, team_id, workflow_id)
    return "", 204


@bp.post("/workflows/<int:team_id>/workflows/<workflow_id>/trigger")
@needs("run.trigger")
def trigger_workflow(team_id: int, workflow_id: str):
    service.get_workflow(g.principal, team_id, workflow_id, "run.trigger")
    body = parse(TriggerBody, json_body(optional=True))
    key = idempotency.valid_key(request.headers.get(idempotency.HEADER))
    return fired_answer(run_service.trigger_workflow(g.principal, team_id, workflow_id, body.env, key))
