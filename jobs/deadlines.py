"""What ends a run from outside its container: a cancel (asked in Redis, recorded in the database)
and the clock (the run's instant, its timeout)."""
from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from datetime import datetime, timedelta

import redis
from flask import current_app
from sqlalchemy import select

from webapp import keys
from webapp.extensions import db
from webapp.runoutput.stream import LeaseLost
from webapp.models import Run
from webapp.models.base import utcnow
from webapp.services.dispatch import CANCEL_PLAIN

log = logging.getLogger(__name__)

POLL_SEC = 0.1
# How often a run's supervisor wakes while its container runs (the exit itself wakes it at once).
# A cancel is seen within BOARD_EVERY_SEC + TICK_SEC of its signal.
TICK_SEC = 0.5
BOARD_EVERY_SEC = 0.4
CANCEL_DB_FAST_SEC = 0.5  # the database's reads while Redis cannot be asked, or lost its data


class CancelBoard:
    """The cancel signals and leases of every run this process supervises, read from Redis for
    them all in one round trip (two MGETs) every BOARD_EVERY_SEC on a thread of its own: a process
    of many runs (RUNS_PER_PROCESS) asks Redis a few times a second, not ten times a run. A run
    not read yet, or a board whose last read failed or is stale, is asked alone, as before."""

    def __init__(self, store: redis.Redis):
        self.store = store
        self.watching: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self.read: dict[str, tuple[bytes | None, bool]] = {}
        self.read_at = 0.0
        threading.Thread(target=self._poll, daemon=True, name="cancel-board").start()

    def answer(self, public_id: str) -> tuple[bytes | None, bool] | None:
        """(the cancel signal, whether the lease is there) as last read, or None when not known."""
        if time.monotonic() - self.read_at > 3 * BOARD_EVERY_SEC:
            return None
        return self.read.get(public_id)

    def _poll(self) -> None:
        while True:
            time.sleep(BOARD_EVERY_SEC)
            ids = list(self.watching.keys())
            if not ids:
                self.read, self.read_at = {}, time.monotonic()
                continue
            try:
                signals, leases = (self.store.pipeline(transaction=False).mget([keys.run_cancel(i) for i in ids])
                                   .mget([keys.run_lease(i) for i in ids]).execute())
            except redis.RedisError:
                continue  # stale: each run asks alone until a read succeeds again
            self.read = {i: (signal, lease is not None) for i, signal, lease in zip(ids, signals, leases)}
            self.read_at = time.monotonic()


_boards: dict[tuple[int, int], CancelBoard] = {}
_boards_lock = threading.Lock()


def board(store: redis.Redis) -> CancelBoard:
    """This process's board for `store` (made on first use; a forked child makes its own)."""
    key = (id(store), os.getpid())
    with _boards_lock:
        if key not in _boards:
            _boards[key] = CancelBoard(store)
        return _boards[key]


class CancelWatch:
    """Whether a run was cancelled, and why. Redis is the fast path, asked every poll in one round
    trip with the run's lease: a lease gone from Redis means Redis lost its data (flushed, or
    restarted without it), and with it perhaps the cancel's signal. The database, the record, is
    read every CANCEL_DB_FAST_SEC while Redis cannot be asked or its data is gone, and otherwise
    only every CANCEL_DB_POLL_SEC, so that a run that writes nothing costs the database almost
    nothing; the scheduler's sweep also signals again, in Redis, every cancel recorded for a
    running run (jobs/sweeper.py `signal_cancels_again`), which covers a signal lost between the row's write and
    Redis."""

    def __init__(self, run: Run, store: redis.Redis):
        self.run_pk, self.public_id, self.store = run.id, run.public_id, store
        self.seen = run.cancel_requested_at is not None
        self.reason = run.cancel_reason
        self.slow_sec = slow_sec = current_app.config["CANCEL_DB_POLL_SEC"]
        self.next_db_check = time.monotonic() + slow_sec  # the row was just read
        self.redis_warned = self.db_warned = False
        self.board = board(store)
        self.board.watching[self.public_id] = self

    def requested(self) -> bool:
        if self.seen:
            return True
        answered = self._in_redis()
        if self.seen:
            return True
        now = time.monotonic()
        if now >= self.next_db_check:
            self.next_db_check = now + (self.slow_sec if answered else CANCEL_DB_FAST_SEC)
            self._in_database()
        elif not answered:
            self.next_db_check = min(self.next_db_check, now + CANCEL_DB_FAST_SEC)
        return self.seen

    def _in_redis(self) -> bool:
        """Reads the signal (from the board when it has read it); False when Redis could not be
        asked or has lost the run's lease."""
        try:
            value, leased = self.board.answer(self.public_id) or (
                self.store.pipeline(transaction=False).get(keys.run_cancel(self.public_id))
                .exists(keys.run_lease(self.public_id)).execute())
        except redis.RedisError as e:
            if not self.redis_warned:
                self.redis_warned = True
                log.warning("cancel check of %s through Redis failed (%s); using the database", self.public_id, e)
            return False
        self.redis_warned = False
        if value is not None:
            self.seen = True
            self.reason = None if value.decode() == CANCEL_PLAIN else value.decode()
        return bool(leased)

    def _in_database(self) -> None:
        try:
            row = db.session.execute(select(Run.cancel_requested_at, Run.cancel_reason)
                                     .where(Run.id == self.run_pk)).one()
            db.session.commit()
        except Exception as e:  # the database away: Redis still carries cancels meanwhile
            db.session.rollback()
            if not self.db_warned:
                self.db_warned = True
                log.warning("cancel check of %s in the database failed (%s); trying again", self.public_id,
                            type(e).__name__)
            return
        self.db_warned = False
        if row.cancel_requested_at is not None:
            self.seen, self.reason = True, row.cancel_reason


def until_due(run: Run, lost, cancel) -> str | None:
    """A run handed over ahead of its instant (a cron fire made SCHEDULE_LEAD_SEC early: `due_at`
    still to come) waits for it on the monotonic clock, its container created and attached, then
    starts on time. Only a cancel stops it meanwhile: the fire is made, and like any run in
    flight it outlives a later change or delete of its workflow. `lost`: the lease's event;
    `cancel`: a CancelWatch. Returns the cancel's reason, or None to start."""
    wait = (run.due_at - utcnow()).total_seconds()
    if wait <= 0:
        return None
    start_at = time.monotonic() + wait
    while start_at > time.monotonic():
        if lost.is_set():
            raise LeaseLost(run.public_id)
        if cancel.requested():
            return cancel.reason or "cancelled before its instant"
        # read the clock after the checks: they may have taken longer than what was left
        time.sleep(max(0.0, min(start_at - time.monotonic(), POLL_SEC)))
    return None


def remaining(run: Run) -> float:
    """Seconds left of the run's timeout, counted from its start."""
    started = run.started_at or utcnow()
    return max(0.0, (started + timedelta(seconds=run.timeout_sec) - utcnow()).total_seconds())


def timed_out(run: Run) -> str:
    return f"the run exceeded its timeout of {run.timeout_sec} s; the container was killed"


def overran_unwatched(run: Run, finished: datetime | None) -> str | None:
    """The error of a container that exited past its timeout while no worker watched it, or None."""
    started = run.started_at
    if started and finished and finished > started + timedelta(seconds=run.timeout_sec):
        return f"the run exceeded its timeout of {run.timeout_sec} s while no worker watched it"
    return None
