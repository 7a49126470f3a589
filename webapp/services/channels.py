"""Notification channels of a team: Slack, Discord, email, signed webhook."""
from __future__ import annotations

from flask import current_app
from sqlalchemy import func, select, update

from ..extensions import db
from ..models import Event, Notification, NotificationChannel, NotificationDelivery, Workflow
from ..models.clock import db_now
from ..notify import TRANSPORTS
from ..vocabulary import CHANNEL_KINDS, DEFAULT_EVENTS, EVENTS
from . import budget, dispatch
from . import audit, roles
from .access import Principal, require_not_test_key, require_team
from .errors import Forbidden, Invalid, NotFound
from .workflows import live_production_workflows


def validate(kind: str, name: str, target: str, events: list[str]) -> tuple[dict, list[str]]:
    """The channel's config from the form/API fields, or Invalid naming each bad field."""
    fields: dict[str, str] = {}
    if kind not in TRANSPORTS:
        fields["kind"] = f"one of {', '.join(CHANNEL_KINDS)}"
    if not name.strip() or len(name) > 100:
        fields["name"] = "1 to 100 characters"
    events = list(dict.fromkeys(events))
    if not events or any(e not in EVENTS for e in events):
        fields["events"] = f"one or more of {', '.join(EVENTS)}"
    transport = TRANSPORTS.get(kind)
    config: dict = {}
    if transport is not None:
        config, problem = transport.configure(target)
        if problem:
            fields["target"] = problem
    if fields:
        raise Invalid("the channel is not valid", fields)
    return config, events


def create_channel(principal: Principal, team_id: int, kind: str, name: str, target: str,
                   events: list[str] | None = None) -> NotificationChannel:
    roles.require(principal, team_id, "channel.create")
    require_not_test_key(principal, "notification channels")
    config, events = validate(kind, name, target, events or list(DEFAULT_EVENTS))
    channel = NotificationChannel(team_id=team_id, kind=kind, name=name.strip(), config=config, events=events)
    db.session.add(channel)
    db.session.flush()
    audit.record(principal, team_id, "channel.create", "channel", f"{channel.id} {channel.name}",
                 {"kind": [None, kind], "events": [None, events]})
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
    roles.require(principal, team_id, "channel.delete")
    if principal.mode == "test" and _team_has_production_workflows(team_id):
        raise Forbidden("hs_test_ keys may not remove a channel that Production workflows alert through")
    audit.record(principal, team_id, "channel.delete", "channel", f"{channel.id} {channel.name}")
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
    roles.require(principal, team_id, "channel.test")
    budget.spend_test_message(team_id)
    notification = Notification(team_id=team_id, channel_id=channel.id, event_id=None)
    db.session.add(notification)
    db.session.commit()
    try:
        dispatch.hand_over_notifications([notification.id])
    except Exception:  # written: the scheduler's sweep hands it over
        db.session.rollback()


def record_outcome(channel_id: int, error: str | None, *, permanent: bool) -> bool:
    """What one delivery attempt to a channel taught: a success clears its run of permanent
    failures; a permanent failure adds to it and, at CHANNEL_DISABLE_AFTER, disables the channel
    (no new notification is made for it until a member enables it again: `enable_channel`), the
    way healthchecks stops calling an endpoint that refuses for good. Each step is one atomic
    UPDATE, so concurrent deliveries count right. True when this call disabled the channel."""
    table = NotificationChannel.__table__
    where = table.c.id == channel_id
    if error is None:
        db.session.execute(update(table).where(where, table.c.failures_in_a_row > 0).values(failures_in_a_row=0))
        db.session.commit()
        return False
    values = dict(last_error=error[:1000], last_error_at=db_now())
    if permanent:
        values["failures_in_a_row"] = table.c.failures_in_a_row + 1
    db.session.execute(update(table).where(where).values(**values))
    disabled = permanent and db.session.execute(
        update(table).where(where, table.c.disabled_at.is_(None),
                            table.c.failures_in_a_row >= current_app.config["CHANNEL_DISABLE_AFTER"])
        .values(disabled_at=db_now())).rowcount == 1
    db.session.commit()
    return disabled


def enable_channel(principal: Principal, team_id: int, channel_id: int) -> NotificationChannel:
    """A disabled channel back in service, its run of failures forgotten (its last error kept)."""
    channel = get_channel(principal, team_id, channel_id)
    roles.require(principal, team_id, "channel.update")
    if channel.disabled_at is not None:
        audit.record(principal, team_id, "channel.update", "channel", f"{channel.id} {channel.name}",
                     {"enabled": [False, True]})
    channel.disabled_at, channel.failures_in_a_row = None, 0
    db.session.commit()
    return channel


def disabled_count(team_id: int) -> int:
    """The team's disabled channels: the notice on every page of the dashboard."""
    return db.session.scalar(select(func.count(NotificationChannel.id)).where(
        NotificationChannel.team_id == team_id, NotificationChannel.disabled_at.is_not(None)))


def describe_target(channel: NotificationChannel) -> str:
    """Where a channel sends, without its secret parts."""
    return TRANSPORTS[channel.kind].describe(channel.config)


def _team_has_production_workflows(team_id: int) -> bool:
    found = live_production_workflows().filter(Workflow.team_id == team_id).with_entities(Workflow.id).first()
    return found is not None
