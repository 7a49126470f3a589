"""How a run's container ends, as the engine tells it: stopped (a cancel), its exit code, an
out-of-memory kill, or this host's own fence (jobs/fence.py). `say` writes a system line in the
run's log."""
from __future__ import annotations

import logging
from typing import Callable

import requests
from docker.errors import APIError

from . import fence

log = logging.getLogger(__name__)

STOP_GRACE_SEC = 10
Say = Callable[[str], None]


def stop(executor, container_id: str, public_id: str, say: Say) -> None:
    try:
        executor.stop(container_id, STOP_GRACE_SEC)
    except APIError:
        log.exception("stopping the container of %s failed", public_id)
        say("stopping the container failed; it is removed instead")


def exit_code(executor, container_id: str, public_id: str, say: Say) -> int | None:
    """The exit code of a container that was killed or stopped, waited for through the grace."""
    try:
        code = executor.wait(container_id, STOP_GRACE_SEC + 5)
    except Exception as e:
        log.exception("reading the exit code of %s failed", public_id)
        code, problem = None, type(e).__name__
    else:
        problem = "no exit within the stop's grace"
    if code is None:
        say(f"could not read the container's exit code ({problem})")
    return code


def oom_error(executor, container_id: str, memory_mb: int | None) -> str | None:
    """The exit code of an out-of-memory kill (137) does not say why; the engine does."""
    try:
        killed = executor.state(container_id).get("OOMKilled")
    except (APIError, requests.exceptions.RequestException):
        return None
    if not killed:
        return None
    limit = f" (its limit is {memory_mb} MB)" if memory_mb else ""
    return f"the container ran out of memory{limit} and was killed"


def fenced(host: str, public_id: str, say: Say) -> str | None:
    """Why this host stopped the run's container itself, said in its log too; None if it did not."""
    text = fence.read_note(host, public_id)
    if text is not None:
        say(text)
    return text
