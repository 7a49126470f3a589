"""Keeps every run moving: hands over due runs and pending notifications (the outbox), fails
queued runs nobody picked up, and recovers runs whose worker died. Idempotent; safe to run from
several processes: every change it makes is a compare-and-set. It never calls a Docker engine:
what needs one (re-attach, completion from an exited container, removal) is handed to a worker on
the run's engine host (jobs/hosts.py), so the scheduler may run on a machine without an engine."""
from __future__ import annotations

import logging
import time
from datetime import timedelta

import redis
from flask import current_app
from sqlalchemy import select, update

from webapp.connections import get_redis
from webapp.extensions import db
from webapp.livelog import lease_key
from webapp.models import Notification, NotificationDelivery, Run
from webapp.models.base import utcnow
from webapp import metrics
from webapp.services import dispatch, hosts, lifecycle, silence
from webapp.services.runs import handle, hand_over_many

from .notify import LOST_ENTRY_AFTER_SEC as NOTIFY_LOST_AFTER_SEC
from .notify import STUCK_AFTER_SEC

log = logging.getLogger(__name__)

NO_WORKER = "no worker picked up the run within its timeout"
HOST_LOST = "worker host lost"


def sweep() -> dict:
    """Each step on its own: Redis being away must not stop the steps that do not need it."""
    steps = {"handed": hand_over_due, "stale": fail_stale_queued, "recovered": recover_lost,
             "requeued": requeue_lost_queue_entries, "notifications": hand_over_notifications,
             "silent": silence.check_silent}
    counts: dict = {}
    for name, step in steps.items():
        try:
            counts[name] = step()
        except redis.exceptions.RedisError as e:
            db.session.rollback()
            counts[name] = None
            _warn_once(name, f"sweep step {name} skipped: {type(e).__name__}: {str(e)[:160]}")
        else:
            _warned.discard(name)
    return counts


_warned: set[str] = set()


def _warn_once(step: str, message: str) -> None:
    """One line when a service goes away, not a trace every sweep while it stays away."""
    if step not in _warned:
        _warned.add(step)
        log.warning(message)


def hand_over_due() -> int:
    now = utcnow()
    runs = (db.session.query(Run).filter(Run.status == "queued", Run.enqueued_at.is_(None),
                                         Run.due_at <= now).order_by(Run.due_at).limit(500).all())
    hand_over_many([handle(run) for run in runs])
    return len(runs)


def fail_stale_queued() -> int:
    """Queued runs that no worker started within max(timeoutSec, QUEUE_WAIT_FLOOR_SEC) of when they
    became due. Only a run that is still queued: a worker that claimed it meanwhile wins."""
    now = utcnow()
    floor = current_app.config["QUEUE_WAIT_FLOOR_SEC"]
    count = 0
    candidates = (db.session.query(Run).filter(Run.status == "queued", Run.due_at <= now - timedelta(seconds=floor))
                  .order_by(Run.due_at).limit(500).all())
    for run in candidates:
        if run.due_at + timedelta(seconds=max(run.timeout_sec, floor)) <= now:
            if lifecycle.complete(run, "failed", error=NO_WORKER, expect=("queued",)):
                count += 1
    db.session.commit()
    return count


_missing_since: dict[int, float] = {}


def lease_absent_sec() -> float:
    """More than two lease renewals: a live worker renews even after Redis lost its data."""
    return current_app.config["RUN_LEASE_TTL_SEC"] / 2


def recover_lost() -> int:
    """Running runs whose lease stays absent, by the state of their engine host: alive, a worker
    there takes the run over (re-attach, complete from the exit, or "worker lost" when the
    container is gone); away, the run waits for it; lost for HOST_LOST_SEC, the run fails
    "worker host lost" (fenced by the old owner's token) and retries by its budget."""
    redis = get_redis()
    now = time.monotonic()
    running = db.session.query(Run).filter(Run.status == "running").all()
    lapsed = []
    for run in running:
        if redis.exists(lease_key(run.public_id)):
            _missing_since.pop(run.id, None)
            continue
        if now - _missing_since.setdefault(run.id, now) >= lease_absent_sec():
            lapsed.append(run)
    for run_id in set(_missing_since) - {r.id for r in running}:
        _missing_since.pop(run_id, None)
    states = hosts.host_states({run.worker_host for run in lapsed if run.worker_host})
    count = 0
    for run in lapsed:
        state = states.get(run.worker_host, hosts.ALIVE)  # a run claimed before hosts were recorded
        if state == hosts.LOST:
            _missing_since.pop(run.id, None)
            if lifecycle.complete(run, "failed", error=HOST_LOST, expect=("running",), owner=run.owner_token):
                metrics.count("runs_recovered", "host_lost")
                count += 1
        elif state == hosts.ALIVE and redis.set(f"run:{run.public_id}:resuming", "1", nx=True,
                                                 ex=int(lease_absent_sec() * 2) + 1):
            dispatch.enqueue_resume(run.public_id, run.timeout_sec, run.worker_host)
            count += 1
    return count


# Present while Redis still holds what was handed to it; a flush or a restart without
# persistence removes it, which tells the sweeper every handed-over entry is gone at once.
REDIS_ALIVE_KEY = "workflows:redis-alive"
LOST_ENTRY_AFTER_SEC = 30


def requeue_lost_queue_entries() -> int:
    """After Redis lost its data: queued runs marked as handed over but absent from the queue.

    Marked runs lose their mark and the next sweep hands them over again; a duplicate entry is
    harmless, since a run is claimed once (lease plus a conditional update). Without a loss of
    Redis's data, only runs of a pool whose queue is empty count as lost (a pool's runs wait in
    its queue for as long as the pool has no worker)."""
    where = [Run.status == "queued", Run.enqueued_at.is_not(None)]
    if get_redis().set(REDIS_ALIVE_KEY, "1", nx=True):
        where.append(Run.enqueued_at < utcnow())  # Redis lost its data (or is new): nothing is there
        db.session.execute(update(Notification).where(Notification.state == "pending")
                           .values(enqueued_at=None))
    else:
        where.append(Run.enqueued_at < utcnow() - timedelta(seconds=LOST_ENTRY_AFTER_SEC))
        pools = db.session.scalars(select(Run.worker_pool).where(*where).distinct()).all()
        empty = [p for p in pools if dispatch.queue(dispatch.pool_queue(p)).count == 0]
        if not empty:
            db.session.commit()
            return 0
        where.append(Run.worker_pool.in_(empty))
    marked = db.session.execute(update(Run).where(*where).values(enqueued_at=None)).rowcount
    db.session.commit()
    return marked


def hand_over_notifications() -> int:
    """The notification outbox: take back attempts whose worker died, then enqueue every pending
    notification that is due and not (or no longer) in the queue."""
    now = utcnow()
    max_attempts = current_app.config["NOTIFY_MAX_ATTEMPTS"]
    stuck = (db.session.query(Notification)
             .filter(Notification.state == "sending",
                     Notification.claimed_at < now - timedelta(seconds=STUCK_AFTER_SEC)).all())
    for n in stuck:
        db.session.execute(update(NotificationDelivery)
                           .where(NotificationDelivery.notification_id == n.id,
                                  NotificationDelivery.status == "pending")
                           .values(status="failed", error="interrupted: the worker stopped during the attempt"))
        n.state = "pending" if n.attempts < max_attempts else "failed"
        n.claimed_at, n.enqueued_at, n.next_attempt_at = None, None, now
    db.session.commit()
    lost_cutoff = now - timedelta(seconds=NOTIFY_LOST_AFTER_SEC)
    due = [i for (i,) in db.session.query(Notification.id).filter(
        Notification.state == "pending", Notification.next_attempt_at <= now,
        (Notification.enqueued_at.is_(None)) | (Notification.enqueued_at < lost_cutoff))
        .order_by(Notification.id).limit(500)]
    db.session.commit()
    dispatch.hand_over_notifications(due, first_attempt=False)
    return len(due)
