"""The JSON shapes of the API's answers, written once: each is a pydantic model that the routes
build their answers with (an unknown field is an error, so nothing is answered undocumented) and
that the OpenAPI document (openapi.py) is generated from. Request bodies are in webapp/schemas.py."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from ..schemas import Edge, RetryPolicy
from ..vocabulary import ChannelKind, EventKind, Role, RunStatus, Trigger, words


class Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def out(self) -> dict:
        """The JSON object (fields left unset, such as a channel's signingSecret, left out)."""
        return self.model_dump(exclude_unset=True, by_alias=True)


Status = Literal[words(RunStatus)]


class Workflow(Shape):
    id: str
    teamId: int
    projectId: int
    environmentId: int
    name: str
    image: str
    command: Optional[list[str]]
    env: dict[str, str]
    schedule: Optional[str]
    timeoutSec: int
    maxRetries: int
    nextRunAt: Optional[str]
    createdAt: str
    updatedAt: str
    timezone: str
    concurrencyPolicy: Literal["allow", "forbid", "replace"]
    retryBackoffSec: int
    memoryMb: Optional[int]
    cpus: Optional[float]
    network: Literal["bridge", "none"]
    workerPool: str = Field(description="extension: the worker pool that runs it (`flask worker --pool NAME`)")
    onHostLost: Literal["retry", "wait"] = Field(
        description="extension: a running run whose worker host is lost (no heartbeat for HOST_LOST_SEC): "
                    "`retry` fails it \"worker host lost\" and retries it by its budget; `wait` keeps it "
                    "running until the host is back or an operator forgets the host")
    readOnlyRootfs: bool = Field(description="extension: the container's root filesystem is read-only, with a "
                                             "writable tmpfs /tmp of RUNS_TMPFS_MB")
    expectSuccessWithinSec: Optional[int]
    catchUpWindowSec: Optional[int] = Field(
        description="extension: after a scheduler outage, every missed instant younger than this many seconds "
                    "runs, oldest first, and one workflow.missed counts the older ones; null: only the latest "
                    "missed instant runs, if younger than timeoutSec")
    silentSince: Optional[str]
    lastSuccessAt: Optional[str]
    envGroups: list[str] = Field(description="extension: the team's env groups its runs get, in order, under its "
                                             "own env and the trigger's")
    paused: bool = Field(description="extension: no scheduled fires until resumed; not silent")
    pausedAt: Optional[str]
    pausedBy: Optional[str] = Field(description="extension: the member's email or the API key that paused it")
    pauseNote: Optional[str]
    pauseTriggers: bool = Field(description="extension: while paused, manual fires are refused too (409)")
    after: list[Edge] = Field(description="extension: the chain's upstreams: this workflow runs after each run of "
                                          "`workflow` that ends `on`")
    join: Literal["any", "all"] = Field(description="extension: with several `after` edges, `any` upstream's end "
                                                    "fires it, or `all`: one qualifying end of every upstream since "
                                                    "its last chain run")
    retryPolicy: RetryPolicy = Field(description="extension: which failed runs maxRetries retries, and their "
                                                 "backoff; every field given")


class EnvGroupUse(Shape):
    name: str
    version: int = Field(description="the version the run used")
    latest: Optional[int] = Field(description="the group's version now; null when it was deleted since")


class Run(Shape):
    id: str
    workflowId: str
    teamId: int
    trigger: Literal[words(Trigger)]
    attempt: int
    retryOf: Optional[str]
    triggeredBy: Optional[str] = Field(description="extension: the upstream run whose end fired this one "
                                                   "(trigger `chain`); else null")
    backfill: Optional[str] = Field(None, description="extension: the backfill that fired it (trigger `backfill`) "
                                                      "or whose run it retries; else null")
    status: Status
    exitCode: Optional[int]
    error: Optional[str]
    env: dict[str, str]
    envGroups: list[EnvGroupUse] = Field(default_factory=list, description=(
        "extension: the env group versions its container got (pinned when it was fired; a retry gets the same)"))
    image: str
    command: Optional[list[str]]
    imageDigest: Optional[str]
    workerHost: Optional[str] = Field(description="extension: the engine host the run was claimed on (its "
                                                  "worker's WORKER_HOST); null until a worker claims it")
    workerPool: str = Field(description="extension: the worker pool of its workflow when it was fired")
    waiting: Optional[str] = Field(description="extension: why a run is not moving, when the reason is ours: a "
                                               "queued run whose pool has no live worker (\"no live worker in "
                                               "pool gpu\"), or a running run waiting for its lost worker host "
                                               "(onHostLost wait); else null")
    scheduledFor: Optional[str]
    queuedAt: str
    notBefore: str
    startedAt: Optional[str]
    finishedAt: Optional[str]
    durationMs: Optional[int]
    cancelRequested: bool
    firedBy: Optional[str] = Field(None, description="extension: who fired it: a member's email, \"API key NAME "
                                                     "(prefix…)\", \"webhook wh_…\", a backfill's maker; null for "
                                                     "the scheduler, chains and automatic retries")
    cancelledBy: Optional[str] = Field(None, description="extension: who cancelled it (as firedBy); null when no "
                                                         "one did, or the product did (its error says why)")
    retryDecision: Optional[str] = Field(description="extension: why a failed or timed-out run was or was not "
                                                     "retried (\"retried after 4 s as run_… (retry 1 of 3)\", "
                                                     "\"not retried: exit code 3 is one the retry policy never "
                                                     "retries (exceptExitCodes)\"); else null")
    url: str


class Webhook(Shape):
    """A workflow's inbound webhook; `url`, `token` and `secret` only in the answer that made it."""
    tokenPrefix: str
    signed: bool = Field(description="bodies must carry X-Hub-Signature-256 or Stripe-Signature, an HMAC-SHA256 "
                                     "with the secret")
    createdAt: str
    revokedAt: Optional[str]
    url: Optional[str] = Field(None, description="POST here to fire the workflow; shown once")
    token: Optional[str] = Field(None, description="shown once: only its hash is kept")
    secret: Optional[str] = Field(None, description="a signed hook's HMAC secret, shown once")


class EnvEntry(Shape):
    key: str
    value: Optional[str] = Field(description="null for a secret entry: its value is write-only")
    secret: bool


class EnvGroup(Shape):
    """A team's env group: its latest version's entries (secret values never shown)."""
    name: str
    version: int
    entries: list[EnvEntry]
    usedBy: list[str] = Field(description="the ids of the workflows that list it")
    createdAt: str
    updatedAt: str
    updatedBy: Optional[str] = Field(description="the member's email or the API key that made its latest version")


class EnvGroupList(Shape):
    envGroups: list[EnvGroup]


class Backfill(Shape):
    """A backfill of a past range of a workflow's schedule: one run per instant, fired in order."""
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    id: str
    workflowId: str
    start: str = Field(alias="from")
    end: str = Field(alias="to")
    maxConcurrent: int
    instants: int = Field(description="instants of the schedule in the range")
    fired: int = Field(description="instants fired so far")
    skipped: int = Field(description="instants passed over: they had a run already")
    state: Literal["running", "done", "cancelled"]
    runs: dict[str, int] = Field(description="its runs (retries included) by status")
    createdAt: str
    createdBy: Optional[str]
    cancelledAt: Optional[str]


class BackfillList(Shape):
    backfills: list[Backfill] = Field(description="the workflow's 20 newest backfills, newest first")


class Fired(Shape):
    """What a webhook call answers."""
    runId: str
    url: str


class WorkflowList(Shape):
    workflows: list[Workflow]


class RunList(Shape):
    runs: list[Run]
    nextCursor: Optional[str]


class LogLine(Shape):
    stream: Literal["stdout", "stderr", "system"]
    text: str
    ts: str
    seq: int


class Logs(Shape):
    runId: str
    lines: list[LogLine]
    truncated: bool
    droppedBytes: int
    nextAfterSeq: Optional[int]  # the afterSeq of the next page; null on the last
    prunedAt: Optional[str]  # when the output was removed, past the team's logRetentionDays; else null


class RegistryCredential(Shape):
    id: int
    projectId: int
    registry: str
    username: str
    createdAt: str


class RegistryCredentialList(Shape):
    registryCredentials: list[RegistryCredential]


class Environment(Shape):
    id: int
    projectId: int
    name: str
    production: bool
    createdAt: str


class EnvironmentList(Shape):
    environments: list[Environment]


class Project(Shape):
    id: int
    teamId: int
    name: str
    environments: list[Environment]
    createdAt: str


class ProjectList(Shape):
    projects: list[Project]


Event = Literal[words(EventKind)]


class Channel(Shape):
    id: int
    teamId: int
    kind: Literal[words(ChannelKind)]
    name: str
    target: str
    events: list[Event]
    createdAt: str
    disabledAt: Optional[str] = Field(description="set when the endpoint refused CHANNEL_DISABLE_AFTER messages "
                                                  "for good in a row: no notification is made for it until enabled")
    failuresInARow: int = Field(description="permanent failures since the last delivery that went through")
    lastError: Optional[str]
    lastErrorAt: Optional[str]
    signingSecret: Optional[str] = Field(None, description="webhook channels, in the create answer only")


class ChannelList(Shape):
    channels: list[Channel]


class Delivery(Shape):
    id: int
    eventId: Optional[int]
    attempt: int
    status: Literal["pending", "sent", "failed"]
    responseCode: Optional[int]
    error: Optional[str]
    createdAt: str


class DeliveryList(Shape):
    deliveries: list[Delivery]


RoleName = Literal[words(Role)]


class Member(Shape):
    userId: int
    email: str
    role: RoleName
    joinedAt: str


class MemberList(Shape):
    members: list[Member]


class Invitation(Shape):
    id: int
    email: str
    role: RoleName
    invitedBy: str
    createdAt: str
    expiresAt: str
    link: Optional[str] = Field(None, description="in the create answer only: the link mailed to the address")
    mailError: Optional[str] = Field(None, description="in the create answer only: why the mail was not sent "
                                                       "(null: sent)")


class InvitationList(Shape):
    invitations: list[Invitation]


class ApiKey(Shape):
    id: int
    name: str
    prefix: str = Field(description="the key's first characters; the key itself only in the create answer")
    role: RoleName
    mode: Literal["live", "test"]
    createdAt: str
    lastUsedAt: Optional[str]
    expiresAt: Optional[str]
    revokedAt: Optional[str]
    key: Optional[str] = Field(None, description="in the create answer only: the key, shown this once")


class ApiKeyList(Shape):
    apiKeys: list[ApiKey]


class AuditEntry(Shape):
    id: int
    at: str
    actor: str
    actorUserId: Optional[int]
    actorKeyId: Optional[int]
    ip: Optional[str]
    userAgent: Optional[str]
    action: str
    targetType: str
    target: str
    diff: Optional[dict] = Field(description="{field: [before, after]}; env entries by key only, never a value")


class AuditList(Shape):
    entries: list[AuditEntry]
    nextCursor: Optional[str]


class Queued(Shape):
    queued: bool


class ErrorBody(Shape):
    code: str
    message: str
    fields: Optional[dict[str, str]] = None


class Error(Shape):
    error: ErrorBody
