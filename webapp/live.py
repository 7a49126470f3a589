"""The live log websocket: the stored backlog, then the live tail, then {"event": "end"}.

Lines carry a `seq`; the backlog ends at some seq and the Redis stream is read from its start,
skipping what was sent, so the seam has no gap and no duplicate.
"""
from __future__ import annotations

import json
import time
from urllib.parse import urlparse

from flask import current_app, g, request
from simple_websocket import ConnectionClosed

from .livelog import decode, stream_key

from .api import bp as api_bp
from .api.errors import ApiError
from .api.serialize import line_json
from .connections import get_redis
from .extensions import db, sock
from .models import Run
from .models.base import isoformat, utcnow
from .services import runs as run_service

ENDPOINT = "api.live_log_stream"
IDLE_CHECK_MS = 1000


def _same_origin(origin: str) -> bool:
    base = urlparse(current_app.config["BASE_URL"])
    seen = urlparse(origin)
    host = request.host
    return (seen.scheme, seen.netloc) == (base.scheme, base.netloc) or seen.netloc == host


def authorize_stream():
    """Before the handshake (after the API's own authentication): 404 for another team's run,
    403 for a cross-site page (browsers send cookies with cross-site websockets)."""
    if request.endpoint != ENDPOINT:
        return
    origin = request.headers.get("Origin")
    if origin and not _same_origin(origin):
        raise ApiError(403, "cross-site websocket refused", "forbidden")
    args = request.view_args or {}
    g.live_run = run_service.get_run(g.principal, args["team_id"], args["run_id"])


def _send(ws, payload: dict) -> None:
    ws.send(json.dumps(payload))


@sock.route("/workflows/<int:team_id>/workflows/runs/<run_id>/logs/stream", bp=api_bp)
def live_log_stream(ws, team_id: int, run_id: str):
    run_pk, public_id = g.live_run.id, g.live_run.public_id
    stream_logs(ws, run_pk, public_id)


TERMINAL = ("succeeded", "failed", "cancelled", "timed_out")
CATCH_UP_WAIT_SEC = 30


def _status(run_pk: int) -> str:
    db.session.expire_all()
    status = db.session.get(Run, run_pk).status
    db.session.commit()
    return status


def _send_stored(ws, run_pk: int, after: int, before: int | None = None) -> int:
    """Send the stored lines with after < seq (< before); the last seq sent."""
    run = db.session.get(Run, run_pk)
    last = after
    for line in run_service.log_lines(run, after_seq=after, before_seq=before):
        _send(ws, line_json(line))
        last = line.seq
    db.session.commit()
    return last


def _fill_hole(ws, run_pk: int, last: int, seq: int) -> None:
    """The stream was trimmed (or missed lines) between `last` and `seq`: send them from the
    database once it has caught up, so that a late viewer never skips lines silently."""
    end = time.monotonic() + CATCH_UP_WAIT_SEC
    while time.monotonic() < end:
        db.session.expire_all()
        run = db.session.get(Run, run_pk)
        caught_up = run.log_next_seq >= seq or run.status in TERMINAL
        db.session.commit()
        if caught_up:
            break
        time.sleep(0.1)
    sent = _send_stored(ws, run_pk, last, before=seq)
    if sent < seq - 1:  # lines past the log cap live only in the stored tail (or were dropped)
        _send(ws, {"stream": "system", "ts": isoformat(utcnow()),
                   "text": f"[{seq - 1 - sent} lines not shown live here: they are past the log's cap; "
                           "the stored log keeps its head and its last part]"})


def stream_logs(ws, run_pk: int, public_id: str) -> None:
    try:
        status = _status(run_pk)
        last = _send_stored(ws, run_pk, -1)
        if status in TERMINAL:
            _send(ws, {"event": "end", "status": status})
            return
        redis = get_redis(blocking=True)
        key, cursor = stream_key(public_id), "0-0"
        while True:
            reply = redis.xread({key: cursor}, count=500, block=IDLE_CHECK_MS)
            if not reply:
                status = _status(run_pk)
                if status in TERMINAL:
                    _send_stored(ws, run_pk, last)
                    _send(ws, {"event": "end", "status": status})
                    return
                continue
            for entry_id, fields in reply[0][1]:
                cursor = entry_id
                for item in decode(fields):
                    if "event" in item:
                        _send_stored(ws, run_pk, last)
                        _send(ws, {"event": "end", "status": item["status"] or _status(run_pk)})
                        return
                    if item["seq"] <= last:
                        continue
                    if item["seq"] > last + 1:
                        _fill_hole(ws, run_pk, last, item["seq"])
                    _send(ws, item)
                    last = item["seq"]
    except ConnectionClosed:
        return
    finally:
        db.session.remove()
