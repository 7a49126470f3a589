"""The product's words, each spelled once: a run's statuses and triggers, notification channel
kinds and the events a channel can be told. They are `StrEnum`s, so each member *is* its string:
it compares equal to what the database returns, serializes to JSON as itself and renders in a
template as itself; the contract's spelling (../shared/spec/workflows.md) is the member's value."""
from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"  # claimed by a worker; shown "queued" until its container has started
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


TERMINAL = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TIMED_OUT)
ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)
STATUSES = ACTIVE + TERMINAL
RETRIED = (RunStatus.FAILED, RunStatus.TIMED_OUT)  # the final statuses an automatic retry follows


class Trigger(StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"
    RETRY = "retry"
    CHAIN = "chain"  # an upstream workflow's run reached the final state an `after` edge names
    WEBHOOK = "webhook"  # a POST to the workflow's /hooks/<token>
    BACKFILL = "backfill"  # one instant of a past range of its schedule (services/backfills.py)


TRIGGERS = tuple(Trigger)


class ChainOn(StrEnum):
    """The final state of an upstream run that fires a downstream workflow (its `after` edge)."""
    SUCCEEDED = "succeeded"  # a success of any attempt
    FAILED = "failed"  # failed or timed out, its retries spent
    FINISHED = "finished"  # either (a cancelled run fires nothing)


class ChannelKind(StrEnum):
    SLACK = "slack"
    DISCORD = "discord"
    EMAIL = "email"
    WEBHOOK = "webhook"


CHANNEL_KINDS = tuple(ChannelKind)


class EventKind(StrEnum):
    FAILED = "workflow.failed"
    RECOVERED = "workflow.recovered"
    SILENT = "workflow.silent"
    MISSED = "workflow.missed"


EVENTS = tuple(EventKind)


class Role(StrEnum):
    """A member's (or an API key's) role in a team; each may do all that the roles before it may
    (services/roles.py has the table of who may do what)."""
    VIEWER = "viewer"
    MEMBER = "member"
    ADMIN = "admin"
    OWNER = "owner"


ROLES = tuple(Role)  # lowest first
DEFAULT_EVENTS = (EventKind.FAILED,)


def words(kind: type[StrEnum]) -> tuple[str, ...]:
    """The members' plain strings, for `Literal[words(Kind)]` in a pydantic schema (its messages
    then list the allowed words, as for any Literal)."""
    return tuple(member.value for member in kind)
