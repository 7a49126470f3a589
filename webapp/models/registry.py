"""Private registry credentials of a project, matched to images by registry host."""
from __future__ import annotations

from ..extensions import db
from .base import EncryptedText, utcnow


class RegistryCredential(db.Model):
    __tablename__ = "registry_credentials"
    id = db.Column(db.Integer, primary_key=True)
    team_id = db.Column(db.Integer, db.ForeignKey("teams.id", ondelete="CASCADE"), nullable=False)
    project_id = db.Column(db.Integer, db.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False)
    registry_host = db.Column("registry", db.String(255), nullable=False)
    username = db.Column(db.String(255), nullable=False)
    password = db.Column(EncryptedText, nullable=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    __table_args__ = (db.UniqueConstraint("project_id", "registry"),)
