"""Inbound webhooks: a workflow may have one hook, `POST /hooks/<token>`, that fires it (trigger
`webhook`) with the request's body as the run's payload. The token is shown once (only its sha256
is kept), rotated by making the hook again, revoked by deleting it. A signed hook also checks an
HMAC-SHA256 of the raw body with its secret, in GitHub's `X-Hub-Signature-256: sha256=<hex>` or
Stripe's `Stripe-Signature: t=<unix time>,v1=<hex>` (of "<t>.<body>", t within 5 minutes). A fire
counts against the team's trigger budget like any manual one, is refused while the workflow is
paused with pauseTriggers, and honours Idempotency-Key (webapp/services/runs.py)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

from flask import current_app

from ..extensions import db
from ..models import Workflow, WorkflowHook
from ..models.base import utcnow
from . import audit
from .access import Principal
from .errors import BadSignature, Gone, NotFound, TooLarge
from .workflows import get_workflow

MAX_PAYLOAD = 64 * 1024
MAX_ENV_PAYLOAD = 4 * 1024
STRIPE_TOLERANCE_SEC = 300


def hook_url(token: str) -> str:
    """Where a hook is called (BASE_URL, as the run links of notifications)."""
    return f"{current_app.config['BASE_URL']}/hooks/{token}"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def make_hook(principal: Principal, team_id: int, public_id: str, signed: bool) -> tuple[WorkflowHook, str, str | None]:
    """Make the workflow's hook, or rotate it (a new token, and a new secret if signed); returns
    (the hook, its token, its secret or None), the token and secret shown this once."""
    wf = get_workflow(principal, team_id, public_id, "webhook.create")
    token = "wh_" + secrets.token_urlsafe(32)
    secret = ("whsec_" + secrets.token_urlsafe(32)) if signed else None
    hook = db.session.query(WorkflowHook).filter_by(workflow_id=wf.id).first() or WorkflowHook(workflow_id=wf.id)
    hook.token_hash, hook.token_prefix, hook.secret = _hash(token), token[:10], secret
    hook.created_at, hook.revoked_at = utcnow(), None
    db.session.add(hook)
    audit.record(principal, team_id, "webhook.create", "workflow", wf.public_id,
                 {"token": hook.token_prefix + "…", "signed": signed})
    db.session.commit()
    return hook, token, secret


def get_hook(principal: Principal, team_id: int, public_id: str) -> WorkflowHook:
    wf = get_workflow(principal, team_id, public_id)
    hook = db.session.query(WorkflowHook).filter_by(workflow_id=wf.id).first()
    if hook is None:
        raise NotFound("the workflow has no webhook")
    return hook


def hook_for(wf: Workflow) -> WorkflowHook | None:
    """The workflow's hook, live or revoked, for its page (the caller has read the workflow)."""
    return db.session.query(WorkflowHook).filter_by(workflow_id=wf.id).first()


def revoke_hook(principal: Principal, team_id: int, public_id: str) -> None:
    get_workflow(principal, team_id, public_id, "webhook.revoke")
    hook = get_hook(principal, team_id, public_id)
    if hook.revoked_at is None:
        hook.revoked_at = utcnow()
        audit.record(principal, team_id, "webhook.revoke", "workflow", public_id, {"token": hook.token_prefix + "…"})
        db.session.commit()


def hook_of(token: str) -> tuple[WorkflowHook, Workflow]:
    """The live hook a token calls, or NotFound (unknown, or its workflow deleted) / Gone (revoked)."""
    hook = db.session.query(WorkflowHook).filter_by(token_hash=_hash(token)).first()
    wf = db.session.get(Workflow, hook.workflow_id) if hook else None
    if hook is None or wf is None or wf.deleted_at is not None:
        raise NotFound("no such webhook")
    if hook.revoked_at is not None:
        raise Gone("this webhook was revoked")
    return hook, wf


def check_body(hook: WorkflowHook, body: bytes, headers) -> None:
    """The body's size, and its signature when the hook is signed: TooLarge or BadSignature."""
    if len(body) > MAX_PAYLOAD:
        raise TooLarge(f"the body is over {MAX_PAYLOAD // 1024} KiB")
    if hook.secret is None:
        return
    key = hook.secret.encode()
    github = headers.get("X-Hub-Signature-256", "")
    if github.startswith("sha256="):
        if hmac.compare_digest(github[7:], hmac.new(key, body, hashlib.sha256).hexdigest()):
            return
        raise BadSignature("X-Hub-Signature-256 does not match the body")
    stripe = dict(part.split("=", 1) for part in headers.get("Stripe-Signature", "").split(",") if "=" in part)
    if "t" in stripe and "v1" in stripe:
        signed = stripe["t"].encode() + b"." + body
        if not stripe["t"].isdigit() or abs(time.time() - int(stripe["t"])) > STRIPE_TOLERANCE_SEC:
            raise BadSignature("Stripe-Signature's t is not within 5 minutes of now")
        if hmac.compare_digest(stripe["v1"], hmac.new(key, signed, hashlib.sha256).hexdigest()):
            return
        raise BadSignature("Stripe-Signature does not match the body")
    raise BadSignature("this webhook is signed: send X-Hub-Signature-256 or Stripe-Signature")


def payload_env(payload: str | None) -> dict[str, str]:
    """WORKFLOW_PAYLOAD for a run's container: the body when it is at most 4 KiB of text."""
    if payload is None:
        return {}
    body = base64.b64decode(payload)
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return {}
    return {"WORKFLOW_PAYLOAD": text} if len(body) <= MAX_ENV_PAYLOAD and "\x00" not in text else {}


def encode(body: bytes) -> str:
    return base64.b64encode(body).decode()
