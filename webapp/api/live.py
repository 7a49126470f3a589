"""The live log websocket: the stored backlog, then the live tail, then {"event": "end"}.

Lines carry a `seq`; the backlog ends at some seq and the Redis stream is read from its start,
skipping what was sent, so the seam has no gap and no duplicate.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from urllib.parse import urlparse

from flask import current_app, g, request
from simple_websocket import ConnectionClosed

from ..connections import get_redis
from ..extensions import db, sock
from .. import keys
from ..gate import needs
from ..runoutput import read
from ..runoutput.stream import cursor_after
from ..runoutput.tails import tails
from ..models import Run
from ..models.base import isoformat, utcnow
from ..vocabulary import TERMINAL
from ..services import runs as run_service
from ..services.errors import Invalid
from . import live_board
from .blueprint import bp as api_bp
from .errors import ApiError
from .serialize import line_json

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
    g.live_after = _after_seq()
    g.live_run = run_service.get_run(g.principal, args["team_id"], args["run_id"])
    _take_room()
    g.live_socket = _open_socket(g.principal, args["team_id"])


def _after_seq() -> int:
    """`?afterSeq=N`: the viewer has the lines up to N (the run page's own tail); -1: none."""
    raw = request.args.get("afterSeq", "")
    if raw == "":
        return -1
    if not raw.lstrip("-").isdigit() or not -1 <= int(raw) <= 2**31 - 1:
        raise Invalid("afterSeq is a whole number from -1 to 2147483647", {"afterSeq": "-1 to 2147483647"})
    return int(raw)


# Each open stream holds one of the web process's connections: it keeps at most WS_MAX_PER_PROCESS
# of them for streams (half of WEB_CONNECTIONS by default), so API calls and pages always find one.
_streams_lock = threading.Lock()
_streams_open = 0


def _take_room() -> None:
    global _streams_open
    cap = current_app.config["WS_MAX_PER_PROCESS"]
    with _streams_lock:
        if _streams_open >= cap:
            raise ApiError(503, f"this web process serves {cap} live-log streams, the most it keeps room "
                                "for (WS_MAX_PER_PROCESS); try again shortly", "unavailable")
        _streams_open += 1
    g.live_room = True


def release_stream(exc=None) -> None:
    """teardown_request: the stream's room is free again (or the stream never opened)."""
    global _streams_open
    if g.pop("live_room", False):
        with _streams_lock:
            _streams_open -= 1


# Open sockets are counted per team and per key or member in Redis sorted sets (member: socket id,
# score: when it lapses unless renewed), so a web process that dies frees its count soon.
SOCKET_TTL_SEC = 60
RENEW_EVERY_SEC = 20
_OPEN_SOCKET = """
local now = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) >= tonumber(ARGV[3 + i]) then return i end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + tonumber(ARGV[3]), ARGV[2])
  redis.call('EXPIRE', key, tonumber(ARGV[3]) * 2)
end
return 0
"""


def _socket_keys(principal, team_id: int) -> list[str]:
    return [keys.team_sockets(team_id), keys.principal_sockets(principal.label)]


def _open_socket(principal, team_id: int) -> str:
    """Count this socket, or 429 before the upgrade when its team or its key/member has the most
    open already (WS_MAX_PER_TEAM, WS_MAX_PER_PRINCIPAL)."""
    cfg = current_app.config
    socket_id = uuid.uuid4().hex
    caps = [cfg["WS_MAX_PER_TEAM"], cfg["WS_MAX_PER_PRINCIPAL"]]
    full = get_redis().eval(_OPEN_SOCKET, 2, *_socket_keys(principal, team_id), time.time(), socket_id,
                            SOCKET_TTL_SEC, *caps)
    if full:
        who = "this team" if full == 1 else "this API key" if principal.key_id else "this member"
        raise ApiError(429, f"{who} has {caps[full - 1]} live-log streams open, the most allowed; close one",
                       "rate_limited")
    return socket_id


def _renew_socket(principal, team_id: int, socket_id: str) -> None:
    r = get_redis()
    for key in _socket_keys(principal, team_id):
        r.zadd(key, {socket_id: time.time() + SOCKET_TTL_SEC})


def _close_socket(principal, team_id: int, socket_id: str) -> None:
    try:
        r = get_redis()
        for key in _socket_keys(principal, team_id):
            r.zrem(key, socket_id)
    except Exception:  # it lapses by itself
        pass


def _send(ws, payload: dict) -> None:
    ws.send(json.dumps(payload))


@sock.route("/workflows/<int:team_id>/workflows/runs/<run_id>/logs/stream", bp=api_bp)
@needs("team.read")
def live_log_stream(ws, team_id: int, run_id: str):
    run_pk, public_id = g.live_run.id, g.live_run.public_id
    principal, socket_id = g.principal, g.live_socket
    watch = Watch(principal, team_id, socket_id, run_pk)
    try:
        stream_logs(ws, run_pk, public_id, watch, g.live_after)
    finally:
        watch.leave()
        _close_socket(principal, team_id, socket_id)
        if not watch.valid:
            ws.close(reason=1008, message="the credentials of this stream were revoked")


class Watch:
    """Between frames: renew the socket's count; the run's status and whether the credentials
    still hold (a revoked key or an ended session ends its streams) come from the process's board."""

    def __init__(self, principal, team_id: int, socket_id: str, run_pk: int):
        self.principal, self.team_id, self.socket_id, self.run_pk = principal, team_id, socket_id, run_pk
        self.board = live_board.board(current_app._get_current_object())
        self.valid, self.joined = True, False
        self.renewed = time.monotonic()

    def join(self, status: str) -> None:
        self.board.join(self.run_pk, status, self.principal)
        self.joined = True

    def leave(self) -> None:
        if self.joined:
            self.board.leave(self.run_pk, self.principal)

    def status(self) -> str:
        status = self.board.status(self.run_pk)
        if status is live_board.GONE:
            raise RunGone(self.run_pk)
        return status

    def ok(self) -> bool:
        self.valid = self.board.valid(self.principal)
        now = time.monotonic()
        if now - self.renewed >= RENEW_EVERY_SEC:
            self.renewed = now
            try:
                _renew_socket(self.principal, self.team_id, self.socket_id)
            except Exception:
                pass
        return self.valid


CATCH_UP_WAIT_SEC = 30


class RunGone(Exception):
    """The run was deleted (its workflow with it) while a viewer watched it."""


def _status(run_pk: int) -> str:
    db.session.expire_all()
    run = db.session.get(Run, run_pk)
    if run is None:
        raise RunGone(run_pk)
    status = run.status
    db.session.commit()
    return status


def _send_stored(ws, run_pk: int, after: int, before: int | None = None) -> int:
    """Send the stored lines with after < seq (< before), a page at a time; the last seq sent."""
    last = after
    for rows in read.log_pages(run_pk, after, before):
        for row in rows:
            _send(ws, line_json(row))
            last = row.seq
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


CLIENT_CLOSE_WAIT_SEC = 5.0


def _end(ws, status: str) -> None:
    """Send the end, then let the client close first: a server that closes at once can reset the
    connection under frames the browser has not read yet (they are then lost, and the page says
    the connection was lost). A client that does not close is closed after a few seconds."""
    _send(ws, {"event": "end", "status": status})
    deadline = time.monotonic() + CLIENT_CLOSE_WAIT_SEC
    while ws.connected and time.monotonic() < deadline:
        ws.receive(timeout=0.2)


def stream_logs(ws, run_pk: int, public_id: str, watch: Watch, after: int = -1) -> None:
    """The lines past `after`: the stored ones, then the live stream from the first entry the
    database may not have yet (not from the stream's start), then the end."""
    try:
        status = _status(run_pk)
        redis = get_redis(blocking=True)
        key = keys.run_stream(public_id)
        last = _send_stored(ws, run_pk, after)
        if status in TERMINAL:
            _end(ws, status)
            return
        watch.join(status)
        cursor = cursor_after(public_id, last, redis)
        shared = tails(redis)
        while ws.connected and watch.ok():  # a client that left frees its room at once
            entries = shared.read(key, cursor, IDLE_CHECK_MS)
            if not entries:
                status = watch.status()
                if status in TERMINAL:
                    _send_stored(ws, run_pk, last)
                    _end(ws, status)
                    return
                continue
            for cursor, items in entries:
                for item, frame in items:
                    if "event" in item:
                        _send_stored(ws, run_pk, last)
                        _end(ws, item["status"] or _status(run_pk))
                        return
                    if item["seq"] <= last:
                        continue
                    if item["seq"] > last + 1:
                        _fill_hole(ws, run_pk, last, item["seq"])
                    ws.send(frame)
                    last = item["seq"]
    except ConnectionClosed:
        return
    except RunGone:
        ws.close(reason=1000, message="the run was deleted")
    finally:
        db.session.remove()
