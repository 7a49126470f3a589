"""The one hand-over from the services to the workers: RQ queues and the fast-path signals.

Everything handed over here is already written in the database first (the outbox): a run row, a
pending notification, a cancel request. Redis only makes it fast; when an enqueue is lost (Redis
away, a crash between commit and enqueue), the scheduler's sweep hands the row over again, and
the worker's compare-and-set claim makes a duplicate entry harmless.
"""
from __future__ import annotations

import secrets

from rq import Queue
from rq.serializers import JSONSerializer

from .. import keys
from ..connections import get_redis
from ..keys import NOTIFY_QUEUE, RUNS_QUEUE, host_queue, pool_queue
# A run's job must outlive the run: pull time plus the container's own timeout, plus slack.
PULL_ALLOWANCE_SEC = 900
NOTIFY_JOB_TIMEOUT_SEC = 120
# How long a job may wait in its queue before Redis forgets it (RQ's ttl): Redis holds nothing
# for ever. A run still queued by then is handed over again by the sweep (jobs/sweeper.py).
JOB_TTL_SEC = 2 * 86400
CANCEL_PLAIN = "1"  # the cancel signal's value when the cancel has no reason to record
CANCEL_SIGNAL_TTL_SEC = 7 * 86400


def queue(name: str = RUNS_QUEUE, connection=None) -> Queue:
    """A queue of ours: jobs written with RQ's JSON serializer, never pickle (the slots read them
    so, and accept only our tasks: jobs/tasks.py TaskJob)."""
    return Queue(name, connection=connection if connection is not None else get_redis(), serializer=JSONSerializer)


def _run_job(run_public_id: str, timeout_sec: int):
    return Queue.prepare_data(
        keys.EXECUTE_RUN, (run_public_id,),
        job_id=f"run-{run_public_id}-{secrets.token_hex(4)}",
        timeout=timeout_sec + PULL_ALLOWANCE_SEC, ttl=JOB_TTL_SEC,
        result_ttl=300, failure_ttl=86400,
        description=f"run {run_public_id}",
    )


def enqueue_runs(runs: list[tuple[str, int, str]]) -> None:
    """Hand many runs (public id, timeout, pool) to their pools' workers in one Redis round trip."""
    if not runs:
        return
    connection = get_redis()
    with connection.pipeline() as pipe:
        for pool in sorted({pool for _, _, pool in runs}):
            queue(pool_queue(pool), connection).enqueue_many(
                [_run_job(public_id, timeout) for public_id, timeout, p in runs if p == pool], pipeline=pipe)
        pipe.execute()


def enqueue_resume(run_public_id: str, timeout_sec: int, host: str | None) -> None:
    """Take over a run whose worker is gone, on its engine's host (a run claimed before hosts were
    recorded: on any worker); ahead of fresh runs, since its container may be running."""
    queue(host_queue(host) if host else RUNS_QUEUE).enqueue(
        keys.RESUME_RUN, run_public_id, job_timeout=timeout_sec + PULL_ALLOWANCE_SEC,
        result_ttl=300, ttl=JOB_TTL_SEC, at_front=True, description=f"resume {run_public_id}")


def enqueue_notifications(ids: list[int]) -> None:
    """One job per delivery attempt of a pending notification."""
    if not ids:
        return
    q = queue(NOTIFY_QUEUE)
    with q.connection.pipeline() as pipe:
        q.enqueue_many([Queue.prepare_data(keys.DELIVER_NOTIFICATION, (i,),
                                           timeout=NOTIFY_JOB_TIMEOUT_SEC, result_ttl=300, ttl=JOB_TTL_SEC,
                                           job_id=f"notify-{i}-{secrets.token_hex(4)}") for i in ids],
                       pipeline=pipe)
        pipe.execute()


def hand_over_notifications(notification_ids: list[int], *, first_attempt: bool = True) -> None:
    """Mark pending notifications as handed over, then enqueue them. A crash or a Redis error
    after the mark leaves them for the sweep, which hands over marks older than a minute."""
    from sqlalchemy import update

    from ..extensions import db
    from ..models import Notification
    from ..models.clock import db_now
    if not notification_ids:
        return
    table = Notification.__table__
    where = [table.c.id.in_(notification_ids), table.c.state == "pending"]
    if first_attempt:
        where.append(table.c.attempts == 0)
    db.session.execute(update(table).where(*where).values(enqueued_at=db_now()))
    db.session.commit()
    try:
        enqueue_notifications(notification_ids)
    except Exception:
        db.session.execute(update(table).where(*where).values(enqueued_at=None))
        db.session.commit()
        raise


def signal_cancel(public_id: str, reason: str | None) -> None:
    """The fast path of a cancel already written to the database: the worker asks Redis every
    0.1 s, and the database only seldom (jobs/deadlines.py)."""
    get_redis().set(keys.run_cancel(public_id), reason or CANCEL_PLAIN, ex=CANCEL_SIGNAL_TTL_SEC)


def signal_cancels_again(cancels: list[tuple[str, str | None]]) -> None:
    """The signals of cancels already recorded, (public id, reason) each, in one round trip; a
    signal still in Redis is left as it is."""
    if not cancels:
        return
    pipe = get_redis().pipeline(transaction=False)
    for public_id, reason in cancels:
        pipe.set(keys.run_cancel(public_id), reason or CANCEL_PLAIN, ex=CANCEL_SIGNAL_TTL_SEC, nx=True)
    pipe.execute()


def host_queue_hosts() -> set[str]:
    """The hosts that have a queue of host-bound work in Redis (RQ lists every queue it made)."""
    prefix = Queue.redis_queue_namespace_prefix + host_queue("")
    return {key.decode()[len(prefix):] for key in get_redis().smembers(Queue.redis_queues_keys)
            if key.decode().startswith(prefix)}


def drop_host_queues(hosts: set[str]) -> None:
    """Delete the host-bound queues (and their jobs) of hosts that are gone for good."""
    for host in hosts:
        queue(host_queue(host)).delete(delete_jobs=True)
