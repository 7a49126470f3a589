"""Each stored thing as its API shape (webapp/api/shapes.py). Log lines are the exception: a page
holds up to 10,000 of them and the live stream sends them one by one, so `line_json` builds the
plain dict (a model per line costs 6 µs); tests/test_openapi.py holds its keys to `LogLine`."""
from __future__ import annotations

from flask import jsonify

from ..models import Run, Workflow
from ..models.base import isoformat
from ..services import backfills, chains, envgroups, hosts, retrying
from ..services.channels import describe_target
from ..services.masking import mask_value, masked_env
from ..runoutput.read import LogLine
from ..services.runs import run_url
from ..vocabulary import ChannelKind
from . import shapes


def workflow_shape(wf: Workflow, masked: bool = False, after: list | None = None) -> shapes.Workflow:
    """`masked`: secret-looking env values hidden (for read-scope keys); `after`: its chain's edges,
    when a list read them for all its workflows at once (services.chains.edges_for)."""
    return shapes.Workflow(
        id=wf.public_id, teamId=wf.team_id, projectId=wf.project_id, environmentId=wf.environment_id,
        name=wf.name, image=wf.image, command=wf.command,
        env=masked_env(wf.env) if masked else (wf.env or {}), schedule=wf.schedule,
        timeoutSec=wf.timeout_sec, maxRetries=wf.max_retries, nextRunAt=isoformat(wf.next_run_at),
        createdAt=isoformat(wf.created_at), updatedAt=isoformat(wf.updated_at), timezone=wf.timezone,
        concurrencyPolicy=wf.concurrency_policy, retryBackoffSec=wf.retry_backoff_sec,
        memoryMb=wf.memory_mb, cpus=wf.cpus, network=wf.network, workerPool=wf.worker_pool,
        onHostLost=wf.on_host_lost, readOnlyRootfs=wf.read_only_rootfs,
        expectSuccessWithinSec=wf.expect_success_within_sec, silentSince=isoformat(wf.silent_at),
        lastSuccessAt=isoformat(wf.last_success_at), envGroups=envgroups.names_of(wf.env_group_ids),
        catchUpWindowSec=wf.catch_up_window_sec, paused=wf.paused_at is not None,
        pausedAt=isoformat(wf.paused_at), pausedBy=wf.paused_by, pauseNote=wf.pause_note,
        pauseTriggers=wf.pause_triggers, after=chains.edges_of(wf) if after is None else after,
        join=wf.chain_join, retryPolicy=retrying.policy_of(wf))


def run_shape(run: Run, masked: bool = False) -> shapes.Run:
    return shapes.Run(
        id=run.public_id, workflowId=run.workflow.public_id, teamId=run.team_id, trigger=run.trigger,
        attempt=run.attempt, retryOf=run.retry_of.public_id if run.retry_of_id else None,
        triggeredBy=run.triggered_by.public_id if run.triggered_by_id else None,
        backfill=run.backfill.public_id if run.backfill_id else None, status=run.shown_status, exitCode=run.exit_code, error=run.error,
        env=masked_env(run.env) if masked else (run.env or {}), image=run.image,
        envGroups=[shapes.EnvGroupUse(**use) for use in envgroups.used_by(run)], command=run.command,
        imageDigest=run.image_digest, workerHost=run.worker_host, workerPool=run.worker_pool,
        waiting=hosts.waiting(run), scheduledFor=isoformat(run.scheduled_for), queuedAt=isoformat(run.queued_at),
        notBefore=isoformat(run.due_at), startedAt=isoformat(run.started_at),
        finishedAt=isoformat(run.finished_at), durationMs=run.duration_ms,
        cancelRequested=run.cancel_requested_at is not None, firedBy=run.fired_by, cancelledBy=run.cancelled_by,
        retryDecision=run.retry_decision, url=run_url(run))


def backfill_shape(bf, counts: dict[str, int]) -> shapes.Backfill:
    """`counts`: its runs by status (services.backfills.progress_of)."""
    return shapes.Backfill(
        id=bf.public_id, workflowId=bf.workflow.public_id, start=isoformat(bf.from_at), end=isoformat(bf.to_at),
        maxConcurrent=bf.max_concurrent, instants=bf.total, fired=bf.made, skipped=bf.skipped,
        state=backfills.state(bf, counts), runs=counts, createdAt=isoformat(bf.created_at),
        createdBy=bf.created_by, cancelledAt=isoformat(bf.cancelled_at))


def env_group_shape(group, masked: bool = False, using: list | None = None) -> shapes.EnvGroup:
    """`masked`: for read-scope keys, values that look secret hidden too (secret entries never show);
    `using`: its workflows, when a list read them for all its groups at once (envgroups.users_of)."""
    latest = envgroups.version_of(group)
    shown = [shapes.EnvEntry(key=key, value=None if e["secret"] else (mask_value(e["value"]) if masked else e["value"]),
                             secret=e["secret"]) for key, e in latest.entries.items()]
    return shapes.EnvGroup(name=group.name, version=group.version, entries=shown,
                           usedBy=[wf.public_id for wf in (envgroups.users(group) if using is None else using)], createdAt=isoformat(group.created_at),
                           updatedAt=isoformat(group.updated_at), updatedBy=latest.created_by)


def line_json(line: LogLine) -> dict:
    return {"stream": line.stream, "text": line.text, "ts": isoformat(line.ts), "seq": line.seq}


def channel_shape(channel, secret: bool = False) -> shapes.Channel:
    """`secret`: a webhook's signing secret included (shown once, at creation)."""
    extra = {"signingSecret": channel.config["secret"]} if secret and channel.kind == ChannelKind.WEBHOOK else {}
    return shapes.Channel(
        id=channel.id, teamId=channel.team_id, kind=channel.kind, name=channel.name,
        target=describe_target(channel), events=channel.events, createdAt=isoformat(channel.created_at),
        disabledAt=isoformat(channel.disabled_at), failuresInARow=channel.failures_in_a_row,
        lastError=channel.last_error, lastErrorAt=isoformat(channel.last_error_at), **extra)


def delivery_shape(d) -> shapes.Delivery:
    return shapes.Delivery(id=d.id, eventId=d.event_id, attempt=d.attempt, status=d.status,
                           responseCode=d.response_code, error=d.error, createdAt=isoformat(d.created_at))


def environment_shape(env) -> shapes.Environment:
    return shapes.Environment(id=env.id, projectId=env.project_id, name=env.name, production=env.is_production,
                              createdAt=isoformat(env.created_at))


def project_shape(project) -> shapes.Project:
    return shapes.Project(id=project.id, teamId=project.team_id, name=project.name,
                          environments=[environment_shape(e) for e in project.environments],
                          createdAt=isoformat(project.created_at))


def credential_shape(cred) -> shapes.RegistryCredential:
    return shapes.RegistryCredential(id=cred.id, projectId=cred.project_id, registry=cred.registry_host,
                                     username=cred.username, createdAt=isoformat(cred.created_at))


def member_shape(m) -> shapes.Member:
    return shapes.Member(userId=m.user_id, email=m.user.email, role=m.role, joinedAt=isoformat(m.created_at))


def invitation_shape(inv, link: str | None = None, mail_error: str | None = None) -> shapes.Invitation:
    shape = shapes.Invitation(id=inv.id, email=inv.email, role=inv.role, invitedBy=inv.created_by,
                              createdAt=isoformat(inv.created_at), expiresAt=isoformat(inv.expires_at))
    if link is not None:
        shape.link, shape.mailError = link, mail_error
    return shape


def key_shape(k, raw: str | None = None) -> shapes.ApiKey:
    shape = shapes.ApiKey(id=k.id, name=k.name, prefix=k.prefix, role=k.role, mode=k.mode,
                          createdAt=isoformat(k.created_at), lastUsedAt=isoformat(k.last_used_at),
                          expiresAt=isoformat(k.expires_at), revokedAt=isoformat(k.revoked_at))
    if raw is not None:
        shape.key = raw
    return shape


def audit_shape(e) -> shapes.AuditEntry:
    return shapes.AuditEntry(id=e.id, at=isoformat(e.at), actor=e.actor, actorUserId=e.actor_user_id,
                             actorKeyId=e.actor_key_id, ip=e.ip, userAgent=e.user_agent, action=e.action,
                             targetType=e.target_type, target=e.target, diff=e.diff)


def answer(shape: shapes.Shape, status: int = 200):
    """A route's answer: `shape` as JSON with `status`."""
    return jsonify(shape.out()), status


def fired_answer(fired, shape: shapes.Shape | None = None):
    """A manual fire's answer: 202 with its run (or `shape`); an Idempotency-Key's replay says so
    in a header."""
    response, status = answer(shape or run_shape(fired.run), 202)
    if fired.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response, status
