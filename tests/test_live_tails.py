"""What the live streams of one process share: one reader of each run's stream (runoutput/tails.py,
against the real Redis; a viewer behind what that reader holds reads the stream itself), and the
board of their credentials (api/live_board.py)."""
from __future__ import annotations

import json
import threading
import time
import uuid

from webapp.connections import get_redis
from webapp.runoutput import tails as tails_module
from webapp.runoutput.tails import Tails


class CountingReads:
    """The real client, with its XREADs counted."""

    def __init__(self, redis):
        self.redis, self.xreads = redis, 0

    def xread(self, *args, **kwargs):
        self.xreads += 1
        return self.redis.xread(*args, **kwargs)


def _add(redis, key: str, seq: int) -> None:
    redis.xadd(key, {"lines": json.dumps([[seq, "stdout", f"line {seq}", "2026-01-01T00:00:00Z"]])})


def _view(shared: Tails, key: str, cursor: str, lines: int, into: list) -> None:
    end = time.monotonic() + 30
    while len(into) < lines and time.monotonic() < end:
        for cursor, items in shared.read(key, cursor, 1000):
            into += [item["seq"] for item, frame in items if json.loads(frame) == item]


def test_six_viewers_of_a_stream_cost_one_reader_and_a_late_one_reads_for_itself(app, monkeypatch):
    monkeypatch.setattr(tails_module, "KEEP", 5)
    with app.app_context():
        redis = get_redis(blocking=True)
    key = f"test:tails:{uuid.uuid4().hex}"
    counting = CountingReads(redis)
    shared = Tails(counting)
    _add(redis, key, 0)
    got: list[list] = [[] for _ in range(6)]
    viewers = [threading.Thread(target=_view, args=(shared, key, "0-0", 21, got[i])) for i in range(6)]
    for viewer in viewers:
        viewer.start()
    for seq in range(1, 21):
        time.sleep(0.05)
        _add(redis, key, seq)
    for viewer in viewers:
        viewer.join(35)
    assert all(lines == list(range(21)) for lines in got), got
    # Alone, each viewer makes an XREAD for nearly every line: about 6 x 21.
    assert counting.xreads <= 40, counting.xreads  # one reader: about one a line, 21
    late: list = []
    _view(shared, key, "0-0", 21, late)  # the tail holds the last 5 entries: the rest from Redis
    assert late == list(range(21))
    redis.delete(key)


def test_a_new_session_s_stream_is_valid_beside_an_old_session_s_until_the_board_polls(app):
    """A member changes their password (a new session, version 2) and opens a stream while a stream
    of the old session is still open: the new one holds, the old one ends."""
    from webapp.api.live_board import Board
    from webapp.services.access import Principal
    board = Board(app)
    board.thread = "not started"  # this test reads the board's bookkeeping only; no poll runs
    old, new = Principal(user_id=7, session_version=1), Principal(user_id=7, session_version=2)
    board.join(1, "running", old)
    board.join(1, "running", new)
    assert board.valid(new) and not board.valid(old)
    board.join(2, "running", old)  # a late join of the old session does not bring it back
    assert board.valid(new) and not board.valid(old)
