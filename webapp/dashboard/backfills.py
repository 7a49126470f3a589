"""A workflow page's backfills: ask for one (a past range of the schedule), cancel one."""
from __future__ import annotations

from flask import flash, redirect, request, url_for
from flask_login import login_required

from ..gate import needs
from ..schemas import BackfillCreate, SchemaError, parse
from ..services import backfills as service
from ..services.errors import ServiceError
from .blueprint import bp
from .pages import principal, workflow_page


def _moment(value: str) -> str:
    """A datetime-local field ("2026-12-01T09:00") is a UTC time: the form says so."""
    value = value.strip()
    return value + "Z" if value and "Z" not in value and "+" not in value[10:] else value


@bp.post("/teams/<int:team_id>/workflows/<workflow_id>/backfill")
@login_required
@needs("backfill.create")
def create_backfill(team_id: int, workflow_id: str):
    form = {"from": _moment(request.form.get("from", "")), "to": _moment(request.form.get("to", "")),
            "maxConcurrent": request.form.get("maxConcurrent", "1").strip() or "1"}
    if form["maxConcurrent"].isdigit():
        form["maxConcurrent"] = int(form["maxConcurrent"])
    try:
        bf = service.create_backfill(principal(), team_id, workflow_id, parse(BackfillCreate, form))
    except (SchemaError, ServiceError) as e:
        errors = e.fields or {"form": e.message}
        return workflow_page(team_id, workflow_id, backfill_errors=errors, backfill_values=request.form), 400
    flash(f"Backfill started: {bf.total} instant{'s' if bf.total != 1 else ''}, at most {bf.max_concurrent} at once.")
    return redirect(url_for("dashboard.workflow_page", team_id=team_id, workflow_id=workflow_id) + "#backfills")


@bp.post("/teams/<int:team_id>/backfills/<backfill_id>/cancel")
@login_required
@needs("backfill.cancel")
def cancel_backfill(team_id: int, backfill_id: str):
    bf = service.get_backfill(principal(), team_id, backfill_id)
    try:
        service.cancel_backfill(principal(), bf)
        flash("Backfill cancelled: no more of its instants run, and its runs in flight are cancelled.")
    except ServiceError as e:
        flash(e.message)
    return redirect(url_for("dashboard.workflow_page", team_id=team_id, workflow_id=bf.workflow.public_id)
                    + "#backfills")
