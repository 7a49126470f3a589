"""GET /healthz: the state of the database, Redis and the Docker engine."""
from __future__ import annotations

import hmac

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import text

from . import heartbeats
from .services import hosts
from .connections import NO_ENGINE, get_docker, get_redis
from .extensions import db
from .gate import OPEN, needs

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


class EgressUnguarded(Exception):
    pass


def _egress():
    """Live workers that could not install the egress rules (allowed outside production only)."""
    problems = [f"{row.host}: {row.egress_problem}" for row in hosts.live_egress_problems()]
    if problems:
        raise EgressUnguarded("run containers may reach private networks on " + "; ".join(problems)[:400])


def _redis():
    get_redis().ping()


def _docker():
    if current_app.config["DOCKER_HOST"] == NO_ENGINE:
        return "no engine on this host (DOCKER_HOST=none): the worker hosts have theirs"
    return get_docker(timeout=3).version().get("Version")


def _heartbeat(role: str) -> dict:
    """The newest heartbeat of any `role` process (they beat every second): stale past a few."""
    try:
        ages = heartbeats.ages(role)
    except Exception as e:
        return {"ok": False, "error": f"{type(e).__name__}: {str(e)[:200]}", "lastBeatAgeSec": None}
    newest = min(ages.values()) if ages else None
    part = {"ok": newest is not None and newest <= heartbeats.STALE_SEC, "lastBeatAgeSec": newest,
            "processes": ages}
    if newest is None:
        part["error"] = f"no {role} has reported in the last {heartbeats.TTL_SEC} s"
    elif not part["ok"]:
        part["error"] = f"the newest {role} heartbeat is {newest:.1f} s old"
    return part


@bp.get("/healthz")
@needs(OPEN)
def healthz():
    parts = {"database": _check(_database), "redis": _check(_redis), "docker": _check(_docker),
             "scheduler": _heartbeat("scheduler"), "worker": _heartbeat("worker")}
    healthy = all(p["ok"] for p in parts.values())
    parts["egress"] = _check(_egress)  # said, not counted: a production worker without its rules does not start
    if not _may_see_details():  # errors and host:pid names are not for anyone on the network
        parts = {name: {"ok": part["ok"]} for name, part in parts.items()}
    body = {"status": "ok" if healthy else "degraded", **parts}
    return jsonify(body), 200 if healthy else 503


def _may_see_details() -> bool:
    """Outside production, everyone; in production, a caller with METRICS_TOKEN (the monitoring)."""
    if current_app.config["ENV_NAME"] != "production":
        return True
    token = current_app.config["METRICS_TOKEN"]
    given = request.headers.get("Authorization", "")
    return bool(token) and hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
