"""Worker pools and who may use them: `default` is every team's; any other pool only the teams an
operator granted it to (flask pools allow POOL --team TEAM). Checked where a workflow names its
pool and again where a worker takes a run."""
from __future__ import annotations

from sqlalchemy import select

from ..extensions import db
from ..models import PoolGrant, Team
from ..keys import DEFAULT_POOL
from . import audit
from .access import Principal
from .errors import Invalid


def may_use(team_id: int, pool: str) -> bool:
    return pool == DEFAULT_POOL or db.session.get(PoolGrant, (pool, team_id)) is not None


def check(team_id: int, pool: str | None) -> None:
    if pool is not None and not may_use(team_id, pool):
        raise Invalid(f"the worker pool {pool} is not this team's",
                      {"workerPool": f"not a pool of this team (an operator grants it: flask pools allow {pool} "
                                     "--team TEAM)"})


def usable(team_ids: set[int]) -> set[str]:
    """The pools these teams may use."""
    granted = db.session.scalars(select(PoolGrant.pool).where(PoolGrant.team_id.in_(team_ids or {-1}))).all()
    return {DEFAULT_POOL, *granted}


def allow(pool: str, team: Team) -> None:
    if db.session.get(PoolGrant, (pool, team.id)) is None:
        db.session.add(PoolGrant(pool=pool, team_id=team.id))
        audit.record(Principal.operator({team.id}), team.id, "pool.allow", "pool", pool)
    db.session.commit()


def deny(pool: str, team: Team) -> None:
    """The team's workflows in the pool stay; their runs fail when a worker takes them."""
    grant = db.session.get(PoolGrant, (pool, team.id))
    if grant is not None:
        db.session.delete(grant)
        audit.record(Principal.operator({team.id}), team.id, "pool.deny", "pool", pool)
    db.session.commit()


def grants() -> list[tuple[str, int, str]]:
    """(pool, team id, team name) of every grant."""
    return db.session.execute(select(PoolGrant.pool, Team.id, Team.name).join(Team, Team.id == PoolGrant.team_id)
                              .order_by(PoolGrant.pool, Team.id)).all()
