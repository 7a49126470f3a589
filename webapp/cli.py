"""`flask users|projects|environments|keys create`: scripting-friendly output (spec section 8)."""
from __future__ import annotations

import json
import sys

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext

from .services.errors import ServiceError


@click.group("users", cls=AppGroup)
def users():
    """Manage users."""

@users.command("create")
@click.argument("email")
@click.option("--password", required=True)
@click.option("--team", "team_name", required=True, help="team name; created with a project 'default' if new")
def create_user(email: str, password: str, team_name: str):
    """Create a user; prints {"userId", "teamId", "projectId", "environmentId"}."""
    from .services.teams import WEAK_PASSWORD_LENGTH
    from .services.teams import create_user as create
    if 0 < len(password) < WEAK_PASSWORD_LENGTH:
        click.echo(f"warning: a password under {WEAK_PASSWORD_LENGTH} characters is easy to guess", err=True)
    user, team, project = _or_exit(lambda: create(email, password, team_name))
    click.echo(json.dumps({"userId": user.id, "teamId": team.id, "projectId": project.id,
                           "environmentId": project.production.id}))

@users.command("set-password")
@click.argument("email")
@click.option("--password", required=True)
def set_password(email: str, password: str):
    """Change a user's password; signs the user out everywhere."""
    from .services.teams import set_password as change
    user = _or_exit(lambda: change(email, password))
    click.echo(json.dumps({"userId": user.id}))

@click.command("first-start-hint")
@with_appcontext
def first_start_hint():
    """Say how to create the first user when the database has none."""
    from .extensions import db
    from .models import User
    if db.session.query(User.id).first() is None:
        click.echo("No users yet. Create one (and its team) with:\n"
                   "  .venv/bin/flask --app wsgi users create you@example.com --password 'a-long-password' --team acme\n"
                   "then an API key with:\n"
                   "  .venv/bin/flask --app wsgi keys create --team 1 --scope full")

@click.group("projects", cls=AppGroup)
def projects():
    """Manage projects."""

@projects.command("create")
@click.argument("name")
@click.option("--team", "team_id", type=int, required=True)
def create_project(name: str, team_id: int):
    """Create a project (with its Production environment); prints {"projectId", "environmentId"}."""
    from .services import projects as service
    project = _or_exit(lambda: service.create_project(_operator(team_id), team_id, _name(name)))
    click.echo(json.dumps({"projectId": project.id, "environmentId": project.production.id}))

@click.group("environments", cls=AppGroup)
def environments():
    """Manage environments of a project."""

@environments.command("create")
@click.argument("name")
@click.option("--project", "project_id", type=int, required=True)
def create_environment(name: str, project_id: int):
    """Create an environment (say Staging, where hs_test_ keys may act); prints {"environmentId"}."""
    from .extensions import db
    from .models import Project
    from .services import projects as service
    project = db.session.get(Project, project_id)
    if project is None:
        _fail(f"no project {project_id}")
    env = _or_exit(lambda: service.create_environment(_operator(project.team_id), project.team_id,
                                                      project_id, _name(name)))
    click.echo(json.dumps({"environmentId": env.id}))

@click.group("keys", cls=AppGroup)
def keys():
    """Manage API keys."""

@keys.command("create")
@click.option("--team", "team_id", type=int, required=True)
@click.option("--scope", type=click.Choice(["full", "read"]), default=None,
              help="full: an admin key; read: a viewer key")
@click.option("--role", type=click.Choice(["viewer", "member", "admin", "owner"]), default=None)
@click.option("--mode", type=click.Choice(["live", "test"]), default="live", show_default=True)
@click.option("--name", default="cli")
@click.option("--expires-in-days", type=int, default=None, help="refused with 401 \"key expired\" after this (1-3650)")
def create_key(team_id: int, scope: str | None, role: str | None, mode: str, name: str, expires_in_days: int | None):
    """Create an API key with --scope or --role; the key is printed alone on the last line, and never again."""
    from .services.keys import SCOPES, create_key as create
    if (scope is None) == (role is None):
        _fail("give one of --scope full|read and --role viewer|member|admin|owner")
    role = role or SCOPES[scope]
    key, raw = _or_exit(lambda: create(_operator(team_id), team_id, role, mode, name, expires_in_days))
    until = f", expires {key.expires_at.isoformat(timespec='seconds')}Z" if key.expires_at else ""
    click.echo(f"# {role} {mode} key for team {team_id} (id {key.id}{until}); store it now, it is not shown again",
               err=True)
    click.echo(raw)


@click.group("sso", cls=AppGroup)
def sso_group():
    """Single sign-on: which provider groups make members of which teams."""

@sso_group.command("map")
@click.argument("group")
@click.option("--team", "team", required=True, help="the team's id or name")
@click.option("--role", type=click.Choice(["viewer", "member", "admin", "owner"]), required=True)
def sso_map(group: str, team: str, role: str):
    """Members of the provider's GROUP (in its groups claim) are members of TEAM with ROLE, from
    their next sign-in on."""
    from .services import sso
    found = _team(team)
    _or_exit(lambda: sso.set_map(group, found.id, role))
    click.echo(json.dumps({"group": group, "team": found.id, "role": role}))

@sso_group.command("unmap")
@click.argument("group")
@click.option("--team", "team", required=True)
def sso_unmap(group: str, team: str):
    """GROUP no longer makes members of TEAM (their memberships go at their next sign-in)."""
    from .services import sso
    found = _team(team)
    if not sso.remove_map(group, found.id):
        _fail(f"{group} is not mapped to team {found.id}")
    click.echo(json.dumps({"group": group, "team": found.id, "removed": True}))

@sso_group.command("maps")
def sso_maps():
    """Every group map, one JSON object a line."""
    from .services import sso
    for m in sso.maps():
        click.echo(json.dumps({"group": m.group, "team": m.team_id, "role": m.role}))


def register_all(app: Flask) -> None:
    for command in (users, first_start_hint, projects, environments, keys, sso_group):
        app.cli.add_command(command)
    register_hosts(app)
    register_teams(app)
    register_pools(app)
    register_workflows(app)


def register_teams(app: Flask) -> None:
    @app.cli.group("teams")
    def teams():
        """Teams, as an operator sees them."""

    @teams.command("limits")
    @click.argument("team")
    @click.option("--set", "values", multiple=True, metavar="NAME=N",
                  help="override a limit for this team (repeatable); NAME=default goes back to the default")
    def limits(team: str, values: tuple[str, ...]):
        """Show (and with --set, change) the quotas of TEAM (its id or name), as JSON: workflows,
        minScheduleIntervalSec, queuedRuns, envBytes, outputBytesPerDay, runRetentionDays,
        logRetentionDays (README, "Quotas")."""
        from .services import quotas
        found = _team(team)
        changes = {}
        for item in values:
            name, _, value = item.partition("=")
            if value == "default":
                changes[name] = None
            elif value.isdigit():
                changes[name] = int(value)
            else:
                _fail(f"--set {item}: NAME=N (a whole number) or NAME=default")
        now = _or_exit(lambda: quotas.set_limits(found, changes)) if changes else quotas.limits_for(found.id)
        click.echo(json.dumps({"team": found.id, "name": found.name, "limits": now,
                               "overridden": sorted((found.limits or {}).keys())}))


def register_pools(app: Flask) -> None:
    @app.cli.group("pools")
    def pools_group():
        """Worker pools set aside for teams (default is everyone's)."""

    @pools_group.command("allow")
    @click.argument("pool")
    @click.option("--team", "team", required=True, help="the team's id or name")
    def allow(pool: str, team: str):
        """Let TEAM's workflows run in POOL."""
        from .schemas import valid_pool
        from .services import pools
        if not valid_pool(pool):
            _fail(f"{pool!r}: lowercase letters, digits, - and _, at most 40")
        found = _team(team)
        pools.allow(pool, found)
        click.echo(json.dumps({"pool": pool, "team": found.id, "allowed": True}))

    @pools_group.command("deny")
    @click.argument("pool")
    @click.option("--team", "team", required=True, help="the team's id or name")
    def deny(pool: str, team: str):
        """Take POOL back from TEAM: its runs there fail when a worker takes them."""
        from .services import pools
        found = _team(team)
        pools.deny(pool, found)
        click.echo(json.dumps({"pool": pool, "team": found.id, "allowed": False}))

    @pools_group.command("list")
    def list_grants():
        """Every grant, as JSON lines."""
        from .services import pools
        for pool, team_id, name in pools.grants():
            click.echo(json.dumps({"pool": pool, "team": team_id, "name": name}))


def register_workflows(app: Flask) -> None:
    @app.cli.group("workflows")
    def workflows():
        """Workflows, as an operator acts on them: pause, resume, backfill."""

    @workflows.command("pause")
    @click.argument("ids", nargs=-1)
    @click.option("--team", default=None, help="every live workflow of this team (its id or name)")
    @click.option("--note", default=None, help="why, shown on the workflow page (at most 500 characters)")
    @click.option("--triggers", is_flag=True, help="refuse manual runs too (pauseTriggers)")
    def pause(ids: tuple[str, ...], team: str | None, note: str | None, triggers: bool):
        """Pause the workflows IDS (or every one of --team) for a maintenance: no scheduled fires
        until resumed. One JSON line each."""
        body = {"paused": True, "pauseNote": note, "pauseTriggers": triggers}
        for wf in _workflows(ids, team):
            _change(wf, {k: v for k, v in body.items() if v is not None})

    @workflows.command("resume")
    @click.argument("ids", nargs=-1)
    @click.option("--team", default=None, help="every paused workflow of this team (its id or name)")
    @click.option("--catch-up", is_flag=True, help="run what was missed while paused, by the catch-up rule")
    def resume(ids: tuple[str, ...], team: str | None, catch_up: bool):
        """Resume the workflows IDS (or every paused one of --team). One JSON line each."""
        for wf in _workflows(ids, team):
            if wf.paused_at is not None:
                _change(wf, {"paused": False, "catchUp": catch_up})

    @workflows.command("backfill")
    @click.argument("workflow_id")
    @click.option("--from", "start", required=True, help="the range's first moment, ISO 8601 (UTC without an offset)")
    @click.option("--to", "end", required=True, help="its last moment, not in the future")
    @click.option("--max-concurrent", default=1, show_default=True, help="its runs queued or running at once")
    def backfill(workflow_id: str, start: str, end: str, max_concurrent: int):
        """Run one run per instant of WORKFLOW_ID's schedule from --from to --to (README, "Backfill");
        prints {"backfill", "instants", "fired"}."""
        from .schemas import BackfillCreate
        from .services.backfills import create_backfill
        wf = _workflows((workflow_id,), None)[0]
        body = _parsed(BackfillCreate, {"from": start, "to": end, "maxConcurrent": max_concurrent})
        bf = _or_exit(lambda: create_backfill(_operator(wf.team_id), wf.team_id, wf.public_id, body))
        click.echo(json.dumps({"backfill": bf.public_id, "instants": bf.total, "fired": bf.made}))


def _workflows(ids: tuple[str, ...], team: str | None) -> list:
    """The live workflows named by id, or every one of `team`."""
    from .extensions import db
    from .models import Workflow
    if bool(ids) == bool(team):
        _fail("name workflows by id, or give --team, not both")
    query = db.session.query(Workflow).filter(Workflow.deleted_at.is_(None))
    if team:
        return query.filter(Workflow.team_id == _team(team).id).order_by(Workflow.id).all()
    found = {wf.public_id: wf for wf in query.filter(Workflow.public_id.in_(ids)).all()}
    missing = [i for i in ids if i not in found]
    if missing:
        _fail(f"no workflow {missing[0]}")
    return [found[i] for i in ids]


def _change(wf, fields: dict) -> None:
    from .schemas import WorkflowUpdate
    from .services.workflows import update_workflow
    body = _parsed(WorkflowUpdate, fields)
    wf = _or_exit(lambda: update_workflow(_operator(wf.team_id), wf.team_id, wf.public_id, body))
    click.echo(json.dumps({"workflow": wf.public_id, "name": wf.name, "paused": wf.paused_at is not None,
                           "nextRunAt": wf.next_run_at.isoformat() + "Z" if wf.next_run_at else None}))


def _parsed(model, data: dict):
    from .schemas import SchemaError, parse
    try:
        return parse(model, data)
    except SchemaError as e:
        _fail("; ".join(f"{field}: {message}" for field, message in e.fields.items()))


def _team(ref: str):
    from .extensions import db
    from .models import Team
    team = db.session.get(Team, int(ref)) if ref.isdigit() else None
    team = team or db.session.query(Team).filter_by(name=ref).first()
    if team is None:
        _fail(f"no team {ref!r}")
    return team


def register_hosts(app: Flask) -> None:
    @app.cli.group("hosts")
    def hosts():
        """Worker hosts, as their heartbeats record them."""

    @hosts.command("list")
    def list_hosts():
        """Each worker host with its state (alive, away, lost), pools and runs in flight, as JSON lines."""
        from .services.hosts import host_views
        for view in host_views(set()):
            click.echo(json.dumps({"host": view.host, "state": view.state, "pools": view.pools,
                                   "running": view.busy, "lastSeenAt": view.last_seen_at.isoformat() + "Z",
                                   "clockOffsetMs": view.clock_offset_ms}))

    @hosts.command("forget")
    @click.argument("name")
    def forget(name: str):
        """Say that the lost host NAME is gone with every container it ran: its running runs fail
        "worker host lost" and retry by their budget, onHostLost "wait" ones included."""
        from .services.hosts import forget as forget_host
        failed = _or_exit(lambda: forget_host(name))
        click.echo(json.dumps({"host": name, "runsFailed": failed}))


def _operator(team_id: int):
    """Whoever runs the CLI acts as an owner of the team they name."""
    from .services.access import Principal
    return Principal.operator({team_id})


def _name(name: str) -> str:
    from .schemas import ProjectCreate, SchemaError, parse
    try:
        return parse(ProjectCreate, {"name": name}).name
    except SchemaError as e:
        _fail(f"name {e.fields.get('name', 'is not valid')}")


def _or_exit(action):
    """The service's answer, or its refusal on stderr and exit status 1."""
    try:
        return action()
    except ServiceError as e:
        _fail(e.message)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)
