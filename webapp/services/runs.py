"""Runs: fire, trigger, retry, cancel, list and read, with the contract's rules."""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import func, select, update
from sqlalchemy.orm import contains_eager

from ..extensions import db
from ..models import Run, RunLogBlock, Workflow
from ..models.base import new_public_id, utcnow
from ..models.clock import db_now
from . import budget, dispatch, quotas
from .access import Principal, require_environment_access, require_public_id, require_team, require_write
from .errors import Conflict, Invalid, NotFound
from .transitions import cancel_in_transaction
from .workflows import get_project, get_workflow, visible
from ..vocabulary import STATUSES, TERMINAL, TRIGGERS, RunStatus, Trigger

MAX_PAGE = 100

def fire(wf: Workflow, trigger: str, env: dict, *, attempt: int = 1, retry_of: Run | None = None,
         scheduled_for: datetime | None = None, due_at: datetime | None = None,
         commit: bool = True) -> Run:
    """Make the run row of one fire, and hand it to the workers when it is due now."""
    now = utcnow()
    run = Run(public_id=new_public_id("run_"), team_id=wf.team_id, workflow_id=wf.id,
              trigger=trigger, attempt=attempt, retry_of_id=retry_of.id if retry_of else None,
              status=RunStatus.QUEUED, env=env, image=wf.image, command=wf.command,
              timeout_sec=wf.timeout_sec, memory_mb=wf.memory_mb, cpus=wf.cpus, network=wf.network,
              worker_pool=wf.worker_pool,
              scheduled_for=scheduled_for, queued_at=now, due_at=due_at or now)
    run.workflow = wf
    db.session.add(run)
    if commit:
        db.session.commit()
        if run.due_at <= now:
            hand_over(run)
    return run


def hand_over(run: Run) -> None:
    hand_over_many([handle(run)])


def handle(run: Run) -> tuple[int, str, int, str]:
    """What the hand-over needs of a run, read while it is loaded (before a commit expires it)."""
    return run.id, run.public_id, run.timeout_sec, run.worker_pool


def hand_over_many(runs: list[tuple[int, str, int, str]]) -> None:
    """Enqueue due runs (as handles). If Redis is away the scheduler's sweep enqueues them later."""
    if not runs:
        return
    try:
        dispatch.enqueue_runs([(public_id, timeout, pool) for _, public_id, timeout, pool in runs])
    except RedisError as e:
        current_app.logger.warning("could not enqueue %d runs (%s); the scheduler will", len(runs), e)
        return
    except Exception:
        current_app.logger.exception("could not enqueue %d runs; the scheduler will", len(runs))
        return
    table = Run.__table__
    db.session.execute(update(table).where(table.c.id.in_([handle[0] for handle in runs]))
                       .values(enqueued_at=db_now()))
    db.session.commit()


def trigger_workflow(principal: Principal, team_id: int, public_id: str, env: dict) -> Run:
    """A manual fire, from the API or the dashboard: spends the team's trigger budget once the
    call is known to be allowed (refusals cost nothing)."""
    wf = get_workflow(principal, team_id, public_id, write=True)
    merged = {**(wf.env or {}), **env}
    quotas.check_run_env(team_id, merged)
    quotas.check_queue(team_id)
    budget.spend_trigger(team_id)
    return fire(wf, Trigger.MANUAL, merged)


def get_run(principal: Principal, team_id: int, public_id: str) -> Run:
    require_team(principal, team_id)
    require_public_id(public_id)
    run = db.session.query(Run).filter_by(public_id=public_id).first()
    if run is None or run.team_id != team_id:
        raise NotFound("no such run")
    require_environment_access(principal, run.workflow.environment.is_production)
    return run


def retry_run(principal: Principal, team_id: int, public_id: str) -> Run:
    """A manual re-fire of a terminal run with the same env: a fresh attempt chain."""
    run = get_run(principal, team_id, public_id)
    require_write(principal)
    if not run.terminal:
        raise Conflict(f"the run is {run.status}; only a finished run can be retried")
    if run.workflow.deleted_at is not None:
        raise Conflict("the workflow was deleted")
    quotas.check_queue(team_id)
    budget.spend_trigger(team_id)
    return fire(run.workflow, Trigger.RETRY, dict(run.env), retry_of=run)


def cancel_run(principal: Principal, team_id: int, public_id: str) -> Run:
    run = get_run(principal, team_id, public_id)
    require_write(principal)
    return request_cancel(run)


def request_cancel(run: Run, reason: str | None = None) -> Run:
    """Queued: cancelled now, before any container exists. Running: the owning worker stops it.
    `reason` becomes the run's `error` (a user's cancel has none)."""
    if run.terminal:
        raise Conflict(f"the run is already {run.status}")
    signal = cancel_in_transaction(run, reason)
    db.session.commit()
    signal()
    db.session.refresh(run)
    return run


def _decode_cursor(cursor: str) -> int:
    try:
        value = int(base64.urlsafe_b64decode(cursor.encode() + b"==").decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        value = 0
    if not 0 < value <= 2**63 - 1:
        raise Invalid("cursor is not valid", {"cursor": "not a cursor this API gave out"})
    return value


def _encode_cursor(run_id: int) -> str:
    return base64.urlsafe_b64encode(str(run_id).encode()).decode().rstrip("=")


def list_runs(principal: Principal, team_id: int, public_id: str, limit: int = 20,
              cursor: str | None = None) -> tuple[list[Run], str | None]:
    """Newest first. The cursor is the last id seen, so runs that arrive later never shift a page."""
    wf = get_workflow(principal, team_id, public_id)
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid("limit is 1 to 100", {"limit": f"1 to {MAX_PAGE}"})
    return _newest_first(db.session.query(Run).filter(Run.workflow_id == wf.id), limit, cursor)


def _newest_first(query, limit: int, cursor: str | None) -> tuple[list[Run], str | None]:
    """A page of `query`'s runs, newest first, and the cursor of the next page (the last id seen,
    so runs that arrive meanwhile never shift a page), or None on the last."""
    if cursor:
        query = query.filter(Run.id < _decode_cursor(cursor))
    runs = query.order_by(Run.id.desc()).limit(limit + 1).all()
    more = len(runs) > limit
    runs = runs[:limit]
    return runs, (_encode_cursor(runs[-1].id) if more else None)


RANGES = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400, "all": None}


@dataclass(frozen=True)
class RunFilter:
    """The Runs tab's filters, as they appear in its URL."""
    status: str = ""
    workflow: str = ""  # a workflow's public id
    trigger: str = ""
    range: str = "all"

    @classmethod
    def from_args(cls, args) -> RunFilter:
        """Filters from query arguments; Invalid names each bad one."""
        f = cls(status=args.get("status", ""), workflow=args.get("workflow", ""),
                trigger=args.get("trigger", ""), range=args.get("range", "") or "all")
        fields = {}
        if f.status and f.status not in STATUSES:
            fields["status"] = f"one of {', '.join(STATUSES)}"
        if f.trigger and f.trigger not in TRIGGERS:
            fields["trigger"] = f"one of {', '.join(TRIGGERS)}"
        if f.range not in RANGES:
            fields["range"] = f"one of {', '.join(RANGES)}"
        if f.workflow:
            try:
                require_public_id(f.workflow)
            except NotFound:
                fields["workflow"] = "not a workflow id"
        if fields:
            raise Invalid("the filters are not valid", fields)
        return f


def project_runs(principal: Principal, team_id: int, project_id: int, filters: RunFilter, limit: int = 50,
                 cursor: str | None = None) -> tuple[list[Run], str | None]:
    """The runs of every workflow of a project, newest first, filtered, a page at a time."""
    project = get_project(principal, team_id, project_id)
    query = (db.session.query(Run).join(Workflow, Workflow.id == Run.workflow_id)
             .options(contains_eager(Run.workflow)).filter(Workflow.project_id == project.id))
    query = visible(query, principal, project)
    if filters.status == "queued":  # as shown: claimed runs whose container has not started are queued
        query = query.filter((Run.status == RunStatus.QUEUED) | ((Run.status == RunStatus.RUNNING) & Run.started_at.is_(None)))
    elif filters.status == "running":
        query = query.filter(Run.status == RunStatus.RUNNING, Run.started_at.is_not(None))
    elif filters.status:
        query = query.filter(Run.status == filters.status)
    if filters.trigger:
        query = query.filter(Run.trigger == filters.trigger)
    if filters.workflow:
        query = query.filter(Workflow.public_id == filters.workflow)
    if RANGES[filters.range]:
        query = query.filter(Run.queued_at >= utcnow() - timedelta(seconds=RANGES[filters.range]))
    return _newest_first(query, limit, cursor)


LOG_PAGE_MAX = 10000  # lines per page of the logs API
BLOCK_PAGE = 64  # blocks per query of everything that reads logs: at most 4 MiB of text


class LogLine(NamedTuple):
    """One stored line: blocks hold lines, readers see lines with their own seq."""
    seq: int
    stream: str
    text: str
    ts: datetime


def _block_query(run_pk: int):
    table = RunLogBlock.__table__
    return select(table.c.first_seq, table.c.last_seq, table.c.stream, table.c.text, table.c.ts).where(
        table.c.run_id == run_pk)


def _blocks(run_pk: int, after_seq: int, before_seq: int | None, *, release: bool):
    """The stored blocks holding a line with after_seq < seq (< before_seq), in order, a page of
    blocks per query (keyset on last_seq). `release`: end the read transaction after each page, for
    a reader that streams for long (a snapshot held open would keep SQLite's WAL growing)."""
    table = RunLogBlock.__table__
    while True:
        query = _block_query(run_pk).where(table.c.last_seq > after_seq)
        if before_seq is not None:
            query = query.where(table.c.first_seq < before_seq)
        rows = db.session.execute(query.order_by(table.c.last_seq).limit(BLOCK_PAGE)).all()
        if release:
            db.session.commit()
        yield from rows
        if len(rows) < BLOCK_PAGE:
            return
        after_seq = rows[-1].last_seq


def _lines(block, after_seq: int = -1, before_seq: int | None = None) -> list[LogLine]:
    first, stream, ts = block.first_seq, block.stream, block.ts
    lines = [LogLine(first + i, stream, text, ts) for i, text in enumerate(block.text.split("\n"))]
    if first <= after_seq or (before_seq is not None and block.last_seq >= before_seq):
        lines = [line for line in lines if line.seq > after_seq and (before_seq is None or line.seq < before_seq)]
    return lines


def log_lines(run: Run, after_seq: int = -1, before_seq: int | None = None,
              limit: int = LOG_PAGE_MAX) -> list[LogLine]:
    """At most `limit` stored lines after `after_seq` (and before `before_seq`), in order."""
    out: list[LogLine] = []
    for block in _blocks(run.id, after_seq, before_seq, release=False):
        out += _lines(block, after_seq, before_seq)
        if len(out) >= limit:
            break
    return out[:limit]


def log_pages(run_pk: int, after_seq: int = -1, before_seq: int | None = None):
    """Every stored line after `after_seq` (and before `before_seq`), a block at a time: memory
    stays bounded by a page of blocks whatever the length of the log."""
    for block in _blocks(run_pk, after_seq, before_seq, release=True):
        yield _lines(block, after_seq, before_seq)


def log_text(run_pk: int, after_seq: int = -1):
    """The log as text, streamed a block at a time (a block's text is its lines already joined)."""
    for block in _blocks(run_pk, after_seq, None, release=True):
        if block.first_seq > after_seq:
            yield block.text + "\n"
        else:
            yield "".join(line.text + "\n" for line in _lines(block, after_seq))


def note_in_log(public_id: str, text: str) -> bool | None:
    """A system line added at the end of a finished run's stored output, after the fact (that its
    host stopped its container, say). True once added; False while the run is not finished (its log
    belongs to its owner, who says it); None if there is no such run. The seq is taken with a
    compare-and-set on the run's next seq, so two writers never share one."""
    table = Run.__table__
    row = db.session.execute(select(table.c.id, table.c.status, table.c.log_next_seq)
                             .where(table.c.public_id == public_id)).one_or_none()
    if row is None or row.status not in TERMINAL:
        db.session.commit()
        return None if row is None else False
    taken = db.session.execute(update(table).where(table.c.id == row.id, table.c.log_next_seq == row.log_next_seq)
                               .values(log_next_seq=row.log_next_seq + 1)).rowcount
    if taken:
        db.session.execute(RunLogBlock.__table__.insert().values(
            run_id=row.id, first_seq=row.log_next_seq, last_seq=row.log_next_seq, stream="system", text=text,
            ts=utcnow()))
    db.session.commit()
    return bool(taken) or note_in_log(public_id, text)


def run_url(run: Run) -> str:
    return f"{current_app.config['BASE_URL']}/runs/{run.public_id}"


def workflow_url(wf: Workflow) -> str:
    return f"{current_app.config['BASE_URL']}/teams/{wf.team_id}/workflows/{wf.public_id}"


def last_runs(workflow_ids: list[int]) -> dict[int, Run]:
    """The newest run of each workflow, in one query (the index on (workflow_id, id) serves it)."""
    if not workflow_ids:
        return {}
    newest = (db.session.query(func.max(Run.id)).filter(Run.workflow_id.in_(workflow_ids))
              .group_by(Run.workflow_id))
    return {run.workflow_id: run for run in db.session.query(Run).filter(Run.id.in_(newest)).all()}


def recent_runs(workflow_id: int, count: int) -> list[Run]:
    """The last `count` runs, oldest first (for the duration chart)."""
    runs = (db.session.query(Run).filter(Run.workflow_id == workflow_id).order_by(Run.id.desc())
            .limit(count).all())
    return runs[::-1]


def last_log_lines(run: Run, count: int) -> list[LogLine]:
    """The last `count` stored lines, in order (what a page shows before its websocket connects)."""
    table = RunLogBlock.__table__
    blocks, lines, before = [], 0, None
    while lines < count:  # newest blocks first, a page at a time, until they hold `count` lines
        query = _block_query(run.id)
        if before is not None:
            query = query.where(table.c.last_seq < before)
        page = db.session.execute(query.order_by(table.c.last_seq.desc()).limit(BLOCK_PAGE)).all()
        for block in page:
            blocks.append(block)
            lines += block.last_seq - block.first_seq + 1
            if lines >= count:
                break
        if len(page) < BLOCK_PAGE:
            break
        before = page[-1].last_seq
    out = [line for block in reversed(blocks) for line in _lines(block)]
    return out[-count:] if count else []
