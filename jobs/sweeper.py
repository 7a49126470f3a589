"""Keeps every run moving: hands over due runs and pending notifications (the outbox), fails
queued runs nobody picked up, recovers runs whose worker died, and removes containers nobody owns.
Idempotent; safe to run from several processes: every change it makes is a compare-and-set."""
from __future__ import annotations

import logging
import time
from datetime import timedelta

import redis
import requests
from docker.errors import DockerException, NotFound
from flask import current_app
from sqlalchemy import update

from webapp.connections import get_docker, get_redis
from webapp.extensions import db
from webapp.livelog import lease_key
from webapp.models import Notification, NotificationDelivery, Run
from webapp.models.base import utcnow
from webapp import metrics
from webapp.services import dispatch, lifecycle, silence
from webapp.services.runs import handle, hand_over_many

from . import engine
from .notify import LOST_ENTRY_AFTER_SEC as NOTIFY_LOST_AFTER_SEC
from .notify import STUCK_AFTER_SEC
from .runner import resume_run

log = logging.getLogger(__name__)

NO_WORKER = "no worker picked up the run within its timeout"


def sweep() -> dict:
    """Each step on its own: the engine being down must not stop the steps that do not need it."""
    steps = {"handed": hand_over_due, "stale": fail_stale_queued, "recovered": recover_lost,
             "requeued": requeue_lost_queue_entries, "notifications": hand_over_notifications,
             "reaped": reap_containers, "silent": silence.check_silent}
    counts: dict = {}
    for name, step in steps.items():
        try:
            counts[name] = step()
        except (DockerException, requests.exceptions.ConnectionError, redis.exceptions.RedisError) as e:
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
    """Running runs whose lease stays absent: re-attach, complete from the exit code, or fail."""
    redis = get_redis()
    count = 0
    now = time.monotonic()
    running = db.session.query(Run).filter(Run.status == "running").all()
    for run in running:
        if redis.exists(lease_key(run.public_id)):
            _missing_since.pop(run.id, None)
            continue
        first = _missing_since.setdefault(run.id, now)
        if now - first < lease_absent_sec():
            continue
        _missing_since.pop(run.id, None)
        count += 1
        recover(run)
    for run_id in set(_missing_since) - {r.id for r in running}:
        _missing_since.pop(run_id, None)
    return count


def recover(run: Run) -> None:
    """A running run whose lease lapsed: by its container, re-attach (a worker takes the run over),
    complete it from the exit, or fail it "worker lost". Each is fenced by the old owner's token."""
    owner = run.owner_token
    container = _find_container(run)
    if container is None:
        if lifecycle.complete(run, "failed", error="worker lost", expect=("running",), owner=owner):
            metrics.count("runs_recovered", "failed")
        return
    if container["State"].get("Status") in ("exited", "dead"):
        resume_run(run.public_id)  # quick: the output is read back and the run completed
        metrics.count("runs_recovered", "completed")
    elif get_redis().set(f"run:{run.public_id}:resuming", "1", nx=True, ex=int(lease_absent_sec() * 2) + 1):
        dispatch.enqueue_resume(run.public_id, run.timeout_sec)
        metrics.count("runs_recovered", "reattached")


def _find_container(run: Run) -> dict | None:
    api = get_docker().api
    if run.container_id:
        try:
            return api.inspect_container(run.container_id)
        except NotFound:
            return None
    found = api.containers(all=True, filters={"label": f"{engine.LABEL_RUN}={run.public_id}"})
    return found and {"Id": found[0]["Id"], "State": {"Status": found[0].get("State")}} or None


# Nothing reads a container once its run is terminal; the grace only spares a double removal.
REAP_GRACE_SEC = 5


def reap_containers() -> int:
    """Remove this installation's containers whose run is finished or unknown."""
    api = get_docker().api
    removed = 0
    for c in api.containers(all=True, filters={"label": f"{engine.LABEL_INSTANCE}={engine.instance_id()}"}):
        public_id = (c.get("Labels") or {}).get(engine.LABEL_RUN)
        run = db.session.query(Run).filter_by(public_id=public_id).first()
        if run is not None and not run.terminal:
            continue
        if run is not None and run.finished_at and utcnow() - run.finished_at < timedelta(seconds=REAP_GRACE_SEC):
            continue  # its worker is removing it right now
        try:
            api.remove_container(c["Id"], force=True)
            removed += 1
        except NotFound:
            pass
    metrics.count("containers_reaped", amount=removed)
    return removed


# Present while Redis still holds what was handed to it; a flush or a restart without
# persistence removes it, which tells the sweeper every handed-over entry is gone at once.
REDIS_ALIVE_KEY = "workflows:redis-alive"
LOST_ENTRY_AFTER_SEC = 30


def requeue_lost_queue_entries() -> int:
    """After Redis lost its data: queued runs marked as handed over but absent from the queue.

    Marked runs lose their mark and the next sweep hands them over again; a duplicate entry is
    harmless, since a run is claimed once (lease plus a conditional update)."""
    if get_redis().set(REDIS_ALIVE_KEY, "1", nx=True):
        cutoff = utcnow()  # Redis lost its data (or is new): nothing handed over before is there
        db.session.execute(update(Notification).where(Notification.state == "pending")
                           .values(enqueued_at=None))
    elif dispatch.queue(dispatch.RUNS).count > 0:
        return 0
    else:
        cutoff = utcnow() - timedelta(seconds=LOST_ENTRY_AFTER_SEC)
    marked = db.session.execute(
        update(Run).where(Run.status == "queued", Run.enqueued_at.is_not(None),
                          Run.enqueued_at < cutoff)
        .values(enqueued_at=None)).rowcount
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
