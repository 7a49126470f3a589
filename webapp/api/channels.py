"""Notification channel routes (an extension of the contract; the dashboard has the same forms)."""
from __future__ import annotations

from flask import g

from ..gate import needs
from ..schemas import ChannelCreate, parse
from ..services import channels as service
from .blueprint import bp
from .body import json_body
from .serialize import answer, channel_shape, delivery_shape
from .shapes import ChannelList, DeliveryList, Queued


@bp.get("/teams/<int:team_id>/notification-channels")
@needs("team.read")
def list_channels(team_id: int):
    return answer(ChannelList(channels=[channel_shape(c) for c in service.list_channels(g.principal, team_id)]))


@bp.post("/teams/<int:team_id>/notification-channels")
@needs("channel.create")
def create_channel(team_id: int):
    body = parse(ChannelCreate, json_body())
    channel = service.create_channel(g.principal, team_id, body.kind, body.name, body.target, body.events)
    return answer(channel_shape(channel, secret=True), 201)


@bp.delete("/teams/<int:team_id>/notification-channels/<int:channel_id>")
@needs("channel.delete")
def delete_channel(team_id: int, channel_id: int):
    service.delete_channel(g.principal, team_id, channel_id)
    return "", 204


@bp.post("/teams/<int:team_id>/notification-channels/<int:channel_id>/enable")
@needs("channel.update")
def enable_channel(team_id: int, channel_id: int):
    return answer(channel_shape(service.enable_channel(g.principal, team_id, channel_id)))


@bp.post("/teams/<int:team_id>/notification-channels/<int:channel_id>/test")
@needs("channel.test")
def test_channel(team_id: int, channel_id: int):
    service.send_test(g.principal, team_id, channel_id)
    return answer(Queued(queued=True), 202)


@bp.get("/teams/<int:team_id>/notification-channels/<int:channel_id>/deliveries")
@needs("team.read")
def channel_deliveries(team_id: int, channel_id: int):
    channel = service.get_channel(g.principal, team_id, channel_id)
    return answer(DeliveryList(deliveries=[delivery_shape(d) for d in service.deliveries(channel)]))
