"""At most PLACES API calls and page loads at once in a web process; the rest are let in in the
order they arrived.

The web runs on gevent (gunicorn.conf.py): a request is a greenlet, and a process takes every
connection it is given. Its database pool is then what bounds the requests in flight, and a pool
hands a connection given back to whichever greenlet asks next, not to the one that has waited
longest: under load a few requests wait for seconds (the run route at 320 requests/s had a p99
of 1.9 s, bench/viewers.py). The gate lets in as many requests as the pool has connections and
gives each freed place to the longest waiting request. Live-log websockets go past it: they wait
on Redis for their whole life and read the database through the process's board (api/live_board.py).
"""
from __future__ import annotations

import threading
import time
from collections import deque

from werkzeug.wsgi import ClosingIterator

PLACES = 15  # SQLAlchemy's pool: 5 connections kept, 10 more when needed


class Gate:
    def __init__(self, places: int):
        self.free = places
        self.waiting: deque[threading.Event] = deque()
        self.lock = threading.Lock()

    def enter(self) -> None:
        with self.lock:
            if self.free and not self.waiting:
                self.free -= 1
                return
            turn = threading.Event()
            self.waiting.append(turn)
        turn.wait()  # leave() hands this request its place

    def leave(self) -> None:
        with self.lock:
            if self.waiting:
                self.waiting.popleft().set()
            else:
                self.free += 1


def admitted(wsgi_app, places: int = PLACES):
    """`wsgi_app` behind a gate of `places`; a response holds its place until it is closed (a
    streamed log download too: it reads the database as it goes)."""
    gate = Gate(places)

    def app(environ, start_response):
        if environ.get("HTTP_UPGRADE", "").lower() == "websocket":
            return wsgi_app(environ, start_response)
        gate.enter()
        try:
            result = wsgi_app(environ, start_response)
        except BaseException:
            gate.leave()
            raise
        return ClosingIterator(result, [gate.leave])

    return app


def give_way() -> None:
    """Between the batches of a long read: in the gevent web a greenlet that never waits (SQLite's
    queries do not, nor does Python's own work) holds up every other request of its process, the
    live streams and the worker's heartbeat (gunicorn restarts a worker silent for 30 s, cutting
    a long download); with threads, it frees the GIL. Patched by gevent, sleep(0) yields."""
    time.sleep(0)
