"""The JSON API blueprint, /api/...: what every route module adds its routes to."""
from __future__ import annotations

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
