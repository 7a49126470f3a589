"""Run routes."""
from __future__ import annotations

from flask import Response, g, jsonify, request

from ..services import runs as service
from ..services.errors import Invalid
from . import bp
from .serialize import line_json, run_json
from .workflows import trigger_limit


@bp.get("/workflows/<int:team_id>/workflows/<workflow_id>/runs")
def list_runs(team_id: int, workflow_id: str):
    raw_limit = request.args.get("limit", "20")
    if not raw_limit.isdigit():
        raise Invalid("limit is a whole number from 1 to 100", {"limit": "a whole number from 1 to 100"})
    runs, cursor = service.list_runs(g.principal, team_id, workflow_id, int(raw_limit),
                                     request.args.get("cursor") or None)
    return jsonify({"runs": [run_json(r) for r in runs], "nextCursor": cursor})


@bp.get("/workflows/<int:team_id>/workflows/runs/<run_id>")
def get_run(team_id: int, run_id: str):
    return jsonify(run_json(service.get_run(g.principal, team_id, run_id)))


@bp.get("/workflows/<int:team_id>/workflows/runs/<run_id>/logs")
def get_logs(team_id: int, run_id: str):
    run = service.get_run(g.principal, team_id, run_id)
    lines = service.log_lines(run)
    if request.args.get("format") == "text":
        text = "".join(line.text + "\n" for line in lines)
        return Response(text, mimetype="text/plain")
    return jsonify({"runId": run.public_id, "lines": [line_json(line) for line in lines],
                    "truncated": run.log_dropped_bytes > 0, "droppedBytes": run.log_dropped_bytes})


@bp.post("/workflows/<int:team_id>/workflows/runs/<run_id>/cancel")
def cancel_run(team_id: int, run_id: str):
    return jsonify(run_json(service.cancel_run(g.principal, team_id, run_id))), 202


@bp.post("/workflows/<int:team_id>/workflows/runs/<run_id>/retry")
@trigger_limit
def retry_run(team_id: int, run_id: str):
    return jsonify(run_json(service.retry_run(g.principal, team_id, run_id))), 202
