"""Who calls a page or an API route, and the action each route is (services/roles.py's table).

Every route of the API and the dashboard says its action with `@needs(...)`; a route with a
`team_id` in its path (or a run's id) is refused there (404 outside the caller's teams, 403 below the action's
role) before it loads anything, and the services check again when they change state.
tests/test_roles.py walks every route of the app and fails on one that names no action."""
from __future__ import annotations

from functools import wraps
from types import MappingProxyType

from flask import g, request
from flask_login import current_user

from .services import roles
from .services.access import Principal
from .services.runs import find_run
from .vocabulary import Role

OPEN = "open"  # a route anyone may call: the login page, /healthz, a webhook's token route


def source() -> dict:
    """Where the request came from, for the audit log."""
    return {"ip": request.remote_addr, "user_agent": (request.headers.get("User-Agent") or "")[:300]}


def session_principal() -> Principal:
    """The signed-in member, with their role in each of their teams."""
    return Principal(roles=MappingProxyType({m.team_id: Role(m.role) for m in current_user.memberships}),
                     user_id=current_user.id, session_version=current_user.session_version, **source())


def key_principal(key) -> Principal:
    return Principal(roles=MappingProxyType({key.team_id: Role(key.role)}), mode=key.mode, key_id=key.id,
                     **source())


def current_principal() -> Principal:
    """The API's caller (set before the route runs), else the dashboard's signed-in member."""
    if g.get("principal") is None:
        g.principal = session_principal()
    return g.principal


def needs(action: str, post: str | None = None):
    """The route is `action` (a POST to it `post`, when the page also takes a form): its
    least role is services/roles.py's."""
    for name in (action, post):
        if name is not None and name != OPEN and name not in roles.RULES:
            raise KeyError(f"no rule for {name} in services/roles.py")

    def wrap(view):
        @wraps(view)
        def gated(*args, **kwargs):
            act = post if post and request.method == "POST" else action
            team_id = kwargs.get("team_id")
            if act != OPEN and team_id is None and "run_id" in kwargs:  # a run page's link names no team
                team_id = the_run(kwargs["run_id"]).team_id
            if act != OPEN and team_id is not None:
                roles.require(current_principal(), team_id, act)
            return view(*args, **kwargs)
        gated.actions = {"GET": action, "POST": post or action}
        return gated
    return wrap


def the_run(run_id: str):
    """The run a page's path names (the caller's teams' only), loaded once per request."""
    run = g.get("path_run")
    if run is None or run.public_id != run_id:
        run = g.path_run = find_run(current_principal(), run_id)
    return run


def may(team_id: int, action: str) -> bool:
    """For templates: whether to offer a button (the route refuses anyway)."""
    return current_user.is_authenticated and roles.may(current_principal(), team_id, action)


def masked(team_id: int) -> bool:
    """Whether env values that look secret are masked for the caller (below the member role)."""
    return not roles.may(current_principal(), team_id, "env.reveal")
