"""RQ queues and the one way runs are handed to workers."""
from __future__ import annotations

from rq import Queue

from webapp.connections import get_redis

RUNS = "runs"
NOTIFY = "notify"
# A run's job must outlive the run: pull time plus the container's own timeout, plus slack.
PULL_ALLOWANCE_SEC = 900


def queue(name: str = RUNS) -> Queue:
    return Queue(name, connection=get_redis())


def _run_job(run_public_id: str, timeout_sec: int):
    return Queue.prepare_data(
        "jobs.tasks.execute_run", (run_public_id,),
        job_id=f"run-{run_public_id}-{_nonce()}",
        timeout=timeout_sec + PULL_ALLOWANCE_SEC,
        result_ttl=300, failure_ttl=86400,
        description=f"run {run_public_id}",
    )


def enqueue_run(run_public_id: str, timeout_sec: int) -> None:
    enqueue_runs([(run_public_id, timeout_sec)])


def enqueue_runs(runs: list[tuple[str, int]]) -> None:
    """Hand many runs to the workers in one Redis round trip."""
    if not runs:
        return
    q = queue(RUNS)
    with q.connection.pipeline() as pipe:
        q.enqueue_many([_run_job(public_id, timeout) for public_id, timeout in runs], pipeline=pipe)
        pipe.execute()


def enqueue_notification(event_id: int) -> None:
    queue(NOTIFY).enqueue("jobs.tasks.deliver_event", event_id, job_timeout=600, result_ttl=300)


def _nonce() -> str:
    import secrets
    return secrets.token_hex(4)
