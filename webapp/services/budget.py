"""Per-team budgets kept in Redis, shared by every web process: manual fires (trigger and retry,
from the API or the dashboard alike) and channel test messages.

A moving window (the `limits` library's MovingWindowRateLimiter): 30 per minute means at most 30
in any 60 seconds, not 60 around the turn of a fixed minute. Only calls that would otherwise
succeed spend it: the services check access and state first. Redis away: the budget is not
enforced (the fire is still recorded) and says so in the log.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from flask import current_app, g, has_request_context
from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from .errors import ServiceError

log = logging.getLogger(__name__)
_limiters: dict = {}

TEST_MESSAGES = "6 per minute"


class RateLimited(ServiceError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, state: "Budget"):
        super().__init__(message)
        self.state = state


@dataclass
class Budget:
    limit: int
    remaining: int
    reset_in: int  # seconds until the oldest call in the window leaves it

    def headers(self) -> dict[str, str]:
        return {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
                "RateLimit-Reset": str(self.reset_in)}


def _limiter() -> MovingWindowRateLimiter:
    url = current_app.config["REDIS_URL"]
    key = (url, os.getpid())
    if key not in _limiters:
        _limiters[key] = MovingWindowRateLimiter(storage_from_string(url))
    return _limiters[key]


def spend(kind: str, team_id: int, rate: str) -> Budget | None:
    """Take one from `team_id`'s budget of `kind`, or RateLimited. The state is kept on `g` for
    the API's RateLimit-* headers."""
    item: RateLimitItem = parse(rate)
    limiter = _limiter()
    try:
        allowed = limiter.hit(item, "workflows", kind, str(team_id))
        stats = limiter.get_window_stats(item, "workflows", kind, str(team_id))
    except Exception as e:  # Redis away
        log.warning("the %s budget of team %s is not enforced: %s", kind, team_id, e)
        return None
    state = Budget(item.amount, stats.remaining, max(1, int(stats.reset_time - time.time() + 0.999)))
    if has_request_context():
        g.rate_budget = state
    if not allowed:
        raise RateLimited(f"too many {kind} calls for this team: at most {rate}; "
                          f"try again in {state.reset_in} s", state)
    return state


def spend_trigger(team_id: int) -> Budget | None:
    return spend("trigger", team_id, current_app.config["TRIGGER_RATE_LIMIT"])


def spend_test_message(team_id: int) -> Budget | None:
    return spend("channel-test", team_id, TEST_MESSAGES)
