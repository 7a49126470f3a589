"""Cron fires from the database: exactly once per (workflow, instant), however many schedulers run.

Each due workflow's `next_run_at` is advanced with a compare-and-set, and the run row carries a
unique (workflow, scheduledFor): two schedulers, or one fire seen twice, cannot fire twice.
A scheduler that was down fires at most the latest missed instant, and only if it is younger
than the workflow's timeout; a workflow with a `catchUpWindowSec` fires every missed instant
younger than the window instead, oldest first, one a tick.

`allow` workflows (the default) are fired up to SCHEDULE_LEAD_SEC ahead of their instant (further,
up to SCHEDULE_LEAD_MAX_SEC, when so many are due that making them takes longer: Lead): the run
is made and handed over with `due_at` = the instant, and the worker prepares the container and
starts it on time (jobs/runner.py). `forbid` and `replace` decide on what is in flight, so they
are fired at their instant, as the rule says.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import DateTime, Integer, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from webapp import faults, metrics
from webapp.extensions import db
from webapp.models import Run, Workflow
from webapp.models.arrays import unnested
from webapp.models.base import utcnow
from webapp import cron
from webapp.services import quotas
from webapp.services.lifecycle import emit
from webapp.services.runs import fire, fire_scheduled, hand_over_many, handle
from webapp.services.transitions import cancel_in_transaction, count_terminal
from webapp.vocabulary import ACTIVE, EventKind, RunStatus, Trigger

log = logging.getLogger(__name__)
BATCH = 1000


def fire_due(now: datetime | None = None) -> int:
    """Fire every due workflow. `allow` workflows (the default) are fired in one transaction and
    handed over in one Redis round trip, so a thousand fires of one instant take well under 2 s.
    A workflow whose row another transaction holds is passed over this tick (PostgreSQL's SKIP
    LOCKED), not waited for: a worker cut off in the middle of a run's end holds its workflow's row
    until the server drops its session (about 10 s), and the batch would wait for it with every
    other workflow's instant. The lock is FOR NO KEY UPDATE: the foreign-key checks of rows that
    name the workflow (a run made, an event) take a key-share lock, which it does not wait for,
    nor pass over. On SQLite there is one writer at a time and no row lock to skip."""
    now = now or utcnow()
    began = time.monotonic()
    ahead = now + timedelta(seconds=lead.seconds(now))
    # forbid and replace only at their instant: ahead of it they would take a batch's places
    on_time = or_(Workflow.concurrency_policy == "allow", Workflow.next_run_at <= now)
    due = (db.session.query(Workflow)
           .filter(Workflow.next_run_at <= ahead, on_time, Workflow.deleted_at.is_(None),
                   Workflow.schedule.is_not(None))
           .order_by(Workflow.next_run_at).limit(BATCH)
           .with_for_update(skip_locked=True, key_share=True, of=Workflow).all())
    plain = [wf for wf in due if wf.concurrency_policy == "allow"]
    others = [wf for wf in due if wf.concurrency_policy != "allow"]
    handles = _fire_batch(plain, now, ahead)
    if others:
        handles += _fire_each(others, now)
    hand_over_many(handles)
    lead.paced(len(plain), time.monotonic() - began)
    return len(handles)


class Lead:
    """How far ahead of their instants `allow` fires are made: SCHEDULE_LEAD_SEC, plus the time
    this scheduler needs to make every `allow` fire due within SCHEDULE_LEAD_MAX_SEC at the pace it
    measured (with a quarter more), at most SCHEDULE_LEAD_MAX_SEC. Ten thousand workflows sharing
    one instant take about 4 s to make and hand over (0.4 ms each, most of it the RQ job): from
    2 s ahead the last were 2.4 s late; so the lead grows with what is due, and a few hundred fires
    barely move it. The due fires are counted at most once a second (one index range)."""
    COUNT_EVERY_SEC = 1.0
    MARGIN = 1.25
    COUNT_CAP = 200_000

    def __init__(self):
        self.pace = 0.001  # seconds a fire, until measured: slower than any measured so far
        self.extra = 0.0
        self.counted_at = float("-inf")

    def seconds(self, now: datetime) -> float:
        base, most = current_app.config["SCHEDULE_LEAD_SEC"], current_app.config["SCHEDULE_LEAD_MAX_SEC"]
        if most <= base:
            return base
        if time.monotonic() - self.counted_at >= self.COUNT_EVERY_SEC:
            horizon = now + timedelta(seconds=most)
            due = (select(Workflow.id)
                   .where(Workflow.next_run_at <= horizon, Workflow.deleted_at.is_(None),
                          Workflow.schedule.is_not(None), Workflow.concurrency_policy == "allow")
                   .limit(self.COUNT_CAP).subquery())
            self.extra = db.session.scalar(select(func.count()).select_from(due)) * self.pace * self.MARGIN
            self.counted_at = time.monotonic()
        return min(most, base + self.extra)

    def paced(self, fires: int, seconds: float) -> None:
        """A batch of `fires` took `seconds`, hand-over included: the pace, smoothed."""
        if fires >= 100:
            self.pace = 0.7 * self.pace + 0.3 * seconds / fires


lead = Lead()  # the scheduler process's


MISSED_COUNT_CAP = 1000


def _instants(wf: Workflow, now: datetime) -> tuple[datetime | None, datetime | None, int]:
    """(the instant to fire or None, the next instant to store, how many instants are skipped)."""
    instant = wf.next_run_at
    if not wf.schedule or instant is None:  # unscheduled since the tick read it: nothing to claim
        return None, None, 0
    try:
        latest = max(cron.latest_at_or_before(wf.schedule, wf.timezone, now) or instant, instant)
        if wf.catch_up_window_sec is not None and latest > instant:
            return _oldest_in_window(wf, instant, latest, now)
        following = cron.next_instant(wf.schedule, wf.timezone, latest)
        missed = 0
        if latest > instant:  # the scheduler was away: only the latest instant may still run
            missed = _count(wf, instant, latest)
    except Exception:
        log.exception("bad schedule on %s; unscheduling", wf.public_id)
        return None, None, 0
    if (now - latest) > timedelta(seconds=wf.timeout_sec):
        return None, following, missed + 1  # too old to be worth running: skip to the next instant
    return latest, following, missed


def _oldest_in_window(wf: Workflow, instant: datetime, latest: datetime,
                      now: datetime) -> tuple[datetime | None, datetime | None, int]:
    """The workflow's catchUpWindowSec after an outage: the oldest missed instant younger than the
    window fires, and the next stored is the one after it (the next tick fires that one, so every
    instant of the window runs, oldest first, each under the concurrency policy like any fire);
    the instants older than the window are counted as skipped."""
    horizon = now - timedelta(seconds=wf.catch_up_window_sec)
    if instant >= horizon:
        return instant, cron.next_instant(wf.schedule, wf.timezone, instant), 0
    oldest = cron.next_instant(wf.schedule, wf.timezone, horizon - timedelta(microseconds=1))
    if oldest > latest:  # every missed instant is older than the window
        return None, cron.next_instant(wf.schedule, wf.timezone, latest), _count(wf, instant, latest) + 1
    return oldest, cron.next_instant(wf.schedule, wf.timezone, oldest), _count(wf, instant, oldest)


def _count(wf: Workflow, first: datetime, before: datetime) -> int:
    """Instants from `first` up to (not including) `before`, at most MISSED_COUNT_CAP."""
    return 1 + len(cron.next_instants(wf.schedule, wf.timezone, first, MISSED_COUNT_CAP - 1, before=before))


def _missed(wf: Workflow, missed: int, notes: list) -> None:
    """A claim that skipped instants: the workflow.missed event (saying how many) in the claim's
    transaction, and the count (noted in `notes`, recorded once the transaction is committed)."""
    if missed:
        many = f"{missed:,}" + (" or more" if missed >= MISSED_COUNT_CAP else "")
        rule = (f"older than its catch-up window ({wf.catch_up_window_sec} s)" if wf.catch_up_window_sec is not None
                else "only the latest missed instant may run, and only within the run's timeout")
        detail = (f"the scheduler was not running: {many} scheduled instant{'s' if missed != 1 else ''} "
                  f"not run ({rule})")
        notes.append(("missed", missed, emit(wf.team_id, wf.id, None, EventKind.MISSED, detail)))


def _queue_full(wf: Workflow, room: dict[int, int], notes: list) -> bool:
    """Whether the fire is skipped because the team's queue is full (its queuedRuns limit; one
    team's flood must not fill what all share). The first skip of a stretch emits workflow.missed,
    the rest are counted; a fire that fits ends the stretch. `room` is spent as runs are made."""
    table = Workflow.__table__
    if room.get(wf.team_id, 1) > 0:
        room[wf.team_id] = room.get(wf.team_id, 1) - 1
        if wf.queue_full_at is not None:
            db.session.execute(update(table).where(table.c.id == wf.id).values(queue_full_at=None))
        return False
    started = db.session.execute(update(table).where(table.c.id == wf.id, table.c.queue_full_at.is_(None))
                                 .values(queue_full_at=utcnow())).rowcount
    notes.append(("queue_full", 1, emit(wf.team_id, wf.id, None, EventKind.MISSED) if started else lambda: None))
    return True


def _after_commit(notes: list) -> None:
    for reason, n, hand_over in notes:
        metrics.count("fires_skipped", reason, n)
        try:
            hand_over()
        except Exception:  # written: the notification sweep hands it over
            log.warning("could not hand over a workflow.%s notification; the sweep will", reason)


def _claim(wf: Workflow, following: datetime | None) -> bool:
    """Compare-and-set of next_run_at: only one scheduler wins an instant."""
    table = Workflow.__table__  # Core: no ORM session synchronisation (quadratic in a batch)
    return bool(db.session.execute(
        update(table).where(table.c.id == wf.id, table.c.next_run_at == wf.next_run_at)
        .values(next_run_at=following)).rowcount)


def _claim_many(claims: list[tuple[Workflow, datetime | None]]) -> set[int]:
    """_claim of many workflows, the ids won. On PostgreSQL one statement for the batch (an UPDATE
    from three arrays unnested, each row its own compare-and-set): a round trip per workflow was a
    third of a thousand fires' time, and a VALUES list of three parameters a row most of the rest."""
    if db.engine.dialect.name != "postgresql" or len(claims) < 2:
        return {wf.id for wf, following in claims if _claim(wf, following)}
    table = Workflow.__table__
    rows = unnested("claims", ("id", Integer, [wf.id for wf, _ in claims]),
                    ("expected", DateTime, [wf.next_run_at for wf, _ in claims]),
                    ("following", DateTime, [following for _, following in claims]))
    return set(db.session.scalars(
        update(table).where(table.c.id == rows.c.id, table.c.next_run_at == rows.c.expected)
        .values(next_run_at=rows.c.following).returning(table.c.id)))


def _fire_batch(workflows: list[Workflow], now: datetime, ahead: datetime) -> list[tuple]:
    """Fire `allow` workflows in one transaction; returns the hand-over handles of the new runs.
    An instant still ahead of `now` is fired with `due_at` = the instant: prepared, started on time.
    If one instant has its run already (the unique key), the batch is redone with a savepoint per
    workflow, where such an instant is passed over alone (see _fire_each)."""
    plans = [(wf, *_instants(wf, _fire_at(wf, now))) for wf in workflows]
    fires, notes = [], []
    room = quotas.queue_room({wf.team_id for wf in workflows})
    won = _claim_many([(wf, following) for wf, _, following, _ in plans])
    with db.session.no_autoflush:
        for wf, instant, following, missed in plans:
            if wf.id not in won:
                continue
            _missed(wf, missed, notes)
            if instant is not None and not _queue_full(wf, room, notes):
                fires.append((wf, instant, max(now, instant)))
    try:
        handles = fire_scheduled(fires)
        db.session.commit()
        _after_commit(notes)
        return handles
    except IntegrityError:
        db.session.rollback()
        for wf in workflows:
            db.session.refresh(wf)
        return _fire_each([wf for wf in workflows if wf.next_run_at is not None and wf.next_run_at <= ahead
                           and wf.deleted_at is None], now)


def _fire_at(wf: Workflow, now: datetime) -> datetime:
    """The time an instant is fired for: an `allow` instant ahead of now (within the lead) counts
    as now-at-the-instant; the others are fired at their instant, not before."""
    return max(now, wf.next_run_at) if wf.concurrency_policy == "allow" else now


def _fire_each(workflows: list[Workflow], now: datetime) -> list[tuple]:
    """Fire workflows with their concurrency policy (`forbid`, `replace`, or an `allow` batch that
    met a run made another way), in one transaction, each in a savepoint; the hand-over handles of
    the queued runs. The claims of the instants, the cancels of `replace` and the new runs are
    one transaction: a scheduler that dies anywhere in between leaves every instant unclaimed for
    the next one, and an instant's fires are all made by one commit, not one commit each (a
    scheduler killed part-way through twenty commits left the rest a tick late). An instant that
    has its run already is passed over alone: its claim is kept and the rest of it is undone in its
    savepoint, so the workflow moves on to its next instant instead of trying the same one on
    every tick."""
    plans = [(wf, *_instants(wf, _fire_at(wf, now))) for wf in _still_free(workflows)]
    won = _claim_many([(wf, following) for wf, _, following, _ in plans])
    plans = [plan for plan in plans if plan[0].id in won]
    room = quotas.queue_room({wf.team_id for wf, *_ in plans}) if plans else {}
    active = _active_runs([wf.id for wf, instant, *_ in plans
                           if instant is not None and wf.concurrency_policy != "allow"])
    runs, notes, signals = [], [], []
    for wf, instant, following, missed in plans:
        _missed(wf, missed, notes)
        if instant is None or _queue_full(wf, room, notes):
            continue
        run, sent = _fire_claimed(wf, instant, now, active.get(wf.id, []), notes)
        if run is not None and run.status == RunStatus.QUEUED:
            runs.append(run)
        elif run is not None:  # skipped by forbid: it takes no room in the queue
            room[wf.team_id] += 1
        signals += sent
    if signals:
        faults.stop_here("replace-claimed")
    handles = [handle(run) for run in runs]
    db.session.commit()
    _after_commit(notes)
    for signal in signals:
        signal()
    return handles


def _still_free(workflows: list[Workflow]) -> list[Workflow]:
    """Those of `workflows` whose rows this transaction now holds, skipping those another holds (as
    fire_due's read does): the batch before has committed and let go of them."""
    if not workflows or db.engine.dialect.name != "postgresql":
        return workflows
    held = set(db.session.scalars(select(Workflow.id).where(Workflow.id.in_([wf.id for wf in workflows]))
                                  .with_for_update(skip_locked=True, key_share=True)))
    return [wf for wf in workflows if wf.id in held]


def _active_runs(workflow_ids: list[int]) -> dict[int, list[Run]]:
    """The runs in flight of these workflows, by workflow: one query for the tick."""
    active: dict[int, list[Run]] = {}
    if workflow_ids:
        for run in db.session.query(Run).filter(Run.workflow_id.in_(workflow_ids), Run.status.in_(ACTIVE)):
            active.setdefault(run.workflow_id, []).append(run)
    return active


def _fire_claimed(wf: Workflow, instant: datetime, now: datetime, active: list[Run],
                  notes: list) -> tuple[Run | None, list]:
    """The claimed instant's run under the workflow's policy, in a savepoint (None if the instant
    has its run already), and the cancel signals to send after the commit."""
    try:
        with db.session.begin_nested():
            run, signals = _fire_with_policy(wf, instant, now, active)
            db.session.flush()
    except IntegrityError:
        log.warning("workflow %s: the instant %s has its run already; moving on", wf.public_id, instant)
        metrics.count("fire_collisions")
        return None, []
    if run.status == RunStatus.CANCELLED:  # skipped by forbid
        count_terminal(wf.id, RunStatus.CANCELLED, Trigger.SCHEDULE)
        notes.append(("forbid", 1, emit(wf.team_id, wf.id, run.id, EventKind.MISSED)))
    return run, signals


def _fire_with_policy(wf: Workflow, instant: datetime, now: datetime, active: list[Run]) -> tuple[Run, list]:
    """The new run (in the session, not committed) and the cancel signals to send after commit;
    `active` is what the workflow has in flight (for `allow`, whatever it is, nothing matters)."""
    if active and wf.concurrency_policy == "forbid":
        run = fire(wf, Trigger.SCHEDULE, dict(wf.env or {}), scheduled_for=instant)
        run.status = "cancelled"
        run.finished_at = utcnow()
        run.error = "skipped: the previous run was still in progress (concurrencyPolicy forbid)"
        return run, []
    signals = []
    if active and wf.concurrency_policy == "replace":
        reason = f"replaced by the fire of {instant.isoformat()}Z (concurrencyPolicy replace)"
        signals = [cancel_in_transaction(old, reason=reason) for old in active]
    return fire(wf, Trigger.SCHEDULE, dict(wf.env or {}), scheduled_for=instant, due_at=max(now, instant)), signals


def repair_next_run_at() -> int:
    """Scheduled workflows without a next instant (e.g. after an import) get one."""
    fixed = 0
    for wf in db.session.query(Workflow).filter(Workflow.schedule.is_not(None), Workflow.deleted_at.is_(None),
                                                Workflow.next_run_at.is_(None)).all():
        wf.next_run_at = cron.next_instant(wf.schedule, wf.timezone, utcnow())
        fixed += 1
    db.session.commit()
    return fixed
