"""Worker hosts: the heartbeats of worker processes, and whether an engine host is alive, away or
lost. The database holds the heartbeats (Redis losing its data must not make every host look lost);
hosts' clocks are assumed to agree within a second or two, as for the rest of a deployment."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, func, select, update

from ..extensions import db
from ..models import WorkerProcess
from ..models.base import utcnow

BEAT_EVERY_SEC = 1.0
ALIVE_SEC = 5.0  # a host that beat within this is there: its host-bound work is handed to it
FORGET_AFTER = timedelta(days=7)  # rows of processes not seen for this long are dropped

ALIVE, AWAY, LOST = "alive", "away", "lost"


def register(name: str, host: str, pools: list[str], slots: int, engine_version: str | None) -> None:
    now = utcnow()
    db.session.execute(delete(WorkerProcess).where(WorkerProcess.name == name))
    db.session.add(WorkerProcess(name=name, host=host, pools=",".join(pools), slots=slots,
                                 engine_version=engine_version, started_at=now, last_seen_at=now))
    db.session.execute(delete(WorkerProcess).where(WorkerProcess.last_seen_at < now - FORGET_AFTER))
    db.session.commit()


def beat(name: str) -> None:
    db.session.execute(update(WorkerProcess).where(WorkerProcess.name == name)
                       .values(last_seen_at=utcnow(), stopped_at=None))
    db.session.commit()


def stopped(name: str) -> None:
    db.session.execute(update(WorkerProcess).where(WorkerProcess.name == name).values(stopped_at=utcnow()))
    db.session.commit()


def other_hosts(host: str) -> set[str]:
    """Hosts other than `host` whose workers beat within the last HOST_LOST_SEC."""
    cutoff = utcnow() - timedelta(seconds=current_app.config["HOST_LOST_SEC"])
    return set(db.session.scalars(select(WorkerProcess.host).where(
        WorkerProcess.host != host, WorkerProcess.last_seen_at >= cutoff)).all())


def host_states(hosts: set[str]) -> dict[str, str]:
    """alive (beat within ALIVE_SEC), away (not since, but within HOST_LOST_SEC) or lost (not
    within HOST_LOST_SEC, or never seen), for each host."""
    if not hosts:
        return {}
    seen = dict(db.session.execute(
        select(WorkerProcess.host, func.max(WorkerProcess.last_seen_at))
        .where(WorkerProcess.host.in_(hosts)).group_by(WorkerProcess.host)).all())
    now = utcnow()
    lost_after = current_app.config["HOST_LOST_SEC"]
    states = {}
    for host in hosts:
        age = (now - seen[host]).total_seconds() if seen.get(host) else None
        states[host] = (LOST if age is None or age >= lost_after else ALIVE if age < ALIVE_SEC else AWAY)
    return states


def _live(process: WorkerProcess, now: datetime) -> bool:
    """A worker process is live when it beat within ALIVE_SEC and did not stop."""
    return process.stopped_at is None and (now - process.last_seen_at).total_seconds() < ALIVE_SEC


_pools_seen: dict[str, tuple[float, set[str]]] = {}  # database -> (when read, live pools)


def live_pools() -> set[str]:
    """Pools with at least one live worker process. Read at most once per heartbeat interval per
    process (a trigger's answer and every page of runs ask): heartbeats move no faster."""
    key = current_app.config["SQLALCHEMY_DATABASE_URI"]
    read_at, pools = _pools_seen.get(key, (float("-inf"), set()))
    if time.monotonic() - read_at >= BEAT_EVERY_SEC:
        now = utcnow()
        rows = db.session.scalars(select(WorkerProcess).where(
            WorkerProcess.last_seen_at >= now - timedelta(seconds=ALIVE_SEC))).all()
        pools = {pool for p in rows if _live(p, now) for pool in p.pool_list}
        _pools_seen[key] = (time.monotonic(), pools)
    return pools


def waiting(run) -> str | None:
    """Why a queued run is not being run, when the reason is ours to tell: its pool has no live
    worker. (It still follows the queue-wait rule: it fails if none comes within its wait.)"""
    if run.status != "queued" or run.worker_pool in live_pools():
        return None
    return f"no live worker in pool {run.worker_pool}"


@dataclass
class HostView:
    """One engine host as the workers page shows it: its processes' pools and slots, its engine,
    its last heartbeat, the runs in flight on it (all teams: a count) and the viewer's own."""
    host: str
    state: str
    pools: list[str]
    slots: int
    busy: int
    engine_version: str | None
    last_seen_at: datetime
    processes: list[WorkerProcess]
    own_runs: list = field(default_factory=list)

    @property
    def free(self) -> int:
        return max(0, self.slots - self.busy)


def host_views(team_ids: set[int]) -> list[HostView]:
    """Every host seen within FORGET_AFTER, alive first; its live processes (or its last one);
    `own_runs` only of `team_ids`."""
    from ..models import Run
    rows = db.session.scalars(select(WorkerProcess).order_by(WorkerProcess.host, WorkerProcess.name)).all()
    busy = dict(db.session.execute(select(Run.worker_host, func.count()).where(Run.status == "running")
                                   .group_by(Run.worker_host)).all())
    by_host: dict[str, list[WorkerProcess]] = {}
    for row in rows:
        by_host.setdefault(row.host, []).append(row)
    states = host_states(set(by_host))
    now = utcnow()
    views = []
    for host, procs in by_host.items():
        live = [p for p in procs if _live(p, now)]
        views.append(HostView(
            host=host, state=states[host],
            pools=sorted({pool for p in (live or procs) for pool in p.pool_list}),
            slots=sum(p.slots for p in live), busy=busy.get(host, 0),
            engine_version=max(procs, key=lambda p: p.last_seen_at).engine_version,
            last_seen_at=max(p.last_seen_at for p in procs),
            processes=live or [max(procs, key=lambda p: p.last_seen_at)],
            own_runs=db.session.scalars(select(Run).where(Run.status == "running", Run.worker_host == host,
                                                          Run.team_id.in_(team_ids or {-1}))
                                        .order_by(Run.started_at).limit(50)).all()))
    order = {ALIVE: 0, AWAY: 1, LOST: 2}
    return sorted(views, key=lambda v: (order[v.state], v.host))
