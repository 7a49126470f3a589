"""Whether a failed or timed-out run is retried, and after how long: the workflow's maxRetries,
retryBackoffSec and retryPolicy (webapp/schemas.py's RetryPolicy), read when the run ends, in the
transaction of its terminal status (webapp/services/lifecycle.py). The decision is kept on the run
in words (`retry_decision`), for its page and the API's `retryDecision`."""
from __future__ import annotations

from ..backoff import backoff
from ..models import Run, Workflow
from ..schemas import RetryPolicy
from ..vocabulary import RunStatus

DEFAULTS = RetryPolicy().model_dump()
JITTER = 0.2  # exponential backoff only: many retries made at once do not come back at once


def policy_of(wf: Workflow) -> RetryPolicy:
    """The workflow's policy, every field given (unset ones at their defaults)."""
    return RetryPolicy(**{**DEFAULTS, **(wf.retry_policy or {})})


def stored(policy: RetryPolicy | None) -> dict | None:
    """What the workflow row keeps of a policy given in the API: null for the defaults."""
    if policy is None:
        return None
    value = policy.model_dump()
    return None if value == DEFAULTS else value


def refusal(wf: Workflow, run: Run) -> str | None:
    """Why `run` (failed or timed out) is not retried, or None when it is."""
    policy = policy_of(wf)
    if wf.deleted_at is not None:
        return "its workflow was deleted"
    if run.status == RunStatus.TIMED_OUT and not policy.onTimeout:
        return "it timed out, and the retry policy does not retry timeouts (onTimeout false)"
    code = run.exit_code
    if run.status == RunStatus.FAILED and code is not None:
        if policy.onExitCodes is not None and code not in policy.onExitCodes:
            listed = ", ".join(map(str, policy.onExitCodes)) or "none"
            return f"exit code {code} is not one the retry policy retries (onExitCodes: {listed})"
        if code in policy.exceptExitCodes:
            return f"exit code {code} is one the retry policy never retries (exceptExitCodes)"
    if wf.max_retries == 0:
        return "the workflow retries nothing (maxRetries 0)"
    if run.attempt > wf.max_retries:
        return f"its retries are spent ({wf.max_retries} of {wf.max_retries})"
    return None


def delay_sec(wf: Workflow, attempt: int) -> float:
    """How long the retry after attempt `attempt` waits."""
    policy = policy_of(wf)
    if policy.backoff == "fixed":
        return float(min(wf.retry_backoff_sec, policy.maxBackoffSec))
    return backoff(wf.retry_backoff_sec, attempt, cap=policy.maxBackoffSec, jitter=JITTER)


def retried(wf: Workflow, retry: Run, delay: float) -> str:
    """The decision's words for a run that is retried."""
    wait = f"after {delay:.0f} s" if delay >= 1 else "at once"
    return f"retried {wait} as {retry.public_id} (retry {retry.attempt - 1} of {wf.max_retries})"


def describe(wf: Workflow) -> str:
    """The workflow's retry rules in a sentence, for its page."""
    if wf.max_retries == 0:
        return "none"
    policy = policy_of(wf)
    if policy.backoff == "fixed":
        wait = f"{min(wf.retry_backoff_sec, policy.maxBackoffSec)} s before each"
    else:
        wait = f"backoff from {wf.retry_backoff_sec} s, doubling, at most {policy.maxBackoffSec} s"
    if policy.onExitCodes is not None:
        codes = "only exit codes " + (", ".join(map(str, policy.onExitCodes)) or "(none)")
    elif policy.exceptExitCodes:
        codes = "any exit code but " + ", ".join(map(str, policy.exceptExitCodes))
    else:
        codes = "any exit code"
    timeouts = "timeouts too" if policy.onTimeout else "not timeouts"
    return f"up to {wf.max_retries} ({wait}); {codes}; {timeouts}"
