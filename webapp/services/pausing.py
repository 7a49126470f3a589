"""Pausing a workflow, with a note: its schedule stops firing (next_run_at null) until it is resumed,
a fire prepared ahead of an instant still to come (SCHEDULE_LEAD_SEC) is cancelled, and it is
never called silent. Manual fires (the API's trigger and retry, the dashboard's Run and Retry) still
work, unless `pauseTriggers` is set too; automatic retries of runs made before the pause go on.
Resuming counts the schedule from now: what was missed while paused is not run, unless the resume
asks for it (`catchUp`), when it is counted from the pause and the scheduler's catch-up rule
decides which missed instant still runs (jobs/schedule.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..models import Workflow
from . import actors
from .access import Principal
from .errors import Conflict, Invalid
from .transitions import cancel_prepared

FIELDS = frozenset({"paused", "pauseNote", "pauseTriggers", "catchUp"})
PREPARED_PAUSED = "cancelled before its instant: its workflow was paused"


@dataclass
class Change:
    """What a pause or a resume leaves to its caller: the cancel signals to send after the commit,
    and, on a resume, the time the schedule's next instant is counted from."""
    signals: list = field(default_factory=list)
    reschedule_after: datetime | None = None


def check(wf: Workflow, body, given: set[str]) -> None:
    """The pause fields of a body agree with each other and with the workflow, or Invalid."""
    pausing = body.paused if "paused" in given else wf.paused_at is not None
    fields = {}
    if "catchUp" in given and not ("paused" in given and body.paused is False):
        fields["catchUp"] = 'only when resuming, with "paused": false'
    for name in ("pauseNote", "pauseTriggers"):
        if name in given and not pausing:
            fields[name] = 'only for a paused workflow, or with "paused": true'
    if fields:
        raise Invalid("the pause fields do not agree", fields)


def apply(principal: Principal, wf: Workflow, body, given: set[str], now: datetime) -> Change:
    """Pause, resume, or change the note of `wf` (in the caller's transaction)."""
    check(wf, body, given)
    change = Change()
    if "paused" in given and body.paused and wf.paused_at is None:
        wf.paused_at, wf.paused_by, wf.pause_note, wf.pause_triggers = now, actors.who(principal), None, False
        wf.next_run_at, wf.silent_at = None, None
        change.signals = cancel_prepared(wf.id, now, PREPARED_PAUSED)
    elif "paused" in given and not body.paused and wf.paused_at is not None:
        change.reschedule_after = wf.paused_at if body.catchUp else now
        wf.paused_at, wf.paused_by, wf.pause_note, wf.pause_triggers = None, None, None, False
        wf.expect_since = now if wf.expect_success_within_sec else None  # silence counts from the resume
    if "pauseNote" in given:
        wf.pause_note = body.pauseNote
    if "pauseTriggers" in given:
        wf.pause_triggers = body.pauseTriggers
    return change


def require_triggers(wf: Workflow) -> None:
    """A manual fire of `wf` is allowed, or Conflict: paused with pauseTriggers."""
    if wf.paused_at is not None and wf.pause_triggers:
        note = f": {wf.pause_note}" if wf.pause_note else ""
        raise Conflict(f"the workflow is paused, manual runs too (pauseTriggers){note}")
