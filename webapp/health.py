"""GET /healthz: the state of the database, Redis and the Docker engine."""
from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text

from .connections import get_docker, get_redis
from .extensions import db

bp = Blueprint("health", __name__)


def _check(fn) -> dict:
    try:
        detail = fn()
        return {"ok": True, **({"detail": detail} if detail else {})}
    except Exception as e:  # any failure means "down"; say why in one line
        return {"ok": False, "error": f"{type(e).__name__}: {str(e)[:200]}"}


def _database():
    db.session.execute(text("select 1"))
    db.session.rollback()


def _redis():
    get_redis().ping()


def _docker():
    return get_docker(timeout=3).version().get("Version")


@bp.get("/healthz")
def healthz():
    parts = {"database": _check(_database), "redis": _check(_redis), "docker": _check(_docker)}
    healthy = all(p["ok"] for p in parts.values())
    body = {"status": "ok" if healthy else "degraded", **parts}
    return jsonify(body), 200 if healthy else 503
