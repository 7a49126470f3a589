"""What every open live-log stream of this web process waits on between frames: its run's status
and whether its credentials still hold. One greenlet (or thread) reads them for all streams at
once, every POLL_SEC: three queries a second, not two per stream (a thousand streams would
otherwise ask the database 1,500 times a second while their runs print nothing).
"""
from __future__ import annotations

import threading
import time
from collections import Counter

from sqlalchemy import select

from ..connections import per_process
from ..extensions import db
from ..models import ApiKey, Run, User
from ..services.keys import expired as key_expired

POLL_SEC = 1.0
GONE = None  # the status of a run that was deleted


class Board:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.runs: Counter = Counter()  # run pk -> streams watching it
        self.keys: Counter = Counter()  # api key id -> streams it opened
        self.users: Counter = Counter()  # user id -> streams
        self.statuses: dict[int, str | None] = {}
        self.key_valid: dict[int, bool] = {}
        self.user_versions: dict[int, int] = {}
        self.thread: threading.Thread | None = None

    def join(self, run_pk: int, status: str, principal) -> None:
        """A stream opens: its run's status (read by the stream itself) and its credentials (just
        checked by the request's authentication) are known until the next poll."""
        with self.lock:
            self.runs[run_pk] += 1
            self.statuses.setdefault(run_pk, status)
            if principal.key_id is not None:  # it has just authenticated: valid now
                self.keys[principal.key_id] += 1
                self.key_valid[principal.key_id] = True
            else:  # a session's version only grows: a newer session than the board knows is current
                self.users[principal.user_id] += 1
                known = self.user_versions.get(principal.user_id)
                if known is None or (principal.session_version or 0) > known:
                    self.user_versions[principal.user_id] = principal.session_version
            if self.thread is None:
                self.thread = threading.Thread(target=self._loop, name="live-board", daemon=True)
                self.thread.start()

    def leave(self, run_pk: int, principal) -> None:
        with self.lock:
            _drop(self.runs, run_pk, self.statuses)
            if principal.key_id is not None:
                _drop(self.keys, principal.key_id, self.key_valid)
            else:
                _drop(self.users, principal.user_id, self.user_versions)

    def status(self, run_pk: int) -> str | None:
        """The run's status at the last poll; GONE once it was deleted."""
        with self.lock:
            return self.statuses.get(run_pk, GONE)

    def valid(self, principal) -> bool:
        """A revoked or expired key, or an ended session (logout, password change), is invalid."""
        with self.lock:
            if principal.key_id is not None:
                return self.key_valid.get(principal.key_id, False)
            return self.user_versions.get(principal.user_id) == principal.session_version

    def _loop(self) -> None:
        while True:
            time.sleep(POLL_SEC)
            try:
                with self.app.app_context():
                    self.poll()
            except Exception:  # the database is away: keep the last answers, ask again
                self.app.logger.warning("live streams: could not read their runs and credentials", exc_info=True)

    def poll(self) -> None:
        with self.lock:
            runs, keys, users = list(self.runs), list(self.keys), list(self.users)
        try:
            statuses = dict(db.session.execute(select(Run.id, Run.status).where(Run.id.in_(runs))).all()) if runs else {}
            live = {k.id for k in db.session.scalars(select(ApiKey).where(ApiKey.id.in_(keys)))
                    if k.revoked_at is None and not key_expired(k)} if keys else set()
            versions = dict(db.session.execute(select(User.id, User.session_version)
                                               .where(User.id.in_(users))).all()) if users else {}
        finally:
            db.session.remove()
        with self.lock:
            for pk in runs:
                if pk in self.runs:
                    self.statuses[pk] = statuses.get(pk, GONE)
            for key_id in keys:
                if key_id in self.keys:
                    self.key_valid[key_id] = key_id in live
            for user_id in users:
                if user_id in self.users:
                    self.user_versions[user_id] = versions.get(user_id)


def _drop(counter: Counter, item, known: dict) -> None:
    counter[item] -= 1
    if counter[item] <= 0:
        del counter[item]
        known.pop(item, None)


def board(app) -> Board:
    """This process's board for `app` (a forked web worker makes its own)."""
    return per_process("live-board", str(id(app)), lambda: Board(app))  # the board keeps `app` alive
