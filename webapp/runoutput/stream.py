"""The live tail of a run's output: one Redis stream per run.

Entries carry lines with their `seq`, the same number as stored, so a viewer can read the stored
backlog, then the stream, and skip what it already has: no duplicate at the seam. An item of an
entry is `[seq, stream, text, ts]`, where text may hold several lines joined by newlines (a block of
one read): they are numbered seq, seq + 1, ... (a line itself never holds a newline). Where the stream
was trimmed past what the viewer has, the viewer fills the hole from the database (`webapp/api/live.py`).

Lines are published only by the run's owner: the publish is one Lua script that checks the run's
lease (the owner's token) before it appends, so a worker that lost its run cannot write into the
stream that the new owner feeds.
"""
from __future__ import annotations

import json

from flask import current_app, has_app_context
from redis.exceptions import RedisError

from .. import keys
from ..connections import get_redis

ENTRY_ITEMS = 200
ENTRY_CHARS = 16 * 1024  # an entry holds up to this much text (one bigger item alone)
KEEP_AFTER_END_SEC = 3600
KEEP_SEC = 7 * 86400
DEFAULT_MAXLEN = 2000  # entries (batches of lines): far more than the database lags behind


class LeaseLost(Exception):
    """A worker no longer owns the run it was handling (another worker took it over): it must
    stop without touching the run or its container. Not an HTTP error."""


def _maxlen() -> int:
    return current_app.config.get("LIVE_STREAM_MAXLEN", DEFAULT_MAXLEN) if has_app_context() else DEFAULT_MAXLEN


# KEYS: lease, stream.  ARGV: token, lease ttl ms, maxlen, keep sec, entry...
# A lease that vanished (Redis flushed or restarted) is taken back by its owner; a lease held by
# another token means this worker lost the run: nothing is written and 0 is returned.
_FENCED_XADD = """
local current = redis.call('GET', KEYS[1])
if current == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX')
elseif current ~= ARGV[1] then
  return 0
end
for i = 5, #ARGV do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'lines', ARGV[i])
end
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""


def publish_lines(public_id: str, lines: list[tuple], *, token: str, lease_ttl_ms: int,
                  maxlen: int = DEFAULT_MAXLEN, redis=None) -> None:
    """lines: (seq, stream, text, ts iso), text one line or a block of them. One stream entry holds
    a batch of items (a flood makes thousands of lines a second; one entry each would cost Redis
    more than the lines are worth). Raises LeaseLost when another worker owns the run."""
    if not lines:
        return
    r = redis or get_redis()
    entries, batch, chars = [], [], 0
    for item in lines:
        if batch and (len(batch) >= ENTRY_ITEMS or chars + len(item[2]) > ENTRY_CHARS):
            entries.append(json.dumps(batch))
            batch, chars = [], 0
        batch.append(item)
        chars += len(item[2])
    entries.append(json.dumps(batch))
    ok = r.eval(_FENCED_XADD, 2, keys.run_lease(public_id), keys.run_stream(public_id), token, lease_ttl_ms, maxlen,
                KEEP_SEC, *entries)
    if not ok:
        raise LeaseLost(public_id)


def publish_end(public_id: str, status: str, redis=None) -> None:
    try:
        r = redis or get_redis()
        key = keys.run_stream(public_id)
        r.xadd(key, {"event": "end", "status": status}, maxlen=_maxlen(), approximate=True)
        r.expire(key, KEEP_AFTER_END_SEC)
    except Exception:  # viewers also notice the end from the database
        pass


def last_published_seq(public_id: str, redis=None) -> int | None:
    """The highest seq any viewer may have received, or None if the stream is gone (or Redis
    does not answer)."""
    r = redis or get_redis()
    try:
        entries = r.xrevrange(keys.run_stream(public_id), count=10)
    except RedisError:
        return None
    for _, fields in entries:
        items = [i for i in decode(fields) if "seq" in i]
        if items:
            return max(i["seq"] for i in items)
    return None


def cursor_after(public_id: str, seq: int, redis=None) -> str:
    """Where a reader that has every line up to `seq` starts reading the stream: the id of the
    newest entry holding no line past `seq`, found from the end backwards (the database lags the
    stream by a batch or two, so this reads a few entries, not the whole stream); "0-0" when
    every entry kept holds later lines."""
    r = redis or get_redis()
    key, top = keys.run_stream(public_id), "+"
    while True:
        entries = r.xrevrange(key, max=top, count=50)
        for entry_id, fields in entries:
            lines = [i["seq"] for i in decode(fields) if "seq" in i]
            if lines and max(lines) <= seq:
                return entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        if len(entries) < 50:
            return "0-0"
        last = entries[-1][0]
        top = "(" + (last.decode() if isinstance(last, bytes) else last)


def decode(fields: dict) -> list[dict]:
    """The items of one stream entry: lines, or the end event."""
    f = {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
         for k, v in fields.items()}
    if "event" in f:
        return [{"event": f["event"], "status": f.get("status")}]
    return [{"stream": stream, "text": line, "ts": ts, "seq": seq + i}
            for seq, stream, text, ts in json.loads(f["lines"]) for i, line in enumerate(text.split("\n"))]
