"""A workflow's inbound webhook: make (or rotate) it, read it, revoke it; and the hook itself,
`POST /hooks/<token>`, outside /api: the token is its only credential (services/hooks.py)."""
from __future__ import annotations

from flask import Blueprint, g, request

from ..gate import OPEN, needs, source
from ..models.base import isoformat
from ..schemas import WebhookCreate, parse
from ..services import hooks, idempotency
from ..services import runs as run_service
from ..services.errors import TooLarge
from ..services.runs import run_url
from .blueprint import bp
from .body import json_body
from .serialize import answer, fired_answer
from .shapes import Fired, Webhook

inbound = Blueprint("hooks", __name__, url_prefix="/hooks")


def _shape(hook, **shown) -> Webhook:
    return Webhook(tokenPrefix=hook.token_prefix, signed=hook.secret is not None,
                   createdAt=isoformat(hook.created_at), revokedAt=isoformat(hook.revoked_at), **shown)


@bp.post("/workflows/<int:team_id>/workflows/<workflow_id>/webhook")
@needs("webhook.create")
def make_webhook(team_id: int, workflow_id: str):
    body = parse(WebhookCreate, json_body(optional=True))
    hook, token, secret = hooks.make_hook(g.principal, team_id, workflow_id, body.signed)
    return answer(_shape(hook, url=hooks.hook_url(token), token=token, secret=secret), 201)


@bp.get("/workflows/<int:team_id>/workflows/<workflow_id>/webhook")
@needs("team.read")
def get_webhook(team_id: int, workflow_id: str):
    return answer(_shape(hooks.get_hook(g.principal, team_id, workflow_id)))


@bp.delete("/workflows/<int:team_id>/workflows/<workflow_id>/webhook")
@needs("webhook.revoke")
def revoke_webhook(team_id: int, workflow_id: str):
    hooks.revoke_hook(g.principal, team_id, workflow_id)
    return "", 204


@inbound.post("/<token>")
@needs(OPEN)
def fire(token: str):
    if (request.content_length or 0) > hooks.MAX_PAYLOAD:
        raise TooLarge(f"the body is over {hooks.MAX_PAYLOAD // 1024} KiB")
    body = request.stream.read(hooks.MAX_PAYLOAD + 1)
    key = idempotency.valid_key(request.headers.get(idempotency.HEADER))
    fired = run_service.fire_webhook(token, body, request.headers, key, source())
    return fired_answer(fired, Fired(runId=fired.run.public_id, url=run_url(fired.run)))
