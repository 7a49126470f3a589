"""The audit log: who changed what, when, from where (models/audit.py).

`record` adds the row to the caller's session, so it commits with the change or not at all. A
diff names what changed, `{field: [before, after]}`; env entries and other secret values show as
which keys were added, changed or removed, never a value; a key or a token only by its prefix.
Reading it (`entries`) is for admins and owners; no route changes or deletes a row, and the sweep
removes rows older than AUDIT_RETENTION_DAYS (default 365) in batches."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, select

from ..admission import give_way
from ..extensions import db
from ..models import AuditEntry
from ..models.base import utcnow
from ..schemas import utc_time
from . import actors, paging, roles
from .access import Principal
from .errors import Invalid

PAGE_MAX = 200
PRUNE_BATCH = 1000
PRUNE_BATCHES = 10  # per sweep: a backlog (a lowered retention) goes over several sweeps


def record(principal: Principal | None, team_id: int | None, action: str, target_type: str, target: str,
           diff: dict | None = None, *, actor: str | None = None, source: dict | None = None) -> AuditEntry:
    """One row in the caller's transaction. `actor` names one that is no principal (a webhook's
    token, a sign-in attempt); `source` the request's address and agent when no principal has them."""
    source = source or {}
    with db.session.no_autoflush:  # the change is flushed with its commit, which reports its own conflicts
        actor = actor or actors.who(principal)
    entry = AuditEntry(team_id=team_id, action=action, target_type=target_type, target=str(target)[:200],
                       diff=diff or None, actor=actor[:200],
                       actor_user_id=principal.user_id if principal else None,
                       actor_key_id=principal.key_id if principal else None,
                       ip=(principal.ip if principal else None) or source.get("ip"),
                       user_agent=((principal.user_agent if principal else None) or source.get("user_agent") or "")[:300]
                       or None)
    db.session.add(entry)
    return entry


def env_changes(before: dict | None, after: dict | None) -> dict | None:
    """Which env keys were added, changed or removed; never a value."""
    before, after = before or {}, after or {}
    out = {"added": sorted(after.keys() - before.keys()), "removed": sorted(before.keys() - after.keys()),
           "changed": sorted(k for k in before.keys() & after.keys() if before[k] != after[k])}
    out = {k: v for k, v in out.items() if v}
    return out or None


def changes(before: dict, after: dict, secret: tuple[str, ...] = ("env",)) -> dict:
    """`{field: [before, after]}` of the fields whose value changed; `secret` fields by keys only."""
    diff = {}
    for field in before.keys() | after.keys():
        old, new = before.get(field), after.get(field)
        if old == new:
            continue
        diff[field] = env_changes(old, new) if field in secret else [old, new]
    return diff


@dataclass
class AuditFilter:
    actor: str = ""
    action: str = ""
    target: str = ""
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def from_args(cls, args) -> "AuditFilter":
        words = {name: (args.get(name) or "").strip()[:size] for name, size in (("actor", 200), ("action", 40),
                                                                               ("target", 200))}
        bad = {name: "must not hold a NUL character" for name, word in words.items() if "\x00" in word}
        if bad:
            raise Invalid("the filters are not valid", bad)
        return cls(**words, since=_time(args, "since"), until=_time(args, "until"))


def _time(args, name: str) -> datetime | None:
    text = (args.get(name) or "").strip()
    if not text:
        return None
    try:
        return utc_time(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise Invalid(f"{name} is not a time", {name: str(e)}) from None


def _query(team_id: int, f: AuditFilter):
    query = select(AuditEntry).where(AuditEntry.team_id == team_id)
    if f.actor:
        query = query.where(AuditEntry.actor == f.actor)
    if f.action:
        query = query.where(AuditEntry.action == f.action)
    if f.target:
        query = query.where(AuditEntry.target == f.target)
    if f.since:
        query = query.where(AuditEntry.at >= f.since)
    if f.until:
        query = query.where(AuditEntry.at < f.until)
    return query


def entries(principal: Principal, team_id: int, f: AuditFilter, limit: int = 50,
            cursor: str | None = None) -> tuple[list[AuditEntry], str | None]:
    """Newest first, a page of `limit`, and the cursor of the next page (None: the last one)."""
    roles.require(principal, team_id, "audit.read")
    if not 1 <= limit <= PAGE_MAX:
        raise Invalid(f"limit is 1 to {PAGE_MAX}", {"limit": f"1 to {PAGE_MAX}"})
    query = _query(team_id, f)
    if cursor:
        query = query.where(AuditEntry.id < paging.decode(cursor))
    rows = db.session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, paging.encode(rows[-1].id) if more else None


def export(principal: Principal, team_id: int, f: AuditFilter):
    """Every matching row, newest first, read in batches as it is iterated (for JSON lines)."""
    roles.require(principal, team_id, "audit.read")

    def rows():
        before = None
        while True:
            query = _query(team_id, f)
            if before is not None:
                query = query.where(AuditEntry.id < before)
            batch = db.session.scalars(query.order_by(AuditEntry.id.desc()).limit(PAGE_MAX)).all()
            yield from batch
            if len(batch) < PAGE_MAX:
                return
            before = batch[-1].id
            give_way()
    return rows()


def prune() -> int:
    """Rows older than AUDIT_RETENTION_DAYS, a batch at a time (short transactions); the count."""
    cutoff = utcnow() - timedelta(days=current_app.config["AUDIT_RETENTION_DAYS"])
    removed = 0
    for _ in range(PRUNE_BATCHES):
        ids = db.session.scalars(select(AuditEntry.id).where(AuditEntry.at < cutoff).limit(PRUNE_BATCH)).all()
        if not ids:
            break
        db.session.execute(delete(AuditEntry).where(AuditEntry.id.in_(ids)))
        db.session.commit()
        removed += len(ids)
    return removed
