"""A live-log viewer as the tests use one: a websocket client collecting frames until the end event."""
from __future__ import annotations

import json
import time

from simple_websocket import Client, ConnectionClosed


def stream_url(ws_server, m, run_id):
    return f"{ws_server}/api/workflows/{m.team_id}/workflows/runs/{run_id}/logs/stream"


def collect(url, headers, timeout=30.0, into: list | None = None):
    """(receive time, frame) for every frame until the end event; appended to `into` as they arrive."""
    ws = Client.connect(url, headers=headers)
    got = [] if into is None else into
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            data = ws.receive(timeout=5)
            if data is None:
                continue
            frame = json.loads(data)
            got.append((time.monotonic(), frame))
            if frame.get("event") == "end":
                break
    except ConnectionClosed:
        pass
    finally:
        try:
            ws.close()
        except (ConnectionClosed, OSError):  # the server closed first (after the end event)
            pass
    return got
