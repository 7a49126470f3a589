"""Project and environment routes (an extension of the contract: where non-Production workflows live)."""
from __future__ import annotations

from flask import g, jsonify

from ..models.base import isoformat
from ..schemas import EnvironmentCreate, ProjectCreate, parse
from ..services import projects as service
from ..services.access import require_team
from ..services.workflows import get_project
from .blueprint import bp
from .body import json_body


def environment_json(env) -> dict:
    return {"id": env.id, "projectId": env.project_id, "name": env.name, "production": env.is_production,
            "createdAt": isoformat(env.created_at)}


def project_json(project) -> dict:
    return {"id": project.id, "teamId": project.team_id, "name": project.name,
            "environments": [environment_json(e) for e in project.environments],
            "createdAt": isoformat(project.created_at)}


@bp.get("/teams/<int:team_id>/projects")
def list_projects(team_id: int):
    return jsonify({"projects": [project_json(p) for p in service.list_projects(g.principal, team_id)]})


@bp.post("/teams/<int:team_id>/projects")
def create_project(team_id: int):
    require_team(g.principal, team_id)  # another team's path is a 404 before any body check
    body = parse(ProjectCreate, json_body())
    return jsonify(project_json(service.create_project(g.principal, team_id, body.name))), 201


@bp.get("/projects/<int:team_id>/<int:project_id>/environments")
def list_environments(team_id: int, project_id: int):
    envs = service.list_environments(g.principal, team_id, project_id)
    return jsonify({"environments": [environment_json(e) for e in envs]})


@bp.post("/projects/<int:team_id>/<int:project_id>/environments")
def create_environment(team_id: int, project_id: int):
    get_project(g.principal, team_id, project_id)
    body = parse(EnvironmentCreate, json_body())
    return jsonify(environment_json(service.create_environment(g.principal, team_id, project_id, body.name))), 201
