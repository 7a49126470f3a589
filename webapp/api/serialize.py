"""The JSON shapes of the contract."""
from __future__ import annotations

from ..models import Run, Workflow
from ..models.base import isoformat
from ..services import hosts
from ..services.masking import masked_env
from ..services.runs import LogLine, run_url


def workflow_json(wf: Workflow, masked: bool = False) -> dict:
    """`masked`: secret-looking env values hidden (for read-scope keys)."""
    return {
        "id": wf.public_id, "teamId": wf.team_id, "projectId": wf.project_id,
        "environmentId": wf.environment_id, "name": wf.name, "image": wf.image,
        "command": wf.command, "env": masked_env(wf.env) if masked else (wf.env or {}), "schedule": wf.schedule,
        "timeoutSec": wf.timeout_sec, "maxRetries": wf.max_retries,
        "nextRunAt": isoformat(wf.next_run_at), "createdAt": isoformat(wf.created_at),
        "updatedAt": isoformat(wf.updated_at), "timezone": wf.timezone,
        "concurrencyPolicy": wf.concurrency_policy, "retryBackoffSec": wf.retry_backoff_sec,
        "memoryMb": wf.memory_mb, "cpus": wf.cpus, "network": wf.network, "workerPool": wf.worker_pool,
        "onHostLost": wf.on_host_lost,
        "readOnlyRootfs": wf.read_only_rootfs,
        "expectSuccessWithinSec": wf.expect_success_within_sec, "silentSince": isoformat(wf.silent_at),
        "lastSuccessAt": isoformat(wf.last_success_at),
    }


def run_json(run: Run, masked: bool = False) -> dict:
    return {
        "id": run.public_id, "workflowId": run.workflow.public_id, "teamId": run.team_id,
        "trigger": run.trigger, "attempt": run.attempt,
        "retryOf": run.retry_of.public_id if run.retry_of_id else None,
        "status": run.shown_status, "exitCode": run.exit_code, "error": run.error,
        "env": masked_env(run.env) if masked else (run.env or {}), "image": run.image, "command": run.command,
        "imageDigest": run.image_digest, "workerHost": run.worker_host,
        "workerPool": run.worker_pool, "waiting": hosts.waiting(run), "scheduledFor": isoformat(run.scheduled_for),
        "queuedAt": isoformat(run.queued_at), "notBefore": isoformat(run.due_at),
        "startedAt": isoformat(run.started_at), "finishedAt": isoformat(run.finished_at),
        "durationMs": run.duration_ms, "cancelRequested": run.cancel_requested_at is not None,
        "url": run_url(run),
    }


def line_json(line: LogLine) -> dict:
    return {"stream": line.stream, "text": line.text, "ts": isoformat(line.ts), "seq": line.seq}
