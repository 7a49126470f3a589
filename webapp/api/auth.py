"""Who calls the API: a Bearer hs_live_/hs_test_ key, or a logged-in member's session."""
from __future__ import annotations

from flask import current_app, g, request
from flask_login import current_user
from flask_wtf.csrf import ValidationError, validate_csrf

from ..gate import key_principal, session_principal
from ..services import keys
from ..services.access import Principal
from .errors import ApiError

PUBLIC_ENDPOINTS = {"api.openapi_json", "api.openapi_page"}


def principal_from_request() -> Principal:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "use Authorization: Bearer hs_live_... or hs_test_...")
        key = keys.authenticate(token.strip())
        if key is None:
            raise ApiError(401, "unknown or revoked API key", "invalid_api_key")
        if keys.expired(key):
            raise ApiError(401, "key expired", "key_expired")
        return key_principal(key)
    if current_user.is_authenticated:
        _check_csrf()
        return session_principal()
    raise ApiError(401, "authentication required: a Bearer API key or a session", "unauthorized")


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def _check_csrf() -> None:
    """A write made with the session cookie carries the page's CSRF token in X-CSRFToken (htmx
    and the API docs page send it): another site's form or script cannot make one in the member's
    name. A bearer key is no cookie and needs none."""
    if request.method in SAFE_METHODS or not current_app.config.get("WTF_CSRF_ENABLED", True):
        return
    try:
        validate_csrf(request.headers.get("X-CSRFToken"))
    except ValidationError as e:
        raise ApiError(403, f"a write with a session cookie needs the X-CSRFToken header: {e}",
                       "csrf_failed") from None


def authenticate_api_request() -> None:
    """Runs before the rate limiter, so that only a team's own authenticated calls count."""
    if request.blueprint != "api" or request.endpoint in PUBLIC_ENDPOINTS:
        return
    g.principal = principal_from_request()
    team_id = (request.view_args or {}).get("team_id")
    if team_id is not None and team_id not in g.principal.team_ids:
        raise ApiError(404, "not found", "not_found")

