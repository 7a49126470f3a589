"""Run routes."""
from __future__ import annotations

from flask import Response, g, jsonify, request, stream_with_context

from ..models.base import isoformat
from ..runoutput import read
from ..services import idempotency
from ..services import runs as service
from ..gate import masked, needs
from ..services.errors import Invalid
from .blueprint import bp
from .serialize import answer, fired_answer, line_json, run_shape
from .shapes import RunList


@bp.get("/workflows/<int:team_id>/workflows/<workflow_id>/runs")
@needs("team.read")
def list_runs(team_id: int, workflow_id: str):
    limit = _int_arg("limit", 20, 1, service.MAX_PAGE)
    runs, cursor = service.list_runs(g.principal, team_id, workflow_id, limit, request.args.get("cursor") or None)
    hide = masked(team_id)
    return answer(RunList(runs=[run_shape(r, hide) for r in runs], nextCursor=cursor))


@bp.get("/workflows/<int:team_id>/workflows/runs/<run_id>")
@needs("team.read")
def get_run(team_id: int, run_id: str):
    return answer(run_shape(service.get_run(g.principal, team_id, run_id), masked(team_id)))


@bp.get("/workflows/<int:team_id>/workflows/runs/<run_id>/logs")
@needs("team.read")
def get_logs(team_id: int, run_id: str):
    """A page of lines (`afterSeq`, `limit` up to LOG_PAGE_MAX); `?format=text` streams them all
    from the database in chunks, so that no log, however long, is held in memory at once."""
    run = service.get_run(g.principal, team_id, run_id)
    after = _int_arg("afterSeq", -1, -1, 2**31 - 1)
    if request.args.get("format") == "text":
        run_pk = run.id
        return Response(stream_with_context(read.log_text(run_pk, after)), mimetype="text/plain")
    limit = _int_arg("limit", read.LOG_PAGE_MAX, 1, read.LOG_PAGE_MAX)
    lines = read.log_lines(run, after_seq=after, limit=limit + 1)
    more = len(lines) > limit
    lines = lines[:limit]
    return jsonify({"runId": run.public_id, "lines": [line_json(line) for line in lines],
                    "truncated": run.log_dropped_bytes > 0, "droppedBytes": run.log_dropped_bytes,
                    "nextAfterSeq": lines[-1].seq if more else None, "prunedAt": isoformat(run.log_pruned_at)})


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise Invalid(f"{name} is a whole number from {low} to {high}", {name: f"{low} to {high}"})
    return value


@bp.post("/workflows/<int:team_id>/workflows/runs/<run_id>/cancel")
@needs("run.cancel")
def cancel_run(team_id: int, run_id: str):
    run = service.get_run(g.principal, team_id, run_id)
    return answer(run_shape(service.cancel_run(g.principal, run)), 202)


@bp.post("/workflows/<int:team_id>/workflows/runs/<run_id>/retry")
@needs("run.retry")
def retry_run(team_id: int, run_id: str):
    key = idempotency.valid_key(request.headers.get(idempotency.HEADER))
    return fired_answer(service.retry_run(g.principal, team_id, run_id, key))
