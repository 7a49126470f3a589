"""A team's env groups: named sets of env entries, each change a new version (services/envgroups.py)."""
from __future__ import annotations

from sqlalchemy import text

from ..extensions import db
from .base import EncryptedJSON, utcnow


class EnvGroup(db.Model):
    """A group's name and its latest `version`. Deleted groups keep their rows (deleted_at): the
    runs that used one of their versions are retried with it."""

    __tablename__ = "env_groups"
    id = db.Column(db.Integer, primary_key=True)
    team_id = db.Column(db.Integer, db.ForeignKey("teams.id", ondelete="CASCADE"), nullable=False)
    name = db.Column(db.String(40), nullable=False)
    version = db.Column(db.Integer, nullable=False, default=1)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    updated_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    deleted_at = db.Column(db.DateTime, nullable=True)
    __table_args__ = (
        db.Index("uq_env_groups_team_name_live", "team_id", "name", unique=True,
                 sqlite_where=text("deleted_at IS NULL"), postgresql_where=text("deleted_at IS NULL")),
    )


class EnvGroupVersion(db.Model):
    """One version of a group's entries, never changed: {"KEY": {"value": "…", "secret": bool}},
    in order, encrypted at rest."""

    __tablename__ = "env_group_versions"
    group_id = db.Column(db.Integer, db.ForeignKey("env_groups.id", ondelete="CASCADE"), primary_key=True)
    version = db.Column(db.Integer, primary_key=True)
    entries = db.Column(EncryptedJSON, nullable=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    created_by = db.Column(db.String(200), nullable=True)
