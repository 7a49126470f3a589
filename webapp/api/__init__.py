"""The JSON API blueprint: /api/..."""
from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.after_request
def budget_headers(response):
    """The RateLimit-* headers of a call that spent a team budget (trigger, retry)."""
    from flask import g
    state = g.pop("rate_budget", None)
    if state is not None:
        for name, value in state.headers().items():
            response.headers.setdefault(name, value)
    return response


from . import channels, openapi, projects, registry, runs, workflows  # noqa: E402,F401  (routes register on import)
from .. import live  # noqa: E402,F401  (the websocket route lives on this blueprint)
