"""Settings pages: environments and registry credentials (per project), new projects, notification
channels and API keys (per team)."""
from __future__ import annotations

from flask import flash, g, redirect, render_template, request, url_for
from flask_login import login_required

from ..extensions import db
from ..gate import needs
from ..models import Team
from ..models.base import utcnow
from ..schemas import ChannelCreate, EnvironmentCreate, ProjectCreate, RegistryCredentialCreate, SchemaError, parse
from ..services import channels as channel_service
from ..services import keys as key_service
from ..services import projects as project_service
from ..services import quotas, roles
from ..services import registry as registry_service
from ..services.access import require_team
from ..services.budget import RateLimited
from ..services.errors import Invalid, ServiceError
from ..vocabulary import ChannelKind, EventKind
from . import reveal
from .blueprint import bp
from .pages import load_project, principal


@bp.route("/teams/<int:team_id>/projects/<int:project_id>/settings", methods=["GET", "POST"])
@login_required
@needs("team.read", post="project.update")
def project_settings(team_id: int, project_id: int):
    """The project's environments, with a form for another; and a form for a new project."""
    project = load_project(team_id, project_id)
    errors, values = {}, {}
    if request.method == "POST":
        form = request.form.get("form", "environment")
        values = {f"{form}_name": request.form.get("name", "")}
        try:
            if form == "project":
                body = parse(ProjectCreate, {"name": request.form.get("name", "")})
                created = project_service.create_project(principal(), team_id, body.name)
                flash(f"Created the project {created.name}, with its Production environment.")
                return redirect(url_for("dashboard.workflows", team_id=team_id, project_id=created.id))
            body = parse(EnvironmentCreate, {"name": request.form.get("name", "")})
            env = project_service.create_environment(principal(), team_id, project.id, body.name)
            flash(f"Added the environment {env.name}.")
            return redirect(request.path)
        except (SchemaError, ServiceError) as e:
            message = (e.fields or {}).get("name") or e.message
            errors = {f"{form}_name": message}
    return render_template("dashboard/project.html", project=project, errors=errors, values=values,
                           limits=quotas.usage(team_id)), 400 if errors else 200


@bp.route("/teams/<int:team_id>/projects/<int:project_id>/registry-credentials", methods=["GET", "POST"])
@login_required
@needs("team.read", post="registry.create")
def registry_credentials(team_id: int, project_id: int):
    project = load_project(team_id, project_id)
    errors, values = {}, {}
    if request.method == "POST":
        values = {k: v for k, v in request.form.items() if k != "password"}
        try:
            body = parse(RegistryCredentialCreate, {k: request.form.get(k, "").strip() if k != "password"
                                                    else request.form.get(k, "")
                                                    for k in ("registry", "username", "password")})
            registry_service.create_credential(principal(), team_id, project.id, body)
            flash(f"Saved the credential for {body.registry}. The password is stored encrypted and never shown again.")
            return redirect(request.path)
        except SchemaError as e:
            errors = e.fields
        except ServiceError as e:
            errors = e.fields or {"registry": e.message}
    creds = registry_service.list_credentials(principal(), team_id, project.id)
    return render_template("dashboard/registry.html", project=project, creds=creds, errors=errors,
                           values=values), 400 if errors else 200


@bp.post("/teams/<int:team_id>/projects/<int:project_id>/registry-credentials/<int:cred_id>/delete")
@login_required
@needs("registry.delete")
def delete_registry_credential(team_id: int, project_id: int, cred_id: int):
    registry_service.delete_credential(principal(), team_id, project_id, cred_id)
    flash("Deleted the credential.")
    return redirect(url_for("dashboard.registry_credentials", team_id=team_id, project_id=project_id))


def team_page(team_id: int) -> Team:
    """A team-wide page's team (its first project in the tabs)."""
    require_team(principal(), team_id)
    team = db.session.get(Team, team_id)
    g.project = team.projects[0] if team.projects else None
    return team


@bp.route("/teams/<int:team_id>/notifications", methods=["GET", "POST"])
@login_required
@needs("team.read", post="channel.create")
def notifications(team_id: int):
    team = team_page(team_id)
    errors, values, secret = {}, {"events": [EventKind.FAILED]}, None
    if request.method == "POST":
        values = {"kind": request.form.get("kind", ""), "name": request.form.get("name", ""),
                  "target": request.form.get("target", ""), "events": request.form.getlist("events")}
        try:
            body = parse(ChannelCreate, values)
            channel = channel_service.create_channel(principal(), team_id, body.kind, body.name, body.target,
                                                     body.events)
            flash(f"Added the {channel.kind} channel {channel.name}.")
            if channel.kind != ChannelKind.WEBHOOK or reveal.stash("new_secret", channel.config["secret"]):
                return redirect(request.path)
            secret = channel.config["secret"]  # Redis away: shown on this answer instead
        except SchemaError as e:
            errors = e.fields
        except ServiceError as e:
            errors = e.fields or {"form": e.message}
    secret = secret or reveal.take("new_secret")
    channels = channel_service.list_channels(principal(), team_id)
    deliveries = {c.id: channel_service.deliveries(c, 10) for c in channels}
    return render_template("dashboard/notifications.html", team=team, channels=channels, deliveries=deliveries,
                           errors=errors, values=values, secret=secret,
                           describe=channel_service.describe_target), 400 if errors else 200


@bp.post("/teams/<int:team_id>/notifications/<int:channel_id>/test")
@login_required
@needs("channel.test")
def test_channel(team_id: int, channel_id: int):
    try:
        channel_service.send_test(principal(), team_id, channel_id)
    except RateLimited as e:
        flash(e.message)
    else:
        flash("A test notification is on its way; its delivery shows below in a moment.")
    return redirect(url_for("dashboard.notifications", team_id=team_id))


@bp.post("/teams/<int:team_id>/notifications/<int:channel_id>/enable")
@login_required
@needs("channel.update")
def enable_channel(team_id: int, channel_id: int):
    channel = channel_service.enable_channel(principal(), team_id, channel_id)
    flash(f"Enabled the channel {channel.name} again.")
    return redirect(url_for("dashboard.notifications", team_id=team_id))


@bp.post("/teams/<int:team_id>/notifications/<int:channel_id>/delete")
@login_required
@needs("channel.delete")
def delete_channel(team_id: int, channel_id: int):
    channel_service.delete_channel(principal(), team_id, channel_id)
    flash("Deleted the channel.")
    return redirect(url_for("dashboard.notifications", team_id=team_id))


@bp.route("/teams/<int:team_id>/api-keys", methods=["GET", "POST"])
@login_required
@needs("key.read", post="key.create")
def api_keys(team_id: int):
    team = team_page(team_id)
    errors, new_key = {}, None
    if request.method == "POST":
        try:
            days = request.form.get("expiresInDays", "").strip()
            if days and not days.isdigit():
                raise Invalid("not a number of days", {"expiresInDays": "a whole number of days, 1 to 3650"})
            _, raw = key_service.create_key(principal(), team_id, request.form.get("role", "admin"),
                                            request.form.get("mode", "live"), request.form.get("name", ""),
                                            int(days) if days else None)
            if reveal.stash("new_key", raw):  # shown by the next GET, once; a reload makes no other
                return redirect(request.path)
            new_key = raw  # Redis away: shown on this answer instead
        except ServiceError as e:
            errors = e.fields or {"form": e.message}
    new_key = new_key or reveal.take("new_key")
    keys = key_service.list_keys(principal(), team_id)
    return render_template("dashboard/api_keys.html", team=team, keys=keys, new_key=new_key, now=utcnow(),
                           errors=errors, key_roles=roles.up_to(principal().roles[team_id]),
                           role_words=roles.WORDS), 400 if errors else 200


@bp.post("/teams/<int:team_id>/api-keys/<int:key_id>/revoke")
@login_required
@needs("key.revoke")
def revoke_key(team_id: int, key_id: int):
    team_page(team_id)
    key = key_service.revoke(principal(), team_id, key_id)
    flash(f"Revoked {key.prefix}…; calls with it now answer 401.")
    return redirect(url_for("dashboard.api_keys", team_id=team_id))
