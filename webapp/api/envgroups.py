"""Env group routes: a team's named, versioned sets of env entries (services/envgroups.py)."""
from __future__ import annotations

from flask import g

from ..schemas import EnvGroupChange, EnvGroupCreate, parse
from ..gate import masked, needs
from ..services import envgroups as service
from .blueprint import bp
from .body import json_body
from .serialize import answer, env_group_shape
from .shapes import EnvGroupList


def _shape(group, using: list | None = None):
    return env_group_shape(group, masked(group.team_id), using)


@bp.get("/teams/<int:team_id>/env-groups")
@needs("team.read")
def list_env_groups(team_id: int):
    groups, using = service.list_groups(g.principal, team_id), service.users_of(team_id)
    return answer(EnvGroupList(envGroups=[_shape(group, using[group.id]) for group in groups]))


@bp.post("/teams/<int:team_id>/env-groups")
@needs("envgroup.create")
def create_env_group(team_id: int):
    body = parse(EnvGroupCreate, json_body())
    return answer(_shape(service.create_group(g.principal, team_id, body)), 201)


@bp.get("/teams/<int:team_id>/env-groups/<name>")
@needs("team.read")
def get_env_group(team_id: int, name: str):
    return answer(_shape(service.get_group(g.principal, team_id, name)))


@bp.patch("/teams/<int:team_id>/env-groups/<name>")
@needs("envgroup.update")
def change_env_group(team_id: int, name: str):
    body = parse(EnvGroupChange, json_body())
    return answer(_shape(service.change_group(g.principal, team_id, name, body)))


@bp.delete("/teams/<int:team_id>/env-groups/<name>")
@needs("envgroup.delete")
def delete_env_group(team_id: int, name: str):
    service.delete_group(g.principal, team_id, name)
    return "", 204
