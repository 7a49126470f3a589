"""Env groups: a team's named sets of env entries (the "long secrets" a workflow's own env is too
small for), encrypted at rest. Every change makes a new version, never changed after; a run pins
the versions of its workflow's groups when it is fired, its retries keep them, and its container
gets them under the workflow's env and the trigger's (groups in order, then the workflow, then the
trigger: the later wins). A secret entry's value is write-only: no answer ever holds it."""
from __future__ import annotations

import re
from collections import defaultdict

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import EnvGroup, EnvGroupVersion, Run, Workflow
from ..models.base import utcnow
from ..schemas import POOL_NAME, EnvGroupChange, EnvGroupCreate, stored
from . import actors
from . import audit, roles
from .access import Principal, require_not_test_key, require_team
from .errors import Conflict, Invalid, NotFound

MAX_GROUPS_PER_TEAM = 50


def list_groups(principal: Principal, team_id: int) -> list[EnvGroup]:
    require_team(principal, team_id)
    return (db.session.query(EnvGroup).filter_by(team_id=team_id, deleted_at=None)
            .order_by(EnvGroup.name).all())


def get_group(principal: Principal, team_id: int, name: str) -> EnvGroup:
    require_team(principal, team_id)
    if not re.fullmatch(POOL_NAME, name) or len(name) > 40:  # not a name a group can have
        raise NotFound("no such env group")
    group = db.session.query(EnvGroup).filter_by(team_id=team_id, name=name, deleted_at=None).first()
    if group is None:
        raise NotFound("no such env group")
    return group


def version_of(group: EnvGroup, version: int | None = None) -> EnvGroupVersion:
    """The group's latest version (or `version`): its `entries` are {"KEY": {"value", "secret"}}."""
    return db.session.get(EnvGroupVersion, (group.id, version or group.version))


def _writer(principal: Principal, team_id: int, action: str) -> None:
    roles.require(principal, team_id, action)
    require_not_test_key(principal, "env groups")


def create_group(principal: Principal, team_id: int, body: EnvGroupCreate) -> EnvGroup:
    _writer(principal, team_id, "envgroup.create")
    live = db.session.query(EnvGroup).filter_by(team_id=team_id, deleted_at=None).count()
    if live >= MAX_GROUPS_PER_TEAM:
        raise Conflict(f"the team has {live} env groups, the most it may have")
    now = utcnow()
    group = EnvGroup(team_id=team_id, name=body.name, version=1, created_at=now, updated_at=now)
    db.session.add(group)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Invalid("the name is taken", {"name": f"the team has an env group named {body.name}"}) from None
    entries = stored(body.entries)
    db.session.add(EnvGroupVersion(group_id=group.id, version=1, entries=entries, created_at=now,
                                   created_by=actors.who(principal)))
    audit.record(principal, team_id, "envgroup.create", "env_group", group.name,
                 {"version": [None, 1], "entries": audit.env_changes({}, entries)})
    db.session.commit()
    return group


def change_group(principal: Principal, team_id: int, name: str, body: EnvGroupChange) -> EnvGroup:
    """Set entries and remove keys: a new version. The group's row is written first, so two
    changes at once make two versions, one after the other."""
    group = get_group(principal, team_id, name)
    _writer(principal, team_id, "envgroup.update")
    table = EnvGroup.__table__
    db.session.execute(update(table).where(table.c.id == group.id).values(version=table.c.version + 1,
                                                                          updated_at=utcnow()))
    db.session.refresh(group)
    previous = version_of(group, group.version - 1).entries
    current = dict(previous)
    missing = [key for key in body.remove if key not in current]
    if missing:
        db.session.rollback()
        raise Invalid("no such key to remove", {"remove": f"the group has no {missing[0]}"})
    for key in body.remove:
        del current[key]
    current.update(stored(body.entries))
    problem = EnvGroupCreate.size_problem(current)
    if problem:
        db.session.rollback()
        raise Invalid("the group would be too large", {"entries": problem})
    db.session.add(EnvGroupVersion(group_id=group.id, version=group.version, entries=current,
                                   created_at=group.updated_at, created_by=actors.who(principal)))
    audit.record(principal, team_id, "envgroup.update", "env_group", group.name,
                 {"version": [group.version - 1, group.version], "entries": audit.env_changes(previous, current)})
    db.session.commit()
    return group


def users(group: EnvGroup) -> list[Workflow]:
    """The live workflows that list the group."""
    return users_of(group.team_id)[group.id]


def users_of(team_id: int) -> defaultdict[int, list[Workflow]]:
    """The live workflows of the team that list each group, by group id: one query for a list."""
    listing = (db.session.query(Workflow).filter(Workflow.team_id == team_id, Workflow.deleted_at.is_(None),
                                                Workflow.env_group_ids.is_not(None)).order_by(Workflow.name).all())
    by_group: defaultdict[int, list[Workflow]] = defaultdict(list)
    for wf in listing:
        for group_id in wf.env_group_ids or []:
            by_group[group_id].append(wf)
    return by_group


def delete_group(principal: Principal, team_id: int, name: str) -> None:
    """Refused while a workflow lists it. Its versions stay: runs that used them are retried with them."""
    group = get_group(principal, team_id, name)
    _writer(principal, team_id, "envgroup.delete")
    using = users(group)
    if using:
        names = ", ".join(wf.name for wf in using[:10]) + (" and more" if len(using) > 10 else "")
        raise Conflict(f"the env group {name} is used by {len(using)} workflow{'s' if len(using) != 1 else ''}: "
                       f"{names}; remove it from them first")
    group.deleted_at = utcnow()
    audit.record(principal, team_id, "envgroup.delete", "env_group", group.name, {"version": [group.version, None]})
    db.session.commit()


def ids_of(team_id: int, names: list[str]) -> list[int]:
    """The ids of the team's groups named (a workflow's envGroups), in order, or Invalid."""
    found = dict(db.session.execute(select(EnvGroup.name, EnvGroup.id).where(
        EnvGroup.team_id == team_id, EnvGroup.deleted_at.is_(None), EnvGroup.name.in_(names))).all())
    missing = [n for n in names if n not in found]
    if missing:
        raise Invalid("no such env group", {"envGroups": f"the team has no env group named {missing[0]}"})
    return [found[n] for n in names]


def names_of(ids: list[int] | None) -> list[str]:
    if not ids:
        return []
    names = dict(db.session.execute(select(EnvGroup.id, EnvGroup.name).where(EnvGroup.id.in_(ids))).all())
    return [names[i] for i in ids if i in names]


def pinned(wf: Workflow) -> list[list[int]] | None:
    """[[group id, version], …] of the workflow's groups now: what a new run of it pins."""
    if not wf.env_group_ids:
        return None
    versions = dict(db.session.execute(select(EnvGroup.id, EnvGroup.version)
                                       .where(EnvGroup.id.in_(wf.env_group_ids))).all())
    return [[i, versions[i]] for i in wf.env_group_ids if i in versions]


def env_of(run: Run) -> dict[str, str]:
    """The env the run's pinned group versions give its container, groups in order."""
    env: dict[str, str] = {}
    for group_id, version in run.env_groups or []:
        row = db.session.get(EnvGroupVersion, (group_id, version))
        for key, entry in (row.entries if row is not None else {}).items():
            env[key] = entry["value"]
    return env


def used_by(run: Run) -> list[dict]:
    """What the run page and the API say of a run's groups: name, the version it used, the
    group's version now (None when the group was deleted since)."""
    out = []
    for group_id, version in run.env_groups or []:
        group = db.session.get(EnvGroup, group_id)
        if group is not None:
            out.append({"name": group.name, "version": version,
                        "latest": None if group.deleted_at else group.version})
    return out
