"""Backfills: one run per instant of a workflow's schedule in a past range (trigger `backfill`,
`scheduledFor` the instant), at most `maxConcurrent` of them queued or running at once.

The instants are fired in order as room frees: by the request itself, by the terminal transaction
of each of its runs (webapp/services/lifecycle.py) and, as the fallback for a run cancelled while
queued or an end whose hand-over was lost, by the scheduler's sweep (`advance_all`). Each of these
writes the backfill's row first, which locks it to the commit, then fires from `next_at` and moves
it on: of two that meet, the second sees what the first fired. An instant that has a run already
(a scheduled fire, an earlier backfill) is skipped, by the same unique (workflow, scheduledFor)
key the scheduler fires under. Cancelling stops its instants and cancels its runs in flight."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from .. import cron
from ..extensions import db
from ..models import Backfill, Run, Workflow
from ..models.base import new_public_id, utcnow
from ..schemas import BackfillCreate
from ..vocabulary import ACTIVE, Trigger
from . import actors, budget, pausing, quotas
from . import audit, roles
from .access import Principal, require_public_id, require_team
from .errors import Conflict, Invalid, NotFound
from .runs import fire, hand_over_many, handle
from .transitions import cancel_in_transaction
from .workflows import get_workflow

MAX_INSTANTS = 1000
LISTED = 20
CANCELLED = "cancelled with its backfill"
TICK = timedelta(microseconds=1)


def create_backfill(principal: Principal, team_id: int, workflow_id: str, body: BackfillCreate) -> Backfill:
    """The backfill of `body`'s range, with its first runs made and handed over."""
    wf = get_workflow(principal, team_id, workflow_id, "backfill.create")
    start, end = body.range()
    instants = _instants_in(wf, start, end)
    pausing.require_triggers(wf)
    quotas.check_queue(team_id)
    budget.spend_trigger(team_id)
    bf = Backfill(public_id=new_public_id("bf_"), team_id=team_id, workflow_id=wf.id, schedule=wf.schedule,
                  timezone=wf.timezone, from_at=start, to_at=end, max_concurrent=body.maxConcurrent,
                  total=len(instants), made=0, skipped=0, next_at=instants[0], created_by=actors.who(principal))
    db.session.add(bf)
    db.session.flush()
    handles = advance(bf)
    audit.record(principal, team_id, "backfill.create", "backfill", bf.public_id,
                 {"workflow": wf.public_id, "from": start.isoformat(), "to": end.isoformat(), "instants": len(instants),
                  "maxConcurrent": body.maxConcurrent})
    db.session.commit()
    hand_over_many(handles)
    return bf


def _instants_in(wf: Workflow, start: datetime, end: datetime) -> list[datetime]:
    """The schedule's instants from `start` to `end`, both included, or Invalid saying why not."""
    if wf.schedule is None:
        raise Invalid("the workflow has no schedule to backfill", {"schedule": "a backfill runs a schedule's instants"})
    if end > utcnow():
        raise Invalid("a backfill runs past instants", {"to": "must not be in the future"})
    if start > end:
        raise Invalid("the range is empty", {"from": "must not be after to"})
    instants = cron.next_instants(wf.schedule, wf.timezone, start - TICK, MAX_INSTANTS + 1, before=end + TICK)
    if not instants:
        raise Invalid("the range holds no instant of the schedule", {"from": "no instant of the schedule from here to `to`"})
    if len(instants) > MAX_INSTANTS:
        raise Invalid(f"the range holds more than {MAX_INSTANTS:,} instants of the schedule",
                      {"to": f"at most {MAX_INSTANTS:,} instants a request: end the range earlier"})
    return instants


def advance(bf: Backfill, wait: bool = True) -> list[tuple]:
    """Fire the backfill's next instants while it has room (in the caller's transaction, whose
    commit makes them); returns the hand-over handles of the runs made. An instant taken
    meanwhile by a fire the scheduler made is left to the next pass, which skips it. Without
    `wait`, a backfill another transaction holds is left to the sweep."""
    if not _lock(bf, wait):
        return []
    if bf.workflow.deleted_at is not None:
        bf.next_at, bf.cancelled_at = None, utcnow()
        return []
    room = bf.max_concurrent - _active(bf.id)
    taken = set(db.session.scalars(select(Run.scheduled_for).where(
        Run.workflow_id == bf.workflow_id, Run.scheduled_for >= bf.next_at, Run.scheduled_for <= bf.to_at)))
    try:
        with db.session.begin_nested():
            runs = _fire(bf, room, taken)
            db.session.flush()
    except IntegrityError:
        db.session.refresh(bf)
        return []
    return [handle(run) for run in runs]


def _fire(bf: Backfill, room: int, taken: set[datetime]) -> list[Run]:
    runs = []
    while room > 0 and bf.next_at is not None:
        if bf.next_at in taken:
            bf.skipped += 1
        else:
            runs.append(fire(bf.workflow, Trigger.BACKFILL, dict(bf.workflow.env or {}), scheduled_for=bf.next_at,
                             backfill_id=bf.id, by=bf.created_by))
            bf.made += 1
            room -= 1
        bf.next_at = _following(bf, bf.next_at)
    return runs


def _active(backfill_id: int) -> int:
    return db.session.scalar(select(func.count()).select_from(Run).where(Run.backfill_id == backfill_id,
                                                                          Run.status.in_(ACTIVE)))


def _lock(bf: Backfill, wait: bool) -> bool:
    """Lock the backfill's row to the commit and read it again: False when it has nothing left to
    fire, or when it is held elsewhere and `wait` is false. A run's end holds the run's row when it
    gets here, and a cancel holds the backfill's before the runs': so a run's end does not wait
    (PostgreSQL's FOR UPDATE SKIP LOCKED) and the two never deadlock. On SQLite the write first
    (SQLite's write lock) is the lock."""
    table = Backfill.__table__
    held = db.session.execute(select(table.c.id).where(table.c.id == bf.id, table.c.next_at.is_not(None))
                              .with_for_update(skip_locked=not wait)).first()
    live = held is not None and db.session.execute(
        update(table).where(table.c.id == bf.id, table.c.next_at.is_not(None)).values(next_at=table.c.next_at)).rowcount
    if live:
        db.session.refresh(bf)
    return bool(live)


def _following(bf: Backfill, instant: datetime) -> datetime | None:
    found = cron.next_instants(bf.schedule, bf.timezone, instant, 1, before=bf.to_at + TICK)
    return found[0] if found else None


def advance_after(run: Run) -> Callable[[], None]:
    """A run of a backfill ended: its next instants, in the terminal transaction; returns their
    hand-over."""
    if run.backfill_id is None:
        return lambda: None
    bf = db.session.get(Backfill, run.backfill_id)
    handles = advance(bf, wait=False) if bf is not None else []
    return lambda: hand_over_many(handles)


def advance_all() -> int:
    """The sweep's pass: every backfill with instants left, moved on where it has room (the
    fallback for the ends that did not: a run cancelled while queued, a backfill held)."""
    made = 0
    waiting = db.session.execute(select(Backfill.id, Backfill.max_concurrent).where(Backfill.next_at.is_not(None))
                                 .order_by(Backfill.id)).all()
    db.session.rollback()
    for bf_id, most in waiting:
        if _active(bf_id) >= most:  # no room: nothing written
            db.session.rollback()
            continue
        handles = advance(db.session.get(Backfill, bf_id))
        db.session.commit()
        hand_over_many(handles)
        made += len(handles)
    return made


def get_backfill(principal: Principal, team_id: int, public_id: str) -> Backfill:
    require_team(principal, team_id)
    require_public_id(public_id)
    bf = db.session.query(Backfill).filter_by(public_id=public_id).first()
    if bf is None or bf.team_id != team_id:
        raise NotFound("no such backfill")
    get_workflow(principal, team_id, bf.workflow.public_id)  # the workflow's environment rules apply
    return bf


def list_backfills(principal: Principal, team_id: int, workflow_id: str) -> list[Backfill]:
    wf = get_workflow(principal, team_id, workflow_id)
    return (db.session.query(Backfill).filter_by(workflow_id=wf.id)
            .order_by(Backfill.id.desc()).limit(LISTED).all())


def cancel_backfill(principal: Principal, bf: Backfill) -> Backfill:
    """No more of its instants fire, and its runs queued or running are cancelled."""
    roles.require(principal, bf.team_id, "backfill.cancel")
    table = Backfill.__table__
    done = db.session.execute(update(table).where(table.c.id == bf.id, table.c.cancelled_at.is_(None))
                              .values(cancelled_at=utcnow(), next_at=None)).rowcount
    if not done:
        db.session.rollback()
        raise Conflict("the backfill is already cancelled")
    active = db.session.scalars(select(Run).where(Run.backfill_id == bf.id, Run.status.in_(ACTIVE))).all()
    by = actors.who(principal)
    signals = [cancel_in_transaction(run, CANCELLED, by) for run in active]
    audit.record(principal, bf.team_id, "backfill.cancel", "backfill", bf.public_id, {"runsCancelled": len(active)})
    db.session.commit()
    for signal in signals:
        signal()
    db.session.refresh(bf)
    return bf


def state(bf: Backfill, counts: dict[str, int]) -> str:
    """running (instants to fire, or runs in flight), done, or cancelled."""
    if bf.cancelled_at is not None:
        return "cancelled"
    if bf.next_at is not None or any(counts.get(s, 0) for s in ACTIVE):
        return "running"
    return "done"


def progress_of(backfills: list[Backfill]) -> dict[int, dict[str, int]]:
    """Each backfill's runs by status (retries included), in one query."""
    out: dict[int, dict[str, int]] = {bf.id: {} for bf in backfills}
    if not backfills:
        return out
    rows = db.session.execute(select(Run.backfill_id, Run.status, func.count())
                              .where(Run.backfill_id.in_(list(out))).group_by(Run.backfill_id, Run.status)).all()
    for bf_id, status, n in rows:
        out[bf_id][status] = n
    return out

