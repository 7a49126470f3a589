"""Pages of a project: the Workflows tab, workflow forms and page, run page (the deep-link target)."""
from __future__ import annotations

import json
import shlex

from flask import (Response, abort, current_app, flash, g, has_request_context, redirect, render_template, request,
                   stream_with_context, url_for)
from flask_login import current_user, login_required
from markupsafe import Markup

from .. import cron
from ..extensions import db
from ..models import Project, Run
from ..runoutput import read
from ..schemas import SchemaError, WorkflowCreate, WorkflowUpdate, parse
from ..services import backfills, chains, envgroups
from ..services import channels as channel_service
from ..services import health as health_service
from ..services import hooks, hosts
from ..services import retention, retrying, roles
from ..services import runs as run_service
from ..services import workflows as wf_service
from ..gate import OPEN, current_principal, may, needs, the_run
from ..services.access import Principal
from ..services.budget import RateLimited
from ..services.masking import masked_env
from ..services.errors import ServiceError
from .blueprint import bp
from .forms import FormError, workflow_form, workflow_input

PAGE = 25
TAB_PAGE = 100
NO_JS_LINES = 1000


def principal() -> Principal:
    return current_principal()


bp.app_template_global("may")(may)


def htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


@bp.app_template_global()
def when(moment, relative: bool = False) -> Markup:
    """A time as UTC text in a <time> element; static/app.js shows it in the viewer's time zone
    (or as "3 min ago" when `relative`) and keeps the UTC text on hover."""
    if moment is None:
        return Markup("—")
    rel = " data-relative" if relative else ""
    return Markup(f'<time datetime="{moment.isoformat()}Z"{rel}>{moment.strftime("%Y-%m-%d %H:%M:%S")} UTC</time>')


@bp.app_template_global()
def shell_words(args: list[str]) -> str:
    """A command as a shell would be typed (shlex.join), for reading; the JSON stays for copying."""
    return shlex.join(args)


@bp.app_template_global()
def env_group_uses(run) -> list[dict]:
    """The env group versions a run got, and each group's version now."""
    return envgroups.used_by(run)


@bp.app_template_global()
def url_with(**changes) -> str:
    """This page's URL with its filters kept and `changes` (another page, a cursor) applied."""
    args = {k: v for k, v in request.args.items() if v and k not in changes}
    return url_for(request.endpoint, **(request.view_args or {}), **args, **changes)


@bp.app_template_global()
def waiting(run) -> str | None:
    return hosts.waiting(run)


@bp.app_template_global()
def as_json(value) -> str:
    return json.dumps(value, ensure_ascii=False)


@bp.app_context_processor
def navigation():
    """The team and project switcher, on every page of a signed-in member."""
    if not has_request_context() or not current_user.is_authenticated:  # e.g. emails rendered by a worker
        return {}
    projects = (db.session.query(Project).filter(Project.team_id.in_(current_user.team_ids))
                .order_by(Project.team_id, Project.id).all())
    # a page of no project (Workers) keeps the tabs of the member's first project: a way back
    project = getattr(g, "project", None) or (projects[0] if projects else None)
    silent = health_service.silent_count(project) if project else 0  # one of the member's projects
    disabled = channel_service.disabled_count(project.team_id) if project else 0
    return {"nav_projects": projects, "nav_project": project, "nav_silent": silent, "nav_disabled": disabled}


def load_project(team_id: int, project_id: int) -> Project:
    g.project = wf_service.get_project(principal(), team_id, project_id)
    return g.project


@bp.get("/")
@login_required
@needs(OPEN)
def index():
    team_ids = sorted(current_user.team_ids)
    project = (db.session.query(Project).filter(Project.team_id.in_(team_ids)).order_by(Project.id).first()
               if team_ids else None)
    if project is None:
        return render_template("dashboard/no_team.html")
    return redirect(url_for("dashboard.workflows", team_id=project.team_id, project_id=project.id))


@bp.get("/teams/<int:team_id>/projects/<int:project_id>/workflows")
@login_required
@needs("team.read")
def workflows(team_id: int, project_id: int):
    project = load_project(team_id, project_id)
    page = max(1, request.args.get("page", 1, type=int))
    search, show = request.args.get("q", ""), request.args.get("show", "")
    view = dict(project=project, describe=cron.describe, page=page, per_page=TAB_PAGE, q=search, show=show,
                shows=wf_service.SHOW, filtered=bool(search.strip() or show))
    try:
        total = wf_service.count_workflows(principal(), team_id, project_id, search=search, show=show)
    except ServiceError as e:
        return render_template("dashboard/workflows.html", workflows=[], last_runs={}, total=0, errors=e.fields,
                               **view), 400
    items = wf_service.list_workflows(principal(), team_id, project_id, offset=(page - 1) * TAB_PAGE,
                                      limit=TAB_PAGE, search=search, show=show)
    last_runs = run_service.last_runs([wf.id for wf in items])
    return render_template("dashboard/workflows.html", workflows=items, last_runs=last_runs, total=total,
                           errors={}, **view)


@bp.get("/teams/<int:team_id>/projects/<int:project_id>/runs")
@login_required
@needs("team.read")
def runs_tab(team_id: int, project_id: int):
    """Every run of the project, newest first, filtered by status, workflow, trigger and time range
    (kept in the URL); running and queued rows update themselves."""
    project = load_project(team_id, project_id)
    choices = wf_service.workflow_choices(principal(), team_id, project_id)
    try:
        filters = run_service.RunFilter.from_args(request.args)
    except ServiceError as e:
        return render_template("dashboard/runs.html", project=project, runs=[], cursor=None, choices=choices,
                               filters=run_service.RunFilter(), errors=e.fields, ranges=run_service.RANGES), 400
    runs, cursor = run_service.project_runs(principal(), team_id, project_id, filters, TAB_PAGE // 2,
                                            request.args.get("cursor") or None)
    return render_template("dashboard/runs.html", project=project, runs=runs, cursor=cursor, choices=choices,
                           filters=filters, errors={}, ranges=run_service.RANGES,
                           pruned_before=retention.pruned_before(team_id))


@bp.get("/runs/<run_id>/row")
@login_required
@needs("team.read")
def run_row(run_id: str):
    """One row of the Runs tab (htmx polls it while the run is queued or running)."""
    return render_template("dashboard/_partials/run_row.html", r=the_run(run_id))


@bp.get("/teams/<int:team_id>/projects/<int:project_id>/health")
@login_required
@needs("team.read")
def health(team_id: int, project_id: int):
    """Per workflow: success rate and durations over 24 h and 7 days, last success, schedule lag."""
    project = load_project(team_id, project_id)
    rows = health_service.project_health(principal(), team_id, project_id)
    page = max(1, request.args.get("page", 1, type=int))
    return render_template("dashboard/health.html", project=project, rows=rows[(page - 1) * TAB_PAGE:page * TAB_PAGE],
                           page=page, total=len(rows), per_page=TAB_PAGE, describe=cron.describe)


def _ids_by_name(team_id: int, project_id: int) -> dict[str, str]:
    return {name: public_id for public_id, name in wf_service.workflow_choices(principal(), team_id, project_id)}


@bp.route("/teams/<int:team_id>/projects/<int:project_id>/workflows/new", methods=["GET", "POST"])
@login_required
@needs("workflow.create")
def new_workflow(team_id: int, project_id: int):
    project = load_project(team_id, project_id)
    values, errors = workflow_form(None), {}
    if request.method == "POST":
        values = request.form.to_dict()
        try:
            body = parse(WorkflowCreate, workflow_input(request.form, project_id=project.id,
                                                        ids_by_name=_ids_by_name(team_id, project.id)))
            wf = wf_service.create_workflow(principal(), team_id, project.id, body)
            flash(f"Created {wf.name}.")
            return redirect(url_for("dashboard.workflow_page", team_id=team_id, workflow_id=wf.public_id))
        except (SchemaError, FormError) as e:
            errors = e.fields
        except ServiceError as e:
            errors = e.fields or {"form": e.message}
    status = 400 if errors else 200
    return render_template("dashboard/workflow_form.html", project=project, wf=None, values=values,
                           errors=errors), status


@bp.route("/teams/<int:team_id>/workflows/<workflow_id>/edit", methods=["GET", "POST"])
@login_required
@needs("workflow.update")
def edit_workflow(team_id: int, workflow_id: str):
    wf = wf_service.get_workflow(principal(), team_id, workflow_id)
    g.project = wf.project
    values, errors = workflow_form(wf), {}
    if request.method == "POST":
        values = request.form.to_dict()
        try:
            data = workflow_input(request.form, ids_by_name=_ids_by_name(team_id, wf.project_id))
            body = parse(WorkflowUpdate, data)
            wf_service.update_workflow(principal(), team_id, workflow_id, body)
            flash("Saved.")
            return redirect(url_for("dashboard.workflow_page", team_id=team_id, workflow_id=workflow_id))
        except (SchemaError, FormError) as e:
            errors = e.fields
        except ServiceError as e:
            errors = e.fields or {"form": e.message}
    return render_template("dashboard/workflow_form.html", project=wf.project, wf=wf, values=values,
                           errors=errors), 400 if errors else 200


@bp.post("/teams/<int:team_id>/workflows/<workflow_id>/delete")
@login_required
@needs("workflow.delete")
def delete_workflow(team_id: int, workflow_id: str):
    wf = wf_service.get_workflow(principal(), team_id, workflow_id)
    project_id = wf.project_id
    wf_service.delete_workflow(principal(), team_id, workflow_id)
    flash(f"Deleted {wf.name}. Its runs in flight finish; it will not fire again.")
    return redirect(url_for("dashboard.workflows", team_id=team_id, project_id=project_id))


@bp.post("/teams/<int:team_id>/workflows/<workflow_id>/pause")
@login_required
@needs("workflow.update")
def pause_workflow(team_id: int, workflow_id: str):
    """Pause with a note (and, if asked, manual runs refused too), or resume (catching up if asked)."""
    if request.form.get("paused") == "false":
        data = {"paused": False, "catchUp": request.form.get("catchUp") == "on"}
    else:
        data = {"paused": True, "pauseNote": request.form.get("pauseNote", "").strip() or None,
                "pauseTriggers": request.form.get("pauseTriggers") == "on"}
    try:
        wf = wf_service.update_workflow(principal(), team_id, workflow_id, parse(WorkflowUpdate, data))
        flash(f"Paused {wf.name}." if wf.paused_at else f"Resumed {wf.name}.")
    except (SchemaError, ServiceError) as e:
        flash("Not paused: " + "; ".join(f"{k}: {v}" for k, v in (e.fields or {"form": e.message}).items()))
    return redirect(url_for("dashboard.workflow_page", team_id=team_id, workflow_id=workflow_id))


@bp.get("/schedule-preview")
@login_required
@needs(OPEN)
def schedule_preview():
    """The next five fire times of a schedule being typed (an htmx partial)."""
    expr = request.args.get("schedule", "").strip()
    tz = request.args.get("timezone", "").strip() or "UTC"
    problem = cron.validate(expr) if expr else None
    problem = problem or cron.validate_timezone(tz)
    times = []
    if expr and not problem:
        times = cron.next_instants(expr, tz, run_service.utcnow(), 5)
    return render_template("dashboard/_partials/schedule_preview.html", expr=expr, tz=tz, problem=problem,
                           times=times, words=cron.describe(expr) if expr and not problem else None)


@bp.post("/teams/<int:team_id>/workflows/<workflow_id>/run")
@login_required
@needs("run.trigger")
def run_now(team_id: int, workflow_id: str):
    try:
        run = run_service.trigger_workflow(principal(), team_id, workflow_id, {}).run
    except RateLimited as e:
        if not htmx():
            raise
        response = Response(render_template("dashboard/_partials/rate_limited.html", message=e.message), 429)
        response.headers["Retry-After"] = str(e.state.reset_in)
        return response
    if htmx():
        return render_template("dashboard/_partials/run_started.html", run=run)
    return redirect(url_for("dashboard.run_page", run_id=run.public_id))


@bp.get("/teams/<int:team_id>/workflows/<workflow_id>")
@login_required
@needs("team.read")
def workflow_page(team_id: int, workflow_id: str, **shown):
    """`shown`: a webhook's token URL and secret, the once they are shown (make_webhook); a backfill
    form's errors and values (dashboard/backfills.py)."""
    wf = wf_service.get_workflow(principal(), team_id, workflow_id)
    g.project = wf.project
    runs, cursor = run_service.list_runs(principal(), team_id, workflow_id, PAGE, request.args.get("cursor") or None)
    recent = run_service.recent_runs(wf.id, 30)
    listed = backfills.list_backfills(principal(), team_id, workflow_id)
    return render_template("dashboard/workflow.html", wf=wf, runs=runs, cursor=cursor, recent=recent,
                           pruned_before=retention.pruned_before(team_id),
                           backfills=listed, backfill_progress=backfills.progress_of(listed),
                           backfill_state=backfills.state, env_groups=envgroups.names_of(wf.env_group_ids),
                           describe=cron.describe, env=masked_env(wf.env), live_pools=hosts.live_pools(),
                           retry_rules=retrying.describe(wf), chain=chains.neighbours(wf),
                           hook=hooks.hook_for(wf), **shown)


@bp.post("/teams/<int:team_id>/workflows/<workflow_id>/webhook")
@login_required
@needs("webhook.create")
def make_webhook(team_id: int, workflow_id: str):
    """Make or rotate the workflow's webhook; its URL (and secret) shown on this answer only."""
    _, token, secret = hooks.make_hook(principal(), team_id, workflow_id, request.form.get("signed") == "on")
    return workflow_page(team_id, workflow_id, new_hook_url=hooks.hook_url(token), new_hook_secret=secret)


@bp.post("/teams/<int:team_id>/workflows/<workflow_id>/webhook/revoke")
@login_required
@needs("webhook.revoke")
def revoke_webhook(team_id: int, workflow_id: str):
    hooks.revoke_hook(principal(), team_id, workflow_id)
    flash("Webhook revoked: its URL answers 410 from now on.")
    return redirect(url_for("dashboard.workflow_page", team_id=team_id, workflow_id=workflow_id))


@bp.get("/workers")
@login_required
@needs("team.read")
def workers():
    """The worker hosts the viewer's teams may use (hosts of other teams' pools are not shown),
    their pools and slot counts, and only the viewer's own runs among those in flight."""
    return render_template("dashboard/workers.html", hosts=hosts.views_for(set(current_user.team_ids)),
                           lost_after=current_app.config["HOST_LOST_SEC"])


@bp.post("/workers/<host>/forget")
@login_required
@needs("host.forget")
def forget_host(host: str):
    """A lost host whose runs in flight are all the viewer's teams' may be forgotten from here;
    any other lost host only by an operator (`flask hosts forget`)."""
    view = next((v for v in hosts.views_for(roles.teams_where(principal(), "host.forget")) if v.host == host), None)
    if view is None:
        abort(404)
    if not view.forgettable:
        flash(f"{host} cannot be forgotten from here: it is {view.state}" + (
            "" if view.state != hosts.LOST else ", and runs of other teams are on it; an operator can run "
            f"flask hosts forget {host}"))
        return redirect(url_for("dashboard.workers"))
    failed = hosts.forget(host)
    flash(f"{host} forgotten: {failed} run{'s' if failed != 1 else ''} failed “worker host lost” and retried by "
          "their budget")
    return redirect(url_for("dashboard.workers"))


@bp.get("/runs/<run_id>")
@login_required
@needs("team.read")
def run_page(run_id: str):
    run = the_run(run_id)
    g.project = run.workflow.project
    retries = db.session.query(Run).filter_by(retry_of_id=run.id).order_by(Run.id).all()
    triggered = db.session.query(Run).filter_by(triggered_by_id=run.id).order_by(Run.id).all()
    if htmx():
        return render_template("dashboard/_partials/run_summary.html", run=run, retries=retries, triggered=triggered)
    # Readable without JavaScript: the stored tail is in the page; the websocket then replaces it.
    lines = read.last_log_lines(run, NO_JS_LINES)
    return render_template("dashboard/run.html", run=run, retries=retries, triggered=triggered, env=masked_env(run.env),
                           lines=lines, more=len(lines) == NO_JS_LINES,
                           deliveries=channel_service.deliveries_for_run(run))


@bp.post("/runs/<run_id>/cancel")
@login_required
@needs("run.cancel")
def cancel_run(run_id: str):
    run = the_run(run_id)
    try:
        run_service.cancel_run(principal(), run)
    except ServiceError as e:
        flash(e.message)
    return _back_to_run(run_id)


@bp.post("/runs/<run_id>/retry")
@login_required
@needs("run.retry")
def retry_run(run_id: str):
    run = the_run(run_id)
    try:
        new = run_service.retry_run(principal(), run.team_id, run_id).run
    except ServiceError as e:
        flash(e.message)
        return _back_to_run(run_id)
    if htmx():
        return Response(status=204, headers={"HX-Redirect": url_for("dashboard.run_page", run_id=new.public_id)})
    return redirect(url_for("dashboard.run_page", run_id=new.public_id))


def _back_to_run(run_id: str):
    if htmx():
        return run_page(run_id)
    return redirect(url_for("dashboard.run_page", run_id=run_id))


@bp.get("/runs/<run_id>/log.txt")
@login_required
@needs("team.read")
def download_log(run_id: str):
    run = the_run(run_id)
    return Response(stream_with_context(read.log_text(run.id)), mimetype="text/plain",
                    headers={"Content-Disposition": f'attachment; filename="{run.public_id}.log"'})
