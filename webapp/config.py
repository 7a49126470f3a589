"""One Config, read from the environment with strict parsing."""
from __future__ import annotations

import ipaddress
import os
import secrets
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV_SECRET = "dev-only-insecure-secret-key"


class ConfigError(RuntimeError):
    pass


def _int(name: str, default: int, low: int = 0, high: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _float(name: str, default: float, low: float, high: float) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _engine_options(url: str) -> dict:
    """A connection to a PostgreSQL server that stops answering (a partition, a dead failover) fails
    within about ten seconds instead of waiting out TCP's retransmissions (minutes): a worker then
    keeps supervising and tries again (STORAGE_OUTAGE_SEC) rather than hang in a query."""
    if not url.startswith("postgresql"):
        return {"pool_pre_ping": True}
    # The server is asked for the same of its side: the session of a client cut off mid-transaction
    # ends within seconds, and with it the row locks it held (a run's row, which the sweeper must
    # then be able to update), instead of after the system's two hours of keepalive silence.
    server_side = ("-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3 "
                   "-c tcp_user_timeout=10000")
    return {"pool_pre_ping": True, "connect_args": {
        "connect_timeout": 10, "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
        "keepalives_count": 3, "tcp_user_timeout": 10000, "options": server_side}}


def local_redis_password() -> str:
    """The password scripts/setup.sh made once for the Redis it starts on this machine ("" if none)."""
    try:
        return (ROOT / "var" / "redis.password").read_text().strip()
    except OSError:
        return ""


def local_redis_url(db: int) -> str:
    """That Redis, with its password."""
    password = local_redis_password()
    return f"redis://:{password}@127.0.0.1:6379/{db}" if password else f"redis://127.0.0.1:6379/{db}"


def _egress() -> dict:
    """What run containers may reach beyond the internet (jobs/egress.py)."""
    allow = os.environ.get("RUNS_EGRESS_ALLOW", "").strip()
    for cidr in filter(None, (c.strip() for c in allow.split(","))):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(f"RUNS_EGRESS_ALLOW: {cidr!r} is not an address or CIDR") from None
    rules = os.environ.get("RUNS_EGRESS_RULES", "local").strip() or "local"
    if rules not in ("local", "external"):
        raise ConfigError("RUNS_EGRESS_RULES is local (the worker installs them) or external (installed by you)")
    return {"RUNS_EGRESS_ALLOW": allow, "RUNS_EGRESS_RULES": rules}


def _quotas() -> dict:
    """Each team's quota defaults (an operator overrides them per team: flask teams limits)."""
    return {
        "TEAM_MAX_WORKFLOWS": _int("TEAM_MAX_WORKFLOWS", 500, 0, 1_000_000),
        # 1 keeps the contract's 6-field (every-second) schedules; an operator may raise it
        "MIN_SCHEDULE_INTERVAL_SEC": _int("MIN_SCHEDULE_INTERVAL_SEC", 1, 1, 86400),
        "TEAM_MAX_QUEUED": _int("TEAM_MAX_QUEUED", 1000, 0, 1_000_000),
        "WORKFLOW_MAX_ENV_BYTES": _int("WORKFLOW_MAX_ENV_BYTES", 64 * 1024, 0, 16 * 1024 * 1024),
        "TEAM_MAX_OUTPUT_BYTES_PER_DAY": _int("TEAM_MAX_OUTPUT_BYTES_PER_DAY", 5 * 1024 ** 3, 0),
    }


def _fleet(lost_sec: int) -> dict:
    """What a fleet of worker hosts needs to stay exactly once (README, "Durability")."""
    return {
        "HOST_LOST_SEC": lost_sec,
        # A worker host that could not record its heartbeat for this long stops its own run
        # containers (self-fencing, jobs/fence.py), well before the fleet may call it lost.
        "HOST_FENCE_SEC": _fence_sec(lost_sec),
        # A run keeps going while its output or status cannot be written (a database restart or
        # failover): output waits in memory (bounded; past the bound it is counted as dropped) and
        # writes are retried with backoff. Only an outage longer than this fails the run (its
        # container stopped). Past HOST_FENCE_SEC the host has fenced its runs anyway.
        "STORAGE_OUTAGE_SEC": _int("STORAGE_OUTAGE_SEC", 120, 1, 86400),
    }


def _fence_sec(lost_sec: int) -> float:
    """HOST_FENCE_SEC: half of HOST_LOST_SEC by default, and refused unless clearly shorter (at
    most three quarters of it): the fenced containers must be gone, grace included, before the
    host is called lost and its runs retried elsewhere."""
    fence = _float("HOST_FENCE_SEC", lost_sec / 2, 1.0, 86400.0)
    if fence > lost_sec * 0.75:
        raise ConfigError(f"HOST_FENCE_SEC ({fence:g}) must be clearly shorter than HOST_LOST_SEC ({lost_sec}): "
                          f"at most {lost_sec * 0.75:g}, so that a host stops its containers before it is called lost")
    return fence


def _local_secret() -> str:
    """Outside production, without SECRET_KEY: a random key made once and kept in var/ (mode
    0600), shared by every process of this checkout, instead of a key everyone knows."""
    path = ROOT / "var" / "secret_key"
    for _ in range(50):
        try:
            value = path.read_text().strip()
            if value:
                return value
        except FileNotFoundError:
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_name(f"secret_key.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
            try:
                os.link(tmp, path)  # atomic: the first process's key wins
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        time.sleep(0.05)
    raise ConfigError(f"could not read or create {path}")


def _production_checks(secret: str | None) -> None:
    """What production refuses to start without."""
    if not secret or secret == DEV_SECRET or len(secret) < 16:
        raise ConfigError("SECRET_KEY must be set to a real secret (16+ chars) in production")
    if (os.environ.get("DOCKER_HOST") or "").startswith("tcp://") and not os.environ.get("DOCKER_TLS_VERIFY"):
        raise ConfigError("a tcp:// DOCKER_HOST needs DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH in production: "
                          "the engine's API is root on its host")
    if len(os.environ.get("METRICS_TOKEN", "")) < 16:
        raise ConfigError("METRICS_TOKEN must be set (16+ chars) in production: /metrics names every team and workflow")


def _containers() -> dict:
    """What a run's container gets."""
    return {
        "CONTAINER_PIDS_LIMIT": _int("CONTAINER_PIDS_LIMIT", 512, 16),
        # The writable /tmp (tmpfs, in the container's memory) of a workflow with readOnlyRootfs.
        "RUNS_TMPFS_MB": _int("RUNS_TMPFS_MB", 64, 1, 65536),
        # What a run gets when its workflow does not say, and the most a workflow may ask for.
        "DEFAULT_MEMORY_MB": _int("DEFAULT_MEMORY_MB", 1024, 6, 1048576),
        "DEFAULT_CPUS": _float("DEFAULT_CPUS", 1.0, 0.01, 256.0),
        "MAX_MEMORY_MB": _int("MAX_MEMORY_MB", 16384, 6, 1048576),
        "MAX_CPUS": _float("MAX_CPUS", float(os.cpu_count() or 1), 0.01, 256.0),
        # The engine's own log file of a run's container (json-file, two files of this size).
        "CONTAINER_LOG_MAX_MB": _int("CONTAINER_LOG_MAX_MB", 100, 1, 100000),
        # An image no run used for this many days is removed from its engine (jobs/images.py).
        "IMAGE_KEEP_DAYS": _float("IMAGE_KEEP_DAYS", 7.0, 0.0, 3650.0),
    }


def _metrics() -> dict:
    return {
        # GET /metrics asks for "Authorization: Bearer <this>" when it is set (open when empty).
        "METRICS_TOKEN": os.environ.get("METRICS_TOKEN", ""),
        # Workflows with series of their own on /metrics (oldest first); the rest are summed per team.
        "METRICS_MAX_WORKFLOW_SERIES": _int("METRICS_MAX_WORKFLOW_SERIES", 1000, 0, 1_000_000),
    }


def _hosts(raw: str, strip_dot: bool = False) -> frozenset:
    return frozenset(h.strip().lower().rstrip(".") if strip_dot else h.strip().lower()
                     for h in raw.split(",") if h.strip())


def _outbound(env: str) -> dict:
    """Notifications (SMTP, webhooks) and image registries: where requests may go."""
    return {
        "SMTP_HOST": os.environ.get("SMTP_HOST", "127.0.0.1"),
        "SMTP_PORT": _int("SMTP_PORT", 25, 1, 65535),
        "SMTP_USER": os.environ.get("SMTP_USER", ""),
        "SMTP_PASSWORD": os.environ.get("SMTP_PASSWORD", ""),
        "SMTP_FROM": os.environ.get("SMTP_FROM", "workflows@localhost"),
        "SMTP_STARTTLS": _bool("SMTP_STARTTLS", False),
        # Webhook URLs must be https; this allows http to localhost (development and tests only).
        "NOTIFY_ALLOW_HTTP_LOCALHOST": _bool("NOTIFY_ALLOW_HTTP_LOCALHOST", env != "production"),
        "NOTIFY_MAX_ATTEMPTS": _int("NOTIFY_MAX_ATTEMPTS", 5, 1, 20),
        # A channel whose endpoint refuses messages for good this many times in a row is disabled.
        "CHANNEL_DISABLE_AFTER": _int("CHANNEL_DISABLE_AFTER", 3, 1, 1000),
        # One delivery attempt, whole (connect, every read, every SMTP step): past it the attempt
        # is given up and retried. Below the 60 s after which a "sending" notification is taken
        # back from a worker presumed dead, so a slow attempt is never sent a second time meanwhile.
        "NOTIFY_DEADLINE_SEC": _int("NOTIFY_DEADLINE_SEC", 30, 1, 45),
        # Webhook targets on loopback or private addresses: refused in production unless allowed.
        "NOTIFY_ALLOW_PRIVATE": _bool("NOTIFY_ALLOW_PRIVATE", env != "production"),
        # Image registries on private addresses the engine may pull from (host or host:port).
        "REGISTRY_ALLOWED_HOSTS": _hosts(os.environ.get("REGISTRY_ALLOWED_HOSTS", "")),
        "NOTIFY_ALLOWED_HOSTS": _hosts(os.environ.get("NOTIFY_ALLOWED_HOSTS", ""), strip_dot=True),
    }


def from_env() -> dict:
    env = os.environ.get("WORKFLOWS_ENV", "development")
    secret = os.environ.get("SECRET_KEY")
    if env == "production":
        _production_checks(secret)
    secret = secret or _local_secret()
    port = _int("PORT", 5000, 1, 65535)
    lost_sec = _int("HOST_LOST_SEC", 60, 4, 86400)
    return {
        "ENV_NAME": env,
        "SECRET_KEY": secret,
        "SQLALCHEMY_DATABASE_URI": os.environ.get("DATABASE_URL")
        or f"sqlite:///{ROOT / 'var' / 'workflows.sqlite'}",
        "REDIS_URL": os.environ.get("REDIS_URL") or local_redis_url(0),
        "BASE_URL": os.environ.get("BASE_URL", f"http://127.0.0.1:{port}").rstrip("/"),
        "DOCKER_HOST": os.environ.get("DOCKER_HOST") or None,
        "WORKER_SLOTS": _int("WORKER_SLOTS", 4, 1, 256),
        # Runs of one team running at once, over every worker: the rest wait in the queue.
        "TEAM_MAX_RUNNING": _int("TEAM_MAX_RUNNING", 8, 1, 10000),
        **_quotas(),
        **_egress(),
        "LOG_CAP_BYTES": _int("LOG_CAP_BYTES", 10 * 1024 * 1024, 2 * 1024 * 1024),
        "LOG_TAIL_BYTES": 1024 * 1024,
        "LOG_CAP_LINES": _int("LOG_CAP_LINES", 200_000, 1000),
        "MAX_CONTENT_LENGTH": 1024 * 1024,
        "TRIGGER_RATE_LIMIT": os.environ.get("TRIGGER_RATE_LIMIT", "30 per minute"),
        # How long a dead worker's run goes unnoticed: its lease lapses after this many seconds.
        "RUN_LEASE_TTL_SEC": _int("RUN_LEASE_TTL_SEC", 15, 2, 600),
        # This worker's engine host, the name its runs record (default: the engine's own name and
        # id from `docker info`). Set it when an engine's identity may change (a re-created data root).
        "WORKER_HOST": os.environ.get("WORKER_HOST", "").strip()[:200] or None,
        # A worker host whose heartbeat is absent this long is lost: its running runs fail "worker
        # host lost" (and retry by their budget); until then they wait for it to come back.
        **_fleet(lost_sec),
        # A queued run fails "no worker picked up the run" only after max(timeoutSec, this) from
        # when it became due: a short timeout bounds the run, not how long a worker restart takes.
        "QUEUE_WAIT_FLOOR_SEC": _int("QUEUE_WAIT_FLOOR_SEC", 300, 0, 86400),
        # Live-log stream length in entries (batches of lines); tests make it short.
        "LIVE_STREAM_MAXLEN": _int("LIVE_STREAM_MAXLEN", 2000, 1, 1_000_000),
        # A scheduled run of an `allow` workflow is handed to a worker this many seconds before its
        # instant: the worker pulls, creates and attaches ahead and starts the container on time.
        "SCHEDULE_LEAD_SEC": _float("SCHEDULE_LEAD_SEC", 2.0, 0.0, 30.0),
        # How often a run's output is written to the database (seconds).
        "LOG_BATCH_SECONDS": _float("LOG_BATCH_SECONDS", 0.25, 0.01, 60.0),
        "NOTIFY_SLOTS": _int("NOTIFY_SLOTS", 2, 0, 64),
        # Reverse proxies in front of the web process whose X-Forwarded-* headers are believed.
        "TRUSTED_PROXIES": _int("TRUSTED_PROXIES", 0, 0, 10),
        # Open live-log websockets: each holds a web thread. One team holds at most a few of them
        # over all web processes; a process keeps at most half its threads for streams.
        "WS_MAX_PER_TEAM": _int("WS_MAX_PER_TEAM", 16, 1, 100000),
        "WS_MAX_PER_PRINCIPAL": _int("WS_MAX_PER_PRINCIPAL", 8, 1, 100000),
        "WS_MAX_PER_PROCESS": _int("WS_MAX_PER_PROCESS", max(1, _int("WEB_THREADS", 32, 1, 10000) // 2), 1, 100000),
        **_containers(),
        **_outbound(env),
        **_metrics(),
        "SQLALCHEMY_ENGINE_OPTIONS": _engine_options(os.environ.get("DATABASE_URL", "")),
        "WTF_CSRF_TIME_LIMIT": None,
    }
