"""Chains: a workflow lists `after` edges (an upstream workflow of the same project, and the final
state `on` of its runs that fires this one). When an upstream run reaches that state, exactly one
run of each downstream workflow is made (trigger `chain`, `triggeredBy` the upstream run, its id,
status and exit code in WORKFLOW_UPSTREAM_RUN_ID, _STATUS, _EXIT_CODE), in the transaction of the
upstream's terminal status (webapp/services/lifecycle.py), the outbox the automatic retries use:
a process killed anywhere leaves both or neither, and the sweep hands the run over. A unique
(workflow, triggered_by) makes a second run of one upstream run impossible. With `join: "all"` a
downstream waits for one qualifying end of every upstream since its last chain run."""
from __future__ import annotations

from sqlalchemy import func, or_, select, update

from ..extensions import db
from ..models import Run, Workflow, WorkflowEdge
from ..models.base import utcnow
from ..schemas import Edge
from ..vocabulary import ChainOn, RunStatus, Trigger
from .errors import Invalid

UPSTREAM_ENV = ("WORKFLOW_UPSTREAM_RUN_ID", "WORKFLOW_UPSTREAM_STATUS", "WORKFLOW_UPSTREAM_EXIT_CODE")


def set_edges(wf: Workflow, edges: list[Edge]) -> None:
    """Replace the upstreams of `wf` (flushed, in the caller's transaction), or Invalid naming
    `after`: an unknown or deleted workflow, another project's, itself, twice, or a cycle."""
    by_id: dict[str, Workflow] = {}
    for edge in edges:
        up = db.session.query(Workflow).filter_by(public_id=edge.workflow).first()
        if up is None or up.project_id != wf.project_id or up.deleted_at is not None:
            raise Invalid("an upstream workflow is not in this project",
                          {"after": f"no workflow {edge.workflow[:40]} in this project"})
        if up.id == wf.id:
            raise Invalid("a workflow cannot run after itself", {"after": "a workflow cannot run after itself"})
        if edge.workflow in by_id:
            raise Invalid("an upstream is listed twice", {"after": f"{edge.workflow} is listed twice"})
        by_id[edge.workflow] = up
    db.session.flush()  # a new workflow needs its id
    cycle = _cycle(wf, list(by_id.values()))
    if cycle:
        raise Invalid("the chain would be a cycle", {"after": "would make a cycle: " + " → ".join(cycle)})
    old = db.session.query(WorkflowEdge).filter_by(downstream_id=wf.id)
    made = dict(old.with_entities(WorkflowEdge.upstream_id, WorkflowEdge.created_at).all())  # an edge kept keeps its age
    old.delete()
    now = utcnow()
    db.session.add_all(WorkflowEdge(downstream_id=wf.id, upstream_id=by_id[e.workflow].id, on_state=e.on,
                                    position=i, created_at=made.get(by_id[e.workflow].id, now))
                       for i, e in enumerate(edges))
    db.session.flush()


def _cycle(wf: Workflow, upstreams: list[Workflow]) -> list[str] | None:
    """The names along a cycle the new edges would close (upstream → … → wf → upstream), or None:
    one walk down the existing edges from `wf`, looking for one of its new upstreams."""
    targets = {up.id for up in upstreams}
    parents: dict[int, int] = {wf.id: 0}
    frontier = [wf.id]
    while frontier:
        rows = db.session.query(WorkflowEdge.upstream_id, WorkflowEdge.downstream_id).filter(
            WorkflowEdge.upstream_id.in_(frontier), WorkflowEdge.downstream_id != wf.id).all()
        frontier = []
        for up_id, down_id in rows:
            if down_id in parents:
                continue
            parents[down_id] = up_id
            if down_id in targets:
                path = [down_id]
                while path[-1] != wf.id:
                    path.append(parents[path[-1]])
                names = dict(db.session.query(Workflow.id, Workflow.name).filter(Workflow.id.in_(path)).all())
                return [names[i] for i in reversed(path)] + [names[wf.id]]
            frontier.append(down_id)
    return None


def edges_of(wf: Workflow) -> list[Edge]:
    """The API's `after` of `wf`, in the order it was given."""
    return edges_for([wf.id]).get(wf.id, [])


def edges_for(workflow_ids: list[int]) -> dict[int, list[Edge]]:
    """The `after` of each of the workflows, in one query (a list of workflows costs one more
    query, not one per workflow). A deleted upstream fires nothing more, and is left out."""
    rows = (db.session.query(WorkflowEdge.downstream_id, Workflow.public_id, WorkflowEdge.on_state)
            .join(Workflow, WorkflowEdge.upstream_id == Workflow.id)
            .filter(WorkflowEdge.downstream_id.in_(workflow_ids), Workflow.deleted_at.is_(None))
            .order_by(WorkflowEdge.downstream_id, WorkflowEdge.position).all()) if workflow_ids else []
    edges: dict[int, list[Edge]] = {}
    for down_id, public_id, on in rows:
        edges.setdefault(down_id, []).append(Edge(workflow=public_id, on=on))
    return edges


def neighbours(wf: Workflow) -> tuple[list[tuple[Workflow, str]], list[tuple[Workflow, str]]]:
    """(upstreams, downstreams) of `wf` that are not deleted, each with its edge's `on`."""
    def live(query):
        return [(w, on) for w, on in query.filter(Workflow.deleted_at.is_(None)).order_by(Workflow.name).all()]
    ups = db.session.query(Workflow, WorkflowEdge.on_state).join(WorkflowEdge, WorkflowEdge.upstream_id == Workflow.id)
    downs = db.session.query(Workflow, WorkflowEdge.on_state).join(WorkflowEdge, WorkflowEdge.downstream_id == Workflow.id)
    return (live(ups.filter(WorkflowEdge.downstream_id == wf.id)),
            live(downs.filter(WorkflowEdge.upstream_id == wf.id)))


def reached(run: Run, retried: bool) -> tuple[str, ...]:
    """The `on` states a terminal run reached: none while a retry follows it, none when cancelled."""
    if run.status == RunStatus.SUCCEEDED:
        return ChainOn.SUCCEEDED, ChainOn.FINISHED
    if run.status in (RunStatus.FAILED, RunStatus.TIMED_OUT):
        return () if retried else (ChainOn.FAILED, ChainOn.FINISHED)
    return ()  # cancelled: a person's stop fires nothing


def fire_downstream(run: Run, states: tuple[str, ...], fire) -> list[Run]:
    """The chain runs of `run`'s downstream workflows whose edge names one of `states`, added to
    the session by `fire` (services.runs.fire, passed in: this module sits below services.runs).
    A deleted downstream, or one paused with pauseTriggers, is not fired."""
    if not states:
        return []
    downstream = (db.session.query(Workflow).join(WorkflowEdge, WorkflowEdge.downstream_id == Workflow.id)
                  .filter(WorkflowEdge.upstream_id == run.workflow_id, WorkflowEdge.on_state.in_(states),
                          Workflow.deleted_at.is_(None)).order_by(Workflow.id).all())
    made = []
    for wf in downstream:
        if wf.paused_at is not None and wf.pause_triggers:
            continue
        if wf.chain_join == "all" and not _joined(wf, run):
            continue
        env = {**(wf.env or {}), **dict(zip(UPSTREAM_ENV, (run.public_id, run.status,
                                                           "" if run.exit_code is None else str(run.exit_code))))}
        made.append(fire(wf, Trigger.CHAIN, env, triggered_by=run))
    return made


def _joined(wf: Workflow, run: Run) -> bool:
    """Join "all": every other live upstream of `wf` has a qualifying end since its edge was made
    and since the last chain run of `wf` (`run`'s own qualifies: its edge was selected by it).
    The downstream's row is written first and stays locked to the commit (PostgreSQL's row lock,
    SQLite's write lock): of two upstreams ending at once, the second to lock sees the first's
    end committed, and only it fires."""
    db.session.execute(update(Workflow).where(Workflow.id == wf.id).values(chain_join=Workflow.chain_join))
    last = db.session.scalar(select(func.max(Run.queued_at)).where(Run.workflow_id == wf.id,
                                                                   Run.trigger == Trigger.CHAIN))
    edges = (db.session.query(WorkflowEdge).join(Workflow, WorkflowEdge.upstream_id == Workflow.id)
             .filter(WorkflowEdge.downstream_id == wf.id, WorkflowEdge.upstream_id != run.workflow_id,
                     Workflow.deleted_at.is_(None)).all())
    for edge in edges:
        since = max(edge.created_at, last) if last else edge.created_at
        ended = db.session.scalar(select(Run.id).where(
            Run.workflow_id == edge.upstream_id, Run.finished_at > since, _qualifies(edge.on_state)).limit(1))
        if ended is None:
            return False
    return True


def _qualifies(on: str):
    """The runs whose end fires an edge `on` (a failure once its retries are spent)."""
    succeeded = Run.status == RunStatus.SUCCEEDED
    failed = Run.status.in_((RunStatus.FAILED, RunStatus.TIMED_OUT)) & Run.retry_decision.like("not retried%")
    return {ChainOn.SUCCEEDED: succeeded, ChainOn.FAILED: failed}.get(on, or_(succeeded, failed))
