"""API key routes: a team's keys, made with a role at most the maker's (services/keys.py)."""
from __future__ import annotations

from datetime import datetime

from flask import g

from ..gate import needs
from ..schemas import ApiKeyCreate, parse
from ..services import keys as service
from .blueprint import bp
from .body import json_body
from .serialize import answer, key_shape
from .shapes import ApiKeyList


@bp.get("/teams/<int:team_id>/api-keys")
@needs("key.read")
def list_keys(team_id: int):
    return answer(ApiKeyList(apiKeys=[key_shape(k) for k in service.list_keys(g.principal, team_id)]))


@bp.post("/teams/<int:team_id>/api-keys")
@needs("key.create")
def create_key(team_id: int):
    body = parse(ApiKeyCreate, json_body())
    until = datetime.fromisoformat(body.expiresAt) if body.expiresAt else None
    key, raw = service.create_key(g.principal, team_id, body.role, body.mode, body.name, expires_at=until)
    return answer(key_shape(key, raw), 201)


@bp.delete("/teams/<int:team_id>/api-keys/<int:key_id>")
@needs("key.revoke")
def revoke_key(team_id: int, key_id: int):
    service.revoke(g.principal, team_id, key_id)
    return "", 204
