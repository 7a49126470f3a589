"""The live tail of a run's output: one Redis stream per run.

Entries carry the line's `seq`, the same number as its stored row, so a viewer can read the stored
backlog, then the stream, and skip what it already has: no gap, no duplicate at the seam.
"""
from __future__ import annotations

import json

from webapp.connections import get_redis

STREAM_MAXLEN = 2000  # entries (batches of lines): always more than the database lags behind
ENTRY_LINES = 200
KEEP_AFTER_END_SEC = 3600


def stream_key(public_id: str) -> str:
    return f"runlog:{public_id}"


def publish_lines(public_id: str, lines: list[tuple[int, str, str, str]], redis=None) -> None:
    """lines: (seq, stream, text, ts iso). One stream entry holds a batch of lines (a flood makes
    thousands of lines a second; one entry each would cost Redis more than the lines are worth)."""
    if not lines:
        return
    r = redis or get_redis()
    pipe = r.pipeline(transaction=False)
    key = stream_key(public_id)
    for start in range(0, len(lines), ENTRY_LINES):
        pipe.xadd(key, {"lines": json.dumps(lines[start:start + ENTRY_LINES])},
                  maxlen=STREAM_MAXLEN, approximate=True)
    pipe.expire(key, 7 * 86400)
    pipe.execute()


def publish_end(public_id: str, status: str, redis=None) -> None:
    try:
        r = redis or get_redis()
        key = stream_key(public_id)
        r.xadd(key, {"event": "end", "status": status}, maxlen=STREAM_MAXLEN, approximate=True)
        r.expire(key, KEEP_AFTER_END_SEC)
    except Exception:  # viewers also notice the end from the database
        pass


def decode(fields: dict) -> list[dict]:
    """The items of one stream entry: lines, or the end event."""
    f = {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
         for k, v in fields.items()}
    if "event" in f:
        return [{"event": f["event"], "status": f.get("status")}]
    return [{"stream": stream, "text": text, "ts": ts, "seq": seq} for seq, stream, text, ts in json.loads(f["lines"])]


__all__ = ["stream_key", "publish_lines", "publish_end", "decode"]
