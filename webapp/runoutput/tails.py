"""One reader of a run's live stream per process, shared by every viewer of that run there.

A viewer that read the stream itself made one XREAD, and decoded and encoded each entry, for
every line it got: a thousand viewers of twenty runs printing a line a second made a thousand
XREADs a second. Here one greenlet (or thread) per watched stream reads it, decodes each entry and
encodes each of its lines as a frame once, and keeps the last KEEP entries. A viewer whose cursor
is within what the tail holds takes its entries from there; one that is behind it (it started
from an older entry, or the tail dropped entries it had not taken yet) reads Redis itself, as
before, until it has caught up. A tail that no viewer asked for IDLE_SEC stops.
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque

from ..connections import per_process
from .stream import decode

KEEP = 64  # entries a tail holds: its viewers take them as they come; one that lags reads Redis
COUNT = 500  # entries a read returns at most
IDLE_SEC = 5.0


def entry_id(raw) -> tuple[int, int]:
    """A stream entry id ("1700000000000-3", str or bytes) as a comparable pair."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def framed(raw_id, fields: dict) -> tuple[str, list[tuple[dict, str]]]:
    """(entry id, [(item, its frame as sent to a viewer)]) for one stream entry."""
    text_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
    return text_id, [(item, json.dumps(item)) for item in decode(fields)]


class Tail:
    def __init__(self, tails: "Tails", key: str, cursor: str):
        self.tails, self.key, self.cursor = tails, key, cursor
        self.base = entry_id(cursor)  # every entry after it is in `entries`
        self.entries: deque = deque()  # (id pair, id, items)
        self.changed = threading.Condition(tails.lock)
        self.asked = time.monotonic()
        self.ended = False

    def run(self, redis) -> None:
        while True:
            with self.tails.lock:
                if time.monotonic() - self.asked > IDLE_SEC:
                    self._end()
                    return
            try:
                reply = redis.xread({self.key: self.cursor}, count=COUNT, block=1000)
            except Exception:  # its viewers read Redis themselves, and meet the error there
                with self.tails.lock:
                    self._end()
                return
            if reply:
                self._add([framed(raw_id, fields) for raw_id, fields in reply[0][1]])

    def _add(self, new: list) -> None:
        with self.tails.lock:
            for text_id, items in new:
                self.entries.append((entry_id(text_id), text_id, items))
            self.cursor = new[-1][0]
            while len(self.entries) > KEEP:
                self.base = self.entries.popleft()[0]
            self.changed.notify_all()

    def _end(self) -> None:
        """Under the lock."""
        self.ended = True
        if self.tails.tails.get(self.key) is self:
            del self.tails.tails[self.key]
        self.changed.notify_all()

    def after(self, at: tuple[int, int]) -> list:
        """Under the lock: the entries after `at`, oldest first, at most COUNT."""
        found = []
        for pair, text_id, items in reversed(self.entries):
            if pair <= at:
                break
            found.append((text_id, items))
        return found[::-1][:COUNT]


class Tails:
    def __init__(self, redis):
        self.redis = redis
        self.lock = threading.Lock()
        self.tails: dict[str, Tail] = {}

    def read(self, key: str, cursor: str, block_ms: int) -> list:
        """The entries of stream `key` after `cursor` as (entry id, [(item, frame)]), waiting up to
        `block_ms` for one; [] when none came."""
        at, deadline = entry_id(cursor), time.monotonic() + block_ms / 1000
        with self.lock:
            tail = self._tail(key, cursor)
            while not tail.ended and at >= tail.base:
                found = tail.after(at)
                left = deadline - time.monotonic()
                if found or left <= 0:
                    return found
                tail.changed.wait(left)
                tail.asked = time.monotonic()
        reply = self.redis.xread({key: cursor}, count=COUNT, block=block_ms)  # behind the tail
        return [framed(raw_id, fields) for raw_id, fields in reply[0][1]] if reply else []

    def _tail(self, key: str, cursor: str) -> Tail:
        """Under the lock: the stream's tail, started from `cursor` if there is none."""
        tail = self.tails.get(key)
        if tail is None:
            tail = self.tails[key] = Tail(self, key, cursor)
            threading.Thread(target=tail.run, args=(self.redis,), name=f"tail {key}", daemon=True).start()
        tail.asked = time.monotonic()
        return tail


def tails(redis) -> Tails:
    """This process's tails reading with `redis`, a client for blocking reads (a forked web worker
    makes its own)."""
    return per_process("live-tails", str(id(redis)), lambda: Tails(redis))  # they keep `redis` alive
