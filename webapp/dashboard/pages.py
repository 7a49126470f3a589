"""Pages: the Workflows tab, a workflow, a run (the notifications' deep-link target)."""
from __future__ import annotations

import re

from flask import abort, redirect, render_template, url_for
from flask_login import current_user, login_required

from ..extensions import db
from ..models import Project, Run
from ..services import cron
from ..services import runs as run_service
from ..services import workflows as wf_service
from ..services.access import Principal
from . import bp

SECRET_NAME = re.compile(r"(SECRET|TOKEN|PASSWORD|PASSWD|KEY|CREDENTIAL|AUTH|PRIVATE|DSN)", re.I)


def principal() -> Principal:
    return Principal(team_ids=frozenset(current_user.team_ids), user_id=current_user.id)


def masked_env(env: dict) -> dict:
    return {k: ("••••••••" if SECRET_NAME.search(k) else v) for k, v in (env or {}).items()}


@bp.get("/")
@login_required
def index():
    team_ids = sorted(current_user.team_ids)
    project = (db.session.query(Project).filter(Project.team_id.in_(team_ids)).order_by(Project.id).first()
               if team_ids else None)
    if project is None:
        abort(404)
    return redirect(url_for("dashboard.workflows", team_id=project.team_id, project_id=project.id))


@bp.get("/teams/<int:team_id>/projects/<int:project_id>/workflows")
@login_required
def workflows(team_id: int, project_id: int):
    project = wf_service.get_project(principal(), team_id, project_id)
    items = wf_service.list_workflows(principal(), team_id, project_id)
    last_runs = {}
    for wf in items:
        last_runs[wf.id] = (db.session.query(Run).filter_by(workflow_id=wf.id)
                            .order_by(Run.id.desc()).first())
    return render_template("dashboard/workflows.html", project=project, workflows=items,
                           last_runs=last_runs, describe=cron.describe)


@bp.get("/runs/<run_id>")
@login_required
def run_page(run_id: str):
    run = db.session.query(Run).filter_by(public_id=run_id).first()
    if run is None:
        abort(404)
    run = run_service.get_run(principal(), run.team_id, run_id)
    retries = db.session.query(Run).filter_by(retry_of_id=run.id).order_by(Run.id).all()
    return render_template("dashboard/run.html", run=run, retries=retries, env=masked_env(run.env))
