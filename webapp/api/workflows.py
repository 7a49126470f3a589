"""Workflow routes."""
from __future__ import annotations

from flask import current_app, g, jsonify

from ..extensions import limiter
from ..schemas import TriggerBody, WorkflowCreate, WorkflowUpdate, parse
from ..services import runs as run_service
from ..services import workflows as service
from . import bp
from .auth import team_rate_key
from .body import json_body
from .serialize import run_json, workflow_json

def _trigger_rate() -> str:
    return current_app.config["TRIGGER_RATE_LIMIT"]


# Trigger and retry share one budget per team.
trigger_limit = limiter.shared_limit(_trigger_rate, scope="trigger-retry", key_func=team_rate_key)


@bp.get("/projects/<int:team_id>/<int:project_id>/workflows")
def list_workflows(team_id: int, project_id: int):
    workflows = service.list_workflows(g.principal, team_id, project_id)
    return jsonify({"workflows": [workflow_json(w) for w in workflows]})


@bp.post("/projects/<int:team_id>/<int:project_id>/workflows")
def create_workflow(team_id: int, project_id: int):
    service.get_project(g.principal, team_id, project_id)
    body = parse(WorkflowCreate, json_body())
    wf = service.create_workflow(g.principal, team_id, project_id, body)
    return jsonify(workflow_json(wf)), 201


@bp.get("/workflows/<int:team_id>/workflows/<workflow_id>")
def get_workflow(team_id: int, workflow_id: str):
    return jsonify(workflow_json(service.get_workflow(g.principal, team_id, workflow_id)))


@bp.patch("/workflows/<int:team_id>/workflows/<workflow_id>")
def update_workflow(team_id: int, workflow_id: str):
    service.get_workflow(g.principal, team_id, workflow_id, write=True)
    body = parse(WorkflowUpdate, json_body())
    return jsonify(workflow_json(service.update_workflow(g.principal, team_id, workflow_id, body)))


@bp.delete("/workflows/<int:team_id>/workflows/<workflow_id>")
def delete_workflow(team_id: int, workflow_id: str):
    service.delete_workflow(g.principal, team_id, workflow_id)
    return "", 204


@bp.post("/workflows/<int:team_id>/workflows/<workflow_id>/trigger")
@trigger_limit
def trigger_workflow(team_id: int, workflow_id: str):
    service.get_workflow(g.principal, team_id, workflow_id, write=True)
    body = parse(TriggerBody, json_body(optional=True))
    run = run_service.trigger_workflow(g.principal, team_id, workflow_id, body.env)
    return jsonify(run_json(run)), 202
