"""Worker processes and the engine host each one runs on, as their heartbeats record them."""
from __future__ import annotations

from ..extensions import db
from .base import utcnow


class WorkerProcess(db.Model):
    """One `flask worker` (a supervisor and its slots) on one engine host. The scheduler reads a
    host's last heartbeat from here (not from Redis, whose loss must not make every host look
    gone) to tell a host that is away from one that is lost."""
    __tablename__ = "worker_processes"

    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(200), nullable=False, unique=True)  # host name of the machine : pid
    host = db.Column(db.String(200), nullable=False, index=True)  # the engine's identity (WORKER_HOST)
    pools = db.Column(db.String(500), nullable=False, default="default")  # comma-separated
    slots = db.Column(db.Integer, nullable=False, default=0)
    engine_version = db.Column(db.String(50), nullable=True)
    started_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    last_seen_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    stopped_at = db.Column(db.DateTime, nullable=True)  # a clean stop (SIGTERM)
    # This host's wall clock minus the database's, as last measured (the Workers page shows it
    # when it is off by more than a second; nothing of ours depends on it).
    clock_offset_ms = db.Column(db.Integer, nullable=True)
    # Why this worker could not install the egress rules (allowed outside production only), or None.
    egress_problem = db.Column(db.Text, nullable=True)

    @property
    def pool_list(self) -> list[str]:
        return [p for p in self.pools.split(",") if p]


class PoolGrant(db.Model):
    """A worker pool set aside for a team: only teams granted a pool may run in it (`default` is
    everyone's). An operator grants it: flask pools allow POOL --team TEAM."""
    __tablename__ = "pool_grants"
    pool = db.Column(db.String(40), primary_key=True)
    team_id = db.Column(db.Integer, db.ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
