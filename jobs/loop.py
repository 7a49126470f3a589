"""The one loop of the long-lived processes: a step every N seconds until told to stop, each
failure rolled back and told once per streak (the scheduler's tick and sweep, a worker host's
heartbeat and reaping)."""
from __future__ import annotations

import logging
import threading
import time

from webapp.extensions import db
from webapp.process_log import WarnOnce

log = logging.getLogger(__name__)
_warnings = WarnOnce(log)


def guarded(what: str, step) -> bool:
    """`step()` once, in the caller's app context: True if it worked. A failure rolls its
    transaction back and is logged once (with its trace) until the step works again."""
    try:
        step()
        _warnings.ok(what)
        return True
    except Exception as e:
        db.session.rollback()
        _warnings.failed(what, "%s failed: %s: %s", what, type(e).__name__, str(e)[:200], exc_info=True)
        return False
    finally:
        db.session.remove()


def every(seconds: float, what: str, step, stopping: threading.Event) -> None:
    """`step` every `seconds` (from one start to the next) until `stopping`, each run `guarded`."""
    while not stopping.is_set():
        started = time.monotonic()
        guarded(what, step)
        stopping.wait(max(0.0, seconds - (time.monotonic() - started)))
