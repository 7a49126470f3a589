"""Keeps every run moving: hands over due runs and pending notifications (the outbox), fails
queued runs nobody picked up, and recovers runs whose worker died. Idempotent; safe to run from
several processes: every change it makes is a compare-and-set. It never calls a Docker engine:
what needs one (re-attach, completion from an exited container, removal) is handed to a worker on
the run's engine host (jobs/hosts.py), so the scheduler may run on a machine without an engine."""
from __future__ import annotations

import logging
import time

import redis
from flask import current_app
from sqlalchemy import case, exists, func, select, update
from sqlalchemy.orm import aliased

from webapp import keys, metrics
from webapp.connections import get_redis
from webapp.extensions import db
from webapp.models import Notification, NotificationDelivery, Run
from webapp.models.clock import db_now, seconds_between
from webapp.process_log import WarnOnce
from webapp.services import audit, backfills, dispatch, hosts, idempotency, lifecycle, retention, silence
from webapp.services.runs import hand_over_many
from webapp.vocabulary import RunStatus

from .notify import LOST_ENTRY_AFTER_SEC as NOTIFY_LOST_AFTER_SEC
from .notify import STUCK_AFTER_SEC

log = logging.getLogger(__name__)

NO_WORKER = "no worker picked up the run within its timeout"
HOST_LOST = "worker host lost"


def sweep() -> dict:
    """Each step on its own: Redis being away must not stop the steps that do not need it."""
    steps = {"handed": hand_over_due, "stale": fail_stale_queued, "recovered": recover_lost,
             "requeued": requeue_lost_queue_entries, "cancels_signalled": signal_cancels_again,
             "notifications": hand_over_due_notifications,
             "silent": silence.check_silent, "idempotency_keys": idempotency.prune_expired,
             "backfilled": backfills.advance_all, "audit_pruned": audit.prune,
             "pruned": retention.prune, "hosts_pruned": hosts.prune}
    counts: dict = {}
    for name, step in steps.items():
        try:
            counts[name] = step()
        except redis.exceptions.RedisError as e:
            db.session.rollback()
            counts[name] = None
            _warnings.failed(name, "sweep step %s skipped: %s: %s", name, type(e).__name__, str(e)[:160])
        else:
            _warnings.ok(name)
    return counts


_warnings = WarnOnce(log)  # one line when a service goes away, not a trace every sweep while it stays away


SWEEP_BATCH = 500  # rows a step takes per pass (every one of them is acted on: no filtering after)


def signal_cancels_again() -> int:
    """The cancels recorded for running runs, signalled again in Redis: a signal lost there (Redis
    flushed or restarted, or the canceller gone between the row's write and the signal) reaches
    the run's worker within a sweep, without each run reading the database often."""
    rows = db.session.execute(select(Run.public_id, Run.cancel_reason)
                              .where(Run.status == RunStatus.RUNNING, Run.cancel_requested_at.is_not(None))
                              .limit(SWEEP_BATCH)).all()
    db.session.commit()
    dispatch.signal_cancels_again([tuple(row) for row in rows])
    return len(rows)


def hand_over_due() -> int:
    """Due queued runs not in the queue, fairly: each team's oldest first, at most as many per team
    as it may run at once, and none of a team already running its TEAM_MAX_RUNNING (the claim
    would only send them back). A team with thousands of runs waiting delays no other team's."""
    team_max = current_app.config["TEAM_MAX_RUNNING"]
    busy = (select(Run.team_id, func.count().label("n")).where(Run.status == RunStatus.RUNNING)
            .group_by(Run.team_id).subquery())
    ranked = (select(Run.id, Run.public_id, Run.timeout_sec, Run.worker_pool, Run.due_at,
                     func.row_number().over(partition_by=Run.team_id, order_by=(Run.due_at, Run.id)).label("rank"))
              .outerjoin(busy, busy.c.team_id == Run.team_id)
              .where(Run.status == RunStatus.QUEUED, Run.enqueued_at.is_(None), Run.due_at <= db_now(),
                     func.coalesce(busy.c.n, 0) < team_max)
              .subquery())
    rows = db.session.execute(select(ranked.c.id, ranked.c.public_id, ranked.c.timeout_sec, ranked.c.worker_pool)
                              .where(ranked.c.rank <= team_max)
                              .order_by(ranked.c.rank, ranked.c.due_at).limit(SWEEP_BATCH)).all()
    db.session.commit()
    hand_over_many([tuple(row) for row in rows])
    return len(rows)


def fail_stale_queued() -> int:
    """Queued runs that no worker started within max(timeoutSec, QUEUE_WAIT_FLOOR_SEC) of when they
    became due, the condition in SQL on the database's clock (so a pool's long-waiting runs never
    hide another's). Only a run that is still queued: a worker that claimed it meanwhile wins."""
    floor = current_app.config["QUEUE_WAIT_FLOOR_SEC"]
    wait = case((Run.timeout_sec > floor, Run.timeout_sec), else_=floor)
    stale = db.session.scalars(select(Run).where(
        Run.status == RunStatus.QUEUED, Run.due_at <= db_now(-floor), seconds_between(db_now(), Run.due_at) >= wait)
        .order_by(Run.due_at).limit(SWEEP_BATCH)).all()
    count = sum(lifecycle.complete(run, RunStatus.FAILED, error=NO_WORKER, expect=(RunStatus.QUEUED,)) for run in stale)
    db.session.commit()
    return count


_missing_since: dict[int, float] = {}


def lease_absent_sec() -> float:
    """More than two lease renewals: a live worker renews even after Redis lost its data."""
    return current_app.config["RUN_LEASE_TTL_SEC"] / 2


def recover_lost() -> int:
    """Running runs whose lease stays absent, by the state of their engine host: alive, a worker
    there takes the run over (re-attach, complete from the exit, or "worker lost" when the
    container is gone); away, the run waits for it; lost for HOST_LOST_SEC (by then the host has
    stopped its own containers, if anything of ours still runs there: jobs/fence.py), the run fails
    "worker host lost" (fenced by the old owner's token) and retries by its budget, unless its
    workflow says onHostLost "wait". A run that never recorded its host (claimed before hosts
    were) counts as on a lost host: no other host's engine has its container."""
    redis = get_redis()
    now = time.monotonic()
    running = db.session.execute(select(Run.id, Run.public_id, Run.worker_host, Run.timeout_sec)
                                 .where(Run.status == RunStatus.RUNNING)).all()
    db.session.commit()
    pipe = redis.pipeline(transaction=False)
    for run in running:
        pipe.exists(keys.run_lease(run.public_id))
    held = pipe.execute() if running else []
    lapsed = []
    for run, present in zip(running, held):
        if present:
            _missing_since.pop(run.id, None)
        elif now - _missing_since.setdefault(run.id, now) >= lease_absent_sec():
            lapsed.append(run)
    for run_id in set(_missing_since) - {r.id for r in running}:
        _missing_since.pop(run_id, None)
    states = hosts.host_states({run.worker_host for run in lapsed if run.worker_host})
    count = 0
    for run in lapsed:
        state = states.get(run.worker_host, hosts.LOST)
        if state == hosts.LOST:
            count += _host_lost(run.id)
        elif state == hosts.ALIVE and redis.set(keys.run_resuming(run.public_id), "1", nx=True,
                                                 ex=int(lease_absent_sec() * 2) + 1):
            dispatch.enqueue_resume(run.public_id, run.timeout_sec, run.worker_host)
            count += 1
    return count


def _host_lost(run_id: int) -> int:
    """A lapsed run whose host is lost: failed "worker host lost" (retried by its budget), unless
    its workflow waits for the host; 1 if it was failed."""
    run = db.session.get(Run, run_id)
    if run is None or run.status != RunStatus.RUNNING or run.workflow.on_host_lost == "wait":
        db.session.commit()
        return 0
    _missing_since.pop(run.id, None)
    if lifecycle.complete(run, RunStatus.FAILED, error=HOST_LOST, expect=(RunStatus.RUNNING,), owner=run.owner_token):
        metrics.count("runs_recovered", "host_lost")
        return 1
    return 0


# Present while Redis still holds what was handed to it; a flush or a restart without
# persistence removes it, which tells the sweeper every handed-over entry is gone at once.
LOST_ENTRY_AFTER_SEC = 30


def requeue_lost_queue_entries() -> int:
    """After Redis lost its data: queued runs marked as handed over but absent from the queue.

    Marked runs lose their mark and the next sweep hands them over again; a duplicate entry is
    harmless, since a run is claimed once (lease plus a conditional update). Without a loss of
    Redis's data, only runs of a pool whose queue is empty count as lost (a pool's runs wait in
    its queue for as long as the pool has no worker)."""
    where = [Run.status == RunStatus.QUEUED, Run.enqueued_at.is_not(None)]
    if get_redis().set(keys.REDIS_ALIVE, "1", nx=True):
        where.append(Run.enqueued_at < db_now())  # Redis lost its data (or is new): nothing is there
        db.session.execute(update(Notification).where(Notification.state == "pending")
                           .values(enqueued_at=None))
    else:
        where.append(Run.enqueued_at < db_now(-LOST_ENTRY_AFTER_SEC))
        pools = db.session.scalars(select(Run.worker_pool).where(*where).distinct()).all()
        empty = [p for p in pools if dispatch.queue(keys.pool_queue(p)).count == 0]
        # a job past its ttl is gone from Redis whatever its queue holds
        expired = Run.enqueued_at < db_now(-dispatch.JOB_TTL_SEC)
        if not empty and db.session.scalar(select(Run.id).where(*where, expired).limit(1)) is None:
            db.session.commit()
            return 0
        where.append(Run.worker_pool.in_(empty) | expired)
    marked = db.session.execute(update(Run).where(*where).values(enqueued_at=None)).rowcount
    db.session.commit()
    return marked


def hand_over_due_notifications() -> int:
    """The notification outbox: take back attempts whose worker died, then hand over each team's
    oldest due pending notification, none of a team that has one in flight (it could not be
    claimed): a team with thousands waiting delays no other team's. On the database's clock."""
    table = Notification.__table__
    deliveries = NotificationDelivery.__table__
    stuck = db.session.scalars(select(table.c.id).where(
        table.c.state == "sending", table.c.claimed_at < db_now(-STUCK_AFTER_SEC))).all()
    if stuck:
        db.session.execute(update(deliveries).where(deliveries.c.notification_id.in_(stuck),
                                                     deliveries.c.status == "pending")
                           .values(status=RunStatus.FAILED, error="interrupted: the worker stopped during the attempt"))
        retry = table.c.attempts < current_app.config["NOTIFY_MAX_ATTEMPTS"]
        db.session.execute(update(table).where(table.c.id.in_(stuck), table.c.state == "sending",
                                               table.c.claimed_at < db_now(-STUCK_AFTER_SEC))
                           .values(state=case((retry, "pending"), else_="failed"), claimed_at=None,
                                   enqueued_at=None, next_attempt_at=db_now()))
    db.session.commit()
    in_flight = aliased(Notification)
    ranked = (select(table.c.id, func.row_number().over(partition_by=table.c.team_id,
                                                         order_by=table.c.id).label("rank"))
              .where(table.c.state == "pending", table.c.next_attempt_at <= db_now(),
                     table.c.enqueued_at.is_(None) | (table.c.enqueued_at < db_now(-NOTIFY_LOST_AFTER_SEC)),
                     ~exists().where(in_flight.team_id == table.c.team_id, in_flight.state == "sending"))
              .subquery())
    due = db.session.scalars(select(ranked.c.id).where(ranked.c.rank == 1).order_by(ranked.c.id)
                             .limit(SWEEP_BATCH)).all()
    db.session.commit()
    dispatch.hand_over_notifications(list(due), first_attempt=False)
    return len(due)
