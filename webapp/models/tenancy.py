"""Teams, users, memberships, projects, environments and API keys."""
from __future__ import annotations

from flask_login import UserMixin
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from .base import JSON, utcnow


class Team(db.Model):
    __tablename__ = "teams"
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(100), nullable=False, unique=True)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    # An operator's overrides of the quota defaults, by limit name (services/quotas.py); null: none.
    limits = db.Column(JSON, nullable=True)
    # Runs that finished before this were removed, past the team's runRetentionDays (null: none)
    runs_pruned_before = db.Column(db.DateTime, nullable=True)

    projects = db.relationship("Project", back_populates="team", order_by="Project.id")


class User(UserMixin, db.Model):
    __tablename__ = "users"
    id = db.Column(db.Integer, primary_key=True)
    email = db.Column(db.String(254), nullable=False, unique=True)
    password_hash = db.Column(db.String(255), nullable=False)
    # Part of the id in the session and the remember cookie: a logout or a password change bumps
    # it, which ends every session and remember cookie of the user, and their live-log sockets.
    session_version = db.Column(db.Integer, nullable=False, default=1, server_default="1")
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    # The single sign-on provider's subject ("<issuer> <sub>") once the user signed in with it; a
    # user made by SSO has a random password hash nobody knows.
    sso_subject = db.Column(db.String(400), nullable=True, unique=True)

    memberships = db.relationship("Membership", back_populates="user")

    def get_id(self) -> str:
        return f"{self.id}:{self.session_version or 1}"

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)  # scrypt
        self.session_version = (self.session_version or 1) + 1

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    @property
    def team_ids(self) -> set[int]:
        return {m.team_id for m in self.memberships}


class Membership(db.Model):
    __tablename__ = "memberships"
    user_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    team_id = db.Column(db.Integer, db.ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    role = db.Column(db.String(20), nullable=False, default="owner")
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    # Made by `flask sso map` from the user's groups: its role follows them at each sign-in, and
    # it goes when no group of theirs maps to the team any more. Others (invitations, the CLI) stay.
    via_sso = db.Column(db.Boolean, nullable=False, default=False, server_default="0")

    user = db.relationship("User", back_populates="memberships")
    team = db.relationship("Team")


class Project(db.Model):
    __tablename__ = "projects"
    id = db.Column(db.Integer, primary_key=True)
    team_id = db.Column(db.Integer, db.ForeignKey("teams.id", ondelete="CASCADE"), nullable=False, index=True)
    name = db.Column(db.String(100), nullable=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)

    team = db.relationship("Team", back_populates="projects")
    environments = db.relationship("Environment", back_populates="project", order_by="Environment.id")
    __table_args__ = (db.UniqueConstraint("team_id", "name"),)

    @property
    def production(self) -> "Environment":
        return next(e for e in self.environments if e.is_production)


class Environment(db.Model):
    __tablename__ = "environments"
    PRODUCTION = "Production"  # every project has one; hs_test_ keys never act on it
    id = db.Column(db.Integer, primary_key=True)
    project_id = db.Column(db.Integer, db.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False, index=True)
    name = db.Column(db.String(100), nullable=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)

    project = db.relationship("Project", back_populates="environments")
    __table_args__ = (db.UniqueConstraint("project_id", "name"),)

    @property
    def is_production(self) -> bool:
        return self.name == Environment.PRODUCTION


class ApiKey(db.Model):
    __tablename__ = "api_keys"
    id = db.Column(db.Integer, primary_key=True)
    team_id = db.Column(db.Integer, db.ForeignKey("teams.id", ondelete="CASCADE"), nullable=False, index=True)
    name = db.Column(db.String(100), nullable=False, default="")
    # The first characters of the key, shown in lists and used to find the row; never the key.
    prefix = db.Column(db.String(24), nullable=False, index=True)
    key_hash = db.Column(db.String(64), nullable=False, unique=True)
    # What the key may do in its team (vocabulary.Role), at most its maker's role; the CLI's
    # --scope full makes an admin key, --scope read a viewer key.
    role = db.Column(db.String(10), nullable=False)
    # The member who made it in the dashboard (null: the operator's CLI); their keys follow them
    # down when their role is lowered, and are revoked when they leave the team.
    created_by_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True)
    mode = db.Column(db.String(10), nullable=False)  # live | test
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    last_used_at = db.Column(db.DateTime, nullable=True)
    revoked_at = db.Column(db.DateTime, nullable=True)
    # After this the key is refused with 401 "key expired" (null: it does not expire).
    expires_at = db.Column(db.DateTime, nullable=True)


class Invitation(db.Model):
    """An owner's invitation of an email address to the team with a role: its link (a token shown
    once and mailed, stored as a hash) is valid INVITATION_DAYS, once."""
    __tablename__ = "invitations"
    id = db.Column(db.Integer, primary_key=True)
    team_id = db.Column(db.Integer, db.ForeignKey("teams.id", ondelete="CASCADE"), nullable=False, index=True)
    email = db.Column(db.String(254), nullable=False)
    role = db.Column(db.String(10), nullable=False)
    token_hash = db.Column(db.String(64), nullable=False, unique=True)
    created_by = db.Column(db.String(200), nullable=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    expires_at = db.Column(db.DateTime, nullable=False)
    accepted_at = db.Column(db.DateTime, nullable=True)
    accepted_by_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    revoked_at = db.Column(db.DateTime, nullable=True)

    team = db.relationship("Team")


class SsoGroupMap(db.Model):
    """`flask sso map GROUP --team T --role R`: members of the provider's group GROUP are members of
    team T with role R (the highest, when several of their groups map to one team)."""
    __tablename__ = "sso_group_maps"
    id = db.Column(db.Integer, primary_key=True)
    group = db.Column(db.String(200), nullable=False)
    team_id = db.Column(db.Integer, db.ForeignKey("teams.id", ondelete="CASCADE"), nullable=False)
    role = db.Column(db.String(10), nullable=False)
    __table_args__ = (db.UniqueConstraint("group", "team_id"),)
