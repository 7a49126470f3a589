"""Every environment variable the product reads, in one pydantic-settings model (`Settings`):
its type, its bounds, its default and what it means. A bad value stops the process with a
message naming the variable. README's configuration table lists the same names (a test holds the
two together); `from_env` turns them into the Flask config the app and the workers use."""
from __future__ import annotations

import ipaddress
import os
import secrets
import time
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent
DEV_SECRET = "dev-only-insecure-secret-key"
KIB, MIB, GIB = 1024, 1024 ** 2, 1024 ** 3


class ConfigError(RuntimeError):
    pass


def _n(default, low, high=None, description: str = ""):
    """A number from `low` to `high`."""
    return Field(default, ge=low, le=high, description=description)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=True, env_ignore_empty=True, extra="ignore",
                                      validate_default=True)

    # -- where things are
    WORKFLOWS_ENV: str = Field("development", description="`production` refuses to start without real secrets")
    SECRET_KEY: Optional[str] = Field(None, description="sessions, CSRF and the key that encrypts stored secrets")
    DATABASE_URL: Optional[str] = Field(None, description="SQLAlchemy URL (default: SQLite in var/)")
    REDIS_URL: Optional[str] = Field(None, description="queues, live logs, rate limits (default: the local Redis)")
    BASE_URL: Optional[str] = Field(None, description="absolute base of deep links (default: http://127.0.0.1:PORT)")
    HOST: str = Field("127.0.0.1", description="where the web process listens")
    PORT: int = _n(5000, 1, 65535, "the web process's port")
    WEB_WORKERS: int = _n(2, 1, 1000, "gunicorn processes")
    WEB_CONNECTIONS: int = _n(1000, 1, 100000, "connections a web process serves at once (gevent)")
    DOCKER_HOST: Optional[str] = Field(None, description="the engine the workers use (default: the local socket)")
    DOCKER_TLS_VERIFY: Optional[str] = Field(None, description="read by docker-py; a tcp:// engine needs it")
    DOCKER_CERT_PATH: Optional[str] = Field(None, description="read by docker-py: the client certificates")
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field("INFO", description="process logs")
    LOG_FORMAT: Literal["text", "json"] = Field("text", description="process logs: text, or one JSON object a line")
    WORKFLOWS_FAULTS: str = Field("", description="fault-injection points, for the durability tests only")

    # -- workers and the fleet
    WORKER_SLOTS: int = _n(4, 1, 2000, "concurrent runs per worker host")
    RUNS_PER_PROCESS: int = _n(1, 1, 500, "worker slots per slot process (several: a thread each)")
    NOTIFY_SLOTS: int = _n(2, 0, 64, "notification slots per worker host")
    WORKER_HOST: Optional[str] = Field(None, description="this worker's engine host name (default: from the engine)")
    HOST_LOST_SEC: int = _n(60, 4, 86400, "a host without a heartbeat this long is lost")
    HOST_FENCE_SEC: Optional[float] = Field(None, ge=1.0, le=86400.0,
                                            description="a host that could not beat this long stops its containers")
    STORAGE_OUTAGE_SEC: int = _n(120, 1, 86400, "how long a run goes on while its writes fail")
    RUN_LEASE_TTL_SEC: int = _n(15, 2, 600, "a dead worker's run is noticed after about this long")
    CANCEL_DB_POLL_SEC: float = _n(30.0, 0.5, 3600.0, "how often a running run reads its cancel from the "
                                   "database while Redis answers")
    QUEUE_WAIT_FLOOR_SEC: int = _n(300, 0, 86400, "least wait before 'no worker picked up the run'")
    SCHEDULE_LEAD_SEC: float = _n(2.0, 0.0, 30.0, "scheduled runs are handed over this early")
    SCHEDULE_LEAD_MAX_SEC: float = _n(20.0, 0.0, 120.0, "and up to this early when many are due at once")

    # -- quotas and limits
    TEAM_MAX_RUNNING: int = _n(8, 1, 10000, "runs of one team running at once")
    TEAM_MAX_WORKFLOWS: int = _n(500, 0, 1_000_000, "workflows per team (default quota)")
    MIN_SCHEDULE_INTERVAL_SEC: int = _n(1, 1, 86400, "closest two fires of a schedule (default quota)")
    TEAM_MAX_QUEUED: int = _n(1000, 0, 1_000_000, "queued runs per team (default quota)")
    WORKFLOW_MAX_ENV_BYTES: int = _n(64 * KIB, 0, 16 * MIB, "a workflow's env, names and values (default quota)")
    TEAM_MAX_OUTPUT_BYTES_PER_DAY: int = _n(5 * GIB, 0, None, "stored output per team and UTC day (default quota)")
    TRIGGER_RATE_LIMIT: str = Field("30 per minute", description="manual fires per team")
    LOG_CAP_BYTES: int = _n(10 * MIB, 2 * MIB, None, "stored output per run")
    LOG_CAP_LINES: int = _n(200_000, 1000, None, "stored lines per run")
    LOG_BATCH_SECONDS: float = _n(1.0, 0.01, 60.0, "how often a run's output is written")
    LIVE_STREAM_MAXLEN: int = _n(2000, 1, 1_000_000, "entries kept in a run's live stream")
    WS_MAX_PER_TEAM: int = _n(16, 1, 100000, "open live-log sockets per team")
    WS_MAX_PER_PRINCIPAL: int = _n(8, 1, 100000, "open live-log sockets per key or session")
    WS_MAX_PER_PROCESS: Optional[int] = Field(None, ge=1, le=100000,
                                              description="open live-log sockets per web process (default: half "
                                                          "of WEB_CONNECTIONS)")
    TRUSTED_PROXIES: int = _n(0, 0, 10, "reverse proxies whose X-Forwarded-* headers are believed")

    # -- run containers
    CONTAINER_PIDS_LIMIT: int = _n(512, 16, None, "pids limit of a run container")
    RUNS_TMPFS_MB: int = _n(64, 1, 65536, "the writable /tmp of a read-only container")
    DEFAULT_MEMORY_MB: int = _n(1024, 6, 1048576, "a run's memory when its workflow sets none")
    DEFAULT_CPUS: float = _n(1.0, 0.01, 256.0, "a run's CPUs when its workflow sets none")
    MAX_MEMORY_MB: int = _n(16384, 6, 1048576, "the most memory a workflow may ask for")
    MAX_CPUS: float = _n(float(os.cpu_count() or 1), 0.01, 256.0, "the most CPUs a workflow may ask for")
    CONTAINER_LOG_MAX_MB: int = _n(100, 1, 100000, "the engine's own log file of a run container")
    IMAGE_KEEP_DAYS: float = _n(7.0, 0.0, 3650.0, "unused images are removed after this long")
    RUNS_EGRESS_ALLOW: str = Field("", description="private CIDRs run containers may reach (comma-separated)")
    RUNS_EGRESS_RULES: Literal["local", "external"] = Field("local", description="who installs the egress rules")
    REGISTRY_ALLOWED_HOSTS: str = Field("", description="private registries the engine may pull from")

    # -- notifications
    SMTP_HOST: str = Field("127.0.0.1", description="mail relay")
    SMTP_PORT: int = _n(25, 1, 65535, "mail relay port")
    SMTP_USER: str = Field("", description="mail relay login")
    SMTP_PASSWORD: str = Field("", description="mail relay password")

    # -- sign-in and the audit log
    AUDIT_RETENTION_DAYS: int = _n(365, 1, 36500, "audit rows older than this are removed")
    RUN_RETENTION_DAYS: int = _n(0, 0, 36500, "finished runs older than this are removed (0: kept for ever; "
                                 "per team: runRetentionDays)")
    LOG_RETENTION_DAYS: int = _n(0, 0, 36500, "stored output of runs finished longer ago is removed (0: kept "
                                 "for ever; per team: logRetentionDays)")
    PASSWORD_LOGIN: bool = Field(True, description="`false` turns the email and password form off (SSO only)")
    INVITATION_DAYS: int = _n(7, 1, 90, "an invitation link is valid this long, once")
    OIDC_ISSUER: str = Field("", description="an OpenID Connect provider's issuer URL: turns single sign-on on")
    OIDC_CLIENT_ID: str = Field("", description="this installation's client id at the provider")
    OIDC_CLIENT_SECRET: str = Field("", description="its client secret")
    OIDC_ALLOWED_DOMAINS: str = Field("", description="comma-separated email domains that may sign in (empty: any)")
    OIDC_GROUPS_CLAIM: str = Field("groups", description="the claim listing a user's groups (flask sso map)")
    OIDC_PROVIDER_NAME: str = Field("SSO", description='the "Sign in with ..." button\'s name')
    SMTP_FROM: str = Field("workflows@localhost", description="sender of notification mail")
    SMTP_STARTTLS: bool = Field(False, description="STARTTLS to the relay")
    NOTIFY_ALLOW_HTTP_LOCALHOST: Optional[bool] = Field(None, description="http:// to localhost (not in production)")
    NOTIFY_ALLOW_PRIVATE: Optional[bool] = Field(None, description="targets on private addresses (not in production)")
    NOTIFY_ALLOWED_HOSTS: str = Field("", description="targets allowed whatever they resolve to")
    NOTIFY_MAX_ATTEMPTS: int = _n(5, 1, 20, "delivery attempts per channel and event")
    NOTIFY_DEADLINE_SEC: int = _n(30, 1, 45, "one delivery attempt, whole")
    CHANNEL_DISABLE_AFTER: int = _n(3, 1, 1000, "permanent failures in a row that disable a channel")

    # -- /metrics
    METRICS_TOKEN: str = Field("", description="bearer token of GET /metrics (open when empty)")
    METRICS_MAX_WORKFLOW_SERIES: int = _n(1000, 0, 1_000_000, "workflows with series of their own")

    @field_validator("RUNS_EGRESS_ALLOW")
    @classmethod
    def _cidrs(cls, allow: str) -> str:
        for cidr in filter(None, (c.strip() for c in allow.split(","))):
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not an address or CIDR") from None
        return allow.strip()

    @field_validator("LOG_LEVEL", mode="before")
    @classmethod
    def _level(cls, level):
        return level.upper() if isinstance(level, str) else level

    @field_validator("LOG_FORMAT", mode="before")
    @classmethod
    def _format(cls, form):
        return form.lower() if isinstance(form, str) else form

    @field_validator("WORKER_HOST")
    @classmethod
    def _host_name(cls, name: Optional[str]) -> Optional[str]:
        return name.strip()[:200] or None if name else None

    @model_validator(mode="after")
    def _derived(self) -> "Settings":
        """Defaults that follow from other variables, and the fence that must beat the loss."""
        production = self.WORKFLOWS_ENV == "production"
        if self.NOTIFY_ALLOW_HTTP_LOCALHOST is None:
            self.NOTIFY_ALLOW_HTTP_LOCALHOST = not production
        if self.NOTIFY_ALLOW_PRIVATE is None:
            self.NOTIFY_ALLOW_PRIVATE = not production
        if self.WS_MAX_PER_PROCESS is None:
            self.WS_MAX_PER_PROCESS = max(1, self.WEB_CONNECTIONS // 2)
        lost = self.HOST_LOST_SEC
        if self.HOST_FENCE_SEC is None:
            self.HOST_FENCE_SEC = lost / 2
        # The fenced containers must be gone, grace included, before the host is called lost.
        if self.HOST_FENCE_SEC > lost * 0.75:
            raise ValueError(f"HOST_FENCE_SEC ({self.HOST_FENCE_SEC:g}) must be clearly shorter than HOST_LOST_SEC "
                             f"({lost}): at most {lost * 0.75:g}, so that a host stops its containers before it "
                             f"is called lost")
        if not self.PASSWORD_LOGIN and not (self.OIDC_ISSUER and self.OIDC_CLIENT_ID):
            raise ValueError("PASSWORD_LOGIN=false needs single sign-on (OIDC_ISSUER and OIDC_CLIENT_ID): "
                             "with neither, nobody could sign in")
        if self.OIDC_ISSUER and not self.OIDC_ISSUER.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise ValueError("OIDC_ISSUER must be an https:// URL (plain http only on this machine)")
        return self


def settings() -> Settings:
    """The environment, read and checked now (a bad value: ConfigError naming the variable)."""
    try:
        return Settings()
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'configuration'}: {err['msg'].removeprefix('Value error, ')}"
                             + (f", got {err['input']!r}" if err["loc"] and isinstance(err.get("input"), str) else "")
                             for err in e.errors())
        raise ConfigError(problems) from None


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


def _production_checks(s: Settings) -> None:
    """What production refuses to start without."""
    if not s.SECRET_KEY or s.SECRET_KEY == DEV_SECRET or len(s.SECRET_KEY) < 16:
        raise ConfigError("SECRET_KEY must be set to a real secret (16+ chars) in production")
    if (s.DOCKER_HOST or "").startswith("tcp://") and not s.DOCKER_TLS_VERIFY:
        raise ConfigError("a tcp:// DOCKER_HOST needs DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH in production: "
                          "the engine's API is root on its host")
    if len(s.METRICS_TOKEN) < 16:
        raise ConfigError("METRICS_TOKEN must be set (16+ chars) in production: /metrics names every team and workflow")


def _hosts(raw: str, strip_dot: bool = False) -> frozenset:
    return frozenset(h.strip().lower().rstrip(".") if strip_dot else h.strip().lower()
                     for h in raw.split(",") if h.strip())


# Settings read as they are into the Flask config (the rest are renamed, derived or process-only).
AS_IS = ("WORKER_SLOTS", "RUNS_PER_PROCESS", "NOTIFY_SLOTS", "WORKER_HOST", "HOST_LOST_SEC", "HOST_FENCE_SEC", "STORAGE_OUTAGE_SEC",
         "RUN_LEASE_TTL_SEC", "CANCEL_DB_POLL_SEC", "QUEUE_WAIT_FLOOR_SEC", "SCHEDULE_LEAD_SEC", "SCHEDULE_LEAD_MAX_SEC",
         "TEAM_MAX_RUNNING",
         "TEAM_MAX_WORKFLOWS", "MIN_SCHEDULE_INTERVAL_SEC", "TEAM_MAX_QUEUED", "WORKFLOW_MAX_ENV_BYTES",
         "TEAM_MAX_OUTPUT_BYTES_PER_DAY",
         "TRIGGER_RATE_LIMIT", "LOG_CAP_BYTES", "LOG_CAP_LINES", "LOG_BATCH_SECONDS", "LIVE_STREAM_MAXLEN",
         "WS_MAX_PER_TEAM", "WS_MAX_PER_PRINCIPAL", "WS_MAX_PER_PROCESS", "TRUSTED_PROXIES", "CONTAINER_PIDS_LIMIT",
         "RUNS_TMPFS_MB", "DEFAULT_MEMORY_MB", "DEFAULT_CPUS", "MAX_MEMORY_MB", "MAX_CPUS", "CONTAINER_LOG_MAX_MB",
         "IMAGE_KEEP_DAYS", "RUNS_EGRESS_ALLOW", "RUNS_EGRESS_RULES", "SMTP_HOST", "SMTP_PORT", "SMTP_USER",
         "SMTP_PASSWORD", "SMTP_FROM", "SMTP_STARTTLS", "NOTIFY_ALLOW_HTTP_LOCALHOST", "NOTIFY_ALLOW_PRIVATE",
         "NOTIFY_MAX_ATTEMPTS", "NOTIFY_DEADLINE_SEC", "CHANNEL_DISABLE_AFTER", "METRICS_TOKEN",
         "METRICS_MAX_WORKFLOW_SERIES", "AUDIT_RETENTION_DAYS", "RUN_RETENTION_DAYS",
         "LOG_RETENTION_DAYS", "PASSWORD_LOGIN", "INVITATION_DAYS", "OIDC_ISSUER",
         "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET", "OIDC_GROUPS_CLAIM", "OIDC_PROVIDER_NAME")


def from_env() -> dict:
    """The Flask config of this process, from `Settings`."""
    s = settings()
    if s.WORKFLOWS_ENV == "production":
        _production_checks(s)
    return {
        **{name: getattr(s, name) for name in AS_IS},
        "ENV_NAME": s.WORKFLOWS_ENV,
        "SECRET_KEY": s.SECRET_KEY or _local_secret(),
        "SQLALCHEMY_DATABASE_URI": s.DATABASE_URL or f"sqlite:///{ROOT / 'var' / 'workflows.sqlite'}",
        "SQLALCHEMY_ENGINE_OPTIONS": _engine_options(s.DATABASE_URL or ""),
        "REDIS_URL": s.REDIS_URL or local_redis_url(0),
        "BASE_URL": (s.BASE_URL or f"http://127.0.0.1:{s.PORT}").rstrip("/"),
        "DOCKER_HOST": s.DOCKER_HOST,
        "REGISTRY_ALLOWED_HOSTS": _hosts(s.REGISTRY_ALLOWED_HOSTS),
        "NOTIFY_ALLOWED_HOSTS": _hosts(s.NOTIFY_ALLOWED_HOSTS, strip_dot=True),
        "OIDC_ALLOWED_DOMAINS": _hosts(s.OIDC_ALLOWED_DOMAINS),
        "LOG_TAIL_BYTES": MIB,  # what a capped log keeps of its end
        "MAX_CONTENT_LENGTH": MIB,  # a request body
        "WTF_CSRF_TIME_LIMIT": None,
    }
