"""Workflows: durable container tasks on a Docker engine."""
from __future__ import annotations

from flask import Flask, request
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from . import config, keys
from .extensions import csrf, db, limiter, login_manager, migrate, sock, talisman
from .schemas import MAX_ID


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__, template_folder=str(config.ROOT / "templates"),
                static_folder=str(config.ROOT / "static"))
    app.config.update(config.from_env())
    app.config.update(
        RATELIMIT_STORAGE_URI=app.config["REDIS_URL"],
        RATELIMIT_HEADERS_ENABLED=True,
        RATELIMIT_HEADER_LIMIT="RateLimit-Limit",
        RATELIMIT_HEADER_REMAINING="RateLimit-Remaining",
        RATELIMIT_HEADER_RESET="RateLimit-Reset",
        RATELIMIT_HEADER_RETRY_AFTER_VALUE="delta-seconds",
        RATELIMIT_KEY_PREFIX=keys.RATELIMIT,
        # Redis away: a trigger is still recorded (the scheduler hands it over later) rather than
        # refused with a 500; the limit applies again as soon as Redis answers.
        RATELIMIT_SWALLOW_ERRORS=True,
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True,  # Redis away: each process keeps the limits itself
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        SOCK_SERVER_OPTIONS={"ping_interval": 25, "max_message_size": 4096},  # clients send nothing
    )
    if test_config:
        app.config.update(test_config)
    if app.config["TRUSTED_PROXIES"]:
        from werkzeug.middleware.proxy_fix import ProxyFix
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    app.json.sort_keys = False
    app.url_map.converters["int"] = DatabaseId  # before any rule is bound
    https = app.config["BASE_URL"].startswith("https://")
    app.config["SESSION_COOKIE_SECURE"] = app.config["REMEMBER_COOKIE_SECURE"] = https

    db.init_app(app)
    _security_headers(app, https)
    migrate.init_app(app, db, directory=str(config.ROOT / "migrations"), render_as_batch=True)
    login_manager.init_app(app)
    sock.init_app(app)
    csrf.init_app(app)

    from .api import bp as api_bp
    from .api.auth import authenticate_api_request
    # Registered before the limiter's own hook, so an unauthenticated call never spends a team's quota.
    from .api.live import authorize_stream, release_stream
    app.before_request(authenticate_api_request)
    app.before_request(authorize_stream)
    app.teardown_request(release_stream)
    limiter.init_app(app)
    csrf.exempt(api_bp)  # bearer keys carry no cookie; a session's writes are checked in api/auth.py
    app.register_blueprint(api_bp)
    from .api.hooks import inbound as hooks_bp
    csrf.exempt(hooks_bp)  # a webhook's token is its credential; no cookie is read
    app.register_blueprint(hooks_bp)

    _register_pages_and_commands(app)
    return app


def _register_pages_and_commands(app: Flask) -> None:
    from .dashboard import bp as dashboard_bp
    from .health import bp as health_bp
    from .metrics_page import bp as metrics_bp
    for blueprint in (health_bp, metrics_bp, dashboard_bp):
        app.register_blueprint(blueprint)
    _register_api_errors(app)
    from .cli import register_all as register_cli
    register_cli(app)  # the workers' commands are added by wsgi.py: the web app knows no worker


def _security_headers(app: Flask, https: bool) -> None:
    """CSP without inline script (pages carry data only in attributes, read by static files), no
    framing, no sniffing, no referrer to other sites, and HSTS when the site is https."""
    ws = app.config["BASE_URL"].replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    talisman.init_app(
        app, force_https=False, strict_transport_security=https, session_cookie_secure=https,
        frame_options="DENY", referrer_policy="same-origin",
        content_security_policy={
            "default-src": "'self'", "script-src": "'self'",
            "style-src": ["'self'", "'unsafe-inline'"],  # htmx's indicator style; no script
            "img-src": ["'self'", "data:"], "connect-src": ["'self'", ws], "object-src": "'none'",
            "base-uri": "'self'", "form-action": "'self'", "frame-ancestors": "'none'",
        })


class DatabaseId(IntegerConverter):
    """An <int:...> path part that fits the database's integer ids; larger numbers are a 404."""

    def __init__(self, url_map, fixed_digits=0, min=None, max=MAX_ID, signed=False):
        super().__init__(url_map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


def _register_api_errors(app: Flask) -> None:
    from .api import errors
    from .schemas import SchemaError
    from .services.errors import ServiceError

    def api_only(handler, fallback=None):
        def wrapped(e):
            if request.path.startswith(("/api/", "/hooks/")) or request.path in ("/healthz", "/metrics"):
                return handler(e)
            if fallback is not None:
                return fallback(e)
            return e
        return wrapped

    app.register_error_handler(errors.ApiError, errors.handle_api_error)
    app.register_error_handler(SchemaError, errors.handle_schema_error)
    app.register_error_handler(ServiceError, api_only(errors.handle_service_error, _page_service_error))
    app.register_error_handler(HTTPException, api_only(errors.handle_http_error))
    app.register_error_handler(Exception, api_only(errors.handle_unexpected, _reraise))


def _page_service_error(e):
    """A page: other teams' things are plain 404s; a refusal is a 403 with its reason."""
    from flask import render_template
    message = "This page does not exist, or it belongs to a team you are not in." if e.status == 404 else e.message
    return render_template("dashboard/error.html", status=e.status, message=message), e.status


def _reraise(e):
    if isinstance(e, HTTPException):
        return e
    raise e


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record):
    """WAL and a busy timeout, so that web, worker and scheduler processes share one SQLite file."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=15000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()
