"""Worker hosts: the heartbeats of worker processes, and whether an engine host is alive, away or
lost. The database holds the heartbeats (Redis losing its data must not make every host look lost),
and its clock alone stamps and ages them (models/clock.py): a host whose own clock is off by a
minute is judged exactly like the others. (webapp/heartbeats.py is the other, Redis-only record,
read by /healthz alone: it says why the two are apart.)"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from flask import current_app
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..models import Run, WorkerProcess
from ..models.base import utcnow
from ..models.clock import db_now
from ..vocabulary import RunStatus
from .errors import Conflict, NotFound
from . import dispatch, pools

BEAT_EVERY_SEC = 1.0
ALIVE_SEC = 5.0  # a host that beat within this is there: its host-bound work is handed to it
FORGET_AFTER_SEC = 7 * 86400  # rows of processes not seen for this long are dropped
CLOCK_TOLERANCE_MS = 1000  # a worker whose clock is further off than this says so

ALIVE, AWAY, LOST = "alive", "away", "lost"


def register(name: str, host: str, pools: list[str], slots: int, engine_version: str | None,
             egress_problem: str | None = None) -> None:
    db.session.execute(delete(WorkerProcess).where(WorkerProcess.name == name))
    db.session.add(WorkerProcess(name=name, host=host, pools=",".join(pools), slots=slots,
                                 engine_version=engine_version, started_at=db_now(), last_seen_at=db_now(),
                                 egress_problem=egress_problem))
    db.session.commit()


def beat(name: str, clock_offset_ms: int | None = None) -> None:
    """This worker process is alive, on the database's clock; `clock_offset_ms` is how far its
    host's wall clock is from the database's, when last measured."""
    values = dict(last_seen_at=db_now(), stopped_at=None)
    if clock_offset_ms is not None:
        values["clock_offset_ms"] = clock_offset_ms
    db.session.execute(update(WorkerProcess).where(WorkerProcess.name == name).values(**values))
    db.session.commit()


def stopped(name: str) -> None:
    db.session.execute(update(WorkerProcess).where(WorkerProcess.name == name).values(stopped_at=db_now()))
    db.session.commit()


def other_hosts(host: str) -> set[str]:
    """Hosts other than `host` whose workers beat within the last HOST_LOST_SEC."""
    return set(db.session.scalars(select(WorkerProcess.host).where(
        WorkerProcess.host != host,
        WorkerProcess.last_seen_at >= db_now(-current_app.config["HOST_LOST_SEC"]))).all())


def host_states(hosts: set[str]) -> dict[str, str]:
    """alive (beat within ALIVE_SEC), away (not since, but within HOST_LOST_SEC) or lost (not
    within HOST_LOST_SEC, or never seen), for each host; aged in SQL on the database's clock."""
    if not hosts:
        return {}
    newest = func.max(WorkerProcess.last_seen_at)
    seen = {host: (alive, present) for host, alive, present in db.session.execute(
        select(WorkerProcess.host, newest >= db_now(-ALIVE_SEC),
               newest > db_now(-current_app.config["HOST_LOST_SEC"]))
        .where(WorkerProcess.host.in_(hosts)).group_by(WorkerProcess.host)).all()}
    states = {}
    for host in hosts:
        alive, present = seen.get(host, (False, False))
        states[host] = ALIVE if alive else AWAY if present else LOST
    return states


def _live():
    """The SQL condition of a live worker process: it beat within ALIVE_SEC and did not stop."""
    return WorkerProcess.stopped_at.is_(None) & (WorkerProcess.last_seen_at >= db_now(-ALIVE_SEC))


_pools_seen: dict[str, tuple[float, set[str]]] = {}  # database -> (when read, live pools)


def live_pools() -> set[str]:
    """Pools with at least one live worker process. Read at most once per heartbeat interval per
    process (a trigger's answer and every page of runs ask): heartbeats move no faster."""
    key = current_app.config["SQLALCHEMY_DATABASE_URI"]
    read_at, pools = _pools_seen.get(key, (float("-inf"), set()))
    if time.monotonic() - read_at >= BEAT_EVERY_SEC:
        rows = db.session.scalars(select(WorkerProcess.pools).where(_live())).all()
        pools = {pool for row in rows for pool in row.split(",") if pool}
        _pools_seen[key] = (time.monotonic(), pools)
    return pools


_lost_seen: dict[str, tuple[float, set[str]]] = {}  # database -> (when read, lost hosts)


def lost_hosts() -> set[str]:
    """Hosts without a heartbeat for HOST_LOST_SEC, read at most once a heartbeat interval."""
    key = current_app.config["SQLALCHEMY_DATABASE_URI"]
    read_at, lost = _lost_seen.get(key, (float("-inf"), set()))
    if time.monotonic() - read_at >= BEAT_EVERY_SEC:
        newest = func.max(WorkerProcess.last_seen_at)
        lost = set(db.session.scalars(select(WorkerProcess.host).group_by(WorkerProcess.host).having(
            newest <= db_now(-current_app.config["HOST_LOST_SEC"]))).all())
        _lost_seen[key] = (time.monotonic(), lost)
    return lost


def waiting(run) -> str | None:
    """Why a run is not moving, when the reason is ours to tell: a queued run's pool has no live
    worker (it still follows the queue-wait rule), or a running run waits for its lost host."""
    if run.status == RunStatus.QUEUED and run.worker_pool not in live_pools():
        return f"no live worker in pool {run.worker_pool}"
    if run.status == RunStatus.RUNNING and run.started_at is None:
        return f"preparing on {run.worker_host}" + (
            f" to start at {run.due_at.isoformat(timespec='milliseconds')}Z" if run.due_at > utcnow() else "")
    if (run.status == RunStatus.RUNNING and run.worker_host and run.workflow.on_host_lost == "wait"
            and run.worker_host in lost_hosts()):
        return (f"its worker host {run.worker_host} is lost: waiting for it to come back, or for an operator "
                "to forget it (onHostLost wait)")
    return None


@dataclass
class HostView:
    """One engine host as the workers page shows it: its processes' pools and slots, its engine,
    its last heartbeat, how far its clock is from the database's, the runs in flight on it (all
    teams: a count) and the viewer's own."""
    host: str
    state: str
    pools: list[str]
    slots: int
    busy: int
    engine_version: str | None
    last_seen_at: datetime
    processes: list[WorkerProcess]
    clock_offset_ms: int | None = None
    egress_problem: str | None = None
    own_runs: list = field(default_factory=list)
    own_running: int = 0

    @property
    def free(self) -> int:
        return max(0, self.slots - self.busy)

    @property
    def forgettable(self) -> bool:
        """Lost, and every run in flight on it is the viewer's: forgetting it touches no other team."""
        return self.state == LOST and self.busy == self.own_running

    @property
    def clock_off(self) -> bool:
        return self.clock_offset_ms is not None and abs(self.clock_offset_ms) > CLOCK_TOLERANCE_MS


def host_views(team_ids: set[int]) -> list[HostView]:
    """Every host seen within FORGET_AFTER_SEC, alive first; its live processes (or its last one);
    `own_runs` only of `team_ids`. Five queries whatever the number of hosts."""
    rows = db.session.execute(select(WorkerProcess, _live()).order_by(WorkerProcess.host, WorkerProcess.name)).all()
    busy = dict(db.session.execute(select(Run.worker_host, func.count()).where(Run.status == RunStatus.RUNNING)
                                   .group_by(Run.worker_host)).all())
    by_host: dict[str, list[tuple[WorkerProcess, bool]]] = {}
    for process, live in rows:
        by_host.setdefault(process.host, []).append((process, bool(live)))
    states = host_states(set(by_host))
    own_runs, own_running = _own_running_runs(team_ids)
    views = []
    for host, procs in by_host.items():
        live = [p for p, is_live in procs if is_live]
        newest = max((p for p, _ in procs), key=lambda p: p.last_seen_at)
        views.append(HostView(
            host=host, state=states[host],
            pools=sorted({pool for p in (live or [newest]) for pool in p.pool_list}),
            slots=sum(p.slots for p in live), busy=busy.get(host, 0),
            engine_version=newest.engine_version, last_seen_at=newest.last_seen_at,
            processes=live or [newest], clock_offset_ms=newest.clock_offset_ms,
            egress_problem=next((p.egress_problem for p in live or [newest] if p.egress_problem), None),
            own_runs=own_runs.get(host, []), own_running=own_running.get(host, 0)))
    order = {ALIVE: 0, AWAY: 1, LOST: 2}
    return sorted(views, key=lambda v: (order[v.state], v.host))


OWN_RUNS_SHOWN = 50  # per host


def _own_running_runs(team_ids: set[int]) -> tuple[dict[str, list[Run]], dict[str, int]]:
    """The running runs of `team_ids`, by host: the first OWN_RUNS_SHOWN of each (with their
    workflow) and how many there are. Two queries for every host at once; how many runs a team
    has running is bounded by its quota."""
    mine = (Run.status == RunStatus.RUNNING) & Run.team_id.in_(team_ids or {-1}) & Run.worker_host.is_not(None)
    counts = dict(db.session.execute(select(Run.worker_host, func.count()).where(mine)
                                     .group_by(Run.worker_host)).all())
    shown: dict[str, list[Run]] = {}
    for run in db.session.scalars(select(Run).where(mine).options(selectinload(Run.workflow))
                                  .order_by(Run.started_at)):
        listed = shown.setdefault(run.worker_host, [])
        if len(listed) < OWN_RUNS_SHOWN:
            listed.append(run)
    return shown, counts


def live_egress_problems() -> list:
    """(host, egress_problem) of the live worker processes that run containers without the egress rules."""
    rows = db.session.execute(select(WorkerProcess.host, WorkerProcess.egress_problem)
                              .where(WorkerProcess.egress_problem.is_not(None), _live())).all()
    db.session.rollback()
    return rows


def views_for(team_ids: set[int]) -> list[HostView]:
    """The hosts a member of `team_ids` sees: those serving a pool their teams may use (default, or
    granted), and any running one of their runs. Other teams' set-aside hosts are not shown."""
    usable = pools.usable(team_ids)
    return [v for v in host_views(team_ids) if usable & set(v.pools) or v.own_running]


PRUNE_EVERY_SEC = 60.0  # per process: what it removes is a week old, no need to look every sweep
_next_prune = [0.0]


def prune() -> int:
    """A sweep step, at most once a PRUNE_EVERY_SEC: the heartbeat rows of worker processes not
    seen for FORGET_AFTER_SEC (a host's rows otherwise went only when a worker of the same name
    registered again), then the Redis queues of hosts that have no row left and no running run;
    the count of rows removed."""
    if time.monotonic() < _next_prune[0]:
        return 0
    _next_prune[0] = time.monotonic() + PRUNE_EVERY_SEC
    removed = db.session.execute(delete(WorkerProcess).where(
        WorkerProcess.last_seen_at < db_now(-FORGET_AFTER_SEC))).rowcount
    db.session.commit()
    queued = dispatch.host_queue_hosts()
    if queued:
        known = set(db.session.scalars(select(WorkerProcess.host).where(WorkerProcess.host.in_(queued)))) | set(
            db.session.scalars(select(Run.worker_host).where(Run.status == RunStatus.RUNNING,
                                                              Run.worker_host.in_(queued))))
        db.session.rollback()
        dispatch.drop_host_queues(queued - known)
    return removed


FORGOTTEN = "worker host lost (forgotten by an operator)"


def forget(host: str) -> int:
    """An operator's word that `host` is gone, with every container it ran: its running runs fail
    "worker host lost" and retry by their budget (whatever their onHostLost), and its heartbeat rows
    go. Refused while the host is alive or away: only a lost host may be forgotten, so that no run
    is failed under a host that still runs it. Returns how many runs it failed."""
    from . import lifecycle
    state = host_states({host})[host]
    known = db.session.scalar(select(func.count()).select_from(WorkerProcess).where(WorkerProcess.host == host))
    running = db.session.scalars(select(Run).where(Run.status == RunStatus.RUNNING, Run.worker_host == host)).all()
    if not known and not running:
        raise NotFound(f"no worker host named {host}")
    if state != LOST:
        raise Conflict(f"the worker host {host} is {state}: stop its workers first, then forget it once it is "
                       f"lost ({current_app.config['HOST_LOST_SEC']} s without a heartbeat)")
    failed = sum(lifecycle.complete(run, RunStatus.FAILED, error=FORGOTTEN, expect=(RunStatus.RUNNING,), owner=run.owner_token)
                 for run in running)
    db.session.execute(delete(WorkerProcess).where(WorkerProcess.host == host))
    db.session.commit()
    return failed
