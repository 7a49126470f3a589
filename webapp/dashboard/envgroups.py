"""The team's env groups: list and make them, change, delete (services/envgroups.py)."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import login_required

from ..gate import needs
from ..schemas import EnvGroupChange, EnvGroupCreate, SchemaError, parse
from ..services import envgroups as service
from ..services.errors import ServiceError
from .blueprint import bp
from .forms import FormError, parse_env
from .pages import principal
from .settings import team_page


def _entries(form) -> list[dict]:
    """The form's two textareas (KEY=value lines): variables, then secrets (write-only)."""
    shown = parse_env(form.get("variables", ""))
    try:
        hidden = parse_env(form.get("secrets", ""))
    except FormError as e:
        raise FormError({"secrets": e.fields["env"]}) from None
    return ([{"key": k, "value": v, "secret": False} for k, v in shown.items()]
            + [{"key": k, "value": v, "secret": True} for k, v in hidden.items()])


def _errors(e: Exception) -> dict:
    if isinstance(e, FormError):
        return {"variables" if "env" in e.fields else k: v for k, v in e.fields.items()}
    return e.fields or {"form": e.message}


@bp.route("/teams/<int:team_id>/env-groups", methods=["GET", "POST"])
@login_required
@needs("team.read", post="envgroup.create")
def env_groups(team_id: int):
    team = team_page(team_id)
    errors, values = {}, {}
    if request.method == "POST":
        values = {"name": request.form.get("name", "").strip(), "variables": request.form.get("variables", "")}
        try:
            group = service.create_group(principal(), team_id,
                                         parse(EnvGroupCreate, {"name": values["name"], "entries": _entries(request.form)}))
            flash(f"Made the env group {group.name}: its secrets are stored encrypted and never shown again.")
            return redirect(url_for("dashboard.env_group", team_id=team_id, name=group.name))
        except (FormError, SchemaError, ServiceError) as e:
            errors = _errors(e)
    groups = service.list_groups(principal(), team_id)
    return render_template("dashboard/env_groups.html", team=team, groups=groups, using=service.users_of(team_id),
                           version_of=service.version_of, errors=errors, values=values), 400 if errors else 200


@bp.route("/teams/<int:team_id>/env-groups/<name>", methods=["GET", "POST"])
@login_required
@needs("team.read", post="envgroup.update")
def env_group(team_id: int, name: str):
    team = team_page(team_id)
    group = service.get_group(principal(), team_id, name)
    errors, values = {}, {}
    if request.method == "POST":
        values = {"variables": request.form.get("variables", ""), "remove": request.form.get("remove", "")}
        try:
            body = parse(EnvGroupChange, {"entries": _entries(request.form),
                                          "remove": request.form.get("remove", "").replace(",", " ").split()})
            group = service.change_group(principal(), team_id, name, body)
            flash(f"Saved {group.name} as version {group.version}. Runs fired before keep the version they used.")
            return redirect(request.path)
        except (FormError, SchemaError, ServiceError) as e:
            errors = _errors(e)
    return render_template("dashboard/env_group.html", team=team, group=group, latest=service.version_of(group),
                           using=service.users(group), errors=errors, values=values), 400 if errors else 200


@bp.post("/teams/<int:team_id>/env-groups/<name>/delete")
@login_required
@needs("envgroup.delete")
def delete_env_group(team_id: int, name: str):
    try:
        service.delete_group(principal(), team_id, name)
    except ServiceError as e:
        flash(f"Not deleted: {e.message}")
        return redirect(url_for("dashboard.env_group", team_id=team_id, name=name))
    flash(f"Deleted the env group {name}. Runs that used it keep its values for their retries.")
    return redirect(url_for("dashboard.env_groups", team_id=team_id))
