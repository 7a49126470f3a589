"""Users, teams and their default project."""
from __future__ import annotations

from ..extensions import db
from ..models import Environment, Membership, Project, Team, User
from . import audit
from .access import Principal
from .errors import Invalid, NotFound

WEAK_PASSWORD_LENGTH = 12  # below this the CLI warns (the operator who runs it decides)


def create_project(team: Team, name: str) -> Project:
    project = Project(team=team, name=name)
    db.session.add(project)
    db.session.add(Environment(project=project, name=Environment.PRODUCTION))
    return project


def create_user(email: str, password: str, team_name: str) -> tuple[User, Team, Project]:
    """Create a user in `team_name`; a new team gets a project `default` with its Production env."""
    email = email.strip().lower()
    if "@" not in email or len(email) > 254:
        raise Invalid("not an email address", {"email": "not an email address"})
    if not password or len(password) > 1024:
        raise Invalid("a password is 1 to 1024 characters", {"password": "1 to 1024 characters"})
    if not team_name.strip() or len(team_name) > 100:
        raise Invalid("a team name is 1 to 100 characters", {"team": "1 to 100 characters"})
    if db.session.query(User).filter_by(email=email).first():
        raise Invalid("a user with this email exists", {"email": "already registered"})
    team = db.session.query(Team).filter_by(name=team_name).first()
    if team is None:
        team = Team(name=team_name)
        db.session.add(team)
        project = create_project(team, "default")
    else:
        project = team.projects[0]
    user = User(email=email)
    user.set_password(password)
    db.session.add(user)
    db.session.add(Membership(user=user, team=team, role="owner"))
    db.session.flush()
    audit.record(Principal.operator({team.id}), team.id, "member.add", "member", email, {"role": [None, "owner"]})
    db.session.commit()
    return user, team, project


def set_password(email: str, password: str) -> User:
    """A new password; every session and remember cookie of the user ends with the old one."""
    user = db.session.query(User).filter_by(email=email.strip().lower()).first()
    if user is None:
        raise NotFound("no user with this email")
    if not password or len(password) > 1024:
        raise Invalid("a password is 1 to 1024 characters", {"password": "1 to 1024 characters"})
    user.set_password(password)
    for member in user.memberships:
        audit.record(Principal.operator({member.team_id}), member.team_id, "user.password", "user", user.email)
    db.session.commit()
    return user
