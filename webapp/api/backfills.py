"""Backfill routes: run a past range of a workflow's schedule, follow it, cancel it."""
from __future__ import annotations

from flask import g

from ..gate import needs
from ..schemas import BackfillCreate, parse
from ..services import backfills as service
from .blueprint import bp
from .body import json_body
from .serialize import answer, backfill_shape
from .shapes import BackfillList


def _answer(bf, status: int = 200):
    return answer(backfill_shape(bf, service.progress_of([bf])[bf.id]), status)


@bp.post("/workflows/<int:team_id>/workflows/<workflow_id>/backfill")
@needs("backfill.create")
def create_backfill(team_id: int, workflow_id: str):
    body = parse(BackfillCreate, json_body())
    return _answer(service.create_backfill(g.principal, team_id, workflow_id, body), 201)


@bp.get("/workflows/<int:team_id>/workflows/<workflow_id>/backfills")
@needs("team.read")
def list_backfills(team_id: int, workflow_id: str):
    found = service.list_backfills(g.principal, team_id, workflow_id)
    counts = service.progress_of(found)
    return answer(BackfillList(backfills=[backfill_shape(bf, counts[bf.id]) for bf in found]))


@bp.get("/workflows/<int:team_id>/workflows/backfills/<backfill_id>")
@needs("team.read")
def get_backfill(team_id: int, backfill_id: str):
    return _answer(service.get_backfill(g.principal, team_id, backfill_id))


@bp.post("/workflows/<int:team_id>/workflows/backfills/<backfill_id>/cancel")
@needs("backfill.cancel")
def cancel_backfill(team_id: int, backfill_id: str):
    bf = service.get_backfill(g.principal, team_id, backfill_id)
    return _answer(service.cancel_backfill(g.principal, bf), 202)
