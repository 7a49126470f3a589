"""Project and environment routes (an extension of the contract: where non-Production workflows live)."""
from __future__ import annotations

from flask import g

from ..gate import needs
from ..schemas import EnvironmentCreate, ProjectCreate, parse
from ..services import projects as service
from ..services.access import require_team
from ..services.workflows import get_project
from .blueprint import bp
from .body import json_body
from .serialize import answer, environment_shape, project_shape
from .shapes import EnvironmentList, ProjectList


@bp.get("/teams/<int:team_id>/projects")
@needs("team.read")
def list_projects(team_id: int):
    return answer(ProjectList(projects=[project_shape(p) for p in service.list_projects(g.principal, team_id)]))


@bp.post("/teams/<int:team_id>/projects")
@needs("project.create")
def create_project(team_id: int):
    require_team(g.principal, team_id)  # another team's path is a 404 before any body check
    body = parse(ProjectCreate, json_body())
    return answer(project_shape(service.create_project(g.principal, team_id, body.name)), 201)


@bp.get("/projects/<int:team_id>/<int:project_id>/environments")
@needs("team.read")
def list_environments(team_id: int, project_id: int):
    envs = service.list_environments(g.principal, team_id, project_id)
    return answer(EnvironmentList(environments=[environment_shape(e) for e in envs]))


@bp.post("/projects/<int:team_id>/<int:project_id>/environments")
@needs("environment.create")
def create_environment(team_id: int, project_id: int):
    get_project(g.principal, team_id, project_id)
    body = parse(EnvironmentCreate, json_body())
    return answer(environment_shape(service.create_environment(g.principal, team_id, project_id, body.name)), 201)
