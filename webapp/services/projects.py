"""Projects of a team, and environments of a project (every project starts with `Production`)."""
from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import Environment, Project, Team
from . import audit, roles
from .access import Principal, require_team
from .errors import Conflict
from .teams import create_project as new_project
from .workflows import get_project


def list_projects(principal: Principal, team_id: int) -> list[Project]:
    require_team(principal, team_id)
    return db.session.query(Project).filter_by(team_id=team_id).order_by(Project.id).all()


def create_project(principal: Principal, team_id: int, name: str) -> Project:
    roles.require(principal, team_id, "project.create")
    name = name.strip()
    project = new_project(db.session.get(Team, team_id), name)
    audit.record(principal, team_id, "project.create", "project", name)
    _commit_unique(f"the team already has a project named {name!r}")
    return project


def list_environments(principal: Principal, team_id: int, project_id: int) -> list[Environment]:
    return get_project(principal, team_id, project_id).environments


def create_environment(principal: Principal, team_id: int, project_id: int, name: str) -> Environment:
    project = get_project(principal, team_id, project_id)
    roles.require(principal, team_id, "environment.create")
    name = name.strip()
    environment = Environment(project=project, name=name)
    db.session.add(environment)
    audit.record(principal, team_id, "environment.create", "environment", f"{project.name}/{name}")
    _commit_unique(f"the project already has an environment named {name!r}")
    return environment


def _commit_unique(message: str) -> None:
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(message, {"name": "already taken"}) from None
