"""Every Redis key and RQ queue name the product uses, in one place: what lives in Redis, and
who writes it, is read here, not guessed from f-strings spread over the tree. Redis is a cache
and a signal bus: nothing in it is the only copy of a fact (the database is), and every key but
the queues and the metrics counters expires by itself."""
from __future__ import annotations

from datetime import date

# RQ queues. A worker slot listens to its host's queue first, then its pools' queues.
RUNS_QUEUE = "runs"  # the default pool's runs
NOTIFY_QUEUE = "notify"  # notification delivery attempts
DEFAULT_POOL = "default"
# The tasks a queue's jobs may name (jobs/tasks.py, where each is defined and the slots refuse any
# other): the web and the services enqueue them by these names, since they never import jobs/;
# tests/test_architecture.py checks that each names a function there.
EXECUTE_RUN = "jobs.tasks.execute_run"
RESUME_RUN = "jobs.tasks.resume_run"
DELIVER_NOTIFICATION = "jobs.tasks.deliver_notification"
TASKS = frozenset({EXECUTE_RUN, RESUME_RUN, DELIVER_NOTIFICATION})

# Prefixes of families of keys (each family's members are named by the functions below).
METRICS = "workflows:metrics"  # counters and histograms written by webapp/metrics.py
HEARTBEAT = "workflows:heartbeat"  # one key per live process, with a TTL (webapp/heartbeats.py)
REVEAL = "workflows:reveal:"  # a secret shown once on the next page (webapp/dashboard/reveal.py)
RATELIMIT = "workflows"  # flask-limiter's own keys
REDIS_ALIVE = "workflows:redis-alive"  # missing after a Redis restart: the sweep re-enqueues


def pool_queue(pool: str) -> str:
    """The queue of a worker pool's runs (the default pool's is `runs`)."""
    return RUNS_QUEUE if pool == DEFAULT_POOL else f"{RUNS_QUEUE}:{pool}"


def host_queue(host: str) -> str:
    """The queue of work bound to one engine host: only workers on that host listen to it."""
    return f"host:{host}"


def run_cancel(public_id: str) -> str:
    """Set by a cancel (its reason as value): the fast path the worker polls."""
    return f"run:{public_id}:cancel"


def run_lease(public_id: str) -> str:
    """The lock of the worker that owns the run; its token fences every write (webapp/runoutput/stream.py)."""
    return f"run:{public_id}:lease"


def run_resuming(public_id: str) -> str:
    """Set by the sweep that handed a run over for re-attach, so one hand-over is in flight."""
    return f"run:{public_id}:resuming"


def run_stream(public_id: str) -> str:
    """The run's live output (a Redis stream the websocket follows)."""
    return f"runlog:{public_id}"


def image_access(project_id: int, image_id: str, image: str) -> str:
    """A project's recent proof that it may use a local image (the registry confirmed it)."""
    return f"workflows:image-access:{project_id}:{image_id}:{image}"


def daily_output(team_id: int, day: date) -> str:
    """Bytes of output a team's runs stored on one UTC day (RUNS_OUTPUT_DAILY_MB)."""
    return f"workflows:output:{team_id}:{day:%Y%m%d}"


def team_sockets(team_id: int) -> str:
    """The team's open live-log websockets (a sorted set of socket ids by expiry)."""
    return f"workflows:sockets:team:{team_id}"


def principal_sockets(label: str) -> str:
    """One member's or API key's open live-log websockets."""
    return f"workflows:sockets:{label}"


def fault(name: str) -> str:
    """A fault point reached (tests and the chaos bench wait for it: webapp/faults.py)."""
    return f"fault:{name}"
