"""A run's ownership: the claim that makes a worker its owner and the lease that keeps it.

A worker owns a run while it holds the run's lease, a redis-py Lock whose token is also written in
the run row (`owner_token`) when the worker claims or takes over the run. Every later write the
worker makes (container id, start time, output, terminal status) is conditional on that token,
and the live publish checks the lease in Redis. A worker that finds another token in either place
lets go at once: it writes nothing more and leaves the container to the new owner."""
from __future__ import annotations

import logging
import secrets
import threading
import time
from contextlib import contextmanager

import redis
from flask import current_app
from redis.exceptions import LockError
from sqlalchemy import func, select, update
from sqlalchemy.exc import InterfaceError, OperationalError

from webapp import keys
from webapp.connections import get_redis
from webapp.extensions import db
from webapp.heartbeats import process_name
from webapp.models import Run, Team
from webapp.vocabulary import RunStatus

from . import hosts

log = logging.getLogger(__name__)


class Lease:
    """The Redis half of a run's ownership: a lock with this worker's token, renewed by a thread.

    The lock may vanish (Redis flushed or restarted): the owner takes it back with the same token,
    since the database still names it. It is lost only when another token holds it, and then
    `lost` is set for the supervisor to see."""

    def __init__(self, public_id: str):
        self.ttl = current_app.config["RUN_LEASE_TTL_SEC"]
        self.redis = get_redis()
        self.token = secrets.token_hex(16)
        self.lock = self.redis.lock(keys.run_lease(public_id), timeout=self.ttl, blocking=False, thread_local=False)
        self.public_id = public_id
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"lease-{public_id}")

    def acquire(self) -> bool:
        try:
            return bool(self.lock.acquire(token=self.token))
        except redis.RedisError:
            log.warning("could not take the lease of %s: Redis is not answering", self.public_id)
            return False

    def start(self) -> None:
        self._thread.start()

    def _beat(self) -> None:
        warned = False
        while not self._stop.wait(self.ttl / 5):
            try:
                try:
                    self.lock.extend(self.ttl, replace_ttl=True)
                except LockError:  # not ours any more: gone with Redis's data, or another's
                    if not self.lock.acquire(token=self.token):
                        log.warning("run %s: another worker holds its lease; letting go", self.public_id)
                        self.lost.set()
                        return
                warned = False
            except redis.RedisError as e:
                if not warned:
                    log.warning("could not renew the lease of %s: %s", self.public_id, e)
                    warned = True

    def release(self) -> None:
        self._stop.set()
        try:
            self.lock.release()
        except (LockError, redis.RedisError):
            pass


def claim(public_id: str, token: str) -> Run | None:
    """queued -> running, owned by `token`, unless the run's team already has TEAM_MAX_RUNNING
    runs running: then it goes back to the scheduler's sweep, which hands it over again, so one
    team's burst cannot hold every slot while other teams' runs wait. Returns the claimed run,
    read back by the claim's own statement."""
    team_id = db.session.scalar(select(Run.team_id).where(Run.public_id == public_id, Run.status == RunStatus.QUEUED))
    if team_id is None:
        db.session.commit()
        return None
    if db.engine.dialect.name == "postgresql":  # claims of one team, one at a time: the count holds
        db.session.execute(claims_in_turn(team_id))
    running = (select(func.count()).select_from(Run)
               .where(Run.team_id == team_id, Run.status == RunStatus.RUNNING).scalar_subquery())
    claimed = db.session.scalars(
        update(Run).where(Run.public_id == public_id, Run.status == RunStatus.QUEUED,
                          running < current_app.config["TEAM_MAX_RUNNING"])
        .values(status=RunStatus.RUNNING, owner_token=token, worker_name=process_name(), worker_host=hosts.current())
        .returning(Run), execution_options={"populate_existing": True}).one_or_none()
    if claimed is None:
        db.session.execute(update(Run).where(Run.public_id == public_id, Run.status == RunStatus.QUEUED)
                           .values(enqueued_at=None))
    db.session.commit()
    return claimed


def claims_in_turn(team_id: int):
    """The lock that makes one team's claims take turns: its `teams` row, FOR NO KEY UPDATE. Not
    FOR UPDATE, which also conflicts with the FOR KEY SHARE lock every insert naming the team takes
    (a run, an event): a worker cut off in the middle of a claim would then hold every fire and run
    end of the team until the server dropped its session (about 10 s of missed instants)."""
    return select(Team.id).where(Team.id == team_id).with_for_update(key_share=True)


def owned_write(lease: Lease, write):
    """`write()`, one of the owner's status writes, tried again with backoff while the database
    cannot be reached, for up to STORAGE_OUTAGE_SEC; LeaseLost and refusals are not retried."""
    deadline = time.monotonic() + current_app.config["STORAGE_OUTAGE_SEC"]
    delay = 0.25
    while True:
        try:
            return write()
        except (OperationalError, InterfaceError) as e:
            db.session.rollback()
            if time.monotonic() + delay > deadline or lease.lost.is_set():
                raise
            log.warning("run %s: the database did not take a write (%s); trying again in %.2f s",
                        lease.public_id, type(e).__name__, delay)
            time.sleep(delay)
            delay = min(5.0, delay * 2)


def take_over(run: Run, token: str) -> bool:
    """A running run whose worker is gone becomes `token`'s, unless another worker took it first."""
    previous = run.owner_token
    took = db.session.execute(
        update(Run).where(Run.id == run.id, Run.status == RunStatus.RUNNING,
                          Run.owner_token == previous if previous else Run.owner_token.is_(None))
        .values(owner_token=token, worker_name=process_name())).rowcount
    db.session.commit()
    return bool(took)


@contextmanager
def rows_kept():
    """An execution's many small commits (container id, start, log blocks) do not expire the run
    it loaded: every field it reads from the row is fixed when the run is made (image, command,
    timeout, instant), and what changes meanwhile (a cancel, the status) is read by a query of its
    own. Otherwise each commit cost a reload of the row on the way to the container's start.
    `_finish` expires everything before the terminal write, as any commit did before."""
    session = db.session()
    kept, session.expire_on_commit = session.expire_on_commit, False
    try:
        yield
    finally:
        session.expire_on_commit = kept
