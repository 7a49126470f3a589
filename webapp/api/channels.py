"""Notification channel routes (an extension of the contract; the dashboard has the same forms)."""
from __future__ import annotations

from flask import g, jsonify

from ..models.base import isoformat
from ..schemas import ChannelCreate, parse
from ..services import channels as service
from ..vocabulary import ChannelKind
from .blueprint import bp
from .body import json_body


def channel_json(channel, secret: bool = False) -> dict:
    body = {"id": channel.id, "teamId": channel.team_id, "kind": channel.kind, "name": channel.name,
            "target": service.describe_target(channel), "events": channel.events,
            "createdAt": isoformat(channel.created_at), "disabledAt": isoformat(channel.disabled_at),
            "failuresInARow": channel.failures_in_a_row, "lastError": channel.last_error,
            "lastErrorAt": isoformat(channel.last_error_at)}
    if secret and channel.kind == ChannelKind.WEBHOOK:
        body["signingSecret"] = channel.config["secret"]  # shown once, at creation
    return body


def delivery_json(d) -> dict:
    return {"id": d.id, "eventId": d.event_id, "attempt": d.attempt, "status": d.status,
            "responseCode": d.response_code, "error": d.error, "createdAt": isoformat(d.created_at)}


@bp.get("/teams/<int:team_id>/notification-channels")
def list_channels(team_id: int):
    return jsonify({"channels": [channel_json(c) for c in service.list_channels(g.principal, team_id)]})


@bp.post("/teams/<int:team_id>/notification-channels")
def create_channel(team_id: int):
    body = parse(ChannelCreate, json_body())
    channel = service.create_channel(g.principal, team_id, body.kind, body.name, body.target, body.events)
    return jsonify(channel_json(channel, secret=True)), 201


@bp.delete("/teams/<int:team_id>/notification-channels/<int:channel_id>")
def delete_channel(team_id: int, channel_id: int):
    service.delete_channel(g.principal, team_id, channel_id)
    return "", 204


@bp.post("/teams/<int:team_id>/notification-channels/<int:channel_id>/enable")
def enable_channel(team_id: int, channel_id: int):
    return jsonify(channel_json(service.enable_channel(g.principal, team_id, channel_id)))


@bp.post("/teams/<int:team_id>/notification-channels/<int:channel_id>/test")
def test_channel(team_id: int, channel_id: int):
    service.send_test(g.principal, team_id, channel_id)
    return jsonify({"queued": True}), 202


@bp.get("/teams/<int:team_id>/notification-channels/<int:channel_id>/deliveries")
def channel_deliveries(team_id: int, channel_id: int):
    channel = service.get_channel(g.principal, team_id, channel_id)
    return jsonify({"deliveries": [delivery_json(d) for d in service.deliveries(channel)]})
