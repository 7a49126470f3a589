"""Notification channels of a team: Slack, Discord, email, signed webhook."""
from __future__ import annotations

import ipaddress
import secrets
from urllib.parse import urlparse

from email_validator import EmailNotValidError, validate_email
from flask import current_app

from ..extensions import db
from ..models import Event, Notification, NotificationChannel, NotificationDelivery, Workflow
from ..notify.destination import destination_problem
from . import budget, dispatch
from .access import Principal, require_not_test_key, require_team, require_write
from .errors import Forbidden, Invalid, NotFound
from .workflows import live_production_workflows
from ..vocabulary import CHANNEL_KINDS, DEFAULT_EVENTS, EVENTS, ChannelKind, EventKind



def _url_problem(url: str) -> str | None:
    parsed = urlparse(url.strip())
    if parsed.scheme not in ("https", "http") or not parsed.hostname:
        return "must be an https:// URL"
    if parsed.scheme == "http":
        host = parsed.hostname
        local = host == "localhost"
        try:
            local = local or ipaddress.ip_address(host).is_loopback
        except ValueError:
            pass
        if not (local and current_app.config["NOTIFY_ALLOW_HTTP_LOCALHOST"]):
            return "must be an https:// URL"
    if len(url) > 2000:
        return "at most 2000 characters"
    return destination_problem(parsed.hostname, resolve_failures_ok=True)


def validate(kind: str, name: str, target: str, events: list[str]) -> tuple[dict, list[str]]:
    """The channel's config from the form/API fields, or Invalid naming each bad field."""
    fields: dict[str, str] = {}
    if kind not in CHANNEL_KINDS:
        fields["kind"] = f"one of {', '.join(CHANNEL_KINDS)}"
    if not name.strip() or len(name) > 100:
        fields["name"] = "1 to 100 characters"
    events = list(dict.fromkeys(events))
    if not events or any(e not in EVENTS for e in events):
        fields["events"] = f"one or more of {', '.join(EVENTS)}"
    config: dict = {}
    if kind == "email":
        addresses = [a.strip() for a in target.replace(";", ",").replace("\n", ",").split(",") if a.strip()]
        if not addresses or len(addresses) > 20:
            fields["target"] = "one to twenty email addresses"
        for a in addresses:
            try:
                validate_email(a, check_deliverability=False, test_environment=True, globally_deliverable=False)
            except EmailNotValidError:
                fields["target"] = f"{a[:60]} is not an email address"
        config = {"addresses": addresses}
    elif kind in CHANNEL_KINDS:
        problem = _url_problem(target)
        if problem:
            fields["target"] = problem
        config = {"url": target.strip()}
        if kind == "webhook":
            config["secret"] = "whsec_" + secrets.token_urlsafe(32)
    if fields:
        raise Invalid("the channel is not valid", fields)
    return config, events


def create_channel(principal: Principal, team_id: int, kind: str, name: str, target: str,
                   events: list[str] | None = None) -> NotificationChannel:
    require_team(principal, team_id)
    require_write(principal)
    require_not_test_key(principal, "notification channels")
    config, events = validate(kind, name, target, events or list(DEFAULT_EVENTS))
    channel = NotificationChannel(team_id=team_id, kind=kind, name=name.strip(), config=config, events=events)
    db.session.add(channel)
    db.session.commit()
    return channel


def list_channels(principal: Principal, team_id: int) -> list[NotificationChannel]:
    require_team(principal, team_id)
    return db.session.query(NotificationChannel).filter_by(team_id=team_id).order_by(NotificationChannel.id).all()


def get_channel(principal: Principal, team_id: int, channel_id: int) -> NotificationChannel:
    require_team(principal, team_id)
    channel = db.session.get(NotificationChannel, channel_id)
    if channel is None or channel.team_id != team_id:
        raise NotFound("no such channel")
    return channel


def delete_channel(principal: Principal, team_id: int, channel_id: int) -> None:
    channel = get_channel(principal, team_id, channel_id)
    require_write(principal)
    if principal.mode == "test" and _team_has_production_workflows(team_id):
        raise Forbidden("hs_test_ keys may not remove a channel that Production workflows alert through")
    db.session.delete(channel)
    db.session.commit()


def deliveries(channel: NotificationChannel, limit: int = 50) -> list[NotificationDelivery]:
    return (db.session.query(NotificationDelivery).filter_by(channel_id=channel.id)
            .order_by(NotificationDelivery.id.desc()).limit(limit).all())


def deliveries_for_run(run) -> list[tuple[Event, NotificationChannel, NotificationDelivery]]:
    """What the run's events (its final failure, the recovery it made) caused: each delivery
    attempt with its channel, oldest first. The caller has checked access to the run."""
    return (db.session.query(Event, NotificationChannel, NotificationDelivery)
            .join(NotificationDelivery, NotificationDelivery.event_id == Event.id)
            .join(NotificationChannel, NotificationChannel.id == NotificationDelivery.channel_id)
            .filter(Event.run_id == run.id, Event.team_id == run.team_id)
            .order_by(NotificationDelivery.id).limit(200).all())


def send_test(principal: Principal, team_id: int, channel_id: int) -> None:
    channel = get_channel(principal, team_id, channel_id)
    require_write(principal)
    budget.spend_test_message(team_id)
    notification = Notification(team_id=team_id, channel_id=channel.id, event_id=None)
    db.session.add(notification)
    db.session.commit()
    try:
        dispatch.hand_over_notifications([notification.id])
    except Exception:  # written: the scheduler's sweep hands it over
        db.session.rollback()


def describe_target(channel: NotificationChannel) -> str:
    """Where a channel sends, without its secret parts (path, query, user and password)."""
    if channel.kind == "email":
        return ", ".join(channel.config.get("addresses", []))
    parsed = urlparse(channel.config.get("url", ""))
    host = parsed.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{host}{port}/…"


def _team_has_production_workflows(team_id: int) -> bool:
    found = live_production_workflows().filter(Workflow.team_id == team_id).with_entities(Workflow.id).first()
    return found is not None
