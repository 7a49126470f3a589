"""Login and logout."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import login_required, login_user, logout_user

from ..extensions import db, limiter, login_manager
from ..models import User
from . import bp


@login_manager.user_loader
def load_user(user_id: str):
    return db.session.get(User, int(user_id)) if user_id.isdigit() else None


login_manager.login_view = "dashboard.login"


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit("10 per minute", methods=["POST"])
def login():
    error = None
    if request.method == "POST":
        email = request.form.get("email", "").strip().lower()
        user = None if "\x00" in email else db.session.query(User).filter_by(email=email).first()
        if user is not None and user.check_password(request.form.get("password", "")):
            login_user(user, remember=True)
            target = request.args.get("next") or ""
            if not target.startswith("/") or target.startswith("//"):
                target = url_for("dashboard.index")
            return redirect(target)
        error = "Wrong email or password."
    return render_template("dashboard/login.html", error=error), 401 if error else 200


@bp.post("/logout")
@login_required
def logout():
    logout_user()
    flash("Signed out.")
    return redirect(url_for("dashboard.login"))
