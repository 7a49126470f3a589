"""The database's clock: the one clock every process of a deployment agrees on.

Hosts' clocks may differ by seconds (or by minutes, on a machine whose time sync broke). Whatever
decides who is alive, who owns what and when something is due is therefore stamped and compared
with the database's time: in SQL with `db_now()` (heartbeats, liveness, notification claims, the
sweeps), and in Python with `utcnow()` (models/base.py), which reads this module's
`DatabaseClock`: the database's time as last measured, carried forward on the monotonic clock (so
neither the host's wall clock nor a jump of it plays any part). On SQLite the database runs in
the process, on this host: its clock is this host's.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import DateTime, Float, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

log = logging.getLogger(__name__)

RESYNC_SEC = 30.0  # the anchor is measured again this often (monotonic clocks drift a little)
RETRY_SEC = 2.0  # after a failed measurement (the database away), not on every call


class db_now(FunctionElement):
    """The database's current time (naive UTC, as stored), plus `offset_sec` seconds."""

    type = DateTime()
    inherit_cache = False

    def __init__(self, offset_sec: float = 0.0):
        self.offset_sec = float(offset_sec)
        super().__init__()


@compiles(db_now, "postgresql")
def _pg_now(element, compiler, **kw) -> str:
    now = "(statement_timestamp() AT TIME ZONE 'UTC')"
    return f"({now} + interval '{element.offset_sec!r} seconds')" if element.offset_sec else now


@compiles(db_now, "sqlite")
def _sqlite_now(element, compiler, **kw) -> str:
    # the format SQLAlchemy stores DateTime in on SQLite (microseconds: six digits)
    modifier = f", '{element.offset_sec:+.6f} seconds'" if element.offset_sec else ""
    return f"strftime('%Y-%m-%d %H:%M:%f000', 'now'{modifier})"


class seconds_between(FunctionElement):
    """`later - earlier` in seconds (a float), two DateTime expressions."""

    type = Float()
    inherit_cache = True

    def __init__(self, later: ColumnElement, earlier: ColumnElement):
        super().__init__(later, earlier)


@compiles(seconds_between, "postgresql")
def _pg_seconds(element, compiler, **kw) -> str:
    later, earlier = (compiler.process(c, **kw) for c in element.clauses)
    return f"EXTRACT(EPOCH FROM ({later} - {earlier}))"


@compiles(seconds_between, "sqlite")
def _sqlite_seconds(element, compiler, **kw) -> str:
    later, earlier = (compiler.process(c, **kw) for c in element.clauses)
    return f"((julianday({later}) - julianday({earlier})) * 86400.0)"


def wall_utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class DatabaseClock:
    """The database's time in this process, without a query per call: an anchor (the database's
    time at a monotonic instant, measured in the middle of a round trip) carried forward on the
    monotonic clock, which is system-wide (forked children share it) and never jumps."""

    def __init__(self):
        self._anchors: dict[str, tuple[float, datetime, float]] = {}  # url -> (monotonic, db time, offset)
        self._next_try: dict[str, float] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        url, engine = _engine()
        if engine is None:
            return wall_utcnow()
        mono = time.monotonic()
        anchor = self._anchors.get(url)
        if (anchor is None or mono - anchor[0] >= RESYNC_SEC) and mono >= self._next_try.get(url, 0.0):
            self.measure()
            anchor = self._anchors.get(url)
        if anchor is None:
            return wall_utcnow()
        return anchor[1] + timedelta(seconds=mono - anchor[0])

    def measure(self) -> float | None:
        """Measure the anchor now; returns this host's wall clock minus the database's, in seconds
        (None on SQLite, or when the database cannot be asked)."""
        url, engine = _engine()
        if engine is None:
            return None
        try:
            with engine.connect() as conn:
                before, wall_before = time.monotonic(), time.time()
                value = conn.execute(text("SELECT (clock_timestamp() AT TIME ZONE 'UTC')")).scalar_one()
                after, wall_after = time.monotonic(), time.time()
        except Exception as e:
            with self._lock:
                self._next_try[url] = time.monotonic() + RETRY_SEC
            if url not in self._anchors and url not in self._warned:
                self._warned.add(url)
                log.warning("could not read the database's clock (%s); using this host's until it answers",
                            type(e).__name__)
            return None
        mid = (before + after) / 2
        offset = (wall_before + wall_after) / 2 - value.replace(tzinfo=timezone.utc).timestamp()
        with self._lock:
            self._anchors[url] = (mid, value, offset)
        return offset


def _engine():
    """(database URL, engine) of the current app when its database is a server (PostgreSQL);
    (None, None) on SQLite or outside an app."""
    from flask import current_app

    from ..extensions import db
    try:
        url = current_app.config["SQLALCHEMY_DATABASE_URI"]
    except RuntimeError:  # no app: nothing to ask
        return None, None
    if not url.startswith("postgresql"):
        return url, None
    return url, db.engine


clock = DatabaseClock()
