"""Request schemas: every limit of the contract, in one place, shared by the API and the dashboard.

The same pydantic models produce the OpenAPI document. Violations become a field -> message map.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, ClassVar, Literal, Optional, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator, model_validator

from . import cron
from .imageref import DOMAIN, image_problem
from .vocabulary import ChainOn, ChannelKind, EventKind, Role, words

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_ARGS, MAX_ARG_LEN, MAX_ENV_VALUE = 64, 1024, 4096
MAX_ID = 2**31 - 1  # ids are 32-bit integers on PostgreSQL


def _check_command(v):
    if v is None:
        return v
    if len(v) > MAX_ARGS:
        raise ValueError(f"at most {MAX_ARGS} args")
    for arg in v:
        if len(arg) > MAX_ARG_LEN:
            raise ValueError(f"each arg is at most {MAX_ARG_LEN} characters")
    return v


def _check_env(v):
    if v is None:
        return v
    for key, value in v.items():
        if not ENV_NAME.match(key):
            raise ValueError(f"{key[:40]!r} is not a valid environment variable name")
        if len(value) > MAX_ENV_VALUE:
            raise ValueError(f"the value of {key[:40]} is longer than {MAX_ENV_VALUE} characters")
    return v


def _check_name(v):
    if v is not None and not v.strip():
        raise ValueError("must not be blank")
    return v


def _rejecting(problem_of):
    """A validator from a function that says what is wrong with a value, or None."""
    def check(v):
        if v is not None:
            problem = problem_of(v)
            if problem:
                raise ValueError(problem)
        return v
    return check


_check_image = _rejecting(image_problem)
_check_schedule = _rejecting(cron.validate)
_check_timezone = _rejecting(cron.validate_timezone)


Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Name = Annotated[str, Field(min_length=1, max_length=100)]
TimeoutSec = Annotated[int, Field(ge=1, le=86400)]
MaxRetries = Annotated[int, Field(ge=0, le=10)]
BackoffSec = Annotated[int, Field(ge=0, le=3600)]
# A silent-workflow alert's interval: a minute to a year.
ExpectSec = Annotated[int, Field(ge=60, le=366 * 86400)]
# How far back a scheduler outage's missed instants still run: up to a week.
CATCH_UP_MAX_SEC = 7 * 86400
CatchUpSec = Annotated[int, Field(ge=1, le=CATCH_UP_MAX_SEC)]
MemoryMb = Annotated[int, Field(ge=6, le=1048576)]
Cpus = Annotated[float, Field(ge=0.01, le=256)]
Policy = Literal["allow", "forbid", "replace"]
Network = Literal["bridge", "none"]
POOL_NAME = r"[a-z0-9][a-z0-9_-]*"
POOL_PATTERN = f"^{POOL_NAME}$"
POOL_MAX = 40
Pool = Annotated[str, Field(min_length=1, max_length=POOL_MAX, pattern=POOL_PATTERN)]
PauseNote = Annotated[str, Field(max_length=500)]


def _distinct(names: list[str]) -> list[str]:
    """The names, each once, or ValueError naming the first listed twice."""
    seen: set[str] = set()
    twice = next((n for n in names if n in seen or seen.add(n)), None)
    if twice:
        raise ValueError(f"{twice} is listed twice")
    return names


EnvGroups = Annotated[list[Annotated[str, Field(min_length=1, max_length=40)]], Field(max_length=8),
                      AfterValidator(_distinct)]
# What becomes of a running run whose worker host is lost: retried, or waiting for the host.
HostLost = Literal["retry", "wait"]


def valid_pool(name: str) -> bool:
    """A worker pool's name as `flask worker --pool` and a workflow's `workerPool` accept it."""
    return len(name) <= POOL_MAX and re.fullmatch(POOL_NAME, name) is not None
Env = dict[str, str]


def _no_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" not in value
    if isinstance(value, list):
        return all(_no_nul(v) for v in value)
    if isinstance(value, dict):
        return all(_no_nul(k) and _no_nul(v) for k, v in value.items())
    return True


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*")
    @classmethod
    def _reject_nul(cls, v):
        """No text the database can store contains a NUL character."""
        if not _no_nul(v):
            raise ValueError("must not contain NUL characters")
        return v


ExitCode = Annotated[int, Field(ge=1, le=255)]
MAX_EXIT_CODES = 32
ExitCodes = Annotated[list[ExitCode], Field(max_length=MAX_EXIT_CODES)]


class RetryPolicy(_Strict):
    """Which failed runs maxRetries retries, and how long each retry waits. The exit code rules
    apply to a run that ended with an exit code; one that failed without (its image not pulled, its
    host lost) is retried by its budget alone."""

    onExitCodes: Optional[ExitCodes] = Field(
        None, description="retry only a run that exited with one of these codes; null: any code")
    exceptExitCodes: ExitCodes = Field(default_factory=list, description="never retry a run that exited with one of these")
    onTimeout: StrictBool = Field(True, description="retry a run that timed out")
    backoff: Literal["exponential", "fixed"] = Field(
        "exponential", description="exponential: retryBackoffSec, then twice that, four times ... (spread by "
                                   "±20 %); fixed: retryBackoffSec before each retry")
    maxBackoffSec: Annotated[int, Field(ge=0, le=86400)] = Field(300, description="no retry waits longer")

    @model_validator(mode="after")
    def _one_rule(self):
        if self.onExitCodes is not None and self.exceptExitCodes:
            raise ValueError("give onExitCodes or exceptExitCodes, not both")
        return self


MAX_EDGES = 16


class Edge(_Strict):
    """One upstream of a chain: this workflow runs after each run of `workflow` that ends `on`."""
    workflow: Annotated[str, Field(min_length=1, max_length=40, description="the upstream workflow's id, wf_…")]
    on: Literal[words(ChainOn)] = Field(
        "succeeded", description="succeeded: a success of any attempt; failed: failed or timed out, its retries "
                                 "spent; finished: either (a cancelled run fires nothing)")


Edges = Annotated[list[Edge], Field(max_length=MAX_EDGES)]
# any: each qualifying end of any upstream fires it; all: one qualifying end of every upstream since
# its last chain run (or since the edge was made) fires it, once
Join = Literal["any", "all"]


class _WorkflowFields(_Strict):
    _v_command = field_validator("command", check_fields=False)(_check_command)
    _v_env = field_validator("env", check_fields=False)(_check_env)
    _v_name = field_validator("name", check_fields=False)(_check_name)
    _v_image = field_validator("image", check_fields=False)(_check_image)
    _v_schedule = field_validator("schedule", check_fields=False)(_check_schedule)
    _v_tz = field_validator("timezone", check_fields=False)(_check_timezone)


class WorkflowCreate(_WorkflowFields):
    projectId: Id
    environmentId: Optional[Id] = None
    name: Name
    image: str
    command: Optional[list[str]] = None
    env: Env = Field(default_factory=dict)
    schedule: Optional[str] = None
    timeoutSec: TimeoutSec = 3600
    maxRetries: MaxRetries = 0
    timezone: str = "UTC"
    concurrencyPolicy: Policy = "allow"
    retryBackoffSec: BackoffSec = 5
    memoryMb: Optional[MemoryMb] = None
    cpus: Optional[Cpus] = None
    network: Network = "bridge"
    workerPool: Pool = "default"
    onHostLost: HostLost = "retry"
    readOnlyRootfs: StrictBool = False
    expectSuccessWithinSec: Optional[ExpectSec] = None
    retryPolicy: Optional[RetryPolicy] = None
    paused: StrictBool = False
    pauseNote: Optional[PauseNote] = None
    pauseTriggers: StrictBool = False
    after: Edges = Field(default_factory=list)
    join: Join = "any"
    catchUpWindowSec: Optional[CatchUpSec] = None
    envGroups: EnvGroups = Field(default_factory=list)


class WorkflowUpdate(_WorkflowFields):
    """Every field optional; only the fields present change. `env` replaces the whole map."""

    name: Optional[Name] = None
    image: Optional[str] = None
    command: Optional[list[str]] = None
    env: Optional[Env] = None
    schedule: Optional[str] = None
    timeoutSec: Optional[TimeoutSec] = None
    maxRetries: Optional[MaxRetries] = None
    timezone: Optional[str] = None
    concurrencyPolicy: Optional[Policy] = None
    retryBackoffSec: Optional[BackoffSec] = None
    memoryMb: Optional[MemoryMb] = None
    cpus: Optional[Cpus] = None
    network: Optional[Network] = None
    workerPool: Optional[Pool] = None
    onHostLost: Optional[HostLost] = None
    readOnlyRootfs: Optional[StrictBool] = None
    expectSuccessWithinSec: Optional[ExpectSec] = None
    retryPolicy: Optional[RetryPolicy] = None  # replaces the whole policy; null: the defaults
    paused: Optional[StrictBool] = None
    pauseNote: Optional[PauseNote] = None
    pauseTriggers: Optional[StrictBool] = None
    after: Optional[Edges] = None  # replaces every edge; [] runs after nothing
    join: Optional[Join] = None
    catchUpWindowSec: Optional[CatchUpSec] = None
    envGroups: Optional[EnvGroups] = None  # replaces the list; [] uses none
    catchUp: Optional[StrictBool] = Field(None, description='with "paused": false: run what was missed while '
                                                            'paused, by the catch-up rule; else it is not run')

    # Fields that may be set to null: the rest must have a value when present.
    NULLABLE: ClassVar[frozenset] = frozenset({"command", "schedule", "memoryMb", "cpus", "expectSuccessWithinSec",
                                               "retryPolicy", "pauseNote", "catchUpWindowSec"})


class RoleChange(_Strict):
    role: Literal[words(Role)]


class InvitationCreate(_Strict):
    email: Annotated[str, Field(min_length=3, max_length=254)]
    role: Literal[words(Role)] = "member"


class ApiKeyCreate(_Strict):
    name: Annotated[str, Field(max_length=100)] = ""
    role: Literal[words(Role)] = "member"
    mode: Literal["live", "test"] = "live"
    expiresAt: Optional[str] = Field(None, description="ISO 8601; after it calls answer 401 key_expired (null: never)")
    _v_expires = field_validator("expiresAt")(lambda v: None if v is None else utc_time(v).isoformat())


class TriggerBody(_Strict):
    env: Env = Field(default_factory=dict)
    _v_env = field_validator("env")(_check_env)


def utc_time(value) -> datetime:
    """An ISO 8601 time as naive UTC (the database's times); one without an offset is UTC."""
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 time, e.g. 2026-12-01T00:00:00Z")
    try:
        moment = datetime.fromisoformat(value)
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment
    except (ValueError, OverflowError):
        raise ValueError("must be an ISO 8601 time, e.g. 2026-12-01T00:00:00Z") from None
    if moment.year < 1970:
        raise ValueError("must be in 1970 or later")
    return moment


MAX_BACKFILL_CONCURRENT = 50


class BackfillCreate(_Strict):
    """A past range of the workflow's schedule to run: one run per instant in it, both ends
    included, at most 1,000 instants a request."""

    start: Annotated[str, Field(alias="from", description="the range's first moment (ISO 8601)")]
    end: Annotated[str, Field(alias="to", description="the range's last moment (ISO 8601), not in the future")]
    maxConcurrent: Annotated[int, Field(ge=1, le=MAX_BACKFILL_CONCURRENT)] = Field(
        1, description="at most this many of its runs queued or running at once")

    _v_times = field_validator("start", "end")(lambda v: utc_time(v).isoformat())

    def range(self) -> tuple[datetime, datetime]:
        return datetime.fromisoformat(self.start), datetime.fromisoformat(self.end)


MAX_GROUP_VALUE = 65536
MAX_GROUP_ENTRIES = 100
MAX_GROUP_BYTES = 131072
MAX_WORKFLOW_GROUPS = 8
GroupName = Annotated[str, Field(min_length=1, max_length=40, pattern=POOL_PATTERN)]


def _env_key(key: str) -> str:
    if not ENV_NAME.match(key) or len(key) > 255:
        raise ValueError(f"{key[:40]!r} is not a valid environment variable name")
    return key


class EnvEntry(_Strict):
    key: Annotated[str, AfterValidator(_env_key)]
    value: Annotated[str, Field(max_length=MAX_GROUP_VALUE)]
    secret: StrictBool = Field(False, description="write-only: no answer ever holds its value again")


Entries = Annotated[list[EnvEntry], Field(max_length=MAX_GROUP_ENTRIES)]


def _unique_keys(entries: list[EnvEntry]) -> list[EnvEntry]:
    _distinct([e.key for e in entries])
    problem = EnvGroupCreate.size_problem({e.key: {"value": e.value} for e in entries})
    if problem:
        raise ValueError(problem)
    return entries


def stored(entries: list[EnvEntry]) -> dict[str, dict]:
    """Entries as an env group version keeps them: {"KEY": {"value", "secret"}}, in order."""
    return {e.key: {"value": e.value, "secret": e.secret} for e in entries}


class EnvGroupCreate(_Strict):
    """A team's env group: its entries go into the env of every run of the workflows that list it."""

    name: GroupName
    entries: Entries = Field(default_factory=list)
    _v_entries = field_validator("entries")(_unique_keys)

    @staticmethod
    def size_problem(entries: dict[str, dict]) -> str | None:
        """A group past MAX_GROUP_ENTRIES entries or MAX_GROUP_BYTES bytes (keys and values)."""
        size = sum(len(k.encode()) + len(e["value"].encode()) for k, e in entries.items())
        if len(entries) > MAX_GROUP_ENTRIES:
            return f"{len(entries)} entries; at most {MAX_GROUP_ENTRIES}"
        if size > MAX_GROUP_BYTES:
            return f"{size} bytes of keys and values; at most {MAX_GROUP_BYTES}"
        return None


class EnvGroupChange(_Strict):
    """A new version of a group: `entries` set (added, or replacing the key's value and secrecy),
    `remove` taken out."""

    entries: Entries = Field(default_factory=list)
    remove: Annotated[list[Annotated[str, Field(min_length=1, max_length=255)]], Field(max_length=MAX_GROUP_ENTRIES)] = \
        Field(default_factory=list)
    _v_entries = field_validator("entries")(_unique_keys)


class WebhookCreate(_Strict):
    signed: StrictBool = False  # a secret to sign bodies with, shown once


class RegistryCredentialCreate(_Strict):
    registry: Annotated[str, Field(min_length=1, max_length=255, pattern=rf"^{DOMAIN}$")]
    username: Annotated[str, Field(min_length=1, max_length=255)]
    password: Annotated[str, Field(min_length=1, max_length=4096)]


class ChannelCreate(_Strict):
    kind: Literal[words(ChannelKind)]
    name: Name
    target: Annotated[str, Field(min_length=1, max_length=4000)]  # the webhook URL, or email addresses
    events: list[Literal[words(EventKind)]] = Field(default_factory=lambda: list(words(EventKind))[:1])


class ProjectCreate(_Strict):
    name: Name
    _v_name = field_validator("name")(_check_name)


class EnvironmentCreate(ProjectCreate):  # a project's rule, under its own name in the API document
    """An environment's name: 1 to 100 characters, unique in its project."""


class SchemaError(Exception):
    """A request that breaks the schema: `fields` maps each bad field to a sentence."""

    def __init__(self, fields: dict[str, str], message: str = "the request is not valid"):
        super().__init__(message)
        self.fields = fields
        self.message = message


_MESSAGES = {
    "missing": "required",
    "extra_forbidden": "unknown field",
    "int_type": "must be a whole number",
    "float_type": "must be a number",
    "string_type": "must be a string",
    "list_type": "must be an array of strings",
    "dict_type": "must be an object of strings",
    "bool_type": "must be true or false",
    "model_type": "must be a JSON object",
    "literal_error": None,
    "string_too_short": None,
    "string_too_long": None,
    "greater_than_equal": None,
    "less_than_equal": None,
    "too_long": None,
    "string_pattern_mismatch": None,
}


def _characters(n) -> str:
    return f"{n} character" if n == 1 else f"{n} characters"


def _message(err: dict) -> str:
    kind = err["type"]
    if kind == "value_error":
        return str(err.get("ctx", {}).get("error") or err["msg"]).removeprefix("Value error, ")
    if _MESSAGES.get(kind):
        return _MESSAGES[kind]
    ctx = err.get("ctx") or {}
    if kind == "string_too_short":
        return f"at least {_characters(ctx.get('min_length'))}"
    if kind == "string_too_long":
        return f"at most {_characters(ctx.get('max_length'))}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == POOL_PATTERN:
        return "lowercase letters, digits, - and _, starting with a letter or digit"
    if kind == "too_long":
        return f"at most {ctx.get('max_length')} items"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    return err["msg"]


def _field(model: type[BaseModel], loc: tuple) -> str:
    """The field an error is about: `retryPolicy.onExitCodes` inside an object field, else the
    top-level field (an env map's key or a command's index stays inside its field's message)."""
    if not loc:
        return "body"
    info = model.model_fields.get(str(loc[0]))
    inner = [t for t in ((info.annotation,) + get_args(info.annotation) if info else ())
             if isinstance(t, type) and issubclass(t, BaseModel)]
    if inner and len(loc) > 1 and isinstance(loc[1], str):
        return f"{loc[0]}.{loc[1]}"
    return str(loc[0])


def parse(model: type[BaseModel], data) -> BaseModel:
    """Validate `data` against `model`, or raise SchemaError naming every bad field."""
    if not isinstance(data, dict):
        raise SchemaError({"body": "the body must be a JSON object"})
    try:
        obj = model.model_validate(data)
    except ValidationError as e:
        fields: dict[str, str] = {}
        for err in e.errors():
            fields.setdefault(_field(model, err["loc"]), _message(err))
        raise SchemaError(fields) from None
    if isinstance(obj, WorkflowUpdate):
        nulls = {f: "must not be null" for f in obj.model_fields_set
                 if getattr(obj, f) is None and f not in WorkflowUpdate.NULLABLE}
        if nulls:
            raise SchemaError(nulls)
    return obj
