"""Prometheus metrics, right under several web processes and several hosts.

Recording: the histograms and the counters of facts that leave no row (a skipped fire, a
recovery, a reaped container) are kept in Redis hashes by whichever process saw the fact (nothing
lives in a process's memory). Recording never fails the caller: a Redis error costs one
observation and one log line. The /metrics page that reads them is webapp/metrics_page.py.
"""
from __future__ import annotations

import bisect
import logging

import redis

from . import keys
from .connections import get_redis

log = logging.getLogger(__name__)

# From half a second to the 24 h maximum timeout.
DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)
WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
HISTOGRAMS = {
    "run_duration_seconds": (DURATION_BUCKETS, "Run durations, from the container's start to its end."),
    "run_queue_wait_seconds": (WAIT_BUCKETS, "From when a run became due to when its container started."),
    "schedule_lag_seconds": (LAG_BUCKETS, "Scheduled runs: startedAt - scheduledFor."),
}
# Label values reported as 0 before anything happened, so that rate() and alerts see the series.
KNOWN_VALUES = {"fires_skipped": ("forbid", "missed"), "runs_recovered": ("reattached", "completed", "failed", "host_lost")}
COUNTERS = {
    "fires_skipped": ("reason", "Scheduled instants not run: forbid (the previous run was still going) "
                                "or missed (the scheduler was down past the workflow's timeout)."),
    "runs_recovered": ("how", "Runs whose worker died, taken over by a worker of their host: reattached, "
                              "completed from the exited container, or failed (worker lost); or failed "
                              "by the sweeper because their host was lost (host_lost)."),
    "containers_reaped": ("", "Containers removed because their run was over or unknown."),
    "fire_collisions": ("", "Scheduled instants found with a run already when claimed (made another way): "
                            "passed over, the workflow moving on to its next instant."),
}


def observe(name: str, team_id: int, seconds: float) -> None:
    """Add one observation to the histogram `name` of team `team_id`."""
    buckets = HISTOGRAMS[name][0]
    slot = bisect.bisect_left(buckets, seconds)  # the first bucket whose bound is >= seconds
    key = f"{keys.METRICS}:h:{name}"
    try:
        pipe = get_redis().pipeline(transaction=False)
        pipe.hincrby(key, f"{team_id}:{slot}", 1)
        pipe.hincrbyfloat(key, f"{team_id}:sum", max(0.0, seconds))
        pipe.execute()
    except redis.RedisError as e:
        log.warning("metric %s not recorded: %s", name, e)


def count(name: str, label: str = "", amount: int = 1) -> None:
    if amount <= 0:
        return
    try:
        get_redis().hincrby(f"{keys.METRICS}:c:{name}", label, amount)
    except redis.RedisError as e:
        log.warning("metric %s not recorded: %s", name, e)
