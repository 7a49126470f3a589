"""Login and logout."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user

from ..extensions import db, limiter, login_manager
from ..gate import OPEN, needs, source
from ..models import User
from ..services import signin
from .blueprint import bp


@login_manager.user_loader
def load_user(session_id: str):
    """"<user id>:<session version>": a session or remember cookie of an older version is void."""
    user_id, _, version = session_id.partition(":")
    if not user_id.isdigit() or not version.isdigit():
        return None
    user = db.session.get(User, int(user_id))
    return user if user is not None and user.session_version == int(version) else None


login_manager.login_view = "dashboard.login"
LOGIN_LIMIT = "10 per minute"


def safe_next(target: str | None) -> str | None:
    """A path on this site to go to after signing in, or None. Browsers drop tabs and newlines in
    URLs and read backslashes as slashes, so "/\tevil.example" or "/\\evil.example" would be
    "//evil.example", another site: clean the same way first, then accept a plain path only."""
    if not target:
        return None
    cleaned = "".join(c for c in target if c >= " " and c != "\x7f").replace("\\", "/")
    parts = urlsplit(cleaned)
    if parts.scheme or parts.netloc or not cleaned.startswith("/") or cleaned.startswith("//"):
        return None
    return cleaned


def _login_account() -> str:
    """The account a sign-in tries, whatever address it comes from (a spread-out guesser)."""
    return "login:" + request.form.get("email", "").strip().lower()[:320]


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(LOGIN_LIMIT, methods=["POST"])  # per address
@limiter.limit(LOGIN_LIMIT, methods=["POST"], key_func=_login_account)  # per account
@needs(OPEN)
def login():
    error = None
    if request.method == "POST" and not current_app.config["PASSWORD_LOGIN"]:
        error = "Sign-in with a password is turned off here: use single sign-on."
    elif request.method == "POST":
        user = signin.with_password(request.form.get("email", ""), request.form.get("password", ""), source())
        if user is not None:
            login_user(user, remember=request.form.get("remember") == "on")
            return redirect(safe_next(request.args.get("next")) or url_for("dashboard.index"))
        error = "Wrong email or password."
    return render_template("dashboard/login.html", error=error), 401 if error else 200


@bp.post("/logout")
@login_required
@needs(OPEN)
def logout():
    """Ends every session of the user (all browsers, remember cookies and live-log sockets)."""
    signin.sign_out(current_user, source())
    logout_user()
    flash("Signed out.")
    return redirect(url_for("dashboard.login"))
